"""RecBole atomic files (`.inter`, `.user`, `.item`) and the MovieLens event table built from them.

An atomic file is tab-separated with a typed header, `name:type` per column (token, float,
token_seq, float_seq). `load_atomic` joins a dataset's files into one table of raw columns;
`load_movielens` derives the event table described in ../shared/datasets/ml-100k/README.md
(the same rows and values as its `events.parquet`).
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from synthrec import storage as st
from synthrec.config import StorageConfig
from synthrec.errors import DataError

ATOMIC_TYPES = {
    "token": pa.string(),
    "token_seq": pa.string(),
    "float": pa.float64(),
    "float_seq": pa.string(),
}
EVENT_COLUMNS = (
    "user_id",
    "item_id",
    "age",
    "gender",
    "occupation",
    "zip_region",
    "genre",
    "release_year",
    "hour",
    "weekday",
    "timestamp",
    "rating",
    "click",
)
CLICK_MIN_RATING = 4


def read_atomic(uri: str, storage: StorageConfig | None = None) -> pa.Table:
    """One atomic file as a table; columns are named without their `:type` suffix."""
    if not st.exists(uri, storage):
        raise DataError(f"atomic file {uri} does not exist; check the dataset folder and name")
    data = st.read_bytes(uri, storage)
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
        raise DataError(f"{uri} is not a readable atomic file: {st._short(err)}") from None


def load_atomic(
    dir_uri: str, name: str | None = None, storage: StorageConfig | None = None
) -> pa.Table:
    """`<name>.inter` left-joined with `<name>.user` and `<name>.item` where they exist.

    `name` defaults to the folder's name (RecBole's convention: ml-100k/ml-100k.inter).
    """
    name = name or str(dir_uri).rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
    inter = read_atomic(st.join(dir_uri, f"{name}.inter"), storage)
    for suffix, key in (("user", "user_id"), ("item", "item_id")):
        uri = st.join(dir_uri, f"{name}.{suffix}")
        if not st.exists(uri, storage):
            continue
        side = read_atomic(uri, storage)
        for table, what in ((inter, f"{name}.inter"), (side, f"{name}.{suffix}")):
            if key not in table.column_names:
                raise DataError(
                    f"{what} has no '{key}' column; columns: {', '.join(table.column_names)}"
                )
        inter = _left_join(inter, side, key)
    return inter


def _left_join(left: pa.Table, right: pa.Table, key: str) -> pa.Table:
    """Left join that keeps the left table's row order."""
    left = left.append_column("__row", pa.array(range(left.num_rows), pa.int64()))
    joined = left.join(right, key, join_type="left outer")
    return joined.sort_by("__row").drop_columns(["__row"])


def load_movielens(
    dir_uri: str, name: str | None = None, storage: StorageConfig | None = None
) -> pa.Table:
    """The MovieLens event table: one row per rating with user and movie features, sorted by
    (timestamp, user_id, item_id); `click` = rating >= 4."""
    raw = load_atomic(dir_uri, name, storage)
    needed = [
        "user_id",
        "item_id",
        "rating",
        "timestamp",
        "age",
        "gender",
        "occupation",
        "zip_code",
        "release_year",
        "class",
    ]
    missing = [c for c in needed if c not in raw.column_names]
    if missing:
        raise DataError(
            f"{dir_uri}: MovieLens columns {', '.join(missing)} are missing from the atomic files"
        )
    ts = raw["timestamp"].cast(pa.int64())
    rating = raw["rating"].cast(pa.int64())
    zip_first = pc.utf8_slice_codeunits(raw["zip_code"], 0, 1)
    year_ok = pc.match_substring_regex(raw["release_year"], r"^\d{4}$")
    columns = {
        "user_id": raw["user_id"],
        "item_id": raw["item_id"],
        "age": raw["age"].cast(pa.int64()),
        "gender": raw["gender"],
        "occupation": raw["occupation"],
        "zip_region": pc.if_else(pc.utf8_is_digit(zip_first), zip_first, "other"),
        "genre": pc.list_element(pc.utf8_split_whitespace(raw["class"]), 0),
        "release_year": pc.if_else(year_ok, raw["release_year"], None).cast(pa.float64()),
        "hour": pc.divide(ts, 3600).cast(pa.int64()).to_numpy() % 24,
        "weekday": (pc.divide(ts, 86_400).to_numpy() + 3) % 7,  # 1970-01-01 was a Thursday (3)
        "timestamp": ts,
        "rating": rating,
        "click": pc.greater_equal(rating, CLICK_MIN_RATING).cast(pa.int64()),
    }
    table = pa.table(columns)
    return table.sort_by(
        [("timestamp", "ascending"), ("user_id", "ascending"), ("item_id", "ascending")]
    )
