"""Job entrypoints: `python -m synthrec.jobs.NAME` runs without a checkout, and the checkout's
`jobs/*.py` scripts are thin wrappers around those modules."""

import json
import os
import subprocess
import sys
from pathlib import Path

from synthrec.distributed.jobs import available_jobs

REPO = Path(__file__).resolve().parents[2]


def _job(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO / "platform")}  # the package alone, as installed
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout[proc.stdout.index('{\n  "result"') :])["result"]


def test_jobs_modules_run_outside_the_checkout_and_evaluate_is_one(tmp_path):
    cfg = {"rows": 1500, "num_users": 80, "num_items": 150, "out_uri": str(tmp_path / "sim")}
    result = _job(["-m", "synthrec.jobs.simulate", "--config", json.dumps(cfg)], tmp_path)
    assert result == f"published 1500 rows to {tmp_path / 'sim'}"
    cfg = {
        "real_uri": str(tmp_path / "sim"),
        "synthetic_uri": str(tmp_path / "sim"),  # a copy: the report must say privacy failed
        "out_uri": str(tmp_path / "report"),
        "privacy_query_rows": 100,
        "privacy_reference_rows": 300,
    }
    result = _job([str(REPO / "jobs" / "evaluate.py"), "--config", json.dumps(cfg)], tmp_path)
    assert result["report"] == f"{tmp_path / 'report'}/report.html"
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert result["passed"] is False and metrics["verdict"]["passed"] is False
    assert (tmp_path / "report" / "report.html").stat().st_size > 0


def test_jobs_scripts_are_thin_wrappers_of_every_job_module():
    scripts = sorted(p.stem for p in (REPO / "jobs").glob("*.py"))
    assert scripts == available_jobs()
    for name in scripts:
        text = (REPO / "jobs" / f"{name}.py").read_text()
        assert len(text.splitlines()) <= 20, name
        assert f"from synthrec.jobs.{name} import main" in text, name
