"""The sequence generator on a real local Ray Train: DDP over two workers, checkpoints in
SeaweedFS S3, a SIGKILLed worker resumed to the same weights, and `synthrec train-gan`
choosing the generator."""

import threading
import time
import uuid

import pyarrow.parquet as pq
import pytest
import torch

from synthrec import storage
from synthrec.config import RunSection, ScalingSection, SequenceConfig, TrainGanConfig
from synthrec.distributed import faults
from synthrec.distributed.sequence_train import run_train_sequences
from tests.logshapes import taobao_log

pytestmark = pytest.mark.integration

# two likelihood epochs, then one adversarial epoch of 3 steps
TINY = SequenceConfig(
    d_model=16, n_heads=2, n_layers=1, window=8, batch_size=32, users_epochs=2,
    adversarial_steps=3, seed=5,
)  # fmt: skip


@pytest.fixture(scope="module")
def log_uri(tmp_path_factory):
    path = tmp_path_factory.mktemp("seq") / "taobao.parquet"
    pq.write_table(taobao_log(1_500, seed=2), path)
    return str(path)


def _cfg(data, out, workers, **kw) -> TrainGanConfig:
    run = {k: kw.pop(k) for k in list(kw) if k in RunSection.model_fields}
    return TrainGanConfig(
        data_uri=data,
        out_uri=out,
        generator="sequences",
        sequence=TINY,
        scaling=ScalingSection(num_workers=workers, cpus_per_worker=1),
        run=RunSection(**{"checkpoint_every": 1, "max_failures": 0, **run}),
        **{"epochs": 2, **kw},
    )


def _weights(uri: str) -> dict[str, torch.Tensor]:
    from synthrec.sequences.artifacts import load_sequence_model

    return load_sequence_model(uri).model.state_dict()


@pytest.fixture(scope="module")
def clean_run(ray_local, s3_server, log_uri):
    """An uninterrupted two-worker run, model and checkpoints in S3 (the fault test compares
    its own run with this one)."""
    bucket = s3_server.create_bucket(f"t-{uuid.uuid4().hex[:12]}")
    uri = f"s3://{bucket}/seq"
    return uri, run_train_sequences(_cfg(log_uri, uri, 2))


def test_sequence_train_two_workers_publish_a_sequence_model_with_s3_checkpoints(clean_run):
    from synthrec.sequences.artifacts import load_sequence_model

    uri, summary = clean_run
    phases = [(h["epoch"], h["phase"]) for h in summary["history"]]
    assert phases == [(1, "likelihood"), (2, "likelihood"), (3, "adversarial")]
    assert summary["history"][-1]["steps"] == 3
    assert len(summary["worker_starts"]) == 2
    files = storage.list_files(f"{uri}-runs")
    checkpoints = sorted(p.rsplit("/", 2)[-2] for p in files if p.endswith("state.safetensors"))
    assert checkpoints == ["epoch-000002", "epoch-000003"], files  # keep_checkpoints=2
    assert not [p for p in files if p.endswith((".pt", ".pkl"))], files
    synth = load_sequence_model(uri)
    metrics = synth.metadata["metrics"]
    assert metrics["num_workers"] == 2 and metrics["adversarial_steps"] == 3
    assert metrics["epochs"] == 2 and metrics["best_valid_nll"] is not None
    flat = synth.sample_table(users=20, seed=1)
    assert flat.num_rows > 0 and set(flat.column_names) >= {"user_id", "item_id", "timestamp"}


