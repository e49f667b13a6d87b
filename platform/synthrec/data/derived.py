"""Columns computed from other columns, recomputed instead of generated.

A log often carries columns that are functions of another one: the hour and weekday of the
timestamp (in some time zone), its date, a price band cut from the price, a 0/1 label read off
a behaviour column. A generator that draws them apart breaks them ("hour no longer matches its
own timestamp"); here each is a `Rule` that recomputes the target from its source.

A rule is plain data (`to_dict` / `rule_from_dict`) with `compute(table) -> array` and
`apply(table) -> table`; `check_rule` measures how many rows it reproduces. Rules are found
on data by synthrec.data.derived_search, or declared by the caller.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.errors import DataError, SchemaError

MIN_AGREEMENT = 0.999  # share of rows a rule must reproduce
SECONDS_PER = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
TIME_UNITS = (*SECONDS_PER, "timestamp", "iso")
HOUR_S, DAY_S = 3_600, 86_400
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
class Rule(ABC):
    """`target` = f(`source`); `dtype` is the target's Arrow type (an alias such as 'int64')."""

    source: str
    target: str
    dtype: str
    kind: ClassVar[str] = ""

    @abstractmethod
    def compute(self, table: pa.Table) -> pa.Array:
        """The target's values recomputed from the source column of `table`."""

    def apply(self, table: pa.Table) -> pa.Table:
        """`table` with the target recomputed (replaced in place, or appended)."""
        values = self.compute(table)
        if self.target in table.column_names:
            return table.set_column(table.column_names.index(self.target), self.target, values)
        return table.append_column(self.target, values)

    def agreement(self, table: pa.Table) -> float:
        """Share of rows where the recomputed target equals the stored one (null = null)."""
        return same_count(self.compute(table), table.column(self.target)) / max(table.num_rows, 1)

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


def decoded(table: pa.Table) -> pa.Table:
    """`table` with dictionary columns cast to their values."""
    for i, col in enumerate(table.columns):
        if pa.types.is_dictionary(col.type):
            table = table.set_column(i, table.column_names[i], col.cast(col.type.value_type))
    return table


def same_count(a: pa.Array | pa.ChunkedArray, b: pa.Array | pa.ChunkedArray) -> int:
    """Rows where a == b, counting null == null as equal."""
    if a.type != b.type:
        a = a.cast(b.type)
    eq = pc.equal(a, b)
    both_null = pc.and_(pc.is_null(a), pc.is_null(b))
    return int(pc.sum(pc.if_else(pc.is_null(eq), both_null, eq).cast(pa.int64())).as_py() or 0)
