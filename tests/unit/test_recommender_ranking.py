"""Model F's ranking heads: the seed's loss, the label chain, position debiasing, bad input."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from synthrec.config import RecommenderConfig, SimulateConfig
from synthrec.data.simulator import click_propensity, simulate
from synthrec.errors import DataError, SchemaError
from synthrec.recommender.data import InteractionEncoder, label_matrix
from synthrec.recommender.impressions import build_impressions
from synthrec.recommender.rank_metrics import gauc, impression_metrics, ndcg_lists
from synthrec.recommender.ranking import (
    RankScorer,
    fit_ranking,
    impression_batch,
    impression_losses,
    prepare_ranking,
    state_groups,
    step_loss,
)
from synthrec.recommender.train import build_model, iterate_batches, row_losses

SIM = SimulateConfig(
    rows=3000, num_users=120, num_items=300, num_categories=8, num_brands=16, num_queries=40
)
CFG = RecommenderConfig(dim=16, max_len=8, dropout=0.0, epochs=1, ranking_batch_size=256)


@pytest.fixture(scope="module")
def log() -> pa.Table:
    return simulate(SIM)


@pytest.fixture(scope="module")
def data(log):
    synthetic = log.slice(log.num_rows // 2)  # stands in for generated rows
    return prepare_ranking(log, synthetic, CFG)


@pytest.fixture(scope="module")
def fitted(data):
    return fit_ranking(data, CFG.model_copy(update={"epochs": 3, "lr": 1e-2}), use_synthetic=False)


def _model(data, num_positions=CFG.max_positions):
    return build_model(data.encoder, CFG, num_labels=3, num_positions=num_positions)


def _grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_ranking_step_gradient_is_the_sum_of_the_two_means_gradients(data):
    weight = 0.7
    cfg = CFG.model_copy(update={"synthetic_weight": weight})
    model = _model(data)
    real_imp = impression_batch(data.real.impressions, np.arange(40))
    synth_imp = impression_batch(data.synthetic.impressions, np.arange(9))  # a different size
    real_win = next(iterate_batches(data.real.windows, 16, 0))
    synth_win = next(iterate_batches(data.synthetic.windows, 5, 0))

    def grad_of(fn) -> torch.Tensor:
        model.zero_grad(set_to_none=False)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        fn().backward()
        return _grads(model).clone()

    gen = torch.Generator()
    got = grad_of(
        lambda: step_loss(
            model,
            {"impressions": real_imp, "windows": real_win},
            {"impressions": synth_imp, "windows": synth_win},
            cfg,
            gen,
        )
    )
    parts = [
        lambda: impression_losses(model, real_imp).mean(),
        lambda: weight * impression_losses(model, synth_imp).mean(),
        lambda: row_losses(model, real_win, cfg, gen)[0].mean(),
        lambda: weight * row_losses(model, synth_win, cfg, gen)[0].mean(),
    ]
    expected = sum(grad_of(p) for p in parts)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    # a pooled mean over both batches (what a mixed batch would give) is a different gradient
    pooled = grad_of(
        lambda: (
            torch.cat(
                [impression_losses(model, real_imp), impression_losses(model, synth_imp)]
            ).mean()
            + torch.cat(
                [
                    row_losses(model, real_win, cfg, gen)[0],
                    row_losses(model, synth_win, cfg, gen)[0],
                ]
            ).mean()
        )
    )
    assert not torch.allclose(got, pooled, rtol=1e-3, atol=1e-6)


def test_ranking_labels_form_a_chain_and_later_stages_learn_only_where_observed(data):
    table = pa.table({"click": [0, 1, 0, 1], "cart": [0, 0, 1, 1], "purchase": [0, 0, 1, 0]})
    labels = label_matrix(table, data.encoder.columns)
    # a purchase implies cart and click (row 2); nothing is invented downward
    assert labels.tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]]
    imp = data.real.impressions
    unclicked = np.flatnonzero(imp.labels[:, 0] == 0)[:50]
    clicked_not_carted = np.flatnonzero((imp.labels[:, 0] == 1) & (imp.labels[:, 1] == 0))[:20]
    model = _model(data)
    bias = model.ranker.mlp[-1].bias
    for rows, learns in (
        (unclicked, [True, False, False]),
        (clicked_not_carted, [True] * 2 + [False]),
    ):
        bias.grad = None
        impression_losses(model, impression_batch(imp, rows)).mean().backward()
        assert (bias.grad.abs() > 0).tolist() == learns


def test_ranking_position_bias_trains_but_is_absent_when_scoring(data):
    model = _model(data)
    with torch.no_grad():
        model.ranker.position.weight.copy_(torch.randn_like(model.ranker.position.weight) * 3)
    imp = data.real.impressions.subset(np.arange(200))
    shifted = imp.subset(np.ones(len(imp), bool))
    shifted.position = np.maximum(imp.position[::-1].copy(), 1)
    b, b2 = impression_batch(imp, np.arange(200)), impression_batch(shifted, np.arange(200))
    model.eval()
    state = model.user_state(b["tokens"], b["user_cat"], b["user_num"], b["query"])[b["slot"]]
    train_logits = model.rank_logits(state, b["items"], b["position"])
    moved = model.rank_logits(state, b2["items"], b2["position"])
    assert not torch.allclose(train_logits[:, 0], moved[:, 0])  # the bias is real in training
    torch.testing.assert_close(train_logits[:, 1:], moved[:, 1:])  # ... on the click stage only
    scorer = RankScorer(model)
    np.testing.assert_array_equal(scorer.predict(imp), scorer.predict(shifted))
    free = torch.sigmoid(model.rank_logits(state, b["items"], None)).cumprod(1)
    order = np.argsort(imp.request, kind="stable")
    np.testing.assert_allclose(
        scorer.predict(imp)[order], free.detach().double().numpy()[order], rtol=1e-5
    )


def test_ranking_history_holds_only_positives_before_the_request():
    rows = [  # user, time, query, item, click
        ("a", 1, "shoes", "i1", 1),
        ("a", 2, "shoes", "i2", 0),  # same page as i1: must not see i1's click
        ("a", 3, "shoes", "i3", 1),
        ("a", 10, "books", "i4", 0),  # a later request: sees i1 and i3, not the unclicked i2
        ("b", 5, "books", "i2", 1),
    ]
    table = pa.table(dict(zip(["user_id", "timestamp", "query", "item_id", "click"], zip(*rows))))
    cfg = RecommenderConfig(dim=8, max_len=4)
    enc = InteractionEncoder.fit(table, cfg)
    imp = build_impressions(enc, table, cfg.max_len, cfg.max_positions)
    index = {v: i + 1 for i, v in enumerate(enc.item_ids.to_pylist())}
    hist = imp.history.tokens[imp.request]  # (N, T)
    seen = {
        r: set(h[(h > 0) & (h <= enc.num_items)].tolist()) for r, h in zip(imp.rows.tolist(), hist)
    }
    assert seen[0] == seen[1] == seen[2] == set()
    assert seen[3] == {index["i1"], index["i3"]}
    assert seen[4] == set()
    assert imp.request[imp.rows.tolist().index(0)] == imp.request[imp.rows.tolist().index(2)]


def test_ranking_bad_labels_and_missing_labels(log):
    bad = log.set_column(log.column_names.index("cart"), "cart", pa.array(np.full(log.num_rows, 2)))
    enc = InteractionEncoder.fit(log, CFG)
    with pytest.raises(DataError, match="label column 'cart'.*not binary"):
        build_impressions(enc, bad, 8, 50)
    with pytest.raises(SchemaError, match="positive_label 'buy'"):
        InteractionEncoder.fit(log, CFG.model_copy(update={"positive_label": "buy"}))
    plain = log.drop_columns(["click", "cart", "purchase"])
    data = prepare_ranking(plain, None, CFG)
    assert any("no label column" in n for n in data.notes)
    fit = fit_ranking(data, CFG)
    assert fit.model.ranker is None and fit.history[0]["loss"] > 0


def test_ranking_next_item_head_learns_from_positives_only(log, data):
    clicks = int(np.asarray(log.column("click")).sum())
    assert len(data.known.items) == clicks < log.num_rows
    everything = prepare_ranking(log, None, CFG.model_copy(update={"next_item_rows": "all"}))
    assert len(everything.known.items) == log.num_rows
    carts = prepare_ranking(log, None, CFG.model_copy(update={"positive_label": "cart"}))
    assert len(carts.known.items) == int(np.asarray(log.column("cart")).sum())


def test_ranking_metrics_on_hand_made_lists():
    labels = np.array([1, 0, 0, 1, 0, 1])
    users = np.array([0, 0, 0, 1, 1, 2])  # user 2 has one class only: left out
    scores = np.array([0.9, 0.1, 0.2, 0.3, 0.8, 0.5])
    assert gauc(scores, labels, users) == pytest.approx((1.0 * 3 + 0.0 * 2) / 5)
    gains = np.array([1.0, 0.0, 7.0, 0.0])
    lists = np.array([0, 0, 0, 1])  # list 1 has no gain: left out
    best = ndcg_lists(np.array([2.0, 1.0, 3.0, 0.0]), gains, lists)
    worse = ndcg_lists(np.array([3.0, 2.0, 1.0, 0.0]), gains, lists)
    assert best == pytest.approx(1.0)
    assert worse == pytest.approx((1 + 7 / np.log2(4)) / (7 + 1 / np.log2(3)))


def test_ranking_fit_learns_and_the_oracle_scores_held_out_rows(log, data, fitted):
    fit = fitted
    assert fit.history[-1]["loss"] < fit.history[0]["loss"]
    assert all("valid_gauc" in h for h in fit.history)
    valid = data.valid
    got = impression_metrics(RankScorer(fit.model).predict(valid), valid)
    assert set(got) >= {"click_auc", "gauc_user", "gauc_query", "ndcg@10", "purchase_auc"}
    # the simulator's own position-free propensity ranks the held-out clicks well above chance
    oracle = impression_metrics(click_propensity(SIM, log)[valid.rows], valid)
    assert oracle["click_auc"] > 0.6


def test_ranking_served_ranker_keeps_order_flags_cold_items_and_ignores_positions(
    data, fitted, tmp_path
):
    from synthrec.recommender.artifacts import (
        build_recommender,
        has_ranking_heads,
        load_recommender,
        save_recommender,
    )
    from synthrec.recommender.rerank import BatchRanker

    rec = build_recommender(fitted.model, data.encoder, CFG, data.known, data.popularity, {})
    save_recommender(rec, str(tmp_path / "rec"))
    assert has_ranking_heads(str(tmp_path / "rec"))
    loaded = load_recommender(str(tmp_path / "rec"))
    user = str(loaded.user_ids[0])
    items = [str(i) for i in loaded.encoder.item_ids.to_pylist()[:5]] + ["no-such-item"]
    ranker = BatchRanker(loaded)
    request = (user, [], "shoes", items)
    first, cold = ranker.rank_many([request, (None, [items[0]], None, items[::-1])])
    assert first.item_ids == items and first.cold_items == [False] * 5 + [True]
    assert not first.cold_start and cold.cold_start and cold.item_ids == items[::-1]
    p = first.probabilities
    assert p.shape == (6, 3) and (np.diff(p, axis=1) <= 0).all() and ((p > 0) & (p < 1)).all()
    with torch.no_grad():  # serving reads no position: the bias cannot change an answer
        loaded.model.ranker.position.weight.add_(5.0)
    (again,) = BatchRanker(loaded).rank_many([request])
    np.testing.assert_allclose(again.probabilities, p, rtol=1e-5)
    bad = ranker.rank_many([(user, ["no-such-item"], None, items)])[0]
    assert isinstance(bad, DataError) and str(bad).startswith("history")


def test_ranking_evaluation_reports_heads_and_baselines_on_later_rows(log, data, fitted):
    from synthrec.recommender.artifacts import build_recommender
    from synthrec.recommender.evaluation import evaluate_heads, heldout_impressions

    rec = build_recommender(fitted.model, data.encoder, CFG, data.known, data.popularity, {})
    num_train = int(0.8 * log.num_rows)
    train, test = heldout_impressions(rec, log, num_train)
    assert len(train) == num_train and len(test) == log.num_rows - num_train
    times = np.asarray(log.column("timestamp"))
    assert times[train.rows].max() <= times[test.rows].min()
    report = evaluate_heads(rec, log, num_train, tree_iter=20)
    assert set(report) == {"F", "item_ctr", "position_only", "boosted_trees"}
    for metrics in report.values():
        assert 0.0 <= metrics["gauc_user"] <= 1.0 and metrics["n"] == len(test)
    # on logged clicks, the engine's order carries the examination bias: it beats chance
    assert report["position_only"]["click_auc"] > 0.55


def test_ranking_search_recommendations_are_retrieved_then_ranked(data, fitted):
    from synthrec.recommender.artifacts import build_recommender
    from synthrec.recommender.recommend import RETRIEVE
    from synthrec.recommender.rerank import BatchRanker

    rec = build_recommender(fitted.model, data.encoder, CFG, data.known, data.popularity, {})
    user = str(rec.user_ids[0])
    ids, scores, _ = rec.recommend(user, query="shoes", k=5)
    (ranked,) = BatchRanker(rec).rank_many([(user, [], "shoes", ids)])
    np.testing.assert_allclose(scores, ranked.probabilities[:, 0], rtol=1e-5)  # P(click)
    assert scores == sorted(scores, reverse=True)
    # the 5 best by P(click) among the RETRIEVE best by next-item score (k = RETRIEVE ranks
    # exactly the retrieved set)
    retrieved, _, _ = rec.recommend(user, query="shoes", k=RETRIEVE)
    assert ids == retrieved[:5] and len(set(retrieved)) == RETRIEVE


def test_ranking_shards_split_requests_whole_and_cover_everything(data):
    shards = [data.shard(rank, 3) for rank in range(3)]
    imp = [s.real.impressions for s in shards]
    rows = np.concatenate([i.rows for i in imp])
    assert sorted(rows.tolist()) == sorted(data.real.impressions.rows.tolist())
    requests = [set(i.request.tolist()) for i in imp]
    assert not (requests[0] & requests[1]) and not (requests[1] & requests[2])
    windows = sum(len(s.real.windows["tokens"]) for s in shards)
    assert windows == len(data.real.windows["tokens"])


def test_ranking_rows_sharing_a_history_are_encoded_once_with_unchanged_scores(log):
    """Without a query every row is its own request; rows of a user between two positives
    share one history, so a batch encodes it once (and trims all-pad columns) and the scores
    equal those of one full-width window per row."""
    table = log.drop_columns(["query"])
    data = prepare_ranking(table, None, CFG)
    imp = data.real.impressions.subset(np.arange(300))
    groups = state_groups(imp)
    assert groups.max() + 1 < len(np.unique(imp.request))  # fewer states than requests
    model = _model(data)
    model.eval()
    b = impression_batch(imp, np.arange(len(imp)), False, groups)
    assert len(b["tokens"]) == len(np.unique(groups))
    h = imp.history
    with torch.no_grad():
        state = model.user_state(
            *(torch.from_numpy(a[imp.request]) for a in (h.tokens, h.user_cat, h.user_num))
        )  # (N, d): every row's own full-width window
        full = torch.sigmoid(model.rank_logits(state, torch.from_numpy(imp.items))).cumprod(1)
    np.testing.assert_allclose(RankScorer(model).predict(imp), full.double().numpy(), atol=1e-5)


def test_ranking_heads_default_on_for_a_search_log_only(log):
    """Unset, ranking_heads follows the log: labels with a query or a display position (a
    search log) train the heads; labels alone (ratings made a click) or none do not."""
    from synthrec.recommender.ranking import wants_ranking_heads

    auto = RecommenderConfig()
    assert auto.ranking_heads is None
    assert wants_ranking_heads(log, auto)
    assert wants_ranking_heads(log.drop_columns(["query"]), auto)  # position alone
    ratings_like = log.drop_columns(["query", "position"])
    assert not wants_ranking_heads(ratings_like, auto)
    assert not wants_ranking_heads(log.drop_columns(["click", "cart", "purchase"]), auto)
    assert not wants_ranking_heads(log, RecommenderConfig(ranking_heads=False))
    assert wants_ranking_heads(ratings_like, RecommenderConfig(ranking_heads=True))
