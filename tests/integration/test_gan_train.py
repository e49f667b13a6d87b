"""Distributed GAN training on a real local Ray (Train) with checkpoints in SeaweedFS S3."""

import time

import pyarrow.parquet as pq
import pytest

from synthrec import storage
from synthrec.config import GanConfig, RunSection, ScalingSection, StorageConfig, TrainGanConfig
from synthrec.distributed.gan_train import FAULT_ENV, run_train_gan
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


def test_gan_train_two_workers_checkpoints_in_s3_and_matches_one_worker(
    ray_local, events_uri, s3_bucket, tmp_path
):
    from synthrec.artifacts import load_synthesizer
    from synthrec.evaluate import fidelity_score

    two = run_train_gan(_cfg(events_uri, f"s3://{s3_bucket}/gan2", 2))
    assert two["epochs"] == 3 and len(two["worker_starts"]) == 2
    checkpoints = [
        p for p in storage.list_files(f"s3://{s3_bucket}/gan2-runs") if p.endswith("state.pt")
    ]
    assert checkpoints, "checkpoints must land in S3"
    run_train_gan(_cfg(events_uri, str(tmp_path / "gan1"), 1))

    real = pq.read_table(events_uri)
    scores = []
    for uri in (f"s3://{s3_bucket}/gan2", str(tmp_path / "gan1")):
        synth = load_synthesizer(uri)
        scores.append(fidelity_score(real, synth.sample(4_000, seed=1), synth.encoder.schema))
    assert abs(scores[0] - scores[1]) <= 0.02, scores


def test_gan_train_resumes_after_worker_failure(ray_local, events_uri, tmp_path, monkeypatch):
    marker = tmp_path / "failed-once"
    monkeypatch.setenv(FAULT_ENV, f"2:{marker}")
    summary = run_train_gan(_cfg(events_uri, str(tmp_path / "model"), 2, epochs=4, max_failures=1))
    assert marker.exists(), "the injected failure must have happened"
    history = summary["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    # epochs after the failure ran in an attempt that resumed from the epoch-2 checkpoint, not from 0
    assert [h["resumed_from"] for h in history] == [0, 0, 2, 2]
    assert min(s["start_epoch"] for s in summary["worker_starts"][2:]) == 2


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
print("RESULT " + json.dumps({"nodes": [s["node_id"] for s in summary["worker_starts"]], "epochs": summary["epochs"]}))
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
