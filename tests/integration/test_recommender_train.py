"""Ray Train for model F: 2 workers on an ML-100K slice plus a synthetic set in SeaweedFS S3,
and bad inputs that must fail before any worker starts."""

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from synthrec.config import (
    RecommenderConfig,
    RecommenderRunSection,
    ScalingSection,
    TrainRecommenderConfig,
)
from synthrec.data.splits import leave_last_out
from synthrec.errors import ConfigError, DataError, SchemaError
from synthrec.storage import write_dataset

pytestmark = pytest.mark.integration

SMALL = RecommenderConfig(
    dim=32,
    num_layers=1,
    num_heads=1,
    max_len=20,
    batch_size=64,
    lr=2e-3,
    epochs=8,
    patience=20,
    synthetic_weight=0.3,
    seed=0,
)


@pytest.fixture(scope="module")
def real_slice(ml100k_dir) -> pa.Table:
    """The 300 users with the lowest ids: ~30k rows, every item column of ML-100K."""
    table = pq.read_table(ml100k_dir / "events.parquet")
    users = pc.unique(table.column("user_id")).to_pylist()
    keep = sorted(users, key=int)[:300]
    return table.filter(
        pc.is_in(table.column("user_id"), pa.array(keep, table.column("user_id").type))
    )


def stand_in_synthetic(real: pa.Table, rows: int, seed: int = 0) -> pa.Table:
    """A stand-in for generated rows (the GAN has its own tests): resampled *training* rows
    with jittered times, so nothing held out leaks into training."""
    train, _, _ = leave_last_out(real)
    rng = np.random.default_rng(seed)
    sample = train.take(pa.array(rng.integers(0, train.num_rows, rows)))
    jitter = rng.integers(-3600, 3600, rows)
    return sample.set_column(
        sample.column_names.index("timestamp"),
        "timestamp",
        pa.array(sample.column("timestamp").to_numpy() + jitter),
    )


def _cfg(bucket: str, real: str, synthetic: str | None, **extra) -> TrainRecommenderConfig:
    return TrainRecommenderConfig(
        real_uri=real,
        synthetic_uri=synthetic,
        out_uri=f"s3://{bucket}/models/f",
        model=SMALL,
        scaling=ScalingSection(num_workers=2, cpus_per_worker=0.5),
        run=RecommenderRunSection(max_failures=0),
        **extra,
    )


def test_train_two_workers_from_s3_publishes_a_model_that_beats_popularity(
    ray_local, s3_bucket, real_slice
):
    from synthrec.distributed.recommender_train import run_train_recommender
    from synthrec.recommender.artifacts import load_recommender
    from synthrec.recommender.evaluation import evaluate_recommender

    real_uri, synth_uri = f"s3://{s3_bucket}/real", f"s3://{s3_bucket}/synthetic"
    write_dataset(real_slice, real_uri, rows_per_file=10_000)
    write_dataset(stand_in_synthetic(real_slice, 5_000), synth_uri)
    epochs = []
    summary = run_train_recommender(_cfg(s3_bucket, real_uri, synth_uri), progress=epochs.append)
    assert summary["epochs"] == 8 and summary["synthetic_rows"] == 5_000
    assert [e["epoch"] for e in epochs] == list(range(1, 9)) and all(
        "valid_ndcg@10" in e for e in epochs
    )

    rec = load_recommender(summary["model_uri"])
    assert rec.metadata["training"]["num_workers"] == 2
    items, scores, cold = rec.recommend(user_id="1", k=10)
    assert len(items) == 10 and not cold
    report = evaluate_recommender(rec, real_slice)
    f, pop = report["ranking"]["F"]["overall"], report["ranking"]["popularity"]["overall"]
    assert f["ndcg@10"] > pop["ndcg@10"], (f, pop)


def test_train_rejects_bad_inputs_before_any_worker(ray_local, s3_bucket, real_slice, tmp_path):
    from synthrec.distributed.recommender_train import run_train_recommender

    real_uri = f"s3://{s3_bucket}/real"
    write_dataset(real_slice, real_uri)
    cases = {
        "no-genre": (
            stand_in_synthetic(real_slice, 500).drop_columns(["genre"]),
            SchemaError,
            "lacks column.*genre",
        ),
        "unknown-items": (
            stand_in_synthetic(real_slice, 500).set_column(
                1, "item_id", pa.array(["999999"] * 500, real_slice.column("item_id").type)
            ),
            DataError,
            "999999",
        ),
    }
    for name, (table, error, message) in cases.items():
        uri = f"s3://{s3_bucket}/{name}"
        write_dataset(table, uri)
        start = time.monotonic()
        with pytest.raises(error, match=message):
            run_train_recommender(_cfg(s3_bucket, real_uri, uri))
        assert time.monotonic() - start < 60  # fails in the driver; a Train run alone costs more
    empty = tmp_path / "empty.parquet"
    pq.write_table(real_slice.slice(0, 0), empty)
    with pytest.raises(DataError, match="empty"):
        run_train_recommender(_cfg(s3_bucket, str(empty), None))


def test_train_resumes_a_named_run_from_its_last_checkpoint(ray_local, real_slice, tmp_path):
    from synthrec.distributed.recommender_train import run_train_recommender

    real = tmp_path / "real.parquet"
    pq.write_table(real_slice, real)
    cfg = TrainRecommenderConfig(
        real_uri=str(real),
        out_uri=str(tmp_path / "model"),
        run=RecommenderRunSection(run_name="resume-me", checkpoint_every=1),
        model=SMALL.model_copy(update={"epochs": 2}),
        scaling=ScalingSection(num_workers=1, cpus_per_worker=1.0),
    )
    first = run_train_recommender(cfg)
    assert first["epochs"] == 2
    with pytest.raises(ConfigError, match="already exists"):
        run_train_recommender(cfg)  # same name without resume: refused, never silently resumed
    epochs = []
    resumed = run_train_recommender(
        cfg.model_copy(
            update={
                "run": cfg.run.model_copy(update={"resume": True}),
                "model": SMALL.model_copy(update={"epochs": 3}),
            }
        ),
        progress=epochs.append,
    )
    assert resumed["epochs"] == 3 and [e["epoch"] for e in epochs] == [3]
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
