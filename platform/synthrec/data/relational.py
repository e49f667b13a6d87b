"""The relational view of an interaction log: a users table, a catalog and the events.

A flat log repeats each user's attributes on every one of their rows and each item's
attributes on every row that shows the item. `relational_view` finds those columns (constant
per user / per item on at least `key_threshold` of the keys seen twice or more), moves them
into a users table and a catalog (one row per key, in order of first appearance), and leaves
the rest as events: time, session, query, item, position, behaviour labels and anything that
varies within a user or an item. It also finds

- dependencies (synthrec.data.keys): a small DAG per table, a column's minimal determining
  columns (item -> brand -> category), so a generator draws the item and reads the rest;
- derived columns (synthrec.data.derived): hour / weekday / date of the time, a price band,
  a label of a behaviour column; they are dropped from the tables and recomputed by
  `flatten`, never generated apart.

Columns in a catalog that are not exactly constant per item (noise) take each item's most
frequent value; `report["conflicts"]` counts the keys and rows that disagreed, and `flatten`
gives those rows the catalog's value. synthrec.data.relational_tables builds the same view
from separate users / items / events tables (RecBole atomic files, Parquet).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from synthrec.config import StorageConfig
from synthrec.data import keys
from synthrec.data.derived import MIN_AGREEMENT, Rule, check_rule, rule_from_dict
from synthrec.data.derived_search import detect_rules
from synthrec.data.eventlog import read_schema_yaml
from synthrec.errors import DataError, SchemaError
from synthrec.schema import Role, Schema, infer_schema

KEY_THRESHOLD = 0.995  # share of repeated keys on which a column must be constant
TIME_NAMES = ("timestamp", "ts", "time", "event_time", "datetime", "timeframe", "eventdate")
EVENT_NAMES = {  # columns that describe one event, never a user's or an item's attribute
    "session": ("session_id", "sessionid", "session", "sid"),
    "query": ("query", "query_id", "queryid", "search_query", "searchstring", "search_term"),
    "position": ("position", "pos", "rank"),
    "behaviour": ("behavior_type", "behaviour_type", "behavior", "behaviour", "event", "action"),
}
TABLES = ("users", "items", "events")


@dataclass(frozen=True)
class ViewOverrides:
    """What the caller states instead of detection: columns forced into a table (their
    per-key constancy is then not tested), declared derived rules (checked on the data), and
    the thresholds."""

    users: tuple[str, ...] = ()
    items: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    derived: tuple[dict[str, Any], ...] = ()
    detect_derived: bool = True
    key_threshold: float = KEY_THRESHOLD
    rule_agreement: float = MIN_AGREEMENT

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ViewOverrides:
        data = dict(data or {})
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise SchemaError(
                f"relational overrides: unknown key(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(allowed)}"
            )
        for name in (*TABLES, "derived"):
            if isinstance(data.get(name), (str, dict)):
                data[name] = [data[name]]
            data[name] = tuple(data.get(name, ()))
        return cls(**data)

    def __post_init__(self) -> None:
        for name in ("key_threshold", "rule_agreement"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.5 <= value <= 1.0:
                raise SchemaError(
                    f"relational overrides: {name} is {value!r}; use a share in [0.5, 1]"
                )


def read_overrides(uri: str, storage: StorageConfig | None = None) -> ViewOverrides | None:
    """The `relational:` section of a schema YAML (beside its `columns:`), if it has one:

    relational:
      items: [brand]          # columns forced into a table
      derived: [{rule: hour, source: ts, target: hour, dtype: int64, unit: s, offset_s: 0}]
    """
    data = read_schema_yaml(uri, storage)
    section = data.get("relational") if isinstance(data, dict) else None
    if section is None:
        return None
    if not isinstance(section, dict):
        raise SchemaError(f"schema file {uri}: 'relational' must be a mapping of key -> value")
    return ViewOverrides.from_dict(section)


@dataclass
class RelationalLog:
    """A log as users, items and events. `users` / `items` are None when the log has no
    user / item column. Their first column is the key, one row per key."""

    events: pa.Table
    users: pa.Table | None = None
    items: pa.Table | None = None
    user_col: str | None = None
    item_col: str | None = None
    time_col: str | None = None
    event_cols: dict[str, str] = field(default_factory=dict)  # "session" / "query"... -> column
    dependencies: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # table -> DAG
    derived: list[Rule] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # the flat log's column order
    report: dict[str, Any] = field(default_factory=dict)

    def require_users(self) -> pa.Table:
        if self.users is None:
            raise no_key_error("user", self.columns)
        return self.users

    def require_items(self) -> pa.Table:
        if self.items is None:
            raise no_key_error("item", self.columns)
        return self.items

    def flatten(self) -> pa.Table:
        """One row per event with its user's and item's attributes and the derived columns,
        in the original column order."""
        flat = self.events
        for side, key, what in (
            (self.users, self.user_col, "users"),
            (self.items, self.item_col, "items"),
        ):
            if side is not None and side.num_columns > 1:
                index = pc.index_in(flat.column(key), value_set=side.column(key).combine_chunks())
                lost = index.null_count - flat.column(key).null_count
                if lost:
                    raise DataError(
                        f"{lost} events name a '{key}' missing from the {what} table; "
                        f"every event's {key} needs a row there"
                    )
                for name in side.column_names[1:]:
                    flat = flat.append_column(name, side.column(name).take(index))
        for rule in self.derived:
            flat = rule.apply(flat)
        return flat.select(self.columns or flat.column_names)

    def to_dict(self) -> dict[str, Any]:
        """The view's structure (keys, which columns sit where, dependencies, rules); no data."""
        tables = {"users": self.users, "items": self.items, "events": self.events}
        return {
            "user_col": self.user_col,
            "item_col": self.item_col,
            "time_col": self.time_col,
            "event_cols": dict(self.event_cols),
            "tables": {k: t.column_names for k, t in tables.items() if t is not None},
            "dependencies": self.dependencies,
            "derived": [r.to_dict() for r in self.derived],
            "columns": list(self.columns),
            "report": self.report,
        }

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        events: pa.Table,
        users: pa.Table | None = None,
        items: pa.Table | None = None,
    ) -> RelationalLog:
        """A view with the structure `to_dict` wrote and these tables (e.g. synthetic ones);
        each table must hold the columns the structure lists for it."""
        try:
            tables = data["tables"]
            given = {"users": users, "items": items, "events": events}
            for name, table in given.items():
                if (table is None) != (name not in tables):
                    raise DataError(
                        f"relational structure {'lists' if name in tables else 'has no'} a "
                        f"{name} table but {'none' if table is None else 'one'} was given"
                    )
                if table is not None:
                    given[name] = _select(table, tables[name], name)
            return cls(
                events=given["events"],
                users=given["users"],
                items=given["items"],
                user_col=data["user_col"],
                item_col=data["item_col"],
                time_col=data.get("time_col"),
                event_cols=dict(data.get("event_cols", {})),
                dependencies=data.get("dependencies", {}),
                derived=[rule_from_dict(r) for r in data.get("derived", [])],
                columns=list(data.get("columns", [])),
                report=data.get("report", {}),
            )
        except (KeyError, TypeError, AttributeError) as err:
            raise SchemaError(
                f"relational structure is malformed ({err!r}); write it with to_dict()"
            ) from None


