"""Ray Train for F with its ranking heads: 2 workers on a simulated search log plus a synthetic
set in SeaweedFS S3 (the seed's loss); the published model ranks held-out impressions."""

import numpy as np
import pytest

from synthrec.config import (
    RecommenderConfig,
    RecommenderRunSection,
    ScalingSection,
    SimulateConfig,
    TrainRecommenderConfig,
)
from synthrec.storage import write_dataset

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIM = SimulateConfig(
    rows=12_000, num_users=300, num_items=600, num_categories=8, num_brands=20, num_queries=60
)
MODEL = RecommenderConfig(
    dim=16, max_len=10, epochs=3, ranking_batch_size=512, batch_size=64, lr=5e-3, patience=5,
    ranking_heads=True, synthetic_weight=1.0, seed=0,
)  # fmt: skip


def test_train_ranking_two_workers_from_s3_publishes_a_model_that_ranks(ray_local, s3_bucket):
    from synthrec.data.simulator import simulate
    from synthrec.distributed.recommender_train import run_train_recommender
    from synthrec.recommender.artifacts import has_ranking_heads, load_recommender
    from synthrec.recommender.evaluation import evaluate_heads
    from synthrec.recommender.rerank import BatchRanker

    log = simulate(SIM)
    train_rows = int(0.8 * log.num_rows)  # the simulator writes rows in time order
    real, later = log.slice(0, train_rows), log
    synthetic = log.slice(0, train_rows // 2)  # stands in for generated rows
    real_uri, synth_uri = f"s3://{s3_bucket}/real", f"s3://{s3_bucket}/synthetic"
    write_dataset(real, real_uri, rows_per_file=5_000)
    write_dataset(synthetic, synth_uri)
    cfg = TrainRecommenderConfig(
        real_uri=real_uri,
        synthetic_uri=synth_uri,
        out_uri=f"s3://{s3_bucket}/models/ranker",
        model=MODEL,
        scaling=ScalingSection(num_workers=2, cpus_per_worker=0.5),
        run=RecommenderRunSection(max_failures=0),
    )
    epochs = []
    summary = run_train_recommender(cfg, progress=epochs.append)
    assert summary["epochs"] == 3 and all("valid_gauc" in e for e in epochs)
    assert summary["synthetic_impressions"] == synthetic.num_rows
    assert summary["labels"] == ["click", "cart", "purchase"]

    assert has_ranking_heads(summary["model_uri"])
    rec = load_recommender(summary["model_uri"])
    report = evaluate_heads(rec, later, train_rows, tree_iter=20)
    known = np.isin(later.column("item_id").to_numpy(zero_copy_only=False)[train_rows:],
                    rec.encoder.item_ids.to_numpy(zero_copy_only=False))  # fmt: skip
    assert report["F"]["n"] == known.sum() > 0.9 * len(known)  # items new later are left out
    assert report["F"]["gauc_user"] > 0.55, report
    user = str(rec.user_ids[0])
    (answer,) = BatchRanker(rec).rank_many([(user, [], "shoes", ["i0001", "i0002"])])
    assert answer.probabilities.shape == (2, 3) and not answer.cold_start
    assert np.isfinite(answer.probabilities).all()
