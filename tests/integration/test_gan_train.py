"""Distributed GAN training on a real local Ray (Train) with checkpoints in SeaweedFS S3."""

import os
import signal
import threading
import time
import uuid

import pyarrow.parquet as pq
import pytest
import torch

from synthrec import storage
from synthrec.config import GanConfig, RunSection, ScalingSection, StorageConfig, TrainGanConfig
from synthrec.distributed import faults
from synthrec.distributed.gan_train import run_train_gan
from synthrec.errors import ConfigError, DataError, StorageError

pytestmark = pytest.mark.integration

SMALL_GAN = GanConfig(
    batch_size=200, pac=10, generator_dims=[64, 64], critic_dims=[64, 64], embedding_dim=32, seed=7
)


@pytest.fixture(scope="module")
def events_uri(ml100k_dir, tmp_path_factory):
    """8,000 ML-100K rows without the timestamp column, as a local Parquet file."""
    table = pq.read_table(ml100k_dir / "events.parquet").slice(0, 8_000).drop(["timestamp"])
    path = tmp_path_factory.mktemp("events") / "events.parquet"
    pq.write_table(table, path)
    return str(path)


def _cfg(data, out, workers, **kw) -> TrainGanConfig:
    run = {k: kw.pop(k) for k in list(kw) if k in RunSection.model_fields}
    return TrainGanConfig(
        data_uri=data,
        out_uri=out,
        gan=SMALL_GAN,
        scaling=ScalingSection(num_workers=workers, cpus_per_worker=0.5),
        run=RunSection(**{"checkpoint_every": 1, "max_failures": 0, **run}),
        **{"epochs": 3, **kw},
    )


@pytest.fixture(scope="module")
def two_worker_run(ray_local, s3_server, events_uri):
    """A clean 3-epoch run on 2 workers with its model and checkpoints in S3 (shared: the
    fault test compares its own run with this one)."""
    bucket = s3_server.create_bucket(f"t-{uuid.uuid4().hex[:12]}")
    uri = f"s3://{bucket}/gan2"
    return uri, run_train_gan(_cfg(events_uri, uri, 2))


def _generator_weights(uri: str) -> dict[str, torch.Tensor]:
    from synthrec.artifacts import load_synthesizer

    return load_synthesizer(uri).generator.state_dict()


def test_gan_train_two_workers_checkpoints_in_s3_and_matches_one_worker(
    two_worker_run, events_uri, tmp_path
):
    from synthrec.artifacts import load_synthesizer
    from synthrec.evaluate import fidelity_score

    uri, two = two_worker_run
    assert two["epochs"] == 3 and len(two["worker_starts"]) == 2
    files = storage.list_files(f"{uri}-runs")
    checkpoints = sorted(p.rsplit("/", 2)[-2] for p in files if p.endswith("state.safetensors"))
    # checkpoint_every=1 and keep_checkpoints=2: the last two epochs, one format, no pickle
    assert checkpoints == ["epoch-000002", "epoch-000003"], files
    assert sum(p.endswith("state.json") for p in files) == 2
    assert not [p for p in files if p.endswith((".pt", ".pkl"))], files
    run_train_gan(_cfg(events_uri, str(tmp_path / "gan1"), 1))

    real = pq.read_table(events_uri)
    scores = []
    for model_uri in (uri, str(tmp_path / "gan1")):
        synth = load_synthesizer(model_uri)
        scores.append(fidelity_score(real, synth.sample(4_000, seed=1), synth.encoder.schema))
    assert abs(scores[0] - scores[1]) <= 0.02, scores


