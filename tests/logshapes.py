"""Small, seeded test logs in the shapes of public e-commerce logs (see shared/LOG-SHAPES.md).

Every builder is deterministic for its arguments and makes a few thousand rows, fast enough
for unit tests. All data is made up here (or by synthrec's simulator); none is real.
Import from any test as `from logshapes import taobao_log` (tests/ is on sys.path through
tests/conftest.py).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from synthrec.config import SimulateConfig
from synthrec.data.simulator import simulate, simulated_schema
from synthrec.schema import Schema, infer_schema

TAOBAO_START_S = 1_511_539_200  # 2017-11-25 00:00 UTC, the first of Taobao's nine days
RETAILROCKET_START_MS = 1_430_622_000_000  # 2015-05-03 03:00 UTC
SEARCH_START_S = 1_709_510_400  # 2024-03-04 00:00 UTC, a Monday
SEARCH_UTC_OFFSET_S = 8 * 3_600  # the search log's hour and weekday are local time, UTC+8
PRICE_CUTS = (20.0, 50.0, 100.0, 200.0)
PRICE_BANDS = ("under 20", "20-50", "50-100", "100-200", "200+")
BEHAVIOURS = ("pv", "fav", "cart", "buy")
BEHAVIOUR_SHARE = (0.85, 0.05, 0.06, 0.04)


def _zipf(rng: np.random.Generator, n: int, size: int, a: float = 1.1) -> np.ndarray:
    """`size` draws from 0..n-1 with Zipf-like weights (0 commonest)."""
    w = 1.0 / np.arange(1, n + 1) ** a
    return rng.choice(n, size, p=w / w.sum())


def _times(rng: np.random.Generator, users: np.ndarray, start: int, span: int) -> np.ndarray:
    """Event times (s), sorted within each user, over `span` seconds from `start`."""
    return start + np.sort(rng.integers(0, span, len(users)))


def taobao_log(rows: int = 3_000, seed: int = 0, clock_offset_s: int | None = None) -> pa.Table:
    """Taobao UserBehavior: user_id, item_id, category_id (integers), behavior_type
    (pv / fav / cart / buy), timestamp (Unix seconds over nine days). An item's category is
    fixed; users carry no attributes. With `clock_offset_s`, also hour and weekday (Monday = 0)
    of the local time at that UTC offset, as in the issue's behaviour log."""
    rng = np.random.default_rng(seed)
    num_users, num_items, num_cats = max(rows // 15, 10), max(rows // 6, 20), 40
    item_cat = 1_000 + _zipf(rng, num_cats, num_items)
    user = _zipf(rng, num_users, rows, 0.6)
    item = _zipf(rng, num_items, rows, 0.8)
    ts = _times(rng, user, TAOBAO_START_S, 9 * 86_400)
    table = pa.table(
        {
            "user_id": pa.array(100_000 + user, pa.int64()),
            "item_id": pa.array(5_000_000 + item, pa.int64()),
            "category_id": pa.array(item_cat[item], pa.int64()),
            "behavior_type": pa.array(np.array(BEHAVIOURS)[rng.choice(4, rows, p=BEHAVIOUR_SHARE)]),
            "timestamp": pa.array(ts, pa.int64()),
        }
    )
    if clock_offset_s is not None:
        local = ts + clock_offset_s
        table = table.append_column("hour", pa.array((local // 3_600) % 24, pa.int64()))
        table = table.append_column("weekday", pa.array((local // 86_400 + 3) % 7, pa.int64()))
    return table


def retailrocket_log(rows: int = 3_000, seed: int = 0) -> pa.Table:
    """RetailRocket events: timestamp (Unix ms), visitorid, event (view / addtocart /
    transaction), itemid, transactionid (only on transactions, else null)."""
    rng = np.random.default_rng(seed)
    visitor = _zipf(rng, max(rows // 8, 10), rows, 0.7)
    item = _zipf(rng, max(rows // 5, 20), rows, 0.9)
    event = rng.choice(3, rows, p=(0.9, 0.07, 0.03))
    ts_ms = RETAILROCKET_START_MS + np.sort(rng.integers(0, 20 * 86_400_000, rows))
    txn = np.where(event == 2, 1 + np.cumsum(event == 2), 0)
    return pa.table(
        {
            "timestamp": pa.array(ts_ms, pa.int64()),
            "visitorid": pa.array(257_000 + visitor, pa.int64()),
            "event": pa.array(np.array(["view", "addtocart", "transaction"])[event]),
            "itemid": pa.array(10_000 + item, pa.int64()),
            "transactionid": pa.array(txn, pa.int64(), mask=event != 2),
        }
    )


def retailrocket_catalog(events: pa.Table, seed: int = 0) -> pa.Table:
    """The catalog of `events`' items (plus a few never seen): itemid, categoryid and its
    parent in a two-level category tree (RetailRocket's category_tree.csv, flattened)."""
    rng = np.random.default_rng(seed)
    items = np.unique(events.column("itemid").to_numpy())
    items = np.r_[items, items.max() + 1 + np.arange(5)]
    parent_of = 10 + np.arange(60) // 6  # 60 leaf categories under 10 parents
    cat = rng.integers(0, 60, len(items))
    return pa.table(
        {
            "itemid": pa.array(items, pa.int64()),
            "categoryid": pa.array(200 + cat, pa.int64()),
            "parentid": pa.array(parent_of[cat], pa.int64()),
            "available": pa.array(rng.integers(0, 2, len(items)), pa.int64()),
        }
    )


def search_log(rows: int = 3_000, seed: int = 0) -> pa.Table:
    """A search log with its own column names: uid (user), segment (a user attribute), sku
    (item) with brand -> cat and a price, query, pos, ts (ISO 8601 text in UTC), hour and
    weekday (local time at UTC+8, Monday = 0), price_band (cut at PRICE_CUTS), action
    (view / click / purchase) and clicked (1 unless the action is a view)."""
    rng = np.random.default_rng(seed)
    num_users, num_items, num_brands = max(rows // 12, 10), max(rows // 5, 30), 25
    brand_cat = rng.integers(0, 8, num_brands)
    item_brand = _zipf(rng, num_brands, num_items, 0.7)
    item_price = np.round(np.exp(rng.uniform(np.log(5.0), np.log(400.0), num_items)), 2)
    user_segment = rng.choice(np.array(["new", "casual", "power"]), num_users)
    # sessions of 6 impressions: one user, one query, positions 1..6
    num_sessions = -(-rows // 6)
    s_user = _zipf(rng, num_users, num_sessions, 0.5)
    s_start = SEARCH_START_S + np.sort(rng.integers(0, 14 * 86_400, num_sessions))
    session = np.repeat(np.arange(num_sessions), 6)[:rows]
    pos = (np.arange(rows) % 6) + 1
    user = s_user[session]
    item = _zipf(rng, num_items, rows, 0.8)
    ts = s_start[session] + 5 * (pos - 1)
    local = ts + SEARCH_UTC_OFFSET_S
    action = rng.choice(3, rows, p=(0.85, 0.12, 0.03))
    band = np.searchsorted(np.array(PRICE_CUTS), item_price[item], side="right")
    iso = np.datetime_as_string(ts.astype("datetime64[s]"), unit="s")
    return pa.table(
        {
            "uid": pa.array(np.char.add("user-", user.astype(str))),
            "segment": pa.array(user_segment[user]),
            "sku": pa.array(np.char.add("SKU", (7_000 + item).astype(str))),
            "brand": pa.array(np.char.add("brand ", item_brand[item].astype(str))),
            "cat": pa.array(np.char.add("cat ", brand_cat[item_brand[item]].astype(str))),
            "query": pa.array(np.char.add("query ", (session % 97).astype(str))),
            "pos": pa.array(pos, pa.int64()),
            "ts": pa.array(np.char.add(iso, "Z")),
            "hour": pa.array((local // 3_600) % 24, pa.int64()),
            "weekday": pa.array((local // 86_400 + 3) % 7, pa.int64()),
            "price": pa.array(item_price[item], pa.float64()),
            "price_band": pa.array(np.array(PRICE_BANDS)[band]),
            "action": pa.array(np.array(["view", "click", "purchase"])[action]),
            "clicked": pa.array((action > 0).astype(np.int64)),
        }
    )


def search_schema(table: pa.Table) -> Schema:
    """The search log's roles: its user and item columns do not carry standard names."""
    return infer_schema(table, {"uid": "user_id", "sku": "item_id"})


def simulator_log(rows: int = 4_000, seed: int = 0) -> tuple[pa.Table, Schema]:
    """synthrec's own simulated search log with a small world, and its schema."""
    cfg = SimulateConfig(
        rows=rows,
        num_users=max(rows // 40, 10),
        num_items=max(rows // 8, 40),
        num_categories=10,
        num_brands=30,
        num_queries=100,
        seed=seed,
    )
    return simulate(cfg), simulated_schema()


def same_rows(a: pa.Table, b: pa.Table) -> bool:
    """True when `a` and `b` hold the same rows as a multiset (same columns and types)."""
    if a.column_names != b.column_names or a.schema.types != b.schema.types:
        return False
    keys = [(c, "ascending") for c in a.column_names]
    return a.sort_by(keys).combine_chunks().equals(b.sort_by(keys).combine_chunks())


def with_conflicts(
    table: pa.Table, column: str, key: str, num_keys: int, seed: int = 0
) -> tuple[pa.Table, np.ndarray]:
    """`table` with the last row of each of `num_keys` keys (seen 3+ times, so the original
    value stays the commonest) given another value in `column` (noise in an attribute); and
    the keys touched."""
    rng = np.random.default_rng(seed)
    keys = table.column(key).to_numpy()
    values, counts = np.unique(keys, return_counts=True)
    chosen = rng.choice(values[counts >= 3], num_keys, replace=False)
    rows = np.array([np.flatnonzero(keys == k)[-1] for k in chosen], dtype=np.int64)
    col = table.column(column).to_numpy().copy()
    levels = np.unique(col)
    col[rows] = levels[(np.searchsorted(levels, col[rows]) + 1) % len(levels)]  # another value
    return table.set_column(table.column_names.index(column), column, pa.array(col)), chosen


def repeated_keys(table: pa.Table, key: str) -> int:
    """Keys that occur on two rows or more."""
    _, counts = np.unique(table.column(key).to_numpy(), return_counts=True)
    return int((counts >= 2).sum())
