"""Finding derived columns on data: the rules of synthrec.data.derived that reproduce a table's
columns.

`detect_rules` proposes hour / weekday / date rules for each time column (searching the UTC
offset and the weekday convention), monotone bands of numeric columns (cut points learned,
rounded to the simplest number in each gap) and binary labels of categorical (behaviour)
columns. It keeps a rule only when it reproduces the target on at least `min_agreement` of
the rows and explains most rows off the target's commonest value, so a near-constant column
is never "derived" from anything. Vectorized: one numpy pass per candidate (source, target)
pair; time rules are searched on a sample of rows and then checked on all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.data.derived import (
    DAY_S,
    HOUR_S,
    MIN_AGREEMENT,
    UNIX_THURSDAY,
    BinRule,
    DateRule,
    HourRule,
    MapRule,
    Rule,
    WeekdayRule,
    decoded,
    epoch_seconds,
    same_count,
    time_unit,
)

MAX_LEVELS = 64  # a band / label / behaviour column has at most this many values
SAMPLE_ROWS = 4_096  # time rules are searched on this many rows, then checked on all
SAMPLE_SLACK = 0.002  # share of sample rows a candidate may miss (noise) before the full check
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
MINUTE_OFFSETS = (0, 30, 45)  # time zones sit at whole hours, or :30 / :45 past
HOUR_OFFSETS = range(-12, 15)  # UTC-12 .. UTC+14


@dataclass
class _Target:
    """A candidate target column: dictionary codes (nulls encoded), level count, commonest."""

    name: str
    col: pa.ChunkedArray
    codes: np.ndarray  # (N,) int64
    levels: pa.Array  # (L,) the distinct values, in first-appearance order
    majority: int  # rows holding the commonest value

    @classmethod
    def of(cls, table: pa.Table, name: str) -> _Target:
        col = table.column(name)
        enc = pc.dictionary_encode(col.combine_chunks(), null_encoding="encode")
        codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        majority = int(np.bincount(codes).max()) if len(codes) else 0
        return cls(name, col, codes, enc.dictionary, majority)

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def is_int(self) -> bool:
        return pa.types.is_integer(self.col.type) and self.col.null_count == 0


def detect_rules(
    table: pa.Table,
    time_columns: list[str],
    skip: set[str],
    min_agreement: float = MIN_AGREEMENT,
    categorical: set[str] = frozenset(),
) -> list[Rule]:
    """Rules that reproduce columns of `table`: hour / weekday / date of each time column, then
    monotone bands of numeric columns, then binary labels of categorical (behaviour) columns.

    `skip` columns are neither sources nor targets (keys, declared rules' targets); numbers in
    `categorical` columns are codes (ids, categories), never binned. A target is claimed by
    its first accepted rule; a target is never a source (no chains)."""
    if table.num_rows == 0:
        return []
    names = [n for n in table.column_names if n not in skip and n not in time_columns]
    original = table
    table = decoded(table)  # Parquet dictionaries: sources read as plain values ...
    counts = {n: pc.count_distinct(table.column(n), mode="all").as_py() for n in names}
    targets = {  # few-valued columns, and dates (which have as many values as days)
        n: _Target.of(table, n)
        for n in names
        if _simple(table.column(n).type)
        and (counts[n] <= MAX_LEVELS or _date_like(table.column(n)))
    }
    claimed: set[str] = set()
    rules: list[Rule] = []

    def open_targets(source: str):  # ... but a dictionary column is never recomputed
        return [
            t
            for t in targets.values()
            if t.name not in claimed and t.name != source and _simple(original[t.name].type)
        ]

    for source in time_columns:
        unit = time_unit(table.column(source))
        if unit is None:
            continue
        secs, valid = epoch_seconds(table.column(source), unit)
        sample = np.arange(0, table.num_rows, max(table.num_rows // SAMPLE_ROWS, 1))
        hour_offsets: list[int] = []
        for t in open_targets(source):
            rule = _time_rule(table, source, unit, secs, valid, t, hour_offsets, sample)
            if rule is not None and _good(_errors(rule, table, t), t, min_agreement):
                rules.append(rule)
                claimed.add(t.name)
                if isinstance(rule, HourRule):
                    hour_offsets.append(rule.offset_s)
    for source in names:
        if source in claimed or source in categorical or not _is_numeric(table.column(source).type):
            continue
        x = np.asarray(table.column(source).to_numpy(), dtype=np.float64)
        if table.column(source).null_count or not np.isfinite(x).all():
            continue
        order = np.argsort(x, kind="stable")  # once per source, shared by its targets
        for t in open_targets(source):
            if 2 <= t.num_levels < counts[source]:
                rule = _bin_rule(table, source, x, order, t, min_agreement)
                if rule is not None:
                    rules.append(rule)
                    claimed.add(t.name)
    for source in names:
        s = targets.get(source)
        numeric = _is_numeric(s.col.type) and source not in categorical if s else True
        if source in claimed or s is None or numeric or s.num_levels < 2:
            continue
        for t in open_targets(source):
            if t.num_levels == 2:
                rule = _map_rule(source, s, t, min_agreement)
                if rule is not None:
                    rules.append(rule)
                    claimed.add(t.name)
    return [r for r in rules if r.source not in claimed]  # no chains: a source is never derived


def _date_like(col: pa.ChunkedArray) -> bool:
    if pa.types.is_date32(col.type):
        return True
    if not pa.types.is_string(col.type):
        return False
    head = col.slice(0, 100).drop_null()
    return len(head) > 0 and bool(pc.all(pc.match_substring_regex(head, DATE_PATTERN)).as_py())


def _good(errors: int, target: _Target, min_agreement: float) -> bool:
    """Few enough errors, and most rows off the commonest value explained (no near-constant)."""
    n = len(target.codes)
    return errors <= (1.0 - min_agreement) * n and errors <= 0.1 * (n - target.majority)


def _time_rule(
    table: pa.Table,
    source: str,
    unit: str,
    secs: np.ndarray,
    valid: np.ndarray,
    t: _Target,
    hour_offsets: list[int],
    sample: np.ndarray,
) -> Rule | None:
    """An hour, weekday or date rule for target `t`, its UTC offset searched on the `sample`
    rows (a candidate that fits them; the caller checks it on every row)."""
    secs, valid, dtype = secs[sample], valid[sample], str(t.col.type)
    allowed = max(3, int(SAMPLE_SLACK * len(sample)))  # errors tolerated on the sample
    offsets = (*hour_offsets, *(h * HOUR_S for h in HOUR_OFFSETS))
    if t.is_int() and t.num_levels >= 2:
        tv = np.asarray(t.col.to_numpy(), dtype=np.int64)[sample]
        lo, hi = int(tv.min()), int(tv.max())
        if lo >= 0 and hi <= 23:
            for minutes in MINUTE_OFFSETS:
                base = np.floor_divide(secs + minutes * 60, HOUR_S) % 24
                offset = _mode((tv - base) % 24, valid, 24) * HOUR_S + minutes * 60
                offset = offset - DAY_S if offset > 14 * HOUR_S else offset
                pred = np.floor_divide(secs + offset, HOUR_S) % 24
                if np.sum((pred != tv) | ~valid) <= allowed:
                    return HourRule(source, t.name, dtype, unit, int(offset))
        if lo >= 0 and hi <= 7:
            for offset in offsets:
                day = (np.floor_divide(secs + offset, DAY_S) + UNIX_THURSDAY) % 7
                for base in (b for b in (0, 1) if lo >= b and hi <= 6 + b):
                    shift = _mode((tv - base - day) % 7, valid, 7)
                    if np.sum(((day + shift) % 7 + base != tv) | ~valid) <= allowed:
                        return WeekdayRule(source, t.name, dtype, unit, int(offset), shift, base)
        return None
    days = _as_days(t.col.take(pa.array(sample)))
    if days is None:
        return None
    days, has_day = days
    for offset in offsets:
        pred = np.floor_divide(secs + offset, DAY_S)
        if np.sum(((pred != days) & valid) | (valid != has_day)) <= allowed:
            return DateRule(source, t.name, dtype, unit, int(offset))
    return None


def _as_days(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray] | None:
    """(days since 1970, valid mask) of a date32 column or of 'YYYY-MM-DD' text; else None."""
    if pa.types.is_date32(col.type):
        days = col.cast(pa.int32())
    elif pa.types.is_string(col.type):
        parsed = pc.strptime(col, format="%Y-%m-%d", unit="s", error_is_null=True)
        if parsed.null_count > col.null_count + (1.0 - MIN_AGREEMENT) * len(col):
            return None
        days = pc.divide(parsed.cast(pa.int64()), DAY_S)
    else:
        return None
    valid = np.asarray(days.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(pc.fill_null(days, 0).to_numpy(), np.int64), valid


def _bin_rule(
    table: pa.Table,
    source: str,
    x: np.ndarray,
    order: np.ndarray,
    t: _Target,
    min_agreement: float,
) -> Rule | None:
    """A monotone binning of `x` (the source, argsorted by `order`) that gives target `t`."""
    if t.num_levels > MAX_LEVELS or t.levels.null_count:
        return None
    codes = t.codes[order]
    runs = 1 + int(np.count_nonzero(codes[1:] != codes[:-1]))
    # A clean binning of L levels has L runs along sorted x; each bad row adds at most two.
    if runs - t.num_levels > 2 * (1.0 - min_agreement) * len(x):
        return None
    xs = x[order]
    median = np.array([np.median(xs[codes == c]) for c in range(t.num_levels)])
    ranked = np.argsort(median, kind="stable")
    edges = []
    for low, high in zip(ranked[:-1], ranked[1:]):
        below, above = xs[codes == low], xs[codes == high]  # both sorted
        cuts = np.unique(above)
        errors = len(below) - np.searchsorted(below, cuts) + np.searchsorted(above, cuts)
        cut = float(cuts[int(np.argmin(errors))])
        under = xs[xs < cut]  # the gap (largest value below the cut, cut] holds the true edge
        edges.append(_roundest(float(under[-1]), cut) if len(under) else cut)
    if any(b <= a for a, b in zip(edges, edges[1:])):
        return None
    labels = t.levels.take(pa.array(ranked)).to_pylist()
    rule = BinRule(source, t.name, str(t.col.type), edges, labels)
    return rule if _good(_errors(rule, table, t), t, min_agreement) else None


def _roundest(low: float, high: float) -> float:
    """The number with the fewest significant digits in (low, high]: 20 in (19.97, 20.04]."""
    top = int(np.floor(np.log10(max(abs(low), abs(high), 1e-12)))) + 1
    for power in range(top, -10, -1):
        step = 10.0**power
        candidate = (np.floor(low / step) + 1) * step
        if candidate <= high:
            return float(round(candidate, 10))
    return high


def _map_rule(source: str, s: _Target, t: _Target, min_agreement: float) -> Rule | None:
    counts = np.bincount(s.codes * t.num_levels + t.codes, minlength=s.num_levels * t.num_levels)
    counts = counts.reshape(s.num_levels, t.num_levels)  # (S, T)
    errors = len(s.codes) - int(counts.max(axis=1).sum())
    if not _good(errors, t, min_agreement):
        return None
    best = t.levels.take(pa.array(counts.argmax(axis=1))).to_pylist()
    pairs = [[key, value] for key, value in zip(s.levels.to_pylist(), best)]
    return MapRule(source, t.name, str(t.col.type), pairs)


def _errors(rule: Rule, table: pa.Table, t: _Target) -> int:
    return len(t.codes) - same_count(rule.compute(table), t.col)


def _mode(values: np.ndarray, valid: np.ndarray, size: int) -> int:
    counts = np.bincount(values[valid], minlength=size)
    return int(np.argmax(counts))


def _simple(dtype: pa.DataType) -> bool:
    return (
        pa.types.is_integer(dtype)
        or pa.types.is_floating(dtype)
        or pa.types.is_boolean(dtype)
        or pa.types.is_string(dtype)
        or pa.types.is_date32(dtype)
    )


def _is_numeric(dtype: pa.DataType) -> bool:
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype)
