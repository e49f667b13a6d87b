"""Model F: shapes, causality, the λ-weighted loss, and that training learns a toy pattern."""

import numpy as np
import pytest
import torch
from test_recommender_data import toy_table

from synthrec.config import RecommenderConfig
from synthrec.recommender.baselines import Popularity
from synthrec.recommender.data import InteractionEncoder
from synthrec.recommender.metrics import evaluate_ranking, split_leave_last_out
from synthrec.recommender.model import ModelSpec, RecommenderModel
from synthrec.recommender.train import (
    ModelScorer,
    build_model,
    fit,
    iterate_batches,
    row_losses,
    training_arrays,
    weighted_loss,
)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # several processes share two cores here; more threads only contend


SMALL = dict(dim=16, num_layers=1, num_heads=2, max_len=8, dropout=0.0, batch_size=16, lr=1e-2)


def _spec(**kw) -> ModelSpec:
    base = dict(
        num_items=20,
        item_cat_sizes=[4],
        item_num_dim=2,
        user_cat_sizes=[3, 5],
        user_num_dim=2,
        query_buckets=0,
        dim=16,
        num_layers=2,
        num_heads=2,
        max_len=6,
        dropout=0.0,
    )
    return ModelSpec(**{**base, **kw})


def _inputs(spec: ModelSpec, B: int = 3):
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, spec.num_items + 1, (B, spec.max_len), generator=g)
    tokens[:, 0] = spec.num_items + 1
    tokens[0, :3] = torch.tensor([0, 0, spec.num_items + 1])  # a short, left-padded window
    user_cat = torch.stack([torch.randint(0, s, (B,), generator=g) for s in spec.user_cat_sizes], 1)
    return tokens, user_cat, torch.randn(B, spec.user_num_dim, generator=g)


def test_model_forward_shapes_and_padding_row():
    spec = _spec()
    model = RecommenderModel(spec).eval()
    users, vectors = model(*_inputs(spec))
    assert users.shape == (3, spec.max_len, spec.dim)
    assert vectors.shape == (spec.num_items + 1, spec.dim)
    assert torch.isfinite(users).all()
    assert torch.count_nonzero(vectors[0]) == 0


def test_model_is_causal():
    spec = _spec()
    model = RecommenderModel(spec).eval()
    tokens, user_cat, user_num = _inputs(spec)
    before = model.encode(tokens, user_cat, user_num)
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] % spec.num_items) + 1
    after = model.encode(changed, user_cat, user_num)
    assert torch.allclose(before[:, :-1], after[:, :-1], atol=1e-6)
    assert not torch.allclose(before[:, -1], after[:, -1])


def test_model_query_changes_only_the_scored_slot():
    spec = _spec(query_buckets=32)
    model = RecommenderModel(spec).eval()
    tokens, user_cat, user_num = _inputs(spec)
    query = torch.zeros(3, spec.max_len, 4, dtype=torch.long)
    plain = model.encode(tokens, user_cat, user_num, query)
    query[:, -1, :2] = torch.tensor([5, 9])
    with_query = model.encode(tokens, user_cat, user_num, query)
    assert torch.allclose(plain[:, :-1], with_query[:, :-1]) and not torch.allclose(
        plain[:, -1], with_query[:, -1]
    )


def test_loss_weighting_is_real_mean_plus_lambda_synthetic_mean():
    losses = torch.tensor([1.0, 3.0, 10.0, 20.0, 30.0])
    synthetic = torch.tensor([False, False, True, True, True])
    assert weighted_loss(losses, synthetic, 0.5).item() == pytest.approx(2.0 + 0.5 * 20.0)
    assert weighted_loss(losses[2:], synthetic[2:], 0.5).item() == pytest.approx(
        10.0
    )  # synthetic only
    assert weighted_loss(losses[:2], synthetic[:2], 0.5).item() == pytest.approx(2.0)


@pytest.mark.parametrize("loss,negatives", [("softmax", 0), ("softmax", 5), ("bce", 3)])
def test_loss_synthetic_rows_give_no_gradient_at_lambda_zero(loss, negatives):
    table = toy_table()
    cfg = RecommenderConfig(**SMALL, loss=loss, num_negatives=negatives, synthetic_weight=0.0)
    enc = InteractionEncoder.fit(table, cfg)
    arrays = training_arrays(enc, cfg, None, enc.encode(table, user_prefix="syn:"))
    assert arrays["synthetic"].all()
    model = build_model(enc, cfg)
    batch = next(iterate_batches(arrays, 8, seed=0))
    losses, synthetic = row_losses(model, batch, cfg, torch.Generator().manual_seed(0))
    assert synthetic.all() and torch.isfinite(losses).all()
    weighted_loss(losses, synthetic, cfg.synthetic_weight).backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in model.parameters())


def test_fit_learns_a_sequential_pattern_beyond_popularity():
    table = toy_table(num_users=60, num_items=15)
    cfg = RecommenderConfig(**SMALL, epochs=40, patience=40)
    enc = InteractionEncoder.fit(table, cfg)
    split = split_leave_last_out(table, enc)
    train_log = enc.encode(split.train)
    result = fit(enc, cfg, train_log, valid=split.valid)
    f = evaluate_ranking(ModelScorer(result.model, enc.user_token), split.test, {})["overall"][
        "ndcg@10"
    ]
    pop = evaluate_ranking(Popularity(train_log, enc.num_items), split.test, {})["overall"][
        "ndcg@10"
    ]
    assert f > pop + 0.2
    assert result.best_valid_ndcg is not None and result.best_epoch >= 1


def test_scorer_log_probs_keep_each_ranking_and_normalize_across_queries():
    table = toy_table()
    cfg = RecommenderConfig(**SMALL)
    enc = InteractionEncoder.fit(table, cfg)
    log = enc.encode(table)
    model = build_model(enc, cfg)
    group, stop = np.arange(log.num_groups), log.lengths - 1
    raw = ModelScorer(model, enc.user_token, log_probs=False).score(log, group, stop)[:, 1:]
    probs = ModelScorer(model, enc.user_token).score(log, group, stop)[:, 1:]
    assert (
        np.argsort(-raw, axis=1, kind="stable") == np.argsort(-probs, axis=1, kind="stable")
    ).all()
    assert np.allclose(np.log(np.exp(probs).sum(axis=1)), 0.0, atol=1e-4)
