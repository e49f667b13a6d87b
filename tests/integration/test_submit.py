"""`synthrec submit` against a real two-node Ray cluster started with `ray start`.

How the cluster is set up, and why:
- Its own `--temp-dir`, ports and process groups, so it never touches the session's in-process
  `ray_local` cluster (or anyone else's): teardown kills exactly the process groups that its
  two `ray start` calls created, never `ray stop` (which stops every Ray on the machine).
- A second node can join only in Ray's cluster mode: with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
  `ray start --address` refuses ("multi-node not supported"), and without it Ray maps
  127.0.0.1 in --address to the machine's IP, which a loopback-bound head does not listen on
  (--node-ip-address=127.0.0.1 does not change that: both nodes still register with the
  machine's IP). So both nodes run without that variable; GCS and raylets then listen on all
  interfaces, which is why this cluster runs with token auth (RAY_AUTH_MODE=token and a random
  RAY_AUTH_TOKEN) and binds its dashboard to 127.0.0.1. That also tests that `synthrec
  submit` passes the token through.
- The nodes start with the venv first on PATH: a job's `python` is whatever PATH gives there.
- The nodes hold the S3 keys (as a real cluster's instance profile would) but not the
  endpoint: the job reaches SeaweedFS only if `synthrec submit` forwards AWS_ENDPOINT_URL, and
  the keys must never appear in Ray's logs (Ray logs a job's runtime env on every node).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml

from synthrec.local_s3 import ACCESS_KEY, SECRET_KEY, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _agent_ports() -> list[str]:
    return [
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]


class TwoNodeCluster:
    """`ray start --head` plus `ray start --address`, each in its own process group."""

    def __init__(self) -> None:
        self.temp_dir = Path(tempfile.mkdtemp(prefix="srsub-", dir="/tmp"))  # short: socket paths
        self.worker_dir = self.temp_dir / "w"
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self.token = secrets.token_hex(32)
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.groups: list[int] = []
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"))
        }
        self.env = {
            **env,
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            "RAY_USAGE_STATS_ENABLED": "0",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def start(self) -> TwoNodeCluster:
        # One temp dir per node, as on real machines: nodes sharing one would share runtime-env
        # folders, and one node's cleanup could delete a job's working dir under the other.
        self.worker_dir.mkdir()
        common = ["--disable-usage-stats"]
        # Both at once: the worker's `ray start` retries until the head's GCS answers (saves ~5 s).
        starts = [
            self._ray_start(
                "head",
                [
                    "--head",
                    f"--port={self.gcs_port}",
                    f"--dashboard-port={self.dashboard_port}",
                    "--dashboard-host=127.0.0.1",
                    "--include-dashboard=true",
                    "--num-cpus=2",
                    f"--temp-dir={self.temp_dir}",
                    f"--ray-client-server-port={free_port()}",
                    *_agent_ports(),
                    *common,
                ],
            ),
            self._ray_start(
                "worker",
                [
                    f"--address=127.0.0.1:{self.gcs_port}",
                    "--num-cpus=1",
                    f"--temp-dir={self.worker_dir}",
                    *_agent_ports(),
                    *common,
                ],
            ),
        ]
        for name, proc in starts:
            if proc.wait(timeout=90) != 0:
                log = (self.temp_dir / f"{name}.log").read_text()[-3000:]
                raise RuntimeError(f"ray start ({name}) failed:\n{log}")
        return self

    def _ray_start(self, name: str, args: list[str]) -> tuple[str, subprocess.Popen]:
        with open(self.temp_dir / f"{name}.log", "wb") as sink:
            proc = subprocess.Popen(
                [str(BIN / "ray"), "start", *args],
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.groups.append(proc.pid)  # the daemons it forks stay in this process group
        return name, proc

    def logs_containing(self, text: str) -> list[str]:
        """Ray's own log files (every node, this session) that contain `text`."""
        logs = [
            *self.temp_dir.glob("session_*/logs/**/*"),
            *self.worker_dir.glob("session_*/logs/**/*"),
        ]
        return [str(p) for p in logs if p.is_file() and text.encode() in p.read_bytes()]

    def alive_nodes(self) -> int:
        r = requests.get(
            f"{self.address}/api/v0/nodes",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        r.raise_for_status()
        return sum(n["state"] == "ALIVE" for n in r.json()["data"]["result"]["result"])

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for group in self.groups:
                try:
                    os.killpg(group, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and any(_group_alive(g) for g in self.groups):
                time.sleep(0.1)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture(scope="module")
def cluster():
    nodes = TwoNodeCluster()
    try:
        yield nodes.start()
    finally:
        nodes.stop()


def synthrec(
    *args: str, token: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """The real CLI in a fresh process (Ray reads RAY_AUTH_MODE once per process)."""
    env = {**os.environ, "RAY_AUTH_MODE": "token" if token else "disabled"}
    if token:
        env["RAY_AUTH_TOKEN"] = token
    return subprocess.run(
        [str(BIN / "synthrec"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_config(path: Path, **values) -> Path:
    base = {
        "rows": 2_000,
        "num_users": 100,
        "num_items": 300,
        "num_categories": 5,
        "num_brands": 10,
        "num_queries": 50,
        "rows_per_file": 1_000,
    }
    path.write_text(yaml.safe_dump({**base, **values}))
    return path


def test_submit_simulate_to_s3_succeeds_on_two_nodes(cluster, s3_server, s3_bucket, tmp_path):
    from synthrec.storage import read_manifest

    assert cluster.alive_nodes() == 2
    out = f"s3://{s3_bucket}/simulated"
    config = write_config(tmp_path / "sim.yaml", out_uri=out)

    run = synthrec(
        "submit",
        "simulate",
        "--address",
        cluster.address,
        "--config",
        str(config),
        token=cluster.token,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    assert "published 2000 rows" in run.stdout  # the job's own log line, streamed
    assert "succeeded" in run.stderr
    assert "ray job submit --address" in run.stderr
    assert "python -m synthrec.jobs.simulate --config" in run.stderr
    manifest = read_manifest(out)
    assert manifest is not None and manifest.num_rows == 2_000
    assert SECRET_KEY not in run.stdout + run.stderr
    assert cluster.logs_containing(s3_server.env["AWS_ENDPOINT_URL"]), (
        "the endpoint travelled with the job"
    )
    assert cluster.logs_containing(SECRET_KEY) == []


def test_plain_ray_job_submit_trains_the_gan(cluster, ml100k_dir, tmp_path):
    """The documented `ray job submit --working-dir . -- python jobs/train_gan.py --config ...`
    path."""
    import json

    import pyarrow.parquet as pq

    data = tmp_path / "events.parquet"
    pq.write_table(pq.read_table(ml100k_dir / "events.parquet").slice(0, 3_000), data)
    config = {
        "data_uri": str(data),
        "out_uri": str(tmp_path / "gan"),
        "epochs": 1,
        "generator": "rows",  # this test is about the job path, not the generator choice
        "gan": {
            "batch_size": 200,
            "generator_dims": [32],
            "critic_dims": [32],
            "embedding_dim": 16,
        },
    }
    env = {**cluster.env, "RAY_ADDRESS": cluster.address}
    run = subprocess.run(
        [
            str(BIN / "ray"),
            "job",
            "submit",
            "--address",
            cluster.address,
            "--working-dir",
            ".",
            "--runtime-env-json",
            json.dumps({"excludes": [".git", ".venv", "/out", "/demo-output"]}),
            "--",
            "python",
            "jobs/train_gan.py",
            "--config",
            json.dumps(config),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    from synthrec.storage import read_manifest

    assert read_manifest(str(tmp_path / "gan")) is not None


def test_submit_pipeline_to_s3_on_two_nodes(cluster, s3_server, s3_bucket, tmp_path):
    """`synthrec submit pipeline`: every stage's published output lands in SeaweedFS S3."""
    from synthrec.storage import read_manifest

    out = f"s3://{s3_bucket}/pipeline"
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "out_uri": out,
                "generator": "rows",  # the sequence pipeline: test_sequence_train.py
                "gan_epochs": 1,
                "gan_time_budget_min": None,
                "synthetic_rows": 3_000,
                "simulate": {
                    "rows": 6_000,
                    "num_users": 200,
                    "num_items": 300,
                    "num_categories": 6,
                    "num_brands": 20,
                    "num_queries": 50,
                    "rows_per_file": 1_000,
                },
                "gan": {
                    "batch_size": 200,
                    "generator_dims": [32],
                    "critic_dims": [32],
                    "embedding_dim": 16,
                },
                "recommender": {"epochs": 2, "dim": 32},
            }
        )
    )
    run = synthrec(
        "submit",
        "pipeline",
        "--address",
        cluster.address,
        "--config",
        str(config),
        token=cluster.token,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-3000:]
    for rel in ("data/real", "data/gan_train", "models/gan", "synthetic", "models/recommender"):
        assert read_manifest(f"{out}/{rel}") is not None, rel
    assert read_manifest(f"{out}/synthetic").num_rows == 3_000

    again = synthrec(
        "submit",
        "pipeline",
        "--address",
        cluster.address,
        "--config",
        str(config),
        token=cluster.token,
        timeout=600,
    )
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-3000:]
    import re

    stages = dict(re.findall(r'"stage": \{"name": "(\w+)", "reused": (true|false)\}', again.stdout))
    assert len(stages) == 6 and set(stages.values()) == {"true"}, (
        f"every stage must be reused: {stages}"
    )


def test_submit_failing_job_exits_nonzero_with_its_message(cluster, tmp_path):
    # Valid for the schema (so it is submitted), rejected by the simulator on the cluster.
    config = write_config(
        tmp_path / "bad.yaml", num_categories=50, num_items=10, out_uri=str(tmp_path / "never")
    )

    run = synthrec(
        "submit",
        "simulate",
        "--address",
        cluster.address,
        "--config",
        str(config),
        token=cluster.token,
    )

    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAILED" in run.stderr
    assert "fewer than num_categories=50" in run.stderr  # the job's message, in the last log lines
    assert not (tmp_path / "never").exists()


def test_submit_errors_are_one_line_and_fast(cluster, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    refused = synthrec("submit", "simulate", "--address", dead)
    assert time.monotonic() - started < 15
    assert refused.returncode == 2 and "cannot reach the Ray job API" in refused.stderr
    assert "Connection refused" in refused.stderr and "Traceback" not in refused.stderr

    no_token = synthrec("submit", "simulate", "--address", cluster.address)
    assert no_token.returncode == 2 and "RAY_AUTH_MODE=token" in no_token.stderr

    wrong_token = synthrec("submit", "simulate", "--address", cluster.address, token="0" * 64)
    assert wrong_token.returncode == 2 and "rejected the Ray token" in wrong_token.stderr

    unknown = synthrec("submit", "nosuchjob", "--address", cluster.address, token=cluster.token)
    assert (
        unknown.returncode == 2
        and "available jobs" in unknown.stderr
        and "simulate" in unknown.stderr
    )


def test_submit_reports_a_head_that_stops_mid_job(cluster, tmp_path):
    """Last in this module: it kills the shared head (teardown copes with a dead group)."""
    (tmp_path / "jobs").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "jobs" / "ticker.py").write_text(
        "import time\nfor i in range(120):\n    print('tick', i, flush=True)\n    time.sleep(0.5)\n"
    )
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": cluster.token}
    proc = subprocess.Popen(
        [
            str(BIN / "synthrec"),
            "submit",
            "ticker",
            "--address",
            cluster.address,
            "--project-dir",
            str(tmp_path),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stdout:
            if line.startswith("tick 2"):
                break
        os.killpg(cluster.groups[0], signal.SIGKILL)  # the head's process group
        killed = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert time.monotonic() - killed < 40  # three missed probes at most, not a hang
    assert proc.returncode == 2
    assert "lost the connection" in stderr or "stopped answering" in stderr
    assert "ray job status" in stderr and "Traceback" not in stderr
