"""Column roles: inferred from an Arrow table, overridable by YAML, validated with clear errors.

Knows nothing of models. A `Schema` is plain data (JSON/YAML round trip) and travels inside
every dataset manifest and model directory, so later stages never infer roles again.

Besides the roles of the columns a stage reads, a schema may name columns to drop (`ignore`)
and a behaviour column (`pv / cart / buy`) that `apply_schema` turns into ordered 0/1 label
columns at read time. Both are applied once, where a log is read; what a stage writes holds
the label columns and none of the dropped ones, and its schema says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.errors import SchemaError


class Role(str, Enum):
    USER_ID = "user_id"
    ITEM_ID = "item_id"
    CATEGORICAL = "categorical"
    NUMERIC = "numeric"
    DATETIME = "datetime"
    LABEL = "label"
    TEXT = "text"
    IGNORE = "ignore"  # dropped where the log is read; never a column of a Schema


class Kind(str, Enum):
    """Physical type of a column, as written back to Parquet."""

    INT = "int"
    FLOAT = "float"
    STRING = "string"
    BOOL = "bool"
    DATETIME = "datetime"


ID_ROLES = (Role.USER_ID, Role.ITEM_ID)
USER_ID_NAMES = ("user_id", "userid", "user", "customer_id", "visitor_id")
ITEM_ID_NAMES = ("item_id", "itemid", "item", "product_id", "sku", "movie_id")
TIME_NAMES = ("timestamp", "time", "ts", "event_time", "datetime")
TEXT_MIN_MEAN_WORDS = 3.0  # a string column averaging this many words is text, not a category


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    role: Role
    kind: Kind
    nullable: bool = False


@dataclass(frozen=True)
class Behaviour:
    """A column of event types (`pv`, `cart`, `buy`) mapped to 0/1 label columns.

    `labels` is ordered weakest first ({"click": ["pv"], "cart": ["cart"], "purchase":
    ["buy"]}); with `cumulative` a row whose value names a later label also sets every
    earlier one (a purchase is a cart and a click), so each label column is a threshold.
    `no_label` values (impressions) set none; any other value is an error.
    """

    column: str
    labels: dict[str, tuple[str, ...]]
    cumulative: bool = True
    no_label: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return list(self.labels)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "column": self.column,
            "labels": {k: list(v) for k, v in self.labels.items()},
            "cumulative": self.cumulative,
        }
        return {**out, "no_label": list(self.no_label)} if self.no_label else out

    @classmethod
    def from_dict(cls, data: Any, where: str = "schema") -> Behaviour:
        """Checked: a column name, a non-empty ordered mapping label -> value(s), each value
        under one label."""
        fix = (
            "expected behaviour: {column: NAME, labels: {click: [pv], cart: [cart], "
            "purchase: [buy]}, cumulative: true, no_label: [impression]}"
        )
        if not isinstance(data, dict) or not isinstance(data.get("column"), str):
            raise SchemaError(f"{where}: behaviour needs a 'column'; {fix}")
        unknown = sorted(set(data) - {"column", "labels", "cumulative", "no_label"})
        if unknown:
            raise SchemaError(f"{where}: behaviour has unknown key(s) {', '.join(unknown)}; {fix}")
        labels = data.get("labels")
        if not isinstance(labels, dict) or not labels:
            raise SchemaError(f"{where}: behaviour needs a non-empty 'labels' mapping; {fix}")
        parsed: dict[str, tuple[str, ...]] = {}
        none = data.get("no_label", [])
        none = none if isinstance(none, list) else [none]
        owner: dict[str, str] = {str(v): "no_label" for v in none}
        for label, values in labels.items():
            values = values if isinstance(values, list) else [values]
            if not values or any(v is None or isinstance(v, (dict, list)) for v in values):
                raise SchemaError(
                    f"{where}: behaviour label '{label}' needs one or more values of "
                    f"'{data['column']}'; {fix}"
                )
            for v in map(str, values):
                if v in owner:
                    raise SchemaError(
                        f"{where}: behaviour value {v!r} is under both '{owner[v]}' and "
                        f"'{label}'; list each value under one label"
                    )
                owner[v] = str(label)
            parsed[str(label)] = tuple(map(str, values))
        cumulative = data.get("cumulative", True)
        if not isinstance(cumulative, bool):
            raise SchemaError(f"{where}: behaviour.cumulative must be true or false")
        return cls(data["column"], parsed, cumulative, tuple(map(str, none)))


@dataclass
class Schema:
    columns: list[ColumnSpec] = field(default_factory=list)
    behaviour: Behaviour | None = None  # its label columns are among `columns`
    ignore: tuple[str, ...] = ()  # columns dropped where the log is read

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def __getitem__(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise SchemaError(f"column '{name}' is not in the schema; columns: {', '.join(self.names)}")

    def by_role(self, role: Role) -> list[ColumnSpec]:
        return [c for c in self.columns if c.role == role]

    def column_of(self, role: Role) -> str | None:
        """Name of the single column with `role` (user_id / item_id), or None."""
        cols = self.by_role(role)
        return cols[0].name if cols else None

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML form; `behaviour` and `ignore` only when set (older readers see the same
        dict as before)."""
        out: dict[str, Any] = {
            "columns": {
                c.name: {"role": c.role.value, "kind": c.kind.value, "nullable": c.nullable}
                for c in self.columns
            }
        }
        if self.behaviour is not None:
            out["behaviour"] = self.behaviour.to_dict()
        if self.ignore:
            out["ignore"] = list(self.ignore)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        try:
            columns = [
                ColumnSpec(
                    name,
                    Role(spec["role"]),
                    Kind(spec["kind"]),
                    bool(spec.get("nullable", False)),
                )
                for name, spec in data["columns"].items()
            ]
            ignore = tuple(str(n) for n in data.get("ignore", ()))
        except (KeyError, ValueError, TypeError, AttributeError) as err:
            raise SchemaError(
                f"schema is malformed ({err}); expected columns: {{name: {{role, kind}}}}"
            ) from None
        if any(c.role == Role.IGNORE for c in columns):
            raise SchemaError("schema is malformed: role ignore belongs in its 'ignore' list")
        behaviour = data.get("behaviour")
        return cls(columns, Behaviour.from_dict(behaviour) if behaviour else None, ignore)


