"""Keys and functional dependencies of a log's columns, all vectorized (Arrow hash group-by,
numpy sorts); the building blocks of synthrec.data.relational.

- `constancy`: for a key (user, item) and columns, on how many repeated keys each column
  holds a single value;
- `entity_table`: one row per key with its attributes (the most frequent value where rows
  disagree) and the count of disagreeing keys and rows;
- `dependency_dag`: A -> B when each A value maps to one B value; the DAG keeps each
  column's minimal parents (transitive reduction; columns in one-to-one correspondence hang
  under the first of them), so item -> brand -> category rather than item -> category;
- `check_side`: a separate users / items table keyed right for its events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.errors import DataError

MIN_REPEATED_KEYS = 5  # fewer keys seen twice are no evidence that a column is per key
NUM_EXAMPLES = 5
ALL = pc.CountOptions(mode="all")  # a null counts as a value


@dataclass(frozen=True)
class Constancy:
    """How far a column is constant per key."""

    share: float  # of keys seen at least twice, those with one value
    repeated_keys: int  # keys seen at least twice
    inconsistent_keys: int  # keys with two or more values

    def is_attribute(self, threshold: float) -> bool:
        return self.repeated_keys >= MIN_REPEATED_KEYS and self.share >= threshold


def constancy(table: pa.Table, key: str, columns: list[str]) -> dict[str, Constancy]:
    """Per column, the share of repeated keys (null keys left out) on which it is constant."""
    if not columns:
        return {}
    rows = table.select([key, *columns]).filter(pc.is_valid(table.column(key)))
    grouped = rows.group_by(key, use_threads=False).aggregate(
        [([], "count_all")] + [(c, "count_distinct", ALL) for c in columns]
    )
    repeated = np.asarray(grouped.column("count_all").to_numpy()) >= 2
    num_repeated = int(repeated.sum())
    out = {}
    for c in columns:
        distinct = np.asarray(grouped.column(f"{c}_count_distinct").to_numpy())
        bad = int(np.count_nonzero(distinct > 1))
        share = 1.0 - bad / num_repeated if num_repeated else 0.0
        out[c] = Constancy(share, num_repeated, bad)
    return out


def entity_table(
    table: pa.Table, key: str, columns: list[str], stats: dict[str, Constancy]
) -> tuple[pa.Table, dict[str, dict[str, int]], int]:
    """(one row per non-null key in first-appearance order: the key then `columns`,
    {column: {"keys", "rows"}} that disagreed with the chosen value, rows with a null key)."""
    codes, valid = _codes(table.column(key))
    anonymous = int((~valid).sum())
    keys_seen, first = np.unique(codes[valid], return_index=True)
    first_rows = np.flatnonzero(valid)[first]
    side = table.select([key, *columns]).take(pa.array(first_rows))
    conflicts = {}
    for name in columns:
        if stats.get(name) is None or stats[name].inconsistent_keys == 0:
            continue
        values, rows_off = _mode_per_key(
            codes[valid], table.column(name).filter(valid), len(keys_seen)
        )
        side = side.set_column(side.column_names.index(name), name, values)
        conflicts[name] = {"keys": stats[name].inconsistent_keys, "rows": rows_off}
    return side.combine_chunks(), conflicts, anonymous


def _codes(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 codes in first-appearance order, valid mask); nulls get code -1."""
    enc = pc.dictionary_encode(col.combine_chunks())
    valid = np.asarray(enc.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    codes = np.asarray(pc.fill_null(enc.indices, -1).to_numpy(), dtype=np.int64)
    return codes, valid


def _mode_per_key(key_codes: np.ndarray, col: pa.ChunkedArray, num_keys: int):
    """(each key's most frequent value (ties: first seen), rows that differ from it)."""
    enc = pc.dictionary_encode(col.combine_chunks(), null_encoding="encode")
    values = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    width = len(enc.dictionary)
    pairs, counts = np.unique(key_codes * width + values, return_counts=True)
    pair_key = pairs // width
    order = np.lexsort((pairs % width, -counts, pair_key))  # per key: most rows, then first
    head = order[np.r_[True, pair_key[order][1:] != pair_key[order][:-1]]]
    assert len(head) == num_keys
    best = enc.dictionary.take(pa.array(pairs[head] % width))
    return best, int(len(key_codes) - counts[head].sum())


def dependency_dag(
    table: pa.Table, root: str | None, candidates: list[str], threshold: float = 1.0
) -> dict[str, list[str]]:
    """{column: its minimal parents} over `table`'s columns. Parents are drawn from
    `candidates` (ids and categories: a float never determines anything); every column of an
    entity table has at least its key (`root`) above it. A -> B holds when B is constant
    within each A value (on `threshold` of the A values)."""
    names = table.column_names
    parents_pool = [c for c in candidates if c in names]
    if root is not None and root not in parents_pool:
        parents_pool.insert(0, root)
    holds = {
        a: _determined(table, a, [b for b in names if b != a], threshold) for a in parents_pool
    }
    for a in parents_pool:
        holds[a].add(a)
    if root is not None:
        holds[root] = set(names)  # the key determines every column of its table
    rep = {}  # column -> representative of its one-to-one class (first in column order)
    for a in parents_pool:
        rep.setdefault(a, a)
        for b in parents_pool:
            if b != a and b not in rep and b in holds[a] and a in holds[b]:
                rep[b] = rep[a]
    dag: dict[str, list[str]] = {}
    heads = [a for a in parents_pool if rep[a] == a]
    for b in names:
        if b in rep and rep[b] != b:
            dag[b] = [rep[b]]
            continue
        above = [a for a in heads if a != b and b in holds[a] and not (b in rep and a in holds[b])]
        minimal = [
            a
            for a in above
            if not any(
                c != a and c in holds[a] and b in holds[c] and a not in holds[c] for c in above
            )
        ]
        if minimal:
            dag[b] = minimal
    return dag


def _determined(table: pa.Table, a: str, others: list[str], threshold: float) -> set[str]:
    """Columns B (of `others`) with one value per value of A, on `threshold` of A's values."""
    if not others:
        return set()
    grouped = table.group_by(a, use_threads=False).aggregate(
        [(b, "count_distinct", ALL) for b in others]
    )
    if grouped.num_rows == table.num_rows:  # A is unique per row: it determines everything
        return set(others)
    out = set()
    for b in others:
        distinct = np.asarray(grouped.column(f"{b}_count_distinct").to_numpy())
        if np.mean(distinct <= 1) >= threshold:
            out.add(b)
    return out


def check_side(events: pa.Table, side: pa.Table, key: str, name: str) -> pa.Table:
    """`side` with its key first, after checking: it has the key, keys are unique and non-null,
    of the events' type, and every event's key is in it."""
    if key not in side.column_names:
        raise DataError(
            f"{name} table has no '{key}' column to join on; "
            f"columns: {', '.join(side.column_names)}"
        )
    col = side.column(key)
    if col.null_count:
        raise DataError(f"{name} table: {col.null_count} rows have a null '{key}'; drop them")
    if col.type != events.column(key).type:
        raise DataError(
            f"{name} table's '{key}' is {col.type} but the events' is {events.column(key).type}; "
            "cast one so the keys compare"
        )
    counts = pc.value_counts(col)
    dup = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
    if len(dup):
        shown = ", ".join(map(repr, dup.slice(0, NUM_EXAMPLES).to_pylist()))
        raise DataError(
            f"{name} table: {len(dup)} '{key}' values appear more than once (e.g. {shown}); "
            f"a {name} table needs one row per key"
        )
    present = pc.is_in(events.column(key), value_set=col)
    missing = pc.invert(pc.fill_null(present, False))
    num_missing = int(pc.sum(missing.cast(pa.int64())).as_py() or 0)
    if num_missing:
        examples = pc.unique(events.column(key).filter(missing)).slice(0, NUM_EXAMPLES)
        shown = ", ".join(map(repr, examples.to_pylist()))
        raise DataError(
            f"{num_missing} events name a '{key}' missing from the {name} table (e.g. {shown}); "
            f"add those keys to the {name} table or drop those events"
        )
    return side.select([key, *[c for c in side.column_names if c != key]])
