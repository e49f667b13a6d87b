"""Ranking and click metrics on real held-out data, overall and per segment. No torch.

Protocol (ML-100K README): leave-last-out per user; each query ranks *all* items except the
items the user interacted with before the query (their train items, plus the validation
item for test queries); the held-out item itself stays rankable. Ties in score are broken by
item index, exactly as a top-k over the same scores would return them.

Any model is a `Scorer`: given a log and query points (group, stop) it scores every item for
the state "user `group` has seen entries before `stop`". F, popularity and EASE all use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.data.splits import leave_last_out, temporal_split
from synthrec.errors import DataError
from synthrec.recommender.data import InteractionEncoder, Log

ROW = "__synthrec_row__"
CHUNK = 1024  # queries scored at once: (CHUNK, I) floats


class Scorer(Protocol):
    def score(self, log: Log, group: np.ndarray, stop: np.ndarray) -> np.ndarray:
        """(Q, I+1) float scores; column 0 (padding) is ignored."""


@dataclass
class Queries:
    """Evaluation points in a log: predict entry `stop` of `group` from the entries before it."""

    log: Log
    group: np.ndarray  # (Q,)
    stop: np.ndarray  # (Q,)

    @property
    def targets(self) -> np.ndarray:
        return self.log.items[self.log.offsets[self.group] + self.stop]

    def __len__(self) -> int:
        return len(self.group)

    def subset(self, mask: np.ndarray) -> Queries:
        return Queries(self.log, self.group[mask], self.stop[mask])


# ---------------------------------------------------------------------------- splits


@dataclass
class LeaveLastOut:
    """A real table split per user, plus the log of the whole table for histories."""

    train: pa.Table
    log: Log  # every real row, grouped by user in time order
    valid: Queries
    test: Queries


def split_leave_last_out(table: pa.Table, encoder: InteractionEncoder) -> LeaveLastOut:
    """Split with `synthrec.data.splits.leave_last_out` (the shared protocol) and locate the
    validation and test rows in the full log."""
    c = encoder.columns
    indexed = table.append_column(ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    train, valid, test = leave_last_out(indexed, c.user, c.item, c.time)
    if train.num_rows == 0:
        raise DataError("leave-last-out left no training rows: users need at least 3 interactions")
    log = encoder.encode(table, "real table")
    return LeaveLastOut(
        train.drop_columns([ROW]), log, _queries_of(log, valid), _queries_of(log, test)
    )


def split_temporal(
    table: pa.Table, encoder: InteractionEncoder, num_train: int
) -> tuple[pa.Table, Queries]:
    """(first `num_train` rows, queries at every later row with the user's earlier rows as
    history)."""
    indexed = table.append_column(ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    train, test = temporal_split(indexed, num_train)
    log = encoder.encode(table, "real table")
    return train.drop_columns([ROW]), _queries_of(log, test)


def _queries_of(log: Log, rows_table: pa.Table) -> Queries:
    group, stop = log.locate_rows(rows_table.column(ROW).to_numpy())
    return Queries(log, group, stop)


# ---------------------------------------------------------------------------- metrics


def rank_targets(
    scores: np.ndarray, targets: np.ndarray, exclude: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """0-based rank of each target among items 1..I, `exclude` (CSR) removed, ties by index."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    flat, offsets = exclude
    rows = np.repeat(np.arange(len(scores)), np.diff(offsets))
    keep = flat != targets[rows]  # the held-out item itself is never excluded
    scores[rows[keep], flat[keep]] = -np.inf
    scores[:, 0] = -np.inf
    target_score = scores[np.arange(len(scores)), targets][:, None]
    item = np.arange(scores.shape[1])[None, :]
    better = (scores > target_score) | ((scores == target_score) & (item < targets[:, None]))
    return better.sum(axis=1)


def ranking_metrics(ranks: np.ndarray, k: int = 10) -> dict[str, float]:
    """Recall@k, NDCG@k (one relevant item per query), MRR, with the standard error of NDCG."""
    if len(ranks) == 0:
        return {f"recall@{k}": float("nan"), f"ndcg@{k}": float("nan"), "mrr": float("nan"), "n": 0}
    hit = ranks < k
    ndcg = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
    return {
        f"recall@{k}": float(hit.mean()),
        f"ndcg@{k}": float(ndcg.mean()),
        "mrr": float((1.0 / (ranks + 1.0)).mean()),
        f"ndcg@{k}_se": float(ndcg.std() / np.sqrt(len(ranks))),
        "n": int(len(ranks)),
    }