def time_column(schema: Schema) -> str | None:
    """The column that orders events: the first datetime column, else the first numeric or
    datetime column named one of TIME_NAMES (epoch numbers); None when there is neither."""
    dated = schema.by_role(Role.DATETIME)
    if dated:
        return dated[0].name
    return next(
        (c.name for c in schema.columns if c.name.lower() in TIME_NAMES and c.kind != Kind.STRING),
        None,
    )


def kind_of(dtype: pa.DataType) -> Kind | None:
    """Physical kind of an Arrow type, or None when synthrec cannot handle it."""
    if pa.types.is_boolean(dtype):
        return Kind.BOOL
    if pa.types.is_integer(dtype):
        return Kind.INT
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return Kind.FLOAT
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return Kind.STRING
    if pa.types.is_dictionary(dtype):
        return kind_of(dtype.value_type)
    if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype):
        return Kind.DATETIME
    return None


ROLE_KINDS: dict[Role, tuple[Kind, ...]] = {
    Role.USER_ID: (Kind.STRING, Kind.INT),
    Role.ITEM_ID: (Kind.STRING, Kind.INT),
    Role.CATEGORICAL: (Kind.STRING, Kind.INT, Kind.BOOL),
    Role.NUMERIC: (Kind.INT, Kind.FLOAT),
    Role.DATETIME: (Kind.DATETIME, Kind.INT),
    Role.LABEL: (Kind.INT, Kind.BOOL, Kind.STRING),
    Role.TEXT: (Kind.STRING,),
    Role.IGNORE: tuple(Kind),
}


