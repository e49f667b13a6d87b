"""Column roles: inferred from an Arrow table, overridable by YAML, validated with clear errors.

Knows nothing of models. A `Schema` is plain data (JSON/YAML round trip) and travels inside
model directories, so generation and serving never ask the user for it again.
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


@dataclass
class Schema:
    columns: list[ColumnSpec] = field(default_factory=list)

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
        return {
            "columns": {
                c.name: {"role": c.role.value, "kind": c.kind.value, "nullable": c.nullable}
                for c in self.columns
            }
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        try:
            return cls(
                [
                    ColumnSpec(
                        name,
                        Role(spec["role"]),
                        Kind(spec["kind"]),
                        bool(spec.get("nullable", False)),
                    )
                    for name, spec in data["columns"].items()
                ]
            )
        except (KeyError, ValueError, TypeError, AttributeError) as err:
            raise SchemaError(
                f"schema is malformed ({err}); expected columns: {{name: {{role, kind}}}}"
            ) from None


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
    columns = []
    for name in table.column_names:
        col = table.column(name)
        kind = kind_of(col.type)
        if kind is None:
            raise SchemaError(
                f"column '{name}': type {col.type} is not supported; use string, integer, float, "
                "bool or timestamp"
            )
        spec = overrides.get(name)
        role = (
            _parse_role(name, spec["role"] if isinstance(spec, dict) else spec)
            if spec
            else _infer_role(name, col, kind)
        )
        columns.append(ColumnSpec(name, role, kind, col.null_count > 0))
    return Schema(columns)


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


def null_mask(col: pa.ChunkedArray) -> np.ndarray:
    """Boolean numpy mask of nulls (and NaN for floats)."""
    mask = col.is_null(nan_is_null=True) if pa.types.is_floating(col.type) else col.is_null()
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
