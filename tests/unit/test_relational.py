"""The relational view of a log (users, catalog, events), its dependencies and derived columns,
on small logs in the shapes of Taobao, RetailRocket, a search log, the simulator and ML-100K."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from logshapes import (
    PRICE_BANDS,
    PRICE_CUTS,
    SEARCH_UTC_OFFSET_S,
    repeated_keys,
    retailrocket_catalog,
    retailrocket_log,
    same_rows,
    search_log,
    search_schema,
    simulator_log,
    taobao_log,
    with_conflicts,
)

from synthrec.data.derived import (
    BinRule,
    DateRule,
    HourRule,
    MapRule,
    WeekdayRule,
    rule_from_dict,
    time_unit,
)
from synthrec.data.derived_search import detect_rules
from synthrec.data.movielens import load_atomic
from synthrec.data.relational import RelationalLog, ViewOverrides, read_overrides, relational_view
from synthrec.data.relational_tables import read_atomic_view, read_parquet_view, view_from_tables
from synthrec.errors import DataError, SchemaError
from synthrec.schema import infer_schema


def _rules(view: RelationalLog) -> dict[str, object]:
    return {r.target: r for r in view.derived}


# ---------------------------------------------------------------------------- flat logs


def test_relational_taobao_catalog_holds_the_category():
    log = taobao_log()
    view = relational_view(log)
    assert view.users.column_names == ["user_id"]  # Taobao users carry no attributes
    assert view.items.column_names == ["item_id", "category_id"]
    assert view.items.num_rows == pc.count_distinct(log["item_id"]).as_py()
    assert view.events.column_names == ["user_id", "item_id", "behavior_type", "timestamp"]
    assert view.time_col == "timestamp" and view.event_cols == {"behaviour": "behavior_type"}
    assert view.dependencies["items"] == {"category_id": ["item_id"]}
    assert view.derived == []
    assert view.flatten().equals(log)


def test_relational_taobao_hour_and_weekday_follow_beijing_time():
    log = taobao_log(clock_offset_s=8 * 3_600)
    view = relational_view(log)
    assert _rules(view) == {
        "hour": HourRule("timestamp", "hour", "int64", "s", 8 * 3_600),
        "weekday": WeekdayRule("timestamp", "weekday", "int64", "s", 8 * 3_600),
    }
    assert "hour" not in view.events.column_names
    assert view.flatten().equals(log)


def test_relational_retailrocket_keeps_transaction_ids_in_events():
    log = retailrocket_log()
    view = relational_view(log, infer_schema(log, {"visitorid": "user_id"}))
    assert time_unit(log["timestamp"]) == "ms"
    assert view.user_col == "visitorid" and view.item_col == "itemid"
    assert view.users.column_names == ["visitorid"] and view.items.column_names == ["itemid"]
    assert "transactionid" in view.events.column_names  # null except on transactions
    assert same_rows(view.flatten(), log)


def test_relational_search_log_finds_tables_dependencies_and_derived_columns():
    log = search_log()
    view = relational_view(log, search_schema(log))
    assert view.users.column_names == ["uid", "segment"]
    assert view.items.column_names == ["sku", "brand", "cat", "price"]
    assert view.events.column_names == ["uid", "sku", "query", "pos", "ts", "action"]
    assert view.dependencies["items"] == {"brand": ["sku"], "cat": ["brand"], "price": ["sku"]}
    rules = _rules(view)
    assert rules["hour"] == HourRule("ts", "hour", "int64", "iso", SEARCH_UTC_OFFSET_S)
    assert rules["weekday"] == WeekdayRule("ts", "weekday", "int64", "iso", SEARCH_UTC_OFFSET_S)
    assert isinstance(rules["price_band"], BinRule)
    assert rules["price_band"].edges == list(PRICE_CUTS)  # the round cut points, learned
    assert isinstance(rules["clicked"], MapRule)
    assert dict(map(tuple, rules["clicked"].pairs)) == {"view": 0, "click": 1, "purchase": 1}
    for rule in view.derived:  # each reproduces its column exactly
        assert rule.compute(log).equals(log[rule.target].combine_chunks())
    assert view.flatten().equals(log)


def test_relational_simulator_sessions_determine_user_query_and_device():
    log, schema = simulator_log()
    view = relational_view(log, schema)
    assert view.users.column_names == ["user_id", "user_segment", "age", "gender", "region"]
    assert view.items.column_names == ["item_id", "category", "brand", "price"]
    assert view.dependencies["items"] == {
        "category": ["brand"],
        "brand": ["item_id"],
        "price": ["item_id"],
    }
    events = view.dependencies["events"]
    assert {k: events[k] for k in ("user_id", "query", "device")} == {
        "user_id": ["session_id"],
        "query": ["session_id"],
        "device": ["session_id"],
    }
    assert view.flatten().equals(log)


def test_relational_ml100k_flat_log(ml100k_dir):
    log = pq.read_table(ml100k_dir / "events.parquet")
    view = relational_view(log)
    assert view.users.column_names == ["user_id", "age", "gender", "occupation", "zip_region"]
    assert view.items.column_names == ["item_id", "genre", "release_year"]
    assert view.events.column_names == ["user_id", "item_id", "timestamp", "rating"]
    rules = _rules(view)
    assert rules["hour"] == HourRule("timestamp", "hour", "int64", "s", 0)
    assert rules["weekday"] == WeekdayRule("timestamp", "weekday", "int64", "s", 0)
    assert rules["click"] == BinRule("rating", "click", "int64", [4.0], [0, 1])
    assert view.flatten().equals(log)


def test_relational_ml100k_atomic_files(ml100k_dir):
    view = read_atomic_view(str(ml100k_dir))
    assert view.users.column_names == ["user_id", "age", "gender", "occupation", "zip_code"]
    assert view.items.column_names == ["item_id", "movie_title", "release_year", "class"]
    assert view.events.column_names == ["user_id", "item_id", "rating", "timestamp"]
    assert same_rows(view.flatten(), load_atomic(str(ml100k_dir)))


def test_relational_no_user_column_leaves_the_users_part_unavailable():
    log = search_log()  # 'uid' is not a standard user column name
    view = relational_view(log)
    assert view.users is None and view.items.column_names[0] == "sku"
    with pytest.raises(DataError, match=r"no user column: found columns \[uid, segment, sku"):
        view.require_users()
    with pytest.raises(DataError, match="set a column's role to user_id in the schema"):
        relational_view(log, overrides={"users": ["segment"]})
    assert view.flatten().equals(log)
    with pytest.raises(DataError, match="the log is empty"):
        relational_view(log.slice(0, 0))
    bare = taobao_log().drop_columns(["item_id"])
    with pytest.raises(DataError, match="no item column"):
        relational_view(bare).require_items()


def test_relational_anonymous_rows_keep_their_nulls():
    log = search_log()
    anonymous = pc.less(log["pos"], 2)  # one impression of each session lost its user
    log = log.set_column(0, "uid", pc.if_else(anonymous, None, log["uid"]))
    log = log.set_column(1, "segment", pc.if_else(anonymous, None, log["segment"]))
    view = relational_view(log, search_schema(log))
    assert view.users.column_names == ["uid", "segment"] and view.users["uid"].null_count == 0
    assert view.report["anonymous_rows"] == {"users": pc.sum(anonymous).as_py()}
    assert view.flatten().equals(log)


# ---------------------------------------------------------------------------- noise and overrides


def test_relational_noise_under_threshold_takes_the_commonest_value():
    log = taobao_log(rows=6_000)
    num_bad = max(1, int(0.004 * repeated_keys(log, "item_id")))  # under 0.5% of the items
    noisy, touched = with_conflicts(log, "category_id", "item_id", num_bad)
    view = relational_view(noisy)
    assert "category_id" in view.items.column_names
    assert view.report["conflicts"] == {
        "items": {"category_id": {"keys": num_bad, "rows": num_bad}}
    }
    assert view.flatten().equals(log)  # the catalog's value is the original one


def test_relational_noise_over_threshold_keeps_the_column_in_events():
    log = taobao_log(rows=6_000)
    noisy, _ = with_conflicts(log, "category_id", "item_id", repeated_keys(log, "item_id") // 50)
    view = relational_view(noisy)
    assert view.items.column_names == ["item_id"] and "category_id" in view.events.column_names
    assert view.flatten().equals(noisy)
    lenient = relational_view(noisy, overrides={"key_threshold": 0.95})
    assert "category_id" in lenient.items.column_names


def test_relational_overrides_place_columns():
    log, schema = simulator_log()
    view = relational_view(log, schema, {"events": ["brand"], "users": ["device"]})
    assert "brand" in view.events.column_names and "brand" not in view.items.column_names
    assert "device" in view.users.column_names  # not constant per user: commonest value
    assert view.report["conflicts"]["users"]["device"]["rows"] > 0


def test_relational_overrides_declare_rules():
    log = search_log()
    declared = HourRule("ts", "hour", "int64", "iso", SEARCH_UTC_OFFSET_S).to_dict()
    view = relational_view(
        log, search_schema(log), {"derived": [declared], "detect_derived": False}
    )
    assert [r.target for r in view.derived] == ["hour"]
    assert "weekday" in view.events.column_names
    assert view.flatten().equals(log)
    wrong = HourRule("ts", "hour", "int64", "iso", 0).to_dict()  # UTC, but the log is UTC+8
    with pytest.raises(DataError, match=r"'hour': the hour rule from 'ts' reproduces \d"):
        relational_view(log, search_schema(log), {"derived": [wrong]})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"items": ["nope"]}, "lacks; columns"),
        ({"items": ["brand"], "events": ["brand"]}, "in two tables"),
        ({"users": ["sku"]}, "move key column"),
        ({"catalog": ["brand"]}, "unknown key"),
        ({"derived": [{"rule": "magic"}]}, "derived rule 'magic' is unknown"),
    ],
)
def test_relational_overrides_are_checked(overrides, message):
    log = search_log(rows=600)
    with pytest.raises(SchemaError, match=message):
        relational_view(log, search_schema(log), overrides)


# ---------------------------------------------------------------------------- derived columns


def _clock(seconds: np.ndarray, offset_s: int) -> pa.Table:
    """One instant in four encodings, with hour / weekday / dates at UTC + offset_s."""
    local = seconds + offset_s
    return pa.table(
        {
            "t_s": seconds,
            "t_ms": seconds * 1_000,
            "t_ts": pa.array(seconds, pa.timestamp("s")),
            "t_iso": pa.array(np.datetime_as_string(seconds.astype("datetime64[s]"))),
            "hour": (local // 3_600) % 24,
            "weekday": (local // 86_400 + 3) % 7 + 1,  # ISO: Monday = 1
            "day": pa.array((local // 86_400).astype(np.int32)).cast(pa.date32()),
            "day_text": pa.array(np.datetime_as_string((local // 86_400).astype("datetime64[D]"))),
        }
    )


@pytest.mark.parametrize(
    "source, unit", [("t_s", "s"), ("t_ms", "ms"), ("t_ts", "timestamp"), ("t_iso", "iso")]
)
def test_derived_time_parts_in_every_encoding_and_offset(source, unit):
    rng = np.random.default_rng(1)
    seconds = 1_700_000_000 + np.sort(rng.integers(0, 30 * 86_400, 3_000))
    offset = 5 * 3_600 + 30 * 60  # UTC+5:30
    clock = _clock(seconds, offset)
    others = {c for c in clock.column_names if c.startswith("t_") and c != source}
    rules = {r.target: r for r in detect_rules(clock, [source], others)}
    assert rules["hour"] == HourRule(source, "hour", "int64", unit, offset)
    assert rules["weekday"] == WeekdayRule(source, "weekday", "int64", unit, offset, 0, 1)
    assert rules["day"] == DateRule(source, "day", "date32[day]", unit, offset)
    assert rules["day_text"] == DateRule(source, "day_text", "string", unit, offset)
    for rule in rules.values():
        assert rule.compute(clock).equals(clock[rule.target].combine_chunks())
        assert rule_from_dict(json.loads(json.dumps(rule.to_dict()))) == rule


def test_derived_tolerates_rare_errors_only():
    rng = np.random.default_rng(2)
    seconds = 1_700_000_000 + np.sort(rng.integers(0, 30 * 86_400, 20_000))
    hour = (seconds // 3_600) % 24
    slightly, badly = hour.copy(), hour.copy()
    slightly[rng.choice(len(hour), 10, replace=False)] += 1  # 0.05% wrong: still derived
    badly[rng.choice(len(hour), 400, replace=False)] += 1  # 2% wrong: a column of its own
    table = pa.table({"ts": seconds, "slightly": slightly % 24, "badly": badly % 24})
    assert [r.target for r in detect_rules(table, ["ts"], set())] == ["slightly"]


def test_derived_never_from_near_constant_or_unrelated_columns():
    rng = np.random.default_rng(3)
    n = 5_000
    price = np.round(rng.uniform(1, 100, n), 2)
    rare = np.zeros(n, np.int64)
    rare[rng.choice(n, 3, replace=False)] = 1  # 99.94% zeros: "all 0" would agree on 99.9%
    table = pa.table(
        {
            "price": price,
            "rare": rare,
            "coin": rng.integers(0, 2, n),
            "behaviour": rng.choice(["a", "b", "c"], n),
            "hour": rng.integers(0, 24, n),
            "ts": 1_700_000_000 + np.arange(n) * 61,
        }
    )
    assert detect_rules(table, ["ts"], set()) == []


def test_derived_rule_apply_recomputes_a_dropped_column():
    log = search_log(rows=600)
    view = relational_view(log, search_schema(log))
    for rule in view.derived:
        rebuilt = rule.apply(log.drop_columns([rule.target]))
        assert rebuilt[rule.target].equals(log[rule.target])
    with pytest.raises(SchemaError, match="derived rule names column 'ts'"):
        view.derived[0].compute(log.drop_columns(["ts"]))


# ---------------------------------------------------------------------------- separate tables


def test_relational_from_tables_reads_a_category_tree():
    events = retailrocket_log()
    catalog = retailrocket_catalog(events)
    view = view_from_tables(events, items=catalog, schema=infer_schema(events))
    assert view.user_col is None and view.users is None
    assert view.dependencies["items"] == {
        "categoryid": ["itemid"],
        "parentid": ["categoryid"],
        "available": ["itemid"],
    }
    flat = view.flatten()
    assert flat.num_rows == events.num_rows
    assert flat.column_names == [*events.column_names, "categoryid", "parentid", "available"]
    expected = catalog["categoryid"].take(pc.index_in(events["itemid"], catalog["itemid"]))
    assert flat["categoryid"].equals(expected)


def test_relational_from_tables_validates_keys():
    events = retailrocket_log()
    catalog = retailrocket_catalog(events)
    seen = pc.is_in(catalog["itemid"], events["itemid"])
    gone = catalog["itemid"].filter(seen)[:3].to_pylist()
    short = catalog.filter(pc.invert(pc.is_in(catalog["itemid"], pa.array(gone))))
    missing = int(pc.sum(pc.is_in(events["itemid"], pa.array(gone))).as_py())
    with pytest.raises(DataError, match=rf"{missing} events name a 'itemid' missing from the"):
        view_from_tables(events, items=short)
    twice = pa.concat_tables([catalog, catalog.slice(0, 2)])
    with pytest.raises(DataError, match="2 'itemid' values appear more than once"):
        view_from_tables(events, items=twice)
    as_text = catalog.set_column(0, "itemid", catalog["itemid"].cast(pa.string()))
    with pytest.raises(DataError, match="cast one so the keys compare"):
        view_from_tables(events, items=as_text)
    with pytest.raises(DataError, match="no user column"):
        view_from_tables(events, users=pa.table({"visitorid": [1]}))
    unknown = pc.equal(events["event"], "view")  # a null key is an unknown item, not a missing one
    anonymous = events.set_column(3, "itemid", pc.if_else(unknown, None, events["itemid"]))
    flat = view_from_tables(anonymous, items=catalog).flatten()
    assert flat["categoryid"].is_null().equals(unknown)


def test_relational_from_parquet_files(tmp_path):
    log = search_log(rows=1_200)
    view = relational_view(log, search_schema(log), {"detect_derived": False})
    for name in ("users", "items", "events"):
        pq.write_table(getattr(view, name), tmp_path / f"{name}.parquet")
    again = read_parquet_view(
        str(tmp_path / "events.parquet"),
        str(tmp_path / "users.parquet"),
        str(tmp_path / "items.parquet"),
        schema=search_schema(log),
    )
    assert again.items.column_names == ["sku", "brand", "cat", "price"]
    assert {r.target for r in again.derived} == {"hour", "weekday", "price_band", "clicked"}
    assert same_rows(again.flatten().select(log.column_names), log)


# ---------------------------------------------------------------------------- structure


def test_relational_structure_round_trips_without_data():
    log = search_log()
    view = relational_view(log, search_schema(log))
    structure = json.loads(json.dumps(view.to_dict()))
    assert structure["tables"]["items"] == ["sku", "brand", "cat", "price"]
    again = RelationalLog.from_dict(structure, view.events, view.users, view.items)
    assert again.derived == view.derived and again.dependencies == view.dependencies
    assert again.flatten().equals(log)
    with pytest.raises(DataError, match="items table lacks column"):
        RelationalLog.from_dict(structure, view.events, view.users, view.items.drop(["brand"]))
    with pytest.raises(DataError, match="lists a users table but none was given"):
        RelationalLog.from_dict(structure, view.events, None, view.items)
    with pytest.raises(SchemaError, match="malformed"):
        RelationalLog.from_dict({"tables": {"events": []}}, view.events)


def test_relational_one_to_one_columns_hang_under_the_first():
    log = search_log()
    cat_id = pc.utf8_replace_slice(log["cat"], 0, 4, "C")  # 'cat 3' -> 'C3', one-to-one
    log = log.append_column("cat_id", cat_id)
    view = relational_view(log, search_schema(log))
    assert view.dependencies["items"]["cat"] == ["brand"]
    assert view.dependencies["items"]["cat_id"] == ["cat"]
    assert view.flatten().equals(log)


def test_relational_overrides_from_a_schema_yaml(tmp_path):
    spec = tmp_path / "schema.yaml"
    spec.write_text(
        "columns:\n  uid: user_id\n  sku: item_id\n"
        "relational:\n  events: [brand]\n  key_threshold: 0.99\n"
        "  derived:\n    - {rule: bins, source: price, target: price_band, dtype: string,\n"
        "       edges: [20, 50, 100, 200],\n"
        "       labels: [under 20, 20-50, 50-100, 100-200, 200+]}\n"
    )
    overrides = read_overrides(str(spec))
    assert overrides == ViewOverrides(
        events=("brand",),
        derived=(overrides.derived[0],),
        key_threshold=0.99,
    )
    log = search_log(rows=1_200)
    view = relational_view(log, search_schema(log), overrides)
    assert "brand" in view.events.column_names
    assert view.derived[0] == BinRule(
        "price", "price_band", "string", [20, 50, 100, 200], list(PRICE_BANDS)
    )
    assert view.flatten().equals(log)
    (tmp_path / "plain.yaml").write_text("columns:\n  uid: user_id\n")
    assert read_overrides(str(tmp_path / "plain.yaml")) is None
    with pytest.raises(SchemaError, match="key_threshold is 2; use a share in"):
        ViewOverrides.from_dict({"key_threshold": 2})


def test_relational_dictionary_columns_and_flatten_checks_keys():
    log = taobao_log()
    encoded = log.set_column(2, "category_id", pc.dictionary_encode(log["category_id"]))
    view = relational_view(encoded)
    assert view.items.column_names == ["item_id", "category_id"]
    assert view.flatten().equals(encoded)
    fewer = view.items.slice(1)  # a synthetic catalog that lost an item the events use
    broken = RelationalLog.from_dict(view.to_dict(), view.events, view.users, fewer)
    with pytest.raises(DataError, match=r"\d+ events name a 'item_id' missing from the items"):
        broken.flatten()