def infer_schema(table: pa.Table, overrides: dict[str, Any] | None = None) -> Schema:
    """Infer each column's role from its name, type and values; `overrides` maps name -> role
    (or {role: ...}) and wins over inference."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(table.column_names))
    if unknown:
        raise SchemaError(
            f"schema names column(s) {', '.join(unknown)} that the table lacks; "
            f"table columns: {', '.join(table.column_names)}"
        )
    columns, ignore = [], []
    for name in table.column_names:
        spec = overrides.get(name)
        if spec and _parse_role(name, spec["role"] if isinstance(spec, dict) else spec) == (
            Role.IGNORE
        ):
            ignore.append(name)
            continue
        col = table.column(name)
        kind = kind_of(col.type)
        if kind is None:
            raise SchemaError(
                f"column '{name}': type {col.type} is not supported; use string, integer, float, "
                "bool or timestamp"
            )
        role = (
            _parse_role(name, spec["role"] if isinstance(spec, dict) else spec)
            if spec
            else _infer_role(name, col, kind)
        )
        columns.append(ColumnSpec(name, role, kind, col.null_count > 0))
    return Schema(columns, ignore=tuple(ignore))


def _parse_role(name: str, value: Any) -> Role:
    try:
        return Role(value)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise SchemaError(
            f"column '{name}': role {value!r} is unknown; allowed roles: {allowed}"
        ) from None


def _infer_role(name: str, col: pa.ChunkedArray, kind: Kind) -> Role:
    lname = name.lower()
    if lname in USER_ID_NAMES:
        return Role.USER_ID
    if lname in ITEM_ID_NAMES:
        return Role.ITEM_ID
    if kind == Kind.DATETIME:
        return Role.DATETIME
    if kind == Kind.BOOL:
        return Role.LABEL
    if kind == Kind.INT and _is_binary(col):
        return Role.LABEL
    if kind in (Kind.INT, Kind.FLOAT):
        return Role.NUMERIC
    sample = col.slice(0, 10_000).drop_null()
    if pa.types.is_dictionary(sample.type):  # string kernels need plain strings
        sample = pc.cast(sample, sample.type.value_type)
    if (
        len(sample)
        and pc.mean(pc.list_value_length(pc.utf8_split_whitespace(sample))).as_py()
        >= TEXT_MIN_MEAN_WORDS
    ):
        return Role.TEXT
    return Role.CATEGORICAL


def _is_binary(col: pa.ChunkedArray) -> bool:
    values = pc.unique(col.drop_null())
    return 0 < len(values) <= 2 and set(values.to_pylist()) <= {0, 1}


def validate_table(table: pa.Table, schema: Schema, where: str = "table") -> None:
    """Raise `SchemaError` naming the first class of problem found, with all columns affected."""
    if table.num_rows == 0:
        raise SchemaError(f"{where} is empty (0 rows); provide at least one row")
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise SchemaError(f"{where} lacks column(s) {', '.join(missing)} that the schema requires")
    extra = [n for n in table.column_names if n not in schema.names]
    if extra:
        raise SchemaError(
            f"{where} has unexpected column(s) {', '.join(extra)}; add them to the schema or "
            "drop them"
        )
    for spec in schema.columns:
        _validate_column(table.column(spec.name), spec, where)


def _validate_column(col: pa.ChunkedArray, spec: ColumnSpec, where: str) -> None:
    name = f"{where} column '{spec.name}'"
    kind = kind_of(col.type)
    if kind not in ROLE_KINDS[spec.role]:
        allowed = ", ".join(k.value for k in ROLE_KINDS[spec.role])
        raise SchemaError(
            f"{name}: type {col.type} does not fit role {spec.role.value}; allowed kinds: {allowed}"
        )
    if col.null_count == len(col):
        raise SchemaError(f"{name}: all {len(col)} values are null; drop the column or fill it")
    if spec.role in ID_ROLES and col.null_count:
        raise SchemaError(f"{name}: {col.null_count} null ids; every row needs a {spec.role.value}")
    if spec.role == Role.LABEL:
        values = pc.unique(col.drop_null()).to_pylist()
        if len(values) > 2 or (kind != Kind.STRING and not set(values) <= {0, 1}):
            shown = ", ".join(map(repr, sorted(values, key=str)[:6]))
            raise SchemaError(f"{name}: a label must be binary (0/1); found values {shown}")


def apply_schema(table: pa.Table, schema: Schema, where: str = "table") -> pa.Table:
    """The table a stage reads: `schema.ignore` columns dropped, the behaviour column (when the
    table still has it) replaced in place by its label columns. Idempotent: a table already
    applied (label columns, no behaviour column) comes back unchanged."""
    table = table.drop_columns([n for n in schema.ignore if n in table.column_names])
    b = schema.behaviour
    if b is None or b.column not in table.column_names:
        if b is not None:
            missing = [n for n in b.names if n not in table.column_names]
            if missing:
                raise SchemaError(
                    f"{where} has neither the behaviour column '{b.column}' nor its label "
                    f"column(s) {', '.join(missing)}; columns: {', '.join(table.column_names)}; "
                    "fix behaviour.column in the schema"
                )
        return table
    clash = [n for n in b.names if n in table.column_names]
    if clash:
        raise SchemaError(
            f"{where}: behaviour label(s) {', '.join(clash)} would replace existing column(s) "
            f"of that name; rename the labels in the schema's behaviour section"
        )
    labels = behaviour_labels(table.column(b.column), b, where)
    at = table.column_names.index(b.column)
    table = table.remove_column(at)
    for offset, (name, values) in enumerate(labels.items()):
        table = table.add_column(at + offset, name, values)
    return table


def behaviour_labels(col: pa.ChunkedArray, b: Behaviour, where: str) -> dict[str, pa.Array]:
    """{label: int64 0/1 array}; a value outside `b.labels` (or a null) is a SchemaError."""
    text = pc.cast(col, pa.string()) if kind_of(col.type) != Kind.STRING else col
    if pa.types.is_dictionary(text.type):
        text = pc.cast(text, text.type.value_type)
    if text.null_count:
        raise SchemaError(
            f"{where} column '{b.column}': {text.null_count} null behaviour values; fill them "
            "or drop those rows"
        )
    known = pa.array([v for vs in b.labels.values() for v in vs] + list(b.no_label), pa.string())
    unknown = pc.unique(text.filter(pc.invert(pc.is_in(text, value_set=known)))).to_pylist()
    if unknown:
        shown = ", ".join(map(repr, sorted(unknown)[:8]))
        raise SchemaError(
            f"{where} column '{b.column}': value(s) {shown} are under no behaviour label; "
            f"add them to a label in the schema's behaviour.labels ({', '.join(b.names)}) "
            "or to behaviour.no_label"
        )
    out = {}
    names = b.names
    for i, name in enumerate(names):
        # cumulative: a label is set by its own values and those of every later (stronger) label
        owners = names[i:] if b.cumulative else [name]
        values = pa.array([v for o in owners for v in b.labels[o]], pa.string())
        out[name] = pc.cast(pc.is_in(text, value_set=values), pa.int64()).combine_chunks()
    return out


def null_mask(col: pa.ChunkedArray) -> np.ndarray:
    """Boolean numpy mask of nulls (and NaN for floats)."""
    mask = col.is_null(nan_is_null=True) if pa.types.is_floating(col.type) else col.is_null()
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
