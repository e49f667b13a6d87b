"""`synthrec train-gan --generator`: which generator a log gets, and the error when a log
cannot give sequences (before Ray starts, nothing published)."""

import pyarrow.parquet as pq
import pytest

from synthrec.cli import main
from synthrec.config import TrainGanConfig
from synthrec.distributed.train_generator import choose_generator
from synthrec.errors import DataError
from synthrec.schema import infer_schema
from tests.logshapes import taobao_log


def _log(drop=()):
    table = taobao_log(600, seed=1).drop(list(drop))
    return table, infer_schema(table)


def test_train_generator_auto_picks_sequences_with_user_item_and_time():
    chosen, why = choose_generator("auto", *_log())
    assert chosen == "sequences"
    assert "user (user_id)" in why and "item (item_id)" in why and "(timestamp)" in why


def test_train_generator_auto_falls_back_to_rows_and_names_what_it_found():
    chosen, why = choose_generator("auto", *_log(drop=["timestamp"]))
    assert chosen == "rows"
    assert "found: user user_id, item item_id" in why and "time" in why


def test_train_generator_rows_when_asked_even_with_sequence_columns():
    assert choose_generator("rows", None, None)[0] == "rows"  # the log is not even read


def test_train_generator_sequences_without_time_column_is_a_data_error():
    with pytest.raises(DataError, match="sequence generation needs a user, an item and a time"):
        choose_generator("sequences", *_log(drop=["timestamp"]))


def test_train_generator_old_configs_stay_valid_and_default_to_auto():
    cfg = TrainGanConfig(data_uri="d", out_uri="o", gan={"batch_size": 100})
    assert cfg.generator == "auto" and cfg.sequence.d_model == 64 and cfg.epochs == 30


def test_train_gan_cli_sequences_on_a_log_without_time_fails_cleanly(tmp_path, capsys):
    data, out = tmp_path / "events.parquet", tmp_path / "model"
    pq.write_table(taobao_log(600, seed=1).drop(["timestamp"]), data)
    argv = ["train-gan", "--data-uri", str(data), "--out-uri", str(out)]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--generator", "sequences"])
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert "Traceback" not in "\n".join(lines)
    assert lines[0].startswith("error: sequence generation needs a user, an item and a time")
    assert "no time column (columns found: user_id, item_id" in " ".join(lines)
    assert "--generator rows" in " ".join(lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.parquet"]  # nothing published
