"""RecBole atomic files (`.inter`, `.user`, `.item`): a file format, read like CSV and Parquet.

An atomic file is tab-separated with a typed header, `name:type` per column (token, float,
token_seq, float_seq). `read_atomic` reads one file; `load_atomic` joins a dataset's files into
one table of raw columns (the `.inter` rows, with `.user` / `.item` attributes where those
files exist). `storage.read_table` reads a `.inter` file (or a folder holding one) this way.
No torch here; below `storage` (only the file layer).
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.csv as pacsv

from synthrec import filestore as fst
from synthrec.config import StorageConfig
from synthrec.errors import DataError

ATOMIC_TYPES = {
    "token": pa.string(),
    "token_seq": pa.string(),
    "float": pa.float64(),
    "float_seq": pa.string(),
}
SIDE_KEYS = (("user", "user_id"), ("item", "item_id"))


def read_atomic(uri: str, storage: StorageConfig | None = None) -> pa.Table:
    """One atomic file as a table; columns are named without their `:type` suffix."""
    if not fst.exists(uri, storage):
        raise DataError(f"atomic file {uri} does not exist; check the dataset folder and name")
    data = fst.read_bytes(uri, storage)
    header = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").rstrip("\r").split("\t")
    names, types = [], {}
    for field in header:
        name, _, kind = field.partition(":")
        if kind not in ATOMIC_TYPES:
            raise DataError(
                f"{uri}: header field {field!r} needs a type suffix, one of "
                f":{', :'.join(ATOMIC_TYPES)}; "
                "is this a RecBole atomic file?"
            )
        names.append(name)
        types[name] = ATOMIC_TYPES[kind]
    try:
        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
        )
    except pa.ArrowInvalid as err:
        raise DataError(f"{uri} is not a readable atomic file: {fst._short(err)}") from None


def load_atomic(
    dir_uri: str, name: str | None = None, storage: StorageConfig | None = None
) -> pa.Table:
    """`<name>.inter` left-joined with `<name>.user` and `<name>.item` where they exist.

    `name` defaults to the folder's name (RecBole's convention: ml-100k/ml-100k.inter).
    """
    name = name or str(dir_uri).rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
    inter = read_atomic(fst.join(dir_uri, f"{name}.inter"), storage)
    for suffix, key in SIDE_KEYS:
        uri = fst.join(dir_uri, f"{name}.{suffix}")
        if not fst.exists(uri, storage):
            continue
        side = read_atomic(uri, storage)
        for table, what in ((inter, f"{name}.inter"), (side, f"{name}.{suffix}")):
            if key not in table.column_names:
                raise DataError(
                    f"{what} has no '{key}' column; columns: {', '.join(table.column_names)}"
                )
        inter = _left_join(inter, side, key)
    return inter


def load_inter_file(inter_uri: str, storage: StorageConfig | None = None) -> pa.Table:
    """`load_atomic` for the dataset a `.inter` file belongs to (side files beside it)."""
    dir_uri, _, filename = inter_uri.rstrip("/").rpartition("/")
    return load_atomic(dir_uri or ".", filename.rsplit(".", 1)[0], storage)


def _left_join(left: pa.Table, right: pa.Table, key: str) -> pa.Table:
    """Left join that keeps the left table's row order."""
    left = left.append_column("__row", pa.array(range(left.num_rows), pa.int64()))
    joined = left.join(right, key, join_type="left outer")
    return joined.sort_by("__row").drop_columns(["__row"])
