"""Columns computed from other columns, found on the data and recomputed instead of generated.

A log often carries columns that are functions of another one: the hour and weekday of the
timestamp (in some time zone), its date, a price band cut from the price, a 0/1 label read off
a behaviour column. A generator that draws them apart breaks them ("hour no longer matches its
own timestamp"); here each becomes a `Rule` that recomputes the target from its source.

A rule is plain data (`to_dict` / `rule_from_dict`) with `compute(table) -> array` and
`apply(table) -> table`. `detect_rules` proposes rules and keeps one only when it reproduces
the target on at least `min_agreement` of the rows (and explains most rows that differ from the
target's commonest value, so a near-constant column is never "derived" from anything).
Everything is vectorized over columns: one numpy pass per candidate (source, target) pair.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.errors import DataError, SchemaError

MIN_AGREEMENT = 0.999  # share of rows a rule must reproduce
MAX_LEVELS = 64  # a band / label / behaviour column has at most this many values
SAMPLE_ROWS = 4_096  # time rules are searched on this many rows, then checked on all
SAMPLE_SLACK = 0.002  # share of sample rows a candidate may miss (noise), before the full check
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
SECONDS_PER = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
TIME_UNITS = (*SECONDS_PER, "timestamp", "iso")
HOUR_S, DAY_S = 3_600, 86_400
MINUTE_OFFSETS = (0, 30, 45)  # time zones sit at whole hours, or :30 / :45 past
HOUR_OFFSETS = range(-12, 15)  # UTC-12 .. UTC+14
UNIX_THURSDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


# ---------------------------------------------------------------------------- time sources


def time_unit(col: pa.ChunkedArray) -> str | None:
    """How `col` holds time: 'timestamp' (Arrow type), 'iso' (text), or the unit of epoch
    numbers ('s', 'ms', 'us', 'ns', told apart by magnitude); None if it holds no time."""
    if pa.types.is_timestamp(col.type):
        return "timestamp"
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        sample = col.slice(0, 1_000).drop_null()
        try:
            _parse_iso(sample)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        return "iso" if len(sample) else None
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        return None
    values = np.abs(_numbers(col.drop_null()))
    if not len(values):
        return None
    magnitude = float(np.median(values))
    for unit, limit in (("s", 1e11), ("ms", 1e14), ("us", 1e17)):
        if magnitude < limit:
            return unit if magnitude >= 1e8 else None  # before 1973: not an epoch time
    return "ns"


def epoch_seconds(col: pa.ChunkedArray, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """(seconds since 1970 UTC as int64, valid mask), floored; nulls give 0 and False."""
    valid = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if unit == "iso":
        col = _parse_iso(col)
        unit = "timestamp"
    if unit == "timestamp":
        scale = SECONDS_PER[col.type.unit]
        raw = _numbers(pc.fill_null(col.cast(pa.int64()), 0)).astype(np.int64)
        return np.floor_divide(raw, scale), valid
    if unit not in SECONDS_PER:
        raise SchemaError(f"time unit {unit!r} is unknown; allowed: {', '.join(TIME_UNITS)}")
    raw = _numbers(pc.fill_null(col, 0))
    return np.floor_divide(raw, SECONDS_PER[unit]).astype(np.int64), valid


def _parse_iso(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    try:
        return pc.cast(col, pa.timestamp("ns"))
    except pa.ArrowInvalid:  # text with a zone ('Z', '+02:00'): read as UTC instants
        return pc.cast(col, pa.timestamp("ns", tz="UTC"))


def _numbers(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(
        col.to_numpy(zero_copy_only=False) if isinstance(col, pa.Array) else col.to_numpy()
    )


# ---------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """`target` = f(`source`); `dtype` is the target's Arrow type (an alias such as 'int64')."""

    source: str
    target: str
    dtype: str
    kind: ClassVar[str] = ""

    def compute(self, table: pa.Table) -> pa.Array:
        raise NotImplementedError

    def apply(self, table: pa.Table) -> pa.Table:
        """`table` with the target recomputed (replaced in place, or appended)."""
        values = self.compute(table)
        if self.target in table.column_names:
            return table.set_column(table.column_names.index(self.target), self.target, values)
        return table.append_column(self.target, values)

    def agreement(self, table: pa.Table) -> float:
        """Share of rows where the recomputed target equals the stored one (null = null)."""
        return _same(self.compute(table), table.column(self.target)) / max(table.num_rows, 1)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.kind, **asdict(self)}

    def _typed(self, values: np.ndarray, valid: np.ndarray) -> pa.Array:
        return pa.array(values, mask=~valid).cast(pa.type_for_alias(self.dtype))

    def _seconds(self, table: pa.Table, unit: str, offset_s: int) -> tuple[np.ndarray, np.ndarray]:
        secs, valid = epoch_seconds(_column(table, self.source), unit)
        return secs + offset_s, valid


@dataclass(frozen=True)
class HourRule(Rule):
    """Hour of day (0-23) of the source time at UTC + `offset_s`."""

    unit: str = "s"
    offset_s: int = 0
    kind: ClassVar[str] = "hour"

    def compute(self, table: pa.Table) -> pa.Array:
        secs, valid = self._seconds(table, self.unit, self.offset_s)
        return self._typed(np.floor_divide(secs, HOUR_S) % 24, valid)


