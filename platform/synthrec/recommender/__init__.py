"""Model F (SASRec-style user tower, attribute item tower), its training steps, baselines and
ranking metrics. No Ray here: synthrec.distributed.recommender_train adds the cluster."""

from synthrec.recommender.artifacts import (
    Recommender,
    build_recommender,
    load_recommender,
    save_recommender,
)

__all__ = ["Recommender", "build_recommender", "load_recommender", "save_recommender"]
