"""Columns as numpy arrays, encoded once for every table of an evaluation.

Real, synthetic and holdout share one encoding: a category gets the same integer code in
each table, so contingency tables, coverage and row hashes are plain `np.bincount` / integer
work. How a column is treated follows SDMetrics' sdtypes:

| schema role            | shape      | sdmetrics sdtype | fidelity metrics                 |
|------------------------|------------|------------------|----------------------------------|
| numeric, datetime      | continuous | numerical/datetime | KS complement, correlation,     |
|                        |            |                  | binned contingency               |
| categorical, label     | discrete   | categorical      | TV complement, contingency       |
| user_id, item_id       | id         | id               | none (sdmetrics skips ids)       |
| text                   | other      | (not modelled)   | none                             |
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.encoding.arrow import plain
from synthrec.errors import DataError, SchemaError
from synthrec.schema import Kind, Role, Schema, infer_schema, kind_of, validate_table


class Shape(str, Enum):
    CONTINUOUS = "continuous"
    DISCRETE = "discrete"
    ID = "id"
    OTHER = "other"


SHAPE_OF_ROLE = {
    Role.NUMERIC: Shape.CONTINUOUS,
    Role.DATETIME: Shape.CONTINUOUS,
    Role.CATEGORICAL: Shape.DISCRETE,
    Role.LABEL: Shape.DISCRETE,
    Role.USER_ID: Shape.ID,
    Role.ITEM_ID: Shape.ID,
    Role.TEXT: Shape.OTHER,
}


@dataclass
class Column:
    """One schema column across tables.

    continuous: `values[t]` is float64 with NaN for nulls (datetimes as integer nanoseconds).
    other shapes: `values[t]` is int32 codes into `categories`; code `len(categories)` is null.
    """

    name: str
    role: Role
    shape: Shape
    values: list[np.ndarray]
    categories: list | None = None

    @property
    def null_code(self) -> int:
        assert self.categories is not None, "only coded columns have a null code"
        return len(self.categories)

    @property
    def num_codes(self) -> int:
        """Codes including the null code, i.e. the `minlength` for `np.bincount`."""
        return self.null_code + 1


def check_inputs(
    real: pa.Table, synthetic: pa.Table, holdout: pa.Table | None, schema: Schema | None
) -> Schema:
    """Validate the tables against one schema (inferred from `real` when not given).

    Raises SchemaError naming the table and the columns when a table is empty, lacks or adds
    columns, or stores a column with a type that does not match the real one.
    """
    tables = {"synthetic": synthetic, "holdout": holdout}
    if real.num_rows == 0:
        raise SchemaError("real table is empty (0 rows); evaluate needs real rows to compare with")
    for where, table in tables.items():
        if table is not None and table.num_rows == 0:
            raise SchemaError(
                f"{where} table is empty (0 rows); generate or pass a table with rows"
            )
    if schema is None:
        schema = infer_schema(real)
    for where, table in {"real": real, **tables}.items():
        if table is None:
            continue
        _check_same_columns(table, schema, where)
        validate_table(table.select(schema.names), schema, where=f"{where} table")
        if where != "real":
            _check_same_kinds(real, table, schema, where)
    return schema


def _check_same_columns(table: pa.Table, schema: Schema, where: str) -> None:
    missing = [n for n in schema.names if n not in table.column_names]
    extra = [n for n in table.column_names if n not in schema.names]
    if missing or extra:
        parts = ([f"lacks {', '.join(missing)}"] if missing else []) + (
            [f"adds {', '.join(extra)}"] if extra else []
        )
        raise SchemaError(
            f"{where} table's columns differ from the schema (the real table's columns unless one "
            "is given): "
            f"{'; '.join(parts)}; expected: {', '.join(schema.names)}"
        )


def _check_same_kinds(real: pa.Table, table: pa.Table, schema: Schema, where: str) -> None:
    numeric = {Kind.INT, Kind.FLOAT}
    for spec in schema.columns:
        want, got = kind_of(real.column(spec.name).type), kind_of(table.column(spec.name).type)
        same = (
            want == got
            or (SHAPE_OF_ROLE[spec.role] == Shape.CONTINUOUS and {want, got} <= numeric)
            or (spec.role == Role.LABEL and {want, got} <= {Kind.INT, Kind.BOOL})
        )
        if not same:
            raise SchemaError(
                f"{where} column '{spec.name}' is {table.column(spec.name).type} but the real "
                "column is "
                f"{real.column(spec.name).type}; write both with the same type"
            )


def encode(tables: list[pa.Table], schema: Schema) -> dict[str, Column]:
    """Encode every schema column of `tables` (same columns) into shared numpy arrays."""
    columns = {}
    for spec in schema.columns:
        shape = SHAPE_OF_ROLE[spec.role]
        chunks = [t.column(spec.name) for t in tables]
        if shape == Shape.CONTINUOUS:
            columns[spec.name] = Column(spec.name, spec.role, shape, [to_float(c) for c in chunks])
        else:
            codes, categories = _to_codes(chunks)
            columns[spec.name] = Column(spec.name, spec.role, shape, codes, categories)
    return columns


def to_float(col: pa.ChunkedArray) -> np.ndarray:
    """float64 with NaN for nulls; timestamps and dates become integer nanoseconds."""
    col = plain(col)
    if pa.types.is_date(col.type):
        col = col.cast(pa.timestamp("s"))
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.timestamp("ns")).cast(pa.int64())
    try:
        # unsafe: nanosecond timestamps and huge ints round to the nearest float64, by design
        return np.asarray(col.cast(pa.float64(), safe=False).to_numpy(), dtype=np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise DataError(f"column of type {col.type} cannot be read as numbers ({err})") from None


def _to_codes(cols: list[pa.ChunkedArray]) -> tuple[list[np.ndarray], list]:
    """Integer codes with one dictionary over all tables; nulls get code len(categories)."""
    target = _common_type([c.type for c in cols])
    parts = [c.cast(target) if c.type != target else c for c in cols]
    combined = pa.chunked_array(
        [chunk for c in parts for chunk in c.chunks], type=target
    ).combine_chunks()
    encoded = pc.dictionary_encode(combined)
    categories = encoded.dictionary.to_pylist()
    codes = (
        pc.fill_null(encoded.indices, len(categories))
        .to_numpy(zero_copy_only=False)
        .astype(np.int32)
    )
    bounds = np.cumsum([0] + [len(c) for c in cols])
    return [codes[a:b] for a, b in zip(bounds[:-1], bounds[1:])], categories


def _common_type(types: list[pa.DataType]) -> pa.DataType:
    types = [t.value_type if pa.types.is_dictionary(t) else t for t in types]
    if any(pa.types.is_string(t) or pa.types.is_large_string(t) for t in types):
        return pa.large_string()
    if any(pa.types.is_floating(t) for t in types):
        return pa.float64()
    if all(pa.types.is_boolean(t) for t in types):
        return pa.bool_()
    if all(pa.types.is_integer(t) or pa.types.is_boolean(t) for t in types):
        return pa.int64()
    if all(pa.types.is_timestamp(t) for t in types):
        return pa.timestamp("ns")
    return types[0]
