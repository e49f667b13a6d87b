"""`synthrec train-gan --epsilon/--delta`: bad privacy input is one clear line before training."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthrec.cli import main


def _error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert "Traceback" not in "\n".join(lines), lines
    return " ".join(lines)


@pytest.fixture
def log_uri(tmp_path):
    rng = np.random.default_rng(0)
    table = pa.table({"genre": rng.choice(["a", "b"], 500), "price": rng.lognormal(3, 1, 500)})
    pq.write_table(table, tmp_path / "events.parquet")
    return str(tmp_path / "events.parquet")


def test_cli_privacy_delta_needs_epsilon(capsys):
    line = _error(["train-gan", "--data-uri", "d", "--out-uri", "o", "--delta", "1e-6"], capsys)
    assert "--epsilon is required" in line


def test_cli_privacy_sequences_name_their_unaccounted_statistics(tmp_path, capsys):
    """--generator sequences --epsilon trains with user-level DP: a log whose event columns,
    catalog and times are not declared public or bounded is refused before training."""
    from tests.logshapes import taobao_log

    pq.write_table(taobao_log(600), tmp_path / "log.parquet")
    argv = ["train-gan", "--data-uri", str(tmp_path / "log.parquet")]
    argv += ["--out-uri", str(tmp_path / "m"), "--generator", "sequences", "--epsilon", "2"]
    line = _error(argv, capsys)
    assert "sequence generator would fit these statistics" in line
    for named in ("'item_id' (item_id)", "'timestamp' (timestamp)", "'behavior_type' (event)"):
        assert named in line


def test_cli_privacy_unaccounted_column_is_named_before_training(log_uri, tmp_path, capsys):
    argv = ["train-gan", "--data-uri", log_uri, "--out-uri", str(tmp_path / "m")]
    line = _error([*argv, "--epsilon", "2"], capsys)
    assert "column 'price' (numeric)" in line and "public_columns" in line
    assert "'genre'" not in line
    assert not list((tmp_path / "m").iterdir())  # nothing published (the probe is gone)