@dataclass(frozen=True)
class WeekdayRule(Rule):
    """Day of week of the source time at UTC + `offset_s`: (Monday-based day + shift) % 7 +
    base; Monday = 0 is shift 0 base 0, ISO (Monday = 1) base 1, Sunday = 0 shift 1."""

    unit: str = "s"
    offset_s: int = 0
    shift: int = 0
    base: int = 0
    kind: ClassVar[str] = "weekday"

    def compute(self, table: pa.Table) -> pa.Array:
        secs, valid = self._seconds(table, self.unit, self.offset_s)
        days = np.floor_divide(secs, DAY_S)
        return self._typed((days + UNIX_THURSDAY + self.shift) % 7 + self.base, valid)


@dataclass(frozen=True)
class DateRule(Rule):
    """Calendar date of the source time at UTC + `offset_s` (a date32 or 'YYYY-MM-DD' text)."""

    unit: str = "s"
    offset_s: int = 0
    kind: ClassVar[str] = "date"

    def compute(self, table: pa.Table) -> pa.Array:
        secs, valid = self._seconds(table, self.unit, self.offset_s)
        dates = pa.array(np.floor_divide(secs, DAY_S).astype(np.int32), pa.int32(), mask=~valid)
        dates = dates.cast(pa.date32())
        dtype = pa.type_for_alias(self.dtype)
        if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
            return pc.strftime(dates.cast(pa.timestamp("s")), format="%Y-%m-%d").cast(dtype)
        return dates.cast(dtype)


@dataclass(frozen=True)
class BinRule(Rule):
    """A monotone binning: value x gets labels[i], i = number of edges <= x (edges sorted)."""

    edges: list[float] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)
    kind: ClassVar[str] = "bins"

    def compute(self, table: pa.Table) -> pa.Array:
        col = _column(table, self.source)
        valid = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        x = _numbers(pc.fill_null(col.cast(pa.float64()), 0.0))
        index = np.searchsorted(np.asarray(self.edges, np.float64), x, side="right")
        labels = pa.array(self.labels).cast(pa.type_for_alias(self.dtype))
        return labels.take(pa.array(index, mask=~valid))


@dataclass(frozen=True)
class MapRule(Rule):
    """A label read off a categorical source: `pairs` lists (source value, target value);
    a source value not listed gives null."""

    pairs: list[list[Any]] = field(default_factory=list)
    kind: ClassVar[str] = "map"

    def compute(self, table: pa.Table) -> pa.Array:
        col = _column(table, self.source)
        keys = pa.array([p[0] for p in self.pairs]).cast(col.type)
        values = pa.array([p[1] for p in self.pairs]).cast(pa.type_for_alias(self.dtype))
        return values.take(pc.index_in(col, value_set=keys)).combine_chunks()


RULES: dict[str, type[Rule]] = {
    r.kind: r for r in (HourRule, WeekdayRule, DateRule, BinRule, MapRule)
}


def rule_from_dict(data: dict[str, Any]) -> Rule:
    """The rule that `Rule.to_dict` wrote; SchemaError naming the problem otherwise."""
    if not isinstance(data, dict) or data.get("rule") not in RULES:
        got = data.get("rule") if isinstance(data, dict) else data
        raise SchemaError(
            f"derived rule {got!r} is unknown; a rule is a mapping with 'rule' one of "
            f"{', '.join(RULES)} plus source, target and dtype"
        )
    fields = {k: v for k, v in data.items() if k != "rule"}
    try:
        rule = RULES[data["rule"]](**fields)
        pa.type_for_alias(rule.dtype)
    except (TypeError, ValueError) as err:
        raise SchemaError(f"derived rule {data}: {err}; see synthrec.data.derived") from None
    return rule


def check_rule(rule: Rule, table: pa.Table, min_agreement: float = MIN_AGREEMENT) -> float:
    """The rule's agreement on `table`; DataError when it reproduces too few rows."""
    for name in (rule.source, rule.target):
        _column(table, name)
    share = rule.agreement(table)
    if share < min_agreement:
        raise DataError(
            f"derived column '{rule.target}': the {rule.kind} rule from '{rule.source}' "
            f"reproduces {share:.2%} of rows, below {min_agreement:.2%}; fix the rule or drop it"
        )
    return share


def _column(table: pa.Table, name: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise SchemaError(
            f"derived rule names column '{name}' that the table lacks; "
            f"columns: {', '.join(table.column_names)}"
        )
    col = table.column(name)
    return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col


def _decoded(table: pa.Table) -> pa.Table:
    """`table` with dictionary columns cast to their values."""
    for i, col in enumerate(table.columns):
        if pa.types.is_dictionary(col.type):
            table = table.set_column(i, table.column_names[i], col.cast(col.type.value_type))
    return table


def _same(a: pa.Array | pa.ChunkedArray, b: pa.Array | pa.ChunkedArray) -> int:
    """Rows where a == b, counting null == null as equal."""
    if a.type != b.type:
        a = a.cast(b.type)
    eq = pc.equal(a, b)
    both_null = pc.and_(pc.is_null(a), pc.is_null(b))
    return int(pc.sum(pc.if_else(pc.is_null(eq), both_null, eq).cast(pa.int64())).as_py() or 0)


# ---------------------------------------------------------------------------- detection


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
    table = _decoded(table)  # Parquet dictionaries: sources read as plain values ...
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
    return len(t.codes) - _same(rule.compute(table), t.col)


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
