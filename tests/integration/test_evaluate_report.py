"""The evaluation job end to end: s3:// inputs and outputs, segments from the generation
manifest, and an ML-100K report rendered in headless Chromium as a reader would see it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthrec import storage
from synthrec.cli import main
from synthrec.config import EvaluateConfig
from synthrec.evaluate import run_evaluate
from synthrec.evaluate.report import SECTIONS

pytestmark = pytest.mark.integration
RENDER = Path(__file__).resolve().parents[2] / "scripts" / "render_report.sh"


@pytest.fixture(scope="module")
def ml100k(ml100k_dir) -> pa.Table:
    return pq.read_table(ml100k_dir / "events.parquet")


def shuffled_copy(table: pa.Table, rows: int, seed: int) -> pa.Table:
    """A stand-in for generated data: real rows resampled, then half the columns shuffled
    independently, so marginals hold, some associations break and rows are no copies."""
    rng = np.random.default_rng(seed)
    out = table.take(rng.integers(0, table.num_rows, rows))
    for name in ("age", "hour", "genre", "release_year", "zip_region", "item_id"):
        out = out.set_column(
            out.column_names.index(name), name, out.column(name).take(rng.permutation(rows))
        )
    return out


def test_evaluate_s3_round_trip_reads_segments_from_the_manifest(s3_bucket, ml100k):
    root = f"s3://{s3_bucket}"
    real, holdout = ml100k.slice(0, 20_000), ml100k.slice(20_000, 5_000)
    synthetic = shuffled_copy(real, 30_000, seed=1)
    storage.write_dataset(real, f"{root}/real")
    storage.write_dataset(holdout, f"{root}/holdout")
    storage.write_dataset(
        synthetic,
        f"{root}/synthetic",
        rows_per_file=10_000,
        metadata={"conditions": {}, "rebalance": {"gender": "uniform"}, "generator": "synthrec"},
    )
    cfg = EvaluateConfig(
        real_uri=f"{root}/real",
        synthetic_uri=f"{root}/synthetic",
        holdout_uri=f"{root}/holdout",
        out_uri=f"{root}/report",
        utility_exclude=["rating"],
        privacy_query_rows=1_000,
    )
    metrics = run_evaluate(cfg)
    assert [(s["value"], s["target_share"]) for s in metrics["segments"]] == [
        ("M", 0.5),
        ("F", 0.5),
    ]
    stored = json.loads(storage.read_bytes(f"{root}/report/metrics.json"))
    assert stored["fidelity"]["overall"] == pytest.approx(metrics["fidelity"]["overall"])
    page = storage.read_bytes(f"{root}/report/report.html").decode()
    assert all(f'<section id="{s}">' in page for s in SECTIONS) and "gender = M" in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs the Debian package chromium")
def test_ml100k_report_renders_every_section_in_chromium(tmp_path, ml100k, capsys):
    train, holdout = ml100k.slice(0, 80_000), ml100k.slice(80_000)  # the standard temporal split
    paths = {}
    for name, table in (
        ("real", train),
        ("holdout", holdout),
        ("synthetic", shuffled_copy(train, 50_000, seed=0)),
    ):
        paths[name] = str(tmp_path / f"{name}.parquet")
        pq.write_table(table, paths[name])
    out_dir = tmp_path / "report"
    code = main(
        [
            "evaluate",
            "--real-uri",
            paths["real"],
            "--synthetic-uri",
            paths["synthetic"],
            "--holdout-uri",
            paths["holdout"],
            "--utility-exclude",
            "rating",
            "--out-uri",
            str(out_dir),
        ]
    )
    assert code == 0
    assert "verdict" in capsys.readouterr().out
    page = (out_dir / "report.html").read_text()
    assert all(f'<section id="{s}">' in page for s in SECTIONS)

    png = tmp_path / "report.png"
    subprocess.run(
        [str(RENDER), str(out_dir / "report.html"), str(png), "1280", "6000"],
        check=True,
        timeout=120,
    )
    from PIL import Image

    image = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    assert image.shape == (6000, 1280)
    # every band of the page down to the privacy figure has ink (text, tables, figures rendered)
    bands = image[:4800].reshape(12, 400, 1280)
    assert all((band < 200).mean() > 0.005 for band in bands), [
        float((b < 200).mean()) for b in bands
    ]
