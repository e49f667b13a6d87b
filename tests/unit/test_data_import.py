"""`synthrec data import`: events + users + items tables, or a RecBole folder, published as one
event log whose manifest carries the schema the later commands read."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthrec import storage
from synthrec.cli import main
from synthrec.data.eventlog import load_event_log
from synthrec.data.importing import join_tables
from synthrec.errors import DataError
from synthrec.schema import Role

SCHEMA = """\
columns:
  uid: user_id
  sku: item_id
  ts: datetime
  age: numeric
  category: categorical
behaviour: {column: action, labels: {click: [view], purchase: [buy]}}
"""


def _tables():
    events = pa.table(
        {
            "uid": pa.array([3, 1, 3, 2, 1], pa.int64()),
            "sku": ["b", "a", "c", "a", "c"],
            "ts": pa.array([10, 11, 12, 13, 14], pa.int64()),
            "action": ["view", "buy", "view", "view", "buy"],
        }
    )
    users = pa.table({"uid": pa.array([1, 2, 3], pa.int64()), "age": [30, 40, 50]})
    items = pa.table({"sku": ["a", "b", "c"], "category": ["x", "y", "x"]})
    return events, users, items


def test_data_import_three_tables_publishes_one_log_with_its_schema(tmp_path, capsys):
    paths = {}
    for name, table in zip(("events", "users", "items"), _tables()):
        paths[name] = str(tmp_path / f"{name}.parquet")
        pq.write_table(table, paths[name])
    (tmp_path / "schema.yaml").write_text(SCHEMA)
    out = str(tmp_path / "log")
    code = main(["data", "import", "--events-uri", paths["events"], "--users-uri",
                 paths["users"], "--items-uri", paths["items"], "--user-key", "uid",
                 "--item-key", "sku", "--schema-uri", str(tmp_path / "schema.yaml"),
                 "--out-uri", out])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    table = storage.read_table(out)
    assert table["uid"].to_pylist() == [3, 1, 3, 2, 1]  # event order kept
    assert table["age"].to_pylist() == [50, 30, 50, 40, 30]
    assert table["category"].to_pylist() == ["y", "x", "x", "x", "x"]
    assert table["purchase"].to_pylist() == [0, 1, 0, 0, 1]
    _, schema = load_event_log(out)  # no schema file: the manifest's
    assert schema["uid"].role == Role.USER_ID and schema.behaviour.names == ["click", "purchase"]
    assert "published 5 rows" in capsys.readouterr().out


def test_data_import_recbole_folder(tmp_path, capsys):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "toy.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t10\t4\t100\n2\t11\t3\t101\n1\t11\t5\t102\n"
    )
    (folder / "toy.user").write_text("user_id:token\tage:float\n1\t20\n2\t30\n")
    out = str(tmp_path / "log")
    assert main(["data", "import", "--recbole-uri", str(folder), "--out-uri", out]) == 0
    table, schema = load_event_log(out)
    assert table["age"].to_pylist() == [20.0, 30.0, 20.0]
    assert schema["user_id"].role == Role.USER_ID and schema["item_id"].role == Role.ITEM_ID


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e, u, i: (e, pa.concat_tables([u, u.slice(0, 1)]), i), "1 repeated 'uid'"),
        (lambda e, u, i: (e, u.append_column("ts", pa.array([1, 2, 3])), i), "repeats events"),
        (lambda e, u, i: (e, u.rename_columns(["user", "age"]), i), "no key column 'uid'"),
        (
            lambda e, u, i: (e, u.set_column(0, "uid", pa.array(["p", "q", "r"])), i),
            "store both with one type",
        ),
    ],
)
def test_data_import_bad_side_tables_name_the_problem(change, message):
    events, users, items = change(*_tables())
    with pytest.raises(DataError, match=message):
        join_tables(events, users, items, "uid", "sku")


def test_data_import_needs_one_kind_of_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["data", "import", "--out-uri", str(tmp_path / "x")])
    assert exited.value.code == 2 and "--events-uri" in capsys.readouterr().err
