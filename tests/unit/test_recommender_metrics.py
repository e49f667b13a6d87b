"""Ranking metrics, AUC and baselines on tiny cases with known answers."""

import math

import numpy as np
import pyarrow as pa
import pytest

from synthrec.recommender.baselines import EASE, Popularity
from synthrec.recommender.data import Log
from synthrec.recommender.metrics import rank_targets, ranking_metrics, roc_auc


def _log(groups: list[list[int]]) -> Log:
    items = np.array([i for g in groups for i in g], dtype=np.int64)
    offsets = np.r_[0, np.cumsum([len(g) for g in groups])].astype(np.int64)
    n = len(groups)
    return Log(
        items,
        offsets,
        pa.array([f"u{i}" for i in range(n)]),
        np.zeros((n, 0), np.int64),
        np.zeros((n, 0), np.float32),
        np.arange(len(items)),
    )


def test_metrics_rank_excludes_history_but_not_the_target():
    scores = np.array([[0.0, 5.0, 4.0, 3.0, 2.0]])  # items 1..4
    # item 1 (best) was seen: excluded; target 3 then ranks behind item 2 only
    exclude = (np.array([1]), np.array([0, 1]))
    assert rank_targets(scores, np.array([3]), exclude).tolist() == [1]
    # a seen target stays rankable
    assert rank_targets(scores, np.array([1]), (np.array([1]), np.array([0, 1]))).tolist() == [0]


def test_metrics_rank_breaks_ties_by_item_index():
    scores = np.array([[0.0, 1.0, 1.0, 1.0]])
    none = (np.zeros(0, np.int64), np.array([0, 0]))
    assert rank_targets(scores, np.array([3]), none).tolist() == [2]
    assert rank_targets(scores, np.array([1]), none).tolist() == [0]


def test_metrics_recall_ndcg_mrr_known_values():
    m = ranking_metrics(np.array([0, 1, 10, 99]), k=10)
    assert m["recall@10"] == pytest.approx(0.5)
    assert m["ndcg@10"] == pytest.approx((1.0 + 1.0 / math.log2(3)) / 4)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 11 + 1 / 100) / 4)
    assert m["n"] == 4


def test_metrics_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 200).astype(float)
    labels = rng.integers(0, 2, 200)
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert roc_auc(scores, labels) == pytest.approx(pairwise)
    assert math.isnan(roc_auc(scores, np.ones(200)))


def test_baselines_popularity_counts_training_interactions():
    log = _log([[1, 2], [2, 3], [2]])
    scores = Popularity(log, num_items=4).score(log, np.array([0]), np.array([0]))
    assert scores[0].tolist() == [0.0, 1.0, 3.0, 1.0, 0.0]


def test_baselines_ease_scores_co_occurring_items_and_zero_diagonal():
    # items 1 and 2 always together, 3 and 4 together
    log = _log([[1, 2], [1, 2], [3, 4], [3, 4], [1, 2]])
    ease = EASE(log, num_items=4, l2=1.0)
    assert np.allclose(np.diag(ease.B), 0.0)
    query = _log([[1]])
    scores = ease.score(query, np.array([0]), np.array([1]))[0]
    assert scores[2] > 0 and scores[2] > scores[3] and scores[2] > scores[4]