def _kill_when_written(pid_file, killed: list, timeout_s: float = 600) -> threading.Thread:
    """SIGKILL the process whose id the worker's test hook writes to `pid_file`."""

    def watch() -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not pid_file.exists():
            time.sleep(0.05)
        if pid_file.exists():
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_gan_train_sigkilled_worker_resumes_and_ends_like_a_clean_run(
    two_worker_run, events_uri, tmp_path, monkeypatch
):
    """Rank 1's process is SIGKILLed in epoch 3 (after step 5 of 40): Ray Train restarts both
    workers from the last checkpoint it had registered (epoch 1 or 2: the controller registers
    a reported checkpoint on its next poll, so the newest may still be in flight), never from
    scratch, and the model equals the clean run's bit for bit."""
    clean_uri, clean = two_worker_run
    pid_file = tmp_path / "worker.pid"
    monkeypatch.setenv(faults.ENV, f"3:5:{pid_file}")
    killed: list[int] = []
    watcher = _kill_when_written(pid_file, killed)
    out = str(tmp_path / "model")
    summary = run_train_gan(_cfg(events_uri, out, 2, max_failures=1))
    watcher.join(timeout=5)

    first, restarted = summary["worker_starts"][:2], summary["worker_starts"][2:]
    assert killed == [next(s["pid"] for s in first if s["rank"] == 1)], (killed, first)
    assert [s["start_epoch"] for s in first] == [0, 0]
    resumed = {s["start_epoch"] for s in restarted}
    assert len(restarted) == 2 and len(resumed) == 1, restarted
    epoch = resumed.pop()
    assert epoch in (1, 2), restarted  # from a checkpoint, not from scratch
    assert killed[0] not in [s["pid"] for s in restarted]
    history = summary["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]  # nothing lost, nothing repeated
    assert [h["resumed_from"] for h in history] == [0] * epoch + [epoch] * (3 - epoch)
    assert summary["epochs"] == 3
    for key in ("critic_loss", "generator_loss", "fidelity"):
        assert [h[key] for h in history] == [h[key] for h in clean["history"]], key
    clean_weights, weights = _generator_weights(clean_uri), _generator_weights(out)
    assert clean_weights.keys() == weights.keys()
    for name, tensor in clean_weights.items():
        assert torch.equal(tensor, weights[name]), name


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"data_uri": "/nonexistent/events.parquet"}, DataError, "no file or dataset"),
        ({"gan": GanConfig(batch_size=30, pac=10)}, ConfigError, "multiple of pac"),
        (
            {
                "out_uri": "s3://nobucket/model",
                "storage": StorageConfig(endpoint_url="http://127.0.0.1:9", max_attempts=1),
            },
            StorageError,
            "s3://nobucket/model",
        ),
    ],
)
def test_gan_train_bad_input_fails_on_driver_in_seconds(events_uri, tmp_path, change, error, match):
    cfg = TrainGanConfig(
        **{
            "data_uri": events_uri,
            "out_uri": str(tmp_path / "m"),
            "scaling": ScalingSection(num_workers=2),
            "epochs": 1,
            **change,
        }
    )
    start = time.monotonic()
    with pytest.raises(error, match=match):
        run_train_gan(cfg)
    assert time.monotonic() - start < 20


MULTI_NODE_SCRIPT = r"""
import json, sys
from ray.cluster_utils import Cluster
import ray
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
cluster.add_node(num_cpus=1)
ray.init(address=cluster.address)
from synthrec.config import GanConfig, ScalingSection, TrainGanConfig
from synthrec.distributed.gan_train import run_train_gan
gan = GanConfig(batch_size=200, generator_dims=[32], critic_dims=[32], embedding_dim=16)
cfg = TrainGanConfig(data_uri=sys.argv[1], out_uri=sys.argv[2], gan=gan, epochs=2,
                     scaling=ScalingSection(num_workers=2, cpus_per_worker=1))
summary = run_train_gan(cfg)
nodes = [s["node_id"] for s in summary["worker_starts"]]
print("RESULT " + json.dumps({"nodes": nodes, "epochs": summary["epochs"]}))
ray.shutdown()
cluster.shutdown()
"""


@pytest.mark.slow
def test_gan_train_places_workers_on_two_nodes(events_uri, tmp_path):
    """Two 1-CPU nodes (ray.cluster_utils.Cluster) and two 1-CPU workers: one worker per node."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, "-c", MULTI_NODE_SCRIPT, events_uri, str(tmp_path / "model")],
        capture_output=True,
        text=True,
        timeout=420,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["epochs"] == 2
    assert len(set(result["nodes"])) == 2, result


def test_gan_train_named_run_resumes_only_when_asked(ray_local, events_uri, tmp_path):
    """A named run continues from its last checkpoint with resume, and is never resumed silently."""
    cfg = _cfg(events_uri, str(tmp_path / "model"), 1, epochs=2, run_name="gan-resume-me")
    with pytest.raises(ConfigError, match="cannot resume run gan-resume-me"):
        run_train_gan(cfg.model_copy(update={"run": cfg.run.model_copy(update={"resume": True})}))
    first = run_train_gan(cfg)
    assert [h["epoch"] for h in first["history"]] == [1, 2]
    with pytest.raises(ConfigError, match="already exists"):
        run_train_gan(cfg)
    resumed = run_train_gan(
        cfg.model_copy(update={"run": cfg.run.model_copy(update={"resume": True}), "epochs": 3})
    )
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert resumed["history"][-1]["resumed_from"] == 2