# ---------------------------------------------------------------------------- one flat log


def relational_view(
    table: pa.Table,
    schema: Schema | None = None,
    overrides: ViewOverrides | dict[str, Any] | None = None,
) -> RelationalLog:
    """Split one flat log into users, items and events (see the module docstring)."""
    if table.num_rows == 0:
        raise DataError("the log is empty (0 rows); a relational view needs events")
    schema = schema or infer_schema(table)
    ov = overrides if isinstance(overrides, ViewOverrides) else ViewOverrides.from_dict(overrides)
    user_col, item_col = (
        key_column(schema, table, Role.USER_ID),
        key_column(schema, table, Role.ITEM_ID),
    )
    time_col, event_cols = find_time_column(table, schema), find_event_columns(table)
    _check_overrides(ov, table, user_col, item_col)
    key_cols = {c for c in (user_col, item_col) if c}
    rules = _rules(table, schema, ov, key_cols, time_col)
    derived = {r.target for r in rules}
    pinned = _pinned(schema, table, time_col, event_cols) | key_cols | derived
    free = [c for c in table.column_names if c not in pinned and c not in _forced(ov)]
    users_cols, items_cols, stats, codes = _assign(table, user_col, item_col, free, ov)
    report: dict[str, Any] = {"conflicts": {}, "anonymous_rows": {}}
    users = _side(codes, user_col, users_cols, stats.get("users", {}), report, "users")
    items = _side(codes, item_col, items_cols, stats.get("items", {}), report, "items")
    moved = set(users_cols) | set(items_cols) | derived
    events = table.select([c for c in table.column_names if c not in moved])
    tables = {"users": users, "items": items, "events": events}
    return RelationalLog(
        events=events,
        users=users,
        items=items,
        user_col=user_col,
        item_col=item_col,
        time_col=time_col,
        event_cols=event_cols,
        dependencies=dependencies_of(tables, user_col, item_col, schema, codes),
        derived=rules,
        columns=table.column_names,
        report=report,
    )


