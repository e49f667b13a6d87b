"""serve/alerts.yml is valid for Prometheus and names only metrics synthrec exports."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from synthrec.refresh import prometheus_text
from synthrec.serving.metrics import COLD_STARTS, LATENCY, REJECTED, REQUESTS

RULES = Path(__file__).resolve().parents[2] / "serve" / "alerts.yml"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs the Debian package prometheus")
def test_alerts_pass_promtool_check_rules():
    done = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout


def test_alerts_name_exported_metrics():
    exprs = " ".join(
        rule["expr"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    )
    used = set(re.findall(r"\b(?:ray_)?synthrec_[a-z0-9_]+", exprs))
    state = {
        "refreshes": [{"promoted": False, "finished_at": 1.0, "drift": {}}],
        "failures_in_a_row": 0,
    }
    refresh = set(re.findall(r"^(synthrec_\w+) ", prometheus_text(state).decode(), re.M))
    serving = {f"ray_{n}" for n in (REQUESTS, f"{LATENCY}_bucket", REJECTED, COLD_STARTS)}
    assert used <= refresh | serving, used - refresh - serving
