"""The real `synthrec` entry point and job scripts, run as processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

from synthrec import storage

REPO = Path(__file__).resolve().parents[2]
SYNTHREC = str(Path(sys.executable).parent / "synthrec")


def _run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)


def test_cli_process_user_error_is_one_line_exit_2(tmp_path):
    proc = _run([SYNTHREC, "data", "validate", "--data-uri", str(tmp_path / "missing.parquet")])
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no file or dataset" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_cli_process_debug_shows_traceback(tmp_path):
    proc = _run(
        [SYNTHREC, "--debug", "data", "validate", "--data-uri", str(tmp_path / "missing.parquet")]
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "DataError" in proc.stderr


def test_cli_process_stdlib_platform_not_shadowed(tmp_path):
    code = "import platform, synthrec; platform.system(); print(platform.__file__)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for kwargs in ({"cwd": REPO}, {"cwd": tmp_path, "env": env}, {"cwd": REPO, "env": env}):
        proc = _run([sys.executable, "-c", code], **kwargs)
        assert proc.returncode == 0, proc.stderr
        assert not proc.stdout.strip().startswith(str(REPO / "platform"))


def test_cli_process_simulate_job_script(tmp_path):
    out = tmp_path / "sim"
    cfg = json.dumps({"rows": 4321, "num_users": 200, "num_items": 500, "out_uri": str(out)})
    proc = _run([sys.executable, str(REPO / "jobs" / "simulate.py"), "--config", cfg])
    assert proc.returncode == 0, proc.stderr
    assert storage.read_manifest(str(out)).num_rows == 4321
    proc = _run(
        [
            sys.executable,
            str(REPO / "jobs" / "simulate.py"),
            "--config",
            '{"rows": 10, "colour": 1}',
        ]
    )
    assert (
        proc.returncode == 2
        and "unknown key 'colour'" in proc.stderr
        and "Traceback" not in proc.stderr
    )


def test_cli_pipeline_printer_says_when_training_resumed():
    """A worker restart mid-run shows as a line before the re-run epoch, once."""
    from synthrec.cli.app import console
    from synthrec.cli.pipeline import _Printer

    printer = _Printer()
    with console.capture() as captured:
        for epoch, resumed in [(6, 0), (7, 0), (7, 6), (8, 6), (1, 0)]:
            printer("epoch", epoch=epoch, resumed_from=resumed, loss=0.5)
    out = captured.get()
    assert out.count("resumed from epoch 6") == 1
    assert out.index("resumed from epoch 6") < out.rindex("epoch=7")