def find_time_column(table: pa.Table, schema: Schema) -> str | None:
    """The schema's datetime column, else the first column named like a time (timestamp, ts)."""
    for spec in schema.by_role(Role.DATETIME):
        if spec.name in table.column_names:
            return spec.name
    for name in table.column_names:
        if name.lower() in TIME_NAMES:
            return name
    return None


def find_event_columns(table: pa.Table) -> dict[str, str]:
    """Session / query / position / behaviour columns, found by name."""
    found = {}
    for what, names in EVENT_NAMES.items():
        hit = next((n for n in table.column_names if n.lower() in names), None)
        if hit is not None:
            found[what] = hit
    return found


def key_column(schema: Schema, table: pa.Table, role: Role) -> str | None:
    """The schema's column with `role` (user_id / item_id) present in `table`, or None."""
    name = next((c.name for c in schema.by_role(role) if c.name in table.column_names), None)
    if name is not None and table.column(name).null_count == table.num_rows:
        raise DataError(f"{role.value} column '{name}' holds only nulls; every event needs one")
    return name


def no_key_error(what: str, columns: list[str]) -> DataError:
    """The error for a step that needs a user / item column the log lacks."""
    return DataError(
        f"no {what} column: found columns [{', '.join(columns)}]; "
        f"set a column's role to {what}_id in the schema"
    )


def _forced(ov: ViewOverrides) -> set[str]:
    return set(ov.users) | set(ov.items) | set(ov.events)


def _check_overrides(ov: ViewOverrides, table: pa.Table, user_col, item_col) -> None:
    named = [c for name in TABLES for c in getattr(ov, name)]
    unknown = sorted(set(named) - set(table.column_names))
    if unknown:
        raise SchemaError(
            f"relational overrides name column(s) {', '.join(unknown)} that the log lacks; "
            f"columns: {', '.join(table.column_names)}"
        )
    twice = sorted({c for c in named if named.count(c) > 1})
    if twice:
        raise SchemaError(f"relational overrides put column(s) {', '.join(twice)} in two tables")
    keyed = sorted(set(named) & {user_col, item_col})
    if keyed:
        raise SchemaError(f"relational overrides move key column(s) {', '.join(keyed)}; keys stay")
    if ov.users and user_col is None:
        raise no_key_error("user", table.column_names)
    if ov.items and item_col is None:
        raise no_key_error("item", table.column_names)


