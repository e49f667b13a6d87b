"""Keys and functional dependencies of a log's columns, all vectorized (dictionary codes and
O(N) numpy passes); the building blocks of synthrec.data.relational.

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


@dataclass(frozen=True)
class Constancy:
    """How far a column is constant per key."""

    share: float  # of keys seen at least twice, those with one value
    repeated_keys: int  # keys seen at least twice
    inconsistent_keys: int  # keys with two or more values

    def is_attribute(self, threshold: float) -> bool:
        return self.repeated_keys >= MIN_REPEATED_KEYS and self.share >= threshold


class Codes:
    """Dictionary codes of a table's columns, each computed once: (N,) int64 in order of first
    appearance, a null being a value of its own."""

    def __init__(self, table: pa.Table):
        self.table = table
        self._codes: dict[str, tuple[np.ndarray, pa.Array]] = {}

    def __getitem__(self, name: str) -> tuple[np.ndarray, pa.Array]:
        """(codes, distinct values)."""
        if name not in self._codes:
            col = self.table.column(name).combine_chunks()
            if pa.types.is_dictionary(col.type):  # its dictionary may repeat or skip values
                col = col.cast(col.type.value_type)
            enc = pc.dictionary_encode(col, null_encoding="encode")
            codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
            self._codes[name] = (codes, enc.dictionary)
        return self._codes[name]


def inconsistent(key: np.ndarray, num_keys: int, value: np.ndarray) -> np.ndarray:
    """(K,) bool: keys holding two or more values. O(N): each row is compared with its key's
    first value (a reversed fancy assignment keeps the first write)."""
    first = np.zeros(num_keys, dtype=np.int64)
    first[key[::-1]] = value[::-1]
    bad = np.zeros(num_keys, dtype=bool)
    bad[key[value != first[key]]] = True
    return bad


def constancy(codes: Codes, key: str, columns: list[str]) -> dict[str, Constancy]:
    """Per column, the share of repeated keys (null keys left out) on which it is constant."""
    kc, levels = codes[key]
    valid = np.asarray(levels.is_valid().to_numpy(zero_copy_only=False), dtype=bool)[kc]
    kc = kc[valid]
    num_repeated = int(np.count_nonzero(np.bincount(kc, minlength=len(levels)) >= 2))
    out = {}
    for c in columns:
        bad = int(inconsistent(kc, len(levels), codes[c][0][valid]).sum())
        share = 1.0 - bad / num_repeated if num_repeated else 0.0
        out[c] = Constancy(share, num_repeated, bad)
    return out


def entity_table(
    codes: Codes, key: str, columns: list[str], stats: dict[str, Constancy]
) -> tuple[pa.Table, dict[str, dict[str, int]], int]:
    """(one row per non-null key in first-appearance order: the key then `columns`,
    {column: {"keys", "rows"}} that disagreed with the chosen value, rows with a null key)."""
    table = codes.table
    kc, levels = codes[key]
    valid = np.asarray(levels.is_valid().to_numpy(zero_copy_only=False), dtype=bool)[kc]
    anonymous = int((~valid).sum())
    _, first = np.unique(kc[valid], return_index=True)  # codes follow first appearance
    side = table.select([key, *columns]).take(pa.array(np.flatnonzero(valid)[first]))
    conflicts = {}
    for name in columns:
        if stats.get(name) is None or stats[name].inconsistent_keys == 0:
            continue
        values, rows_off = _mode_per_key(kc[valid], codes[name], valid)
        side = side.set_column(side.column_names.index(name), name, values)
        conflicts[name] = {"keys": stats[name].inconsistent_keys, "rows": rows_off}
    return side.combine_chunks(), conflicts, anonymous


def _mode_per_key(key_codes: np.ndarray, column: tuple[np.ndarray, pa.Array], valid):
    """(each key's most frequent value (ties: first seen), rows that differ from it)."""
    values, dictionary = column[0][valid], column[1]
    width = len(dictionary)
    pairs, counts = np.unique(key_codes * width + values, return_counts=True)
    pair_key = pairs // width
    order = np.lexsort((pairs % width, -counts, pair_key))  # per key: most rows, then first
    head = order[np.r_[True, pair_key[order][1:] != pair_key[order][:-1]]]
    best = dictionary.take(pa.array(pairs[head] % width))
    return best, int(len(key_codes) - counts[head].sum())


def dependency_dag(
    table: pa.Table,
    root: str | None,
    candidates: list[str],
    threshold: float = 1.0,
    codes: Codes | None = None,
) -> dict[str, list[str]]:
    """{column: its minimal parents} over `table`'s columns. Parents are drawn from
    `candidates` (ids and categories: a float never determines anything); every column of an
    entity table has at least its key (`root`) above it. A -> B holds when B is constant
    within each A value (on `threshold` of the A values) and at least MIN_REPEATED_KEYS
    values of A occur twice (a column unique per row says nothing). `codes` may hold the columns'
    codes already (those of a table with the same columns)."""
    names, codes = table.column_names, codes or Codes(table)
    parents_pool = [c for c in candidates if c in names]
    if root is not None and root not in parents_pool:
        parents_pool.insert(0, root)
    holds = {
        a: _determined(codes, a, [b for b in names if b != a], threshold) for a in parents_pool
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


def _determined(codes: Codes, a: str, others: list[str], threshold: float) -> set[str]:
    """Columns B (of `others`) with one value per value of A, on `threshold` of A's values."""
    ka, levels = codes[a]
    if np.count_nonzero(np.bincount(ka, minlength=len(levels)) >= 2) < MIN_REPEATED_KEYS:
        return set()  # A (nearly) unique per row: true of every B, evidence of none
    return {
        b
        for b in others
        # a function of A has no more values than A: a cheap test that skips most pairs
        if (threshold < 1.0 or len(codes[b][1]) <= len(levels))
        and 1.0 - inconsistent(ka, len(levels), codes[b][0]).mean() >= threshold
    }


def check_side(events: pa.Table, side: pa.Table, key: str, name: str) -> pa.Table:
    """`side` with its key first, after checking: it has the key, keys are unique and non-null,
    of the events' type, and every event's non-null key is in it."""
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
    present = pc.is_in(events.column(key), value_set=col)  # a null key is anonymous, not missing
    missing = pc.and_(pc.is_valid(events.column(key)), pc.invert(present))
    num_missing = int(pc.sum(missing.cast(pa.int64())).as_py() or 0)
    if num_missing:
        examples = pc.unique(events.column(key).filter(missing)).slice(0, NUM_EXAMPLES)
        shown = ", ".join(map(repr, examples.to_pylist()))
        raise DataError(
            f"{num_missing} events name a '{key}' missing from the {name} table (e.g. {shown}); "
            f"add those keys to the {name} table or drop those events"
        )
    return side.select([key, *[c for c in side.column_names if c != key]])
