"""The relational view of a log given as separate tables: users, items and events (RecBole
atomic `.user` / `.item` / `.inter` files, or three Parquet / CSV tables, local or s3://).

Keys are validated (unique in their table, of the events' type, every event's key present),
then dependencies and derived columns are found per table as for one flat log
(synthrec.data.relational), so `flatten()` joins the tables back into one log.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from synthrec import storage as st
from synthrec.config import StorageConfig
from synthrec.data import keys
from synthrec.data.derived import check_rule, rule_from_dict
from synthrec.data.derived_search import detect_rules
from synthrec.data.movielens import read_atomic
from synthrec.data.relational import (
    RelationalLog,
    ViewOverrides,
    dependencies_of,
    find_event_columns,
    find_time_column,
    id_like_columns,
    key_column,
    no_key_error,
)
from synthrec.errors import DataError
from synthrec.schema import Role, Schema, infer_schema


def view_from_tables(
    events: pa.Table,
    users: pa.Table | None = None,
    items: pa.Table | None = None,
    schema: Schema | None = None,
    overrides: ViewOverrides | dict[str, Any] | None = None,
) -> RelationalLog:
    """The view of a log given as separate tables. `schema` (of the events, or of all columns)
    names the user / item keys; without it roles are inferred from the events. Every event's
    user and item must exist in its table (DataError naming the count and examples). A key
    without its table gets a table of its keys alone."""
    ov = overrides if isinstance(overrides, ViewOverrides) else ViewOverrides.from_dict(overrides)
    schema = schema or infer_schema(events)
    user_col = key_column(schema, events, Role.USER_ID)
    item_col = key_column(schema, events, Role.ITEM_ID)
    tables = {
        "users": _side(events, users, user_col, "users"),
        "items": _side(events, items, item_col, "items"),
        "events": events,
    }
    names = _flat_columns(tables)
    time_col = find_time_column(events, schema)
    rules = _table_rules(tables, schema, ov, {c for c in (user_col, item_col) if c}, time_col)
    derived = {r.target for r in rules}
    tables = {
        k: t.drop_columns([c for c in t.column_names if c in derived]) if t is not None else None
        for k, t in tables.items()
    }
    return RelationalLog(
        events=tables["events"],
        users=tables["users"],
        items=tables["items"],
        user_col=user_col,
        item_col=item_col,
        time_col=time_col,
        event_cols=find_event_columns(events),
        dependencies=dependencies_of(tables, user_col, item_col, schema),
        derived=rules,
        columns=names,
        report={"conflicts": {}, "anonymous_rows": {}},
    )


def _side(events: pa.Table, side: pa.Table | None, key: str | None, name: str):
    if side is not None and key is None:
        raise no_key_error(name[:-1], events.column_names)
    if key is None:
        return None
    if side is None:
        side = keys.entity_table(keys.Codes(events), key, [], {})[0]
    return keys.check_side(events, side, key, name)


def _flat_columns(tables: dict[str, pa.Table | None]) -> list[str]:
    """Events' columns, then each side's attributes; DataError if a name is in two tables."""
    names = list(tables["events"].column_names)
    for name in ("users", "items"):
        side = tables[name]
        if side is None:
            continue
        clash = sorted(set(side.column_names[1:]) & set(names))
        if clash:
            raise DataError(
                f"column(s) {', '.join(clash)} of the {name} table appear in another table too; "
                "rename or drop one copy"
            )
        names += side.column_names[1:]
    return names


def _table_rules(tables, schema: Schema, ov: ViewOverrides, key_cols: set[str], time_col):
    """Declared rules checked on the table holding their target; then each table's own."""
    rules = [rule_from_dict(r) for r in ov.derived]
    for name, table in tables.items():
        if table is None:
            continue
        mine = [r for r in rules if r.target in table.column_names]
        for rule in mine:
            check_rule(rule, table, ov.rule_agreement)
        if ov.detect_derived:
            skip = key_cols | {r.target for r in mine} | set(getattr(ov, name))
            times = [time_col] if name == "events" and time_col else []
            codes = set(id_like_columns(table, schema))
            rules += detect_rules(table, times, skip, ov.rule_agreement, codes)
    return rules


def read_atomic_view(
    dir_uri: str, name: str | None = None, storage: StorageConfig | None = None
) -> RelationalLog:
    """The view of a RecBole atomic dataset: `<name>.inter` with `.user` / `.item` if present."""
    name = name or str(dir_uri).rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
    parts = {}
    for suffix in ("inter", "user", "item"):
        uri = st.join(dir_uri, f"{name}.{suffix}")
        if suffix == "inter" or st.exists(uri, storage):
            parts[suffix] = read_atomic(uri, storage)
    inter = parts["inter"]
    roles = {"user_id": "user_id", "item_id": "item_id"}
    schema = infer_schema(inter, {k: v for k, v in roles.items() if k in inter.column_names})
    return view_from_tables(inter, parts.get("user"), parts.get("item"), schema)


def read_parquet_view(
    events_uri: str,
    users_uri: str | None = None,
    items_uri: str | None = None,
    schema: Schema | None = None,
    storage: StorageConfig | None = None,
) -> RelationalLog:
    """The view of three Parquet / CSV tables (files or published datasets, local or s3://)."""
    users, items = (st.read_table(u, storage) if u else None for u in (users_uri, items_uri))
    return view_from_tables(st.read_table(events_uri, storage), users, items, schema)
