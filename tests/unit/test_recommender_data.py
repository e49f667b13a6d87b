"""Column discovery, encoding, sequence windows and input checks for model F."""

import numpy as np
import pyarrow as pa
import pytest

from synthrec.config import RecommenderConfig
from synthrec.data.splits import leave_last_out
from synthrec.errors import DataError, SchemaError
from synthrec.recommender.data import InteractionEncoder, training_windows, windows
from synthrec.recommender.metrics import split_leave_last_out


def toy_table(num_users: int = 12, num_items: int = 10, seed: int = 0) -> pa.Table:
    """Users walk the catalogue in order from a random start; items have genre and price."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(num_users):
        start, length = rng.integers(num_items), rng.integers(4, 9)
        for j in range(length):
            item = (start + j) % num_items
            rows.append(
                (
                    f"u{u}",
                    f"i{item}",
                    20 + u % 5,
                    "MF"[u % 2],
                    ["a", "b", "c"][item % 3],
                    float(item),
                    1000 * u + j,
                    int(rng.integers(2)),
                )
            )
    cols = list(zip(*rows))
    names = ["user_id", "item_id", "age", "gender", "genre", "price", "timestamp", "click"]
    return pa.table(dict(zip(names, [pa.array(c) for c in cols])))


def test_data_discovers_user_and_item_attributes():
    enc = InteractionEncoder.fit(toy_table(), RecommenderConfig())
    c = enc.columns
    assert (c.user, c.item, c.time, c.label) == ("user_id", "item_id", "timestamp", "click")
    assert set(c.user_features) == {"age", "gender"}
    assert set(c.item_features) == {"genre", "price"}
    assert enc.num_items == 10 and enc.item_cat.shape == (11, 1) and enc.item_num.shape == (11, 2)


def test_data_training_windows_cover_each_interaction_once():
    table = toy_table(num_users=5)
    enc = InteractionEncoder.fit(table, RecommenderConfig())
    log = enc.encode(table)
    w = training_windows(
        log, max_len=4, user_token=enc.user_token
    )  # short windows force several per user
    targets = w.targets[w.targets > 0]
    assert sorted(targets.tolist()) == sorted(log.items.tolist())
    assert (
        (w.tokens == enc.user_token).sum(axis=1) == 1
    ).all()  # the user token is in every window
    first = w.tokens[np.arange(len(w)), (w.tokens == 0).sum(axis=1)]
    assert (first == enc.user_token).all()  # ... as its first non-padding slot


def test_data_window_at_stop_holds_the_history_before_it():
    table = toy_table(num_users=3)
    enc = InteractionEncoder.fit(table, RecommenderConfig())
    log = enc.encode(table)
    n = int(log.lengths[0])
    w = windows(log, np.array([0]), np.array([n - 1]), max_len=n + 2, user_token=enc.user_token)
    history = log.items[: n - 1].tolist()
    assert w.tokens[0].tolist() == [0, 0, enc.user_token] + history
    assert w.targets[0, -1] == log.items[n - 1]


def test_data_encode_orders_by_time_within_user():
    table = toy_table().take(pa.array(np.random.default_rng(1).permutation(toy_table().num_rows)))
    enc = InteractionEncoder.fit(table, RecommenderConfig())
    log = enc.encode(table)
    times = table.column("timestamp").to_numpy()[log.rows]
    for g in range(log.num_groups):
        part = times[log.offsets[g] : log.offsets[g + 1]]
        assert (np.diff(part) >= 0).all()


def test_data_unknown_items_fail_with_their_ids():
    table = toy_table()
    enc = InteractionEncoder.fit(table, RecommenderConfig())
    bad = table.set_column(1, "item_id", pa.array(["i1"] * (table.num_rows - 1) + ["zz-new"]))
    with pytest.raises(DataError, match="zz-new"):
        enc.encode(bad, "synthetic table")


def test_data_mismatched_or_empty_tables_fail_early():
    table = toy_table()
    enc = InteractionEncoder.fit(table, RecommenderConfig())
    with pytest.raises(SchemaError, match="lacks column.*genre"):
        enc.check_compatible(table.drop_columns(["genre"]), "synthetic table")
    with pytest.raises(SchemaError, match="item_id"):
        enc.check_compatible(
            table.set_column(1, "item_id", pa.array(range(table.num_rows))), "synthetic table"
        )
    with pytest.raises(DataError, match="empty"):
        enc.check_compatible(table.slice(0, 0), "synthetic table")
    with pytest.raises(DataError, match="empty"):
        InteractionEncoder.fit(table.slice(0, 0), RecommenderConfig())


def test_data_user_prefix_keeps_synthetic_users_apart():
    table = toy_table()
    enc = InteractionEncoder.fit(table, RecommenderConfig())
    log = enc.encode(table, user_prefix="syn:")
    assert all(u.startswith("syn:") for u in log.user_ids.to_pylist())


def test_data_leave_last_out_queries_match_the_shared_split():
    table = toy_table()
    enc = InteractionEncoder.fit(table, RecommenderConfig())
    split = split_leave_last_out(table, enc)
    _, _, test = leave_last_out(table)
    expected = sorted(zip(test.column("user_id").to_pylist(), test.column("item_id").to_pylist()))
    users = split.test.log.user_ids.take(pa.array(split.test.group)).to_pylist()
    items = enc.item_ids.take(pa.array(split.test.targets - 1)).to_pylist()
    assert sorted(zip(users, items)) == expected
    # a test query's history is everything before it: the user's train rows plus the validation row
    assert (split.test.stop == split.test.log.lengths[split.test.group] - 1).all()


def test_data_query_hashing_is_stable_and_padded():
    table = toy_table().append_column("query", pa.array(["red shoes"] * toy_table().num_rows))
    enc = InteractionEncoder.fit(table, RecommenderConfig(query_column="query", query_max_tokens=3))
    hashed = enc.hash_queries(pa.array(["Red shoes", "shoes", None]))
    assert hashed[0, 1] == hashed[1, 0] != 0 and hashed[0, 2] == 0
    assert (hashed[2] == 0).all()
