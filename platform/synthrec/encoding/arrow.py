"""Arrow column helpers: values as numpy arrays and back, lookups, category counts.

Every codec reads its column through these, so dictionary columns, nulls, string offsets and
datetime ticks are handled in one place. A category vocabulary is stored as plain numeric
arrays (strings as Arrow's utf-8 bytes + int64 offsets), never pickled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.errors import DataError, ModelError
from synthrec.schema import null_mask


def pack_values(values: pa.Array, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Category values as numeric arrays (strings as Arrow's utf-8 bytes + offsets)."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        arr = values.cast(pa.large_string())
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[
            arr.offset : arr.offset + len(arr) + 1
        ]
        data = (
            np.frombuffer(arr.buffers()[2], dtype=np.uint8)
            if arr.buffers()[2]
            else np.zeros(0, np.uint8)
        )
        data = data[offsets[0] : offsets[-1]].copy()
        return {"kind": "string"}, {
            f"{prefix}.offsets": offsets - offsets[0],
            f"{prefix}.data": data,
        }
    if pa.types.is_boolean(values.type):
        return {"kind": "bool"}, {
            f"{prefix}.values": np.asarray(values.to_numpy(zero_copy_only=False), np.uint8)
        }
    if pa.types.is_integer(values.type):
        return {"kind": "int"}, {
            f"{prefix}.values": np.asarray(values.cast(pa.int64()).to_numpy(), np.int64)
        }
    raise ModelError(f"cannot store category values of type {values.type}")


def unpack_values(meta: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str) -> pa.Array:
    """The inverse of `pack_values`."""
    if meta["kind"] == "string":
        offsets, data = arrays[f"{prefix}.offsets"], arrays[f"{prefix}.data"]
        return pa.LargeStringArray.from_buffers(
            len(offsets) - 1,
            pa.py_buffer(offsets.astype(np.int64)),
            pa.py_buffer(data.astype(np.uint8)),
        )
    if meta["kind"] == "bool":
        return pa.array(arrays[f"{prefix}.values"].astype(bool))
    return pa.array(arrays[f"{prefix}.values"].astype(np.int64))


def plain(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dictionary columns decoded, so lookups compare values."""
    return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col


def categories(col: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Distinct non-null values (sorted) and their row counts."""
    counts = pc.value_counts(plain(col).drop_null())
    values, freq = counts.field("values"), counts.field("counts")
    order = pc.sort_indices(values)
    return values.take(order), np.asarray(freq.take(order).to_numpy(), np.int64)


def lookup(
    col: pa.ChunkedArray, values: pa.Array, name: str, unseen_code: int | None = None
) -> np.ndarray:
    """Index of each row's value in `values`, (n,) int64; -1 for null. Unseen values get
    `unseen_code`, or are a DataError when it is None."""
    col_plain = plain(col)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        col_plain = col_plain.cast(pa.large_string())
        values = values.cast(pa.large_string())
    elif pa.types.is_integer(values.type):
        col_plain = col_plain.cast(pa.int64())
    idx = pc.index_in(col_plain, value_set=values)
    nulls = null_mask(col)
    out = np.asarray(
        idx.to_numpy(zero_copy_only=False) if idx.null_count == 0 else idx.fill_null(-1).to_numpy(),
        dtype=np.int64,
    )
    unseen = (out < 0) & ~nulls
    if unseen_code is not None:
        out[unseen] = unseen_code
    elif unseen.any():
        example = col_plain.filter(pa.array(unseen))[0].as_py()
        raise DataError(
            f"column '{name}': {int(unseen.sum())} rows have values the encoder never saw "
            f"(e.g. {example!r}); fit the encoder on a table that contains them"
        )
    out[nulls] = -1
    return out


def to_float(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Values as float64 (datetimes as their integer ticks, nulls as 0) and the null mask."""
    nulls = null_mask(col)
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        col = col.cast(
            pa.int64()
            if pa.types.is_timestamp(col.type) or pa.types.is_date64(col.type)
            else pa.int32()
        )
    col = (
        col.cast(pa.float64())
        if not pa.types.is_boolean(col.type)
        else col.cast(pa.int8()).cast(pa.float64())
    )
    values = (
        np.asarray(col.fill_null(0).to_numpy(), dtype=np.float64)
        if col.null_count
        else np.asarray(col.to_numpy(), dtype=np.float64)
    )
    values = np.where(nulls, 0.0, values)
    return values, nulls


def from_float(x: np.ndarray, nulls: np.ndarray, dtype: pa.DataType) -> pa.Array:
    """An Arrow array of `dtype` from float or integer values (n,) and a null mask (n,)."""
    mask = nulls if nulls.any() else None
    if pa.types.is_timestamp(dtype) or pa.types.is_date64(dtype):
        return pa.array(x.astype(np.int64), pa.int64(), mask=mask).cast(dtype)
    if pa.types.is_date32(dtype):
        return pa.array(x.astype(np.int32), pa.int32(), mask=mask).cast(dtype)
    if pa.types.is_integer(dtype):
        return pa.array(x.astype(np.int64), pa.int64(), mask=mask).cast(dtype)
    return pa.array(x.astype(np.float64), pa.float64(), mask=mask).cast(dtype)
