"""The batched serving scorer answers exactly what `Recommender.recommend` answers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from synthrec.config import RecommenderConfig, SimulateConfig
from synthrec.data.simulator import simulate
from synthrec.errors import DataError
from synthrec.recommender.artifacts import build_recommender
from synthrec.recommender.data import PAD, InteractionEncoder, Log
from synthrec.recommender.train import ModelScorer, fit
from synthrec.serving.scoring import BatchRecommender


@pytest.fixture(scope="module")
def recommender():
    """Model F on a small simulated search log (it has a query column), one epoch."""
    table = simulate(
        SimulateConfig(rows=6_000, num_users=200, num_items=800, num_queries=100, seed=3)
    )
    cfg = RecommenderConfig(
        dim=16, num_layers=1, max_len=12, epochs=1, batch_size=256, seed=0, query_column="query"
    )
    encoder = InteractionEncoder.fit(table, cfg)
    known = encoder.encode(table)
    result = fit(encoder, cfg, known)
    popularity = np.bincount(known.items, minlength=encoder.num_items + 1)
    return build_recommender(result.model, encoder, cfg, known, popularity, {})


def requests_for(rec) -> list[tuple]:
    users = [str(u) for u in rec.user_ids.to_pylist()[:6]]
    items = [str(i) for i in rec.encoder.item_ids.to_pylist()[:5]]
    return [
        (users[0], [], None, 10, True),  # known user
        (users[1], items[:2], None, 5, True),  # known user + recent items
        (users[2], [], None, 7, False),  # seen items allowed back
        ("nobody", items[2:5], None, 10, True),  # cold start from history
        ("nobody", [], None, 10, True),  # cold start from popularity
        (None, [], "lighting lamps", 10, True),  # cold start from a query
        (users[3], [], "garden", 3, True),  # known user with a query
    ]


def test_serving_scoring_matches_recommend_in_one_batch(recommender):
    reqs = requests_for(recommender)
    batched = BatchRecommender(recommender).recommend_many(reqs)
    for req, got in zip(reqs, batched):
        ids, scores, cold = recommender.recommend(
            user_id=req[0], history=req[1] or None, query=req[2], k=req[3], exclude_seen=req[4]
        )
        assert got.item_ids == [str(i) for i in ids], req
        np.testing.assert_allclose(got.scores, scores, rtol=1e-5, atol=1e-6)
        assert got.cold_start == cold


def test_serving_scoring_rejects_what_recommend_rejects_without_failing_the_batch(recommender):
    good = requests_for(recommender)[0]
    out = BatchRecommender(recommender).recommend_many(
        [good, (None, ["no-such-item"], None, 5, True), good]
    )
    assert (
        isinstance(out[1], DataError)
        and "no-such-item" in str(out[1])
        and str(out[1]).startswith("history")
    )
    with pytest.raises(DataError):
        recommender.recommend(history=["no-such-item"])
    assert out[0].item_ids == out[2].item_ids and len(out[0].item_ids) == 10


def test_serving_scoring_ranks_as_the_evaluation_scorer(recommender):
    """The batched path (serving and `recommend`) orders items as `ModelScorer`, the scorer the
    ranking metrics use, does for each known user's stored history."""
    rec = recommender
    users = rec.user_ids.to_pylist()[:5]
    ranked = BatchRecommender(rec).rank_many([(u, [], None, 10, False) for u in users])
    scorer = ModelScorer(rec.model, rec.encoder.user_token, log_probs=False)
    for user, got in zip(users, ranked):
        row = rec.user_row(user)
        seen = rec.histories[row][rec.histories[row] != PAD]
        log = Log(
            seen,
            np.array([0, len(seen)]),
            pa.array([user]),
            rec.user_cat[row : row + 1],
            rec.user_num[row : row + 1],
            np.arange(len(seen)),
        )
        scores = scorer.score(log, np.array([0]), np.array([len(seen)]))[0]
        scores[PAD] = -np.inf
        assert got.items.tolist() == np.argsort(-scores, kind="stable")[:10].tolist(), user
        np.testing.assert_allclose(got.scores, np.sort(scores)[::-1][:10], rtol=1e-5, atol=1e-5)


def test_serving_scoring_int8_search_answers_as_the_exact_scan(recommender):
    """The int8 two-stage search behind /v1/recommendations gives the exact scan's answers
    on a small catalog (its candidates cover far more than k items here)."""
    reqs = requests_for(recommender)
    exact = BatchRecommender(recommender, top_k="exact").recommend_many(reqs)
    int8 = BatchRecommender(recommender, top_k="int8").recommend_many(reqs)
    assert int8[0].item_ids  # the known user got an answer
    for a, b in zip(exact, int8):
        assert a.item_ids == b.item_ids
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