def _rules(
    table: pa.Table, schema: Schema, ov: ViewOverrides, key_cols: set[str], time_col
) -> list[Rule]:
    """Declared rules (checked on the data), then detected ones for the other columns."""
    declared = [rule_from_dict(r) for r in ov.derived]
    for rule in declared:
        check_rule(rule, table, ov.rule_agreement)
    if not ov.detect_derived:
        return declared
    skip = key_cols | {r.target for r in declared} | set(ov.users) | set(ov.items)
    skip |= set(ov.events)  # a column placed by the caller is data, not recomputed
    codes = set(id_like_columns(table, schema))
    found = detect_rules(table, [time_col] if time_col else [], skip, ov.rule_agreement, codes)
    return declared + found


def _pinned(schema: Schema, table: pa.Table, time_col, event_cols) -> set[str]:
    """Columns that are events by nature: time, session, query, position, behaviour, labels."""
    pinned = set(event_cols.values()) | ({time_col} if time_col else set())
    roles = (Role.LABEL, Role.DATETIME)
    return pinned | {
        c.name for c in schema.columns if c.role in roles and c.name in table.column_names
    }


def _assign(table: pa.Table, user_col, item_col, free: list[str], ov: ViewOverrides):
    """Free columns constant per user / per item (on `key_threshold` of repeated keys) go to
    that side; one constant on both goes where it is more often constant, the catalog on a
    tie. Returns (users columns, items columns, per-side stats of every column checked)."""
    stats, codes = {}, keys.Codes(table)
    for side, key, forced in (("users", user_col, ov.users), ("items", item_col, ov.items)):
        if key is not None:
            stats[side] = keys.constancy(codes, key, [*free, *forced])
    users_cols, items_cols = list(ov.users), list(ov.items)
    for name in free:
        u = stats.get("users", {}).get(name)
        i = stats.get("items", {}).get(name)
        u_ok = u is not None and u.is_attribute(ov.key_threshold)
        i_ok = i is not None and i.is_attribute(ov.key_threshold)
        if i_ok and (not u_ok or i.share >= u.share):
            items_cols.append(name)
        elif u_ok:
            users_cols.append(name)
    order = table.column_names.index
    return sorted(users_cols, key=order), sorted(items_cols, key=order), stats, codes


def _side(codes, key, cols, stats, report, name) -> pa.Table | None:
    if key is None:
        return None
    side, conflicts, anonymous = keys.entity_table(codes, key, cols, stats)
    if conflicts:
        report["conflicts"][name] = conflicts
    if anonymous:
        report["anonymous_rows"][name] = anonymous
    return side


def dependencies_of(
    tables, user_col, item_col, schema: Schema, codes: keys.Codes | None = None
) -> dict[str, dict[str, list[str]]]:
    """The dependency DAG of each table present (entity tables rooted at their key); `codes`
    may hold the events' columns already encoded (the flat log's)."""
    roots = {"users": user_col, "items": item_col, "events": None}
    out = {}
    for name, table in tables.items():
        if table is not None:
            out[name] = keys.dependency_dag(
                table,
                roots[name],
                id_like_columns(table, schema),
                codes=codes if name == "events" else None,
            )
    return out


def id_like_columns(table: pa.Table, schema: Schema) -> list[str]:
    """Columns that can determine others: ids and categorical columns (not labels, not
    numbers, unless named like an id: Taobao's integer category_id)."""
    roles = {c.name: c.role for c in schema.columns}
    out = []
    for name in table.column_names:
        role = roles.get(name)
        lname = name.lower()
        dtype = table.column(name).type
        if role in (Role.USER_ID, Role.ITEM_ID, Role.CATEGORICAL) or (
            role != Role.LABEL
            and lname.endswith("id")
            and (pa.types.is_integer(dtype) or pa.types.is_string(dtype))
        ):
            out.append(name)
    return out


def _select(table: pa.Table, names: list[str], what: str) -> pa.Table:
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise DataError(
            f"{what} table lacks column(s) {', '.join(missing)} that the relational structure "
            f"lists; columns: {', '.join(table.column_names)}"
        )
    return table.select(names)
