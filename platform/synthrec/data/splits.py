"""The standard splits of ../shared/datasets/ml-100k/README.md, vectorized.

- `temporal_split`: the first `num_train` rows train, the rest test (ML-100K: 80,000 / 20,000
  of events.parquet, which is sorted by time).
- `leave_last_out`: per user, the latest interaction is test, the one before it validation,
  the rest train. Ties in time are broken by row order (a stable sort): of two rows with the
  same timestamp, the later row counts as later.

Every split keeps the input's row order.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.errors import DataError

ML100K_NUM_TRAIN = 80_000


def temporal_split(table: pa.Table, num_train: int) -> tuple[pa.Table, pa.Table]:
    """(first `num_train` rows, remaining rows). The table must already be in time order."""
    if not 0 < num_train < table.num_rows:
        raise DataError(
            f"temporal split: num_train={num_train} must be between 1 and {table.num_rows - 1} "
            f"for a table of {table.num_rows} rows"
        )
    return table.slice(0, num_train), table.slice(num_train)


def leave_last_out(
    table: pa.Table,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str = "timestamp",
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(train, valid, test): per user, the last interaction in time is test, the one before is
    valid, the rest train. A user with one interaction has only a test row; with two, no train."""
    rank = _rank_from_last(table, user_col, item_col, time_col)
    return (
        table.filter(pa.array(rank >= 2)),
        table.filter(pa.array(rank == 1)),
        table.filter(pa.array(rank == 0)),
    )


def _rank_from_last(table: pa.Table, user_col: str, item_col: str, time_col: str) -> np.ndarray:
    """For each row, how many of its user's interactions come after it (0 = the last)."""
    missing = [c for c in (user_col, item_col, time_col) if c not in table.column_names]
    if missing:
        raise DataError(
            f"leave-last-out split: column(s) {', '.join(missing)} missing; "
            f"table columns: {', '.join(table.column_names)}"
        )
    if table.num_rows == 0:
        raise DataError("leave-last-out split: the table is empty (0 rows)")
    for name in (user_col, time_col):
        if table.column(name).null_count:
            raise DataError(
                f"leave-last-out split: column '{name}' has {table.column(name).null_count} nulls"
            )
    users = pc.dictionary_encode(table.column(user_col).combine_chunks()).indices.to_numpy()
    times = _as_numpy(table.column(time_col))
    n = table.num_rows
    # lexsort sorts by the last key first and is stable: user, then time, then row order.
    order = np.lexsort((np.arange(n), times, users))
    sorted_users = users[order]
    # Index (in sorted order) of the last row of each row's user group.
    group_last = np.flatnonzero(np.r_[sorted_users[1:] != sorted_users[:-1], True])
    group_of = np.repeat(np.arange(len(group_last)), np.diff(np.r_[-1, group_last]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = group_last[group_of] - np.arange(n)
    return rank


def _as_numpy(col: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        return (
            col.to_numpy().view(np.int64)
            if pa.types.is_timestamp(col.type)
            else col.to_numpy().astype(np.int64)
        )
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise DataError(
            f"leave-last-out split: time column has type {col.type}; needs numbers or timestamps"
        )
    return col.to_numpy()
