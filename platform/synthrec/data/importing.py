"""`synthrec data import`: a log kept in several tables -> one published event log.

Two shapes of input: a RecBole atomic folder (`<name>.inter`, with `<name>.user` and
`<name>.item` where they exist; `synthrec.atomic`), or three tables (events, users, items; any
file or dataset `storage.read_table` reads) joined on the user and the item key. A users or
items table must hold each key once (a key on two rows would copy its events), and its
columns other than the key must not repeat an events column. The joined log goes through the
schema file if one is given (roles, ignore, behaviour), is validated, and is published with
the applied schema in its manifest, so every later command reads those roles.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from synthrec import storage as st
from synthrec.atomic import _left_join, load_atomic
from synthrec.config import StorageConfig
from synthrec.data.eventlog import prepare_table
from synthrec.errors import DataError
from synthrec.schema import Schema


@dataclass(frozen=True)
class ImportSummary:
    out_uri: str
    num_rows: int
    columns: list[str]
    schema: Schema


def join_tables(
    events: pa.Table,
    users: pa.Table | None = None,
    items: pa.Table | None = None,
    user_key: str = "user_id",
    item_key: str = "item_id",
) -> pa.Table:
    """`events` with each event's user and item attributes (left joins; event order kept)."""
    for side, key, what in ((users, user_key, "users"), (items, item_key, "items")):
        if side is None:
            continue
        for table, where in ((events, "events"), (side, what)):
            if key not in table.column_names:
                raise DataError(
                    f"{where} table has no key column '{key}'; columns: "
                    f"{', '.join(table.column_names)}; set --{what[:-1]}-key"
                )
        repeated = side.num_rows - pc.count_distinct(side.column(key)).as_py()
        if repeated:
            raise DataError(
                f"{what} table: {repeated} repeated '{key}' value(s); each key needs one row "
                "(a repeated key would copy its events)"
            )
        clash = sorted(set(side.column_names) & set(events.column_names) - {key})
        if clash:
            raise DataError(
                f"{what} table repeats events column(s) {', '.join(clash)}; rename or drop "
                "them in one of the two tables"
            )
        want = events.schema.field(key).type
        if side.schema.field(key).type != want:
            try:
                side = side.set_column(
                    side.column_names.index(key), key, pc.cast(side.column(key), want)
                )
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise DataError(
                    f"{what} table's '{key}' is {side.schema.field(key).type} but the events' "
                    f"is {want}; store both with one type"
                ) from None
        events = _left_join(events, side, key)
    return events


def run_import(
    out_uri: str,
    *,
    events_uri: str | None = None,
    users_uri: str | None = None,
    items_uri: str | None = None,
    recbole_uri: str | None = None,
    recbole_name: str | None = None,
    user_key: str = "user_id",
    item_key: str = "item_id",
    schema_uri: str | None = None,
    storage: StorageConfig | None = None,
) -> ImportSummary:
    """Join the inputs, apply and check the schema, publish one dataset at `out_uri`."""
    if (recbole_uri is None) == (events_uri is None):
        raise DataError("give either a RecBole folder or an events table, not both or neither")
    if recbole_uri is not None:
        if users_uri or items_uri:
            raise DataError("a RecBole folder brings its own .user/.item files; drop the tables")
        table, source = load_atomic(recbole_uri, recbole_name, storage), {"recbole": recbole_uri}
    else:
        users, items = (st.read_table(u, storage) if u else None for u in (users_uri, items_uri))
        table = join_tables(st.read_table(events_uri, storage), users, items, user_key, item_key)
        source = {"events": events_uri, "users": users_uri, "items": items_uri}
    table, schema = prepare_table(table, schema_uri, storage, where="imported log")
    st.write_dataset(
        table,
        out_uri,
        storage,
        metadata={"schema": schema.to_dict(), "imported_from": source},
    )
    return ImportSummary(out_uri, table.num_rows, table.column_names, schema)