def query_ranks(
    scorer: Scorer, queries: Queries, progress: Callable[..., None] | None = None
) -> np.ndarray:
    """Ranks of every query's target, scored in chunks."""
    out = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), CHUNK):
        part = queries.subset(slice(start, start + CHUNK))
        scores = scorer.score(part.log, part.group, part.stop)
        out[start : start + CHUNK] = rank_targets(
            scores, part.targets, part.log.prefix_items(part.group, part.stop)
        )
        if progress:
            progress(min(start + CHUNK, len(queries)))
    return out


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula, ties counted half."""
    labels = labels.astype(bool)
    num_pos, num_neg = int(labels.sum()), int((~labels).sum())
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average rank within ties
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[labels].sum() - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))


def click_auc(scorer: Scorer, queries: Queries) -> dict[str, float]:
    """ROC AUC of each query's score for its own item against the log's click label."""
    if queries.log.labels is None:
        return {"click_auc": float("nan"), "n": 0}
    scores = np.empty(len(queries))
    for start in range(0, len(queries), CHUNK):
        part = queries.subset(slice(start, start + CHUNK))
        full = scorer.score(part.log, part.group, part.stop)
        scores[start : start + CHUNK] = full[np.arange(len(part)), part.targets]
    labels = queries.log.labels[queries.log.offsets[queries.group] + queries.stop]
    return {"click_auc": roc_auc(scores, labels), "n": int(len(queries))}


# ---------------------------------------------------------------------------- segments


@dataclass
class SegmentSpec:
    short_history_quantile: float = 0.25  # users at or below this quantile of train length
    rare_share: float = 0.10  # least frequent categories that together hold at most this share
    category: str | None = (
        None  # item column for rare categories; default: first categorical attribute
    )


def segment_masks(
    queries: Queries, train_log: Log, encoder: InteractionEncoder, spec: SegmentSpec = SegmentSpec()
) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Boolean masks over `queries` per segment, and what defines each segment."""
    lengths = _train_lengths(queries, train_log)
    threshold = float(np.quantile(lengths, spec.short_history_quantile)) if len(lengths) else 0.0
    masks = {"short_history": lengths <= threshold}
    info: dict[str, object] = {"short_history_max_train_items": threshold}
    column = spec.category or next(iter(encoder.item_codec.categorical), None)
    if column is not None:
        j = list(encoder.item_codec.categorical).index(column)
        codes = encoder.item_cat[:, j]  # (I+1,)
        counts = np.bincount(
            codes[train_log.items], minlength=len(encoder.item_codec.categorical[column]) + 1
        )
        share = counts / max(counts.sum(), 1)
        order = np.argsort(share[1:], kind="stable") + 1  # code 0 (unknown/null) is no category
        rare = order[np.cumsum(share[order]) <= spec.rare_share]
        masks["rare_category"] = np.isin(codes[queries.targets], rare)
        info["rare_category_column"] = column
        info["rare_categories"] = [encoder.item_codec.categorical[column][c - 1] for c in rare]
    return masks, info


def _train_lengths(queries: Queries, train_log: Log) -> np.ndarray:
    """Train interactions of each query's user (0 for users absent from the train log)."""
    users = queries.log.user_ids.take(pa.array(queries.group))
    index = pc.index_in(users, value_set=train_log.user_ids)
    where = pc.fill_null(index, -1).to_numpy()
    return np.where(where >= 0, train_log.lengths[np.maximum(where, 0)], 0)


def evaluate_ranking(
    scorer: Scorer,
    queries: Queries,
    masks: dict[str, np.ndarray],
    k: int = 10,
    progress: Callable[..., None] | None = None,
) -> dict[str, dict[str, float]]:
    """{"overall": metrics, <segment>: metrics} for one scorer on one set of queries."""
    ranks = query_ranks(scorer, queries, progress)
    result = {"overall": ranking_metrics(ranks, k)}
    for name, mask in masks.items():
        result[name] = ranking_metrics(ranks[mask], k)
    return result