def _kill_when_written(pid_file, killed: list, timeout_s: float = 600) -> threading.Thread:
    import os
    import signal

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
def test_sequence_train_sigkilled_worker_resumes_to_the_clean_runs_weights(
    clean_run, log_uri, tmp_path, monkeypatch
):
    """Rank 1 is SIGKILLed in the adversarial epoch (3, after step 2): Ray Train restarts both
    workers from the last registered checkpoint (epoch 1 or 2; the newest may still be in
    flight), the critic and both optimizers come back with it, and the published weights equal
    the uninterrupted run's bit for bit."""
    clean_uri, clean = clean_run
    pid_file = tmp_path / "worker.pid"
    monkeypatch.setenv(faults.ENV, f"3:2:{pid_file}")
    killed: list[int] = []
    watcher = _kill_when_written(pid_file, killed)
    out = str(tmp_path / "model")
    summary = run_train_sequences(_cfg(log_uri, out, 2, max_failures=1))
    watcher.join(timeout=5)

    first, restarted = summary["worker_starts"][:2], summary["worker_starts"][2:]
    assert killed == [next(s["pid"] for s in first if s["rank"] == 1)], (killed, first)
    resumed = {s["start_epoch"] for s in restarted}
    assert len(restarted) == 2 and len(resumed) == 1, restarted
    epoch = resumed.pop()
    assert epoch in (1, 2), restarted  # from a checkpoint, not from scratch
    history = summary["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert [h["resumed_from"] for h in history] == [0] * epoch + [epoch] * (3 - epoch)
    for key in ("nll", "valid_nll", "critic_loss", "mle"):
        assert [h.get(key) for h in history] == [h.get(key) for h in clean["history"]], key
    clean_weights, weights = _weights(clean_uri), _weights(out)
    assert clean_weights.keys() == weights.keys()
    for name, tensor in clean_weights.items():
        assert torch.equal(tensor, weights[name]), name


def test_train_gan_cli_chooses_sequences_for_a_log_with_user_item_and_time(
    ray_local, log_uri, tmp_path, capsys
):
    """No --generator: the notice names the chosen generator and its columns, and the model
    published is a sequence model (one worker)."""
    import yaml

    from synthrec.cli import main
    from synthrec.sequences.artifacts import load_sequence_model

    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump({"sequence": TINY.model_copy(update={"adversarial_steps": 0}).model_dump()})
    )
    out = str(tmp_path / "model")
    code = main(
        ["train-gan", "--config", str(config), "--data-uri", log_uri, "--out-uri", out,
         "--epochs", "1", "--num-workers", "1"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert "generator: sequences (the log has a user (user_id), an item (item_id)" in captured.err
    assert "published sequences model" in captured.out
    assert load_sequence_model(out).metadata["metrics"]["epochs"] == 1


@pytest.mark.slow
def test_pipeline_with_the_sequence_generator_runs_every_stage(ray_local, tmp_path):
    """generator: sequences on the simulated search log: the synthetic data is the sequence
    model's flattened log (the training log's columns, exact event count), and the report and
    model F are made from it."""
    from synthrec.config import PipelineConfig
    from synthrec.pipeline import run_pipeline
    from synthrec.recommender.artifacts import has_ranking_heads
    from synthrec.sequences.artifacts import load_sequence_model

    events: list = []
    cfg = PipelineConfig(
        out_uri=str(tmp_path / "pipe"),
        generator="sequences",
        sequence=TINY.model_copy(update={"adversarial_steps": 0}),
        gan_epochs=1,
        gan_time_budget_min=None,
        synthetic_rows=2_000,
        simulate={
            "rows": 4_000, "num_users": 150, "num_items": 200, "num_categories": 6,
            "num_brands": 20, "num_queries": 40, "rows_per_file": 1_000,
        },
        recommender={"epochs": 1, "dim": 16},
        scaling=ScalingSection(num_workers=1, cpus_per_worker=1),
    )  # fmt: skip
    result = run_pipeline(cfg, progress=lambda kind, **e: events.append((kind, e)))
    head = result["headline"]
    assert head["train_gan.generator"] == "sequences"
    # a search log (labels, a query, positions): F trains its ranking heads and the headline
    # says how they rank held-out impressions
    assert has_ranking_heads(head["train_recommender.model"])
    assert 0.0 <= head["evaluate_recommender.click_gauc"] <= 1.0
    assert "train_recommender.best_valid_gauc" in head
    assert any(k == "epoch" and "valid_gauc" in e for k, e in events)
    synth = load_sequence_model(head["train_gan.model"])
    # whole users on Ray Data, as many as make about synthetic_rows events
    assert head["generate.users"] == synth.users_for_events(2_000)
    assert 0.5 * 2_000 < head["generate.rows"] < 2 * 2_000
    assert ("generator", {"stage": "train_gan", "generator": "sequences"}) in [
        (k, {x: e[x] for x in ("stage", "generator")}) for k, e in events if k == "generator"
    ]
    synthetic = storage.read_table(head["generate.synthetic"])
    real = storage.read_table(str(tmp_path / "pipe" / "data" / "gan_train"))
    assert synthetic.schema.names == real.schema.names
    ids = set(synthetic.column(synth.encoder.user_col).to_pylist())
    assert len(ids) == head["generate.users"]
    assert not ids & set(real.column(synth.encoder.user_col).to_pylist())  # fresh pseudonyms
    assert 0 < head["evaluate.fidelity"] <= 1 and head["evaluate_recommender.ndcg@10"] >= 0
