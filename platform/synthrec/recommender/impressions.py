"""Impression rows for F's ranking heads: what the user saw, where, and what they did. No torch.

A search log has one row per impression (user, query, item, display position, click, cart,
purchase). Rows are grouped into *requests*: consecutive rows of one user with the same query
(one result page; without a query column every row is its own request). Every impression of
a request is scored from the same user state: the user's positive interactions (click or
stronger) *before the request*, so a click on the page never explains its neighbours, just as
a served request knows only what came before it.

Shapes: N impressions, R requests, K labels, T = max_len, Q query tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.errors import DataError
from synthrec.recommender.data import InteractionEncoder, Log, Windows, label_matrix, windows


@dataclass
class Impressions:
    history: Windows  # (R, T) per request: the user's positives before it (no query in it)
    query: np.ndarray | None  # (R, Q) hashed query tokens of each request
    request: np.ndarray  # (N,) request of each impression
    items: np.ndarray  # (N,) candidate item index 1..I
    position: np.ndarray  # (N,) display position 1..P (clipped), 0 = unknown
    labels: np.ndarray  # (N, K) cumulative funnel labels, weakest first
    user: np.ndarray  # (N,) user group (for GAUC per user)
    rows: np.ndarray  # (N,) row in the source table
    history_length: np.ndarray  # (R,) positives before each request

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_labels(self) -> int:
        return self.labels.shape[1]

    def subset(self, mask: np.ndarray) -> Impressions:
        """The impressions where `mask` (N,) holds; requests are kept (indices stay valid)."""
        return replace(
            self,
            request=self.request[mask],
            items=self.items[mask],
            position=self.position[mask],
            labels=self.labels[mask],
            user=self.user[mask],
            rows=self.rows[mask],
        )

    def query_groups(self) -> np.ndarray:
        """(N,) id of each impression's query text (one group when there is no query)."""
        if self.query is None:
            return np.zeros(len(self), dtype=np.int64)
        _, inverse = np.unique(self.query, axis=0, return_inverse=True)
        return inverse.reshape(-1)[self.request]


def build_impressions(
    encoder: InteractionEncoder,
    table: pa.Table,
    max_len: int,
    max_positions: int,
    where: str = "table",
    user_prefix: str | None = None,
) -> Impressions:
    """Every row of `table` as an impression with its request's history (see module doc)."""
    columns = encoder.columns
    if not columns.labels:
        raise DataError(
            f"{where}: no label column, so there is nothing for the ranking heads to learn; "
            "give the log a 0/1 click column (or map its behaviour column to labels)"
        )
    log = encoder.encode(table, where, user_prefix)
    labels = label_matrix(table, columns, where)[log.rows]
    positive = labels[:, columns.positive_index :].any(axis=1)
    group = log.group_of
    first = np.r_[True, group[1:] != group[:-1]]
    if log.query is not None:
        new_request = first | np.r_[True, (log.query[1:] != log.query[:-1]).any(axis=1)]
    else:
        new_request = np.ones(len(group), dtype=bool)
    request = np.cumsum(new_request) - 1
    starts = np.flatnonzero(new_request)
    before = np.cumsum(positive) - positive  # positives before each entry, whole log
    stop = before[starts] - before[log.offsets[:-1]][group[starts]]  # ... within its user
    positives = _sublog(log, positive)
    history = windows(positives, group[starts], stop, max_len, encoder.user_token)
    return Impressions(
        history=history,
        query=log.query[starts] if log.query is not None else None,
        request=request,
        items=log.items,
        position=_positions(table, columns.position, max_positions)[log.rows],
        labels=labels,
        user=group,
        rows=log.rows,
        history_length=stop,
    )


def _sublog(log: Log, keep: np.ndarray) -> Log:
    """The entries of `log` where `keep` holds, with every user kept (possibly empty)."""
    counts = np.bincount(log.group_of[keep], minlength=log.num_groups)
    return Log(
        log.items[keep],
        np.r_[0, np.cumsum(counts)].astype(np.int64),
        log.user_ids,
        log.user_cat,
        log.user_num,
        log.rows[keep],
    )


def _positions(table: pa.Table, column: str | None, max_positions: int) -> np.ndarray:
    """(N,) display positions clipped to 1..max_positions; 0 where unknown or below 1."""
    if column is None:
        return np.zeros(table.num_rows, dtype=np.int64)
    col = pc.cast(table.column(column), pa.float64())
    values = np.nan_to_num(pc.fill_null(col, 0.0).to_numpy(), nan=0.0)
    return np.where(values >= 1, np.minimum(np.rint(values), max_positions), 0).astype(np.int64)
