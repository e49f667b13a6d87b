"""`synthrec tune` refuses bad input in seconds, before any Ray or Tune work."""

import pyarrow.parquet as pq
import pytest

from synthrec.cli import main
from synthrec.config import SimulateConfig
from synthrec.data.simulator import simulate
from synthrec.storage import read_manifest


@pytest.fixture(scope="module")
def log():
    return simulate(SimulateConfig(rows=600, num_users=30, num_items=60, num_categories=4,
                                   num_brands=8, num_queries=10))  # fmt: skip


def _run(args, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(["tune", *args])
    assert exit_.value.code == 2
    return " ".join(capsys.readouterr().err.split())


def test_tune_cli_log_without_labels_is_refused_naming_the_label(tmp_path, log, capsys):
    pq.write_table(log.drop_columns(["click", "cart", "purchase"]), tmp_path / "real.parquet")
    err = _run(["--real-uri", str(tmp_path / "real.parquet"), "--out-uri", str(tmp_path / "m")],
               capsys)  # fmt: skip
    assert "label column" in err and "validation split" in err
    assert read_manifest(str(tmp_path / "m")) is None  # nothing published


def test_tune_cli_temperatures_without_a_generator_are_refused(tmp_path, log, capsys):
    pq.write_table(log, tmp_path / "real.parquet")
    (tmp_path / "t.yaml").write_text("search:\n  temperature: [0.8, 1.2]\n")
    err = _run(["--real-uri", str(tmp_path / "real.parquet"), "--out-uri", str(tmp_path / "m"),
                "--config", str(tmp_path / "t.yaml")], capsys)  # fmt: skip
    assert "temperature" in err and "--generator-uri" in err


def test_tune_cli_bad_search_values_name_the_key(tmp_path, log, capsys):
    pq.write_table(log, tmp_path / "real.parquet")
    (tmp_path / "t.yaml").write_text("search:\n  synthetic_share: [0.0, 1.5]\n")
    err = _run(["--real-uri", str(tmp_path / "real.parquet"), "--out-uri", str(tmp_path / "m"),
                "--config", str(tmp_path / "t.yaml")], capsys)  # fmt: skip
    assert "search.synthetic_share" in err and "(0, 1]" in err
