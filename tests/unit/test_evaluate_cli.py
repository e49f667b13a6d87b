"""`synthrec evaluate` in-process through `main`: headline table, files, one-line user errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthrec.cli import main


def run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def events(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pa.table(
        {
            "user_id": [f"u{i}" for i in rng.integers(0, 30, n)],
            "x": x,
            "kind": rng.choice(["a", "b", "c"], n),
            "click": (x + rng.normal(size=n) > 0).astype(np.int64),
        }
    )


@pytest.fixture
def files(tmp_path):
    paths = {}
    for name, table in (
        ("real", events(600, 0)),
        ("syn", events(600, 1)),
        ("hold", events(300, 2)),
        ("copy", events(600, 0)),
        ("empty", events(600, 1).slice(0, 0)),
        ("short", events(600, 1).drop(["kind"])),
    ):
        paths[name] = str(tmp_path / f"{name}.parquet")
        pq.write_table(table, paths[name])
    (tmp_path / "fast.yaml").write_text("privacy_query_rows: 300\nutility_max_train_rows: 1000\n")
    paths["config"] = str(tmp_path / "fast.yaml")
    return paths


def test_cli_evaluate_prints_headline_and_writes_files(tmp_path, files, capsys):
    code, out, _ = run(
        [
            "evaluate",
            "--real-uri",
            files["real"],
            "--synthetic-uri",
            files["syn"],
            "--holdout-uri",
            files["hold"],
            "--config",
            files["config"],
            "--out-uri",
            str(tmp_path / "rep"),
        ],
        capsys,
    )
    assert code == 0
    for name in (
        "fidelity.overall",
        "utility.tstr_auc",
        "privacy.exact_copy_rate",
        "privacy.mia_auc",
        "verdict",
    ):
        assert name in out
    assert "PASS" in out
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert metrics["verdict"]["passed"] and (tmp_path / "rep" / "report.html").exists()


def test_cli_evaluate_strict_exits_1_when_the_verdict_fails(tmp_path, files, capsys):
    argv = [
        "evaluate",
        "--real-uri",
        files["real"],
        "--synthetic-uri",
        files["copy"],
        "--holdout-uri",
        files["hold"],
        "--config",
        files["config"],
        "--out-uri",
        str(tmp_path / "rep"),
    ]
    code, out, _ = run(argv + ["--strict"], capsys)
    assert code == 1 and "FAIL" in out


@pytest.mark.parametrize(
    "synthetic, extra, message",
    [
        ("empty", [], "synthetic table is empty (0 rows)"),
        ("short", [], "synthetic table's columns differ from the schema"),
        ("syn", ["--label", "nope"], "label column 'nope' is not in the data"),
        ("syn", ["--utility-exclude", "nope"], "utility_exclude names unknown column(s) nope"),
    ],
)
def test_cli_evaluate_user_errors_are_one_line(tmp_path, files, capsys, synthetic, extra, message):
    code, _, err = run(
        [
            "evaluate",
            "--real-uri",
            files["real"],
            "--synthetic-uri",
            files[synthetic],
            "--out-uri",
            str(tmp_path / "rep"),
            *extra,
        ],
        capsys,
    )
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert message in lines[0] and "Traceback" not in err
    assert not (tmp_path / "rep" / "report.html").exists()


def test_cli_evaluate_needs_both_tables(tmp_path, files, capsys):
    code, _, err = run(
        ["evaluate", "--real-uri", files["real"], "--out-uri", str(tmp_path / "rep")], capsys
    )
    assert code == 2 and "needs both a real and a synthetic table" in err
    assert "--real-uri and --synthetic-uri" in err  # the flags' current names
