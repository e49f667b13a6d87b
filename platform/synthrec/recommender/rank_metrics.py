"""Ranking-head metrics on held-out impressions, and the baselines judged beside F. No torch.

- click AUC (pooled), GAUC per user and per query (AUC within each group that has both
  clicks and non-clicks, weighted by its impressions), purchase AUC (pooled, last label);
- NDCG@10 of each held-out impression list (request) re-ranked by the scorer: gain 2^level - 1
  with level = how far down the funnel the impression went (click 1, cart 3, purchase 7);
  lists without a click have no ideal order and are left out; ties in score are broken by a
  seeded random order (never by display position, which would favour flat scorers);
- baselines fitted on the training impressions: item CTR (smoothed), position only (CTR per
  display position), and a gradient-boosted classifier on the same features F reads.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from synthrec.recommender.data import InteractionEncoder
from synthrec.recommender.impressions import Impressions
from synthrec.recommender.metrics import roc_auc

TIE_SEED = 12345


class ImpressionScorer(Protocol):
    def predict(self, imp: Impressions) -> np.ndarray:
        """(N,) or (N, K) scores; column 0 is the click score."""


def gauc(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """Impression-weighted mean AUC within groups having both classes (NaN if none has)."""
    order = np.argsort(groups, kind="stable")
    g, s, y = groups[order], scores[order], labels[order].astype(bool)
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    ends = np.r_[starts[1:], len(g)]
    pos = np.add.reduceat(y.astype(np.int64), starts) if len(g) else np.zeros(0, np.int64)
    mixed = (pos > 0) & (pos < ends - starts)
    total, weight = 0.0, 0
    for a, b in zip(starts[mixed], ends[mixed]):  # a loop over groups, vectorized within
        total += roc_auc(s[a:b], y[a:b]) * (b - a)
        weight += b - a
    return float(total / weight) if weight else float("nan")


def ndcg_lists(scores: np.ndarray, gains: np.ndarray, lists: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k over lists with some gain, each list re-ranked by `scores`."""
    tie = np.random.default_rng(TIE_SEED).random(len(scores))
    order = np.lexsort((tie, -scores, lists))  # by list, best first
    ideal = np.lexsort((-gains, lists))
    lst = lists[order]
    starts = np.flatnonzero(np.r_[True, lst[1:] != lst[:-1]])
    rank = np.arange(len(lst)) - np.repeat(starts, np.diff(np.r_[starts, len(lst)]))
    discount = np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)
    dcg = np.add.reduceat(gains[order] * discount, starts) if len(lst) else np.zeros(0)
    idcg = np.add.reduceat(gains[ideal] * discount, starts) if len(lst) else np.zeros(0)
    has = idcg > 0
    return float((dcg[has] / idcg[has]).mean()) if has.any() else float("nan")


def impression_metrics(scores: np.ndarray, imp: Impressions, k: int = 10) -> dict[str, float]:
    """Click AUC, GAUC per user and per query, NDCG@k of the held-out lists, purchase AUC."""
    scores = scores if scores.ndim == 2 else scores[:, None]
    click = imp.labels[:, 0]
    level = imp.labels.sum(axis=1)
    out = {
        "click_auc": roc_auc(scores[:, 0], click),
        "gauc_user": gauc(scores[:, 0], click, imp.user),
        "gauc_query": gauc(scores[:, 0], click, imp.query_groups()),
        f"ndcg@{k}": ndcg_lists(scores[:, 0], 2.0**level - 1.0, imp.request, k),
        "n": int(len(imp)),
    }
    if imp.num_labels > 1:
        out["purchase_auc"] = roc_auc(scores[:, -1], imp.labels[:, -1])
    return out


# ---------------------------------------------------------------------------- baselines


class ItemCTR:
    """Clicks / impressions per item in the training impressions, smoothed toward the mean."""

    def __init__(self, train: Impressions, num_items: int, prior: float = 20.0):
        shown = np.bincount(train.items, minlength=num_items + 1).astype(np.float64)
        clicks = np.bincount(train.items, train.labels[:, 0], minlength=num_items + 1)
        mean = clicks.sum() / max(shown.sum(), 1.0)
        self.ctr = (clicks + prior * mean) / (shown + prior)

    def predict(self, imp: Impressions) -> np.ndarray:
        return self.ctr[imp.items]


class PositionOnly:
    """CTR of each display position in training: the engine's own order, nothing learnt."""

    def __init__(self, train: Impressions):
        size = int(max(train.position.max(initial=0), 1)) + 1
        shown = np.bincount(train.position, minlength=size).astype(np.float64)
        clicks = np.bincount(train.position, train.labels[:, 0], minlength=size)
        self.ctr = clicks / np.maximum(shown, 1.0)

    def predict(self, imp: Impressions) -> np.ndarray:
        return self.ctr[np.minimum(imp.position, len(self.ctr) - 1)]


class BoostedTrees:
    """sklearn's HistGradientBoostingClassifier, one per funnel stage on the rows where it is
    observed, on the features F serves with: user and item attributes, query tokens, history
    length and the candidate's share of the user's recent history by item attribute. No
    display position: fixing it to 1 at scoring (the usual trick) left the trees below
    chance on the simulator, where the engine's order is confounded with item attributes."""

    def __init__(self, train: Impressions, encoder: InteractionEncoder, seed: int = 0, **params):
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.encoder = encoder
        X = self.features(train)
        self.models = []
        observed = np.ones(len(train), dtype=bool)
        for j in range(train.num_labels):
            y = train.labels[:, j]
            if observed.any() and 0 < y[observed].sum() < observed.sum():
                m = HistGradientBoostingClassifier(
                    max_iter=params.get("max_iter", 200),
                    learning_rate=params.get("learning_rate", 0.1),
                    early_stopping=True,
                    random_state=seed,
                )
                self.models.append(m.fit(X[observed], y[observed]))
            else:
                self.models.append(float(y[observed].mean()) if observed.any() else 0.0)
            observed = y.astype(bool)

    def features(self, imp: Impressions) -> np.ndarray:
        enc, h = self.encoder, imp.history
        r = imp.request
        hist = h.tokens[r]  # (N, T) history tokens of each impression's request
        valid = (hist > 0) & (hist <= enc.num_items)
        parts = [
            h.user_cat[r],
            h.user_num[r],
            enc.item_cat[imp.items],
            enc.item_num[imp.items],
            valid.sum(axis=1, keepdims=True),
        ]
        if enc.item_cat.shape[1]:  # share of history items with the candidate's attribute
            cats = enc.item_cat[np.where(valid, hist, 0)]  # (N, T, C)
            same = (cats == enc.item_cat[imp.items][:, None, :]) & valid[..., None]
            parts.append(same.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)[:, None])
        if imp.query is not None:
            parts.append(imp.query[r])
        return np.concatenate([p.astype(np.float64) for p in parts], axis=1)

    def predict(self, imp: Impressions) -> np.ndarray:
        X = self.features(imp)
        stages = [
            m.predict_proba(X)[:, 1] if not isinstance(m, float) else np.full(len(imp), m)
            for m in self.models
        ]
        return np.cumprod(np.stack(stages, axis=1), axis=1)
