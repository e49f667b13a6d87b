"""The MovieLens event table, built from RecBole atomic files (`.inter`, `.user`, `.item`).

The file format and the join of a dataset's files live in `synthrec.atomic` (re-exported
here); `load_movielens` derives the event table described in ../shared/datasets/ml-100k/README.md
(the same rows and values as its `events.parquet`).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from synthrec.atomic import ATOMIC_TYPES as ATOMIC_TYPES
from synthrec.atomic import load_atomic
from synthrec.atomic import read_atomic as read_atomic
from synthrec.config import StorageConfig
from synthrec.errors import DataError

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
