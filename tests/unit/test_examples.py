"""The examples run as a user would run them: the notebook cell by cell in a real Jupyter
kernel (nbclient), the script as a program; both on small data in seconds of training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PLATFORM = Path(__file__).resolve().parents[2] / "platform"


def _env() -> dict[str, str]:
    """This checkout's synthrec first on the path, as for the test process itself."""
    path = os.pathsep.join([str(PLATFORM), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path}


@pytest.mark.slow
def test_examples_quickstart_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for key, value in _env().items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    nb = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    assert (tmp_path / "quickstart-output" / "report" / "report.html").exists()
    sampled = nb.cells[5].outputs[0]["text"]  # "800 True [...]": fresh rows, seeded repeats
    assert sampled.startswith("800 True")
    recommended = nb.cells[9].outputs[0]["text"]  # "valid NDCG@10 0.xxx ['i..', ...]"
    assert recommended.startswith("valid NDCG@10") and recommended.count("'i") == 5


@pytest.mark.slow
def test_examples_quickstart_script_runs(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), str(out)],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fidelity" in done.stdout and (out / "report" / "report.html").exists()
