"""Model F (SASRec-style user tower, attribute item tower, ranking heads for P(click),
P(cart | click), P(purchase | cart)), its training steps, baselines and ranking metrics.
No Ray here: synthrec.distributed.recommender_train and ranking_train add the cluster.

Next-item head: train.py (positives only when the log has labels). Ranking heads:
impressions.py (rows -> requests with their histories), ranking.py (the seed's loss, fit),
rank_metrics.py (GAUC, list NDCG, baselines), rerank.py (serving /v1/rank)."""

from synthrec.recommender.artifacts import (
    Recommender,
    build_recommender,
    load_recommender,
    save_recommender,
)

__all__ = ["Recommender", "build_recommender", "load_recommender", "save_recommender"]
