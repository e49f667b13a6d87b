import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from synthrec import storage
from synthrec.data.eventlog import load_event_log
from synthrec.errors import DataError, SchemaError
from synthrec.schema import Kind, Role

GOOD = pa.table(
    {
        "customer": ["a", "b", "a"],
        "sku": ["x", "y", "z"],
        "price": [1.5, 2.0, 3.25],
        "bought": [0, 1, 0],
        "city": ["p", "q", "p"],
    }
)
SPEC = """
columns:
  customer: {role: user_id}
  sku: {role: item_id}
  price: {role: numeric}
  bought: {role: label}
  city: categorical
"""


def _write(tmp_path, table, name="log.parquet", spec=SPEC):
    data = tmp_path / name
    if name.endswith(".csv"):
        pacsv.write_csv(table, data)
    else:
        pq.write_table(table, data)
    schema = tmp_path / "schema.yaml"
    schema.write_text(spec)
    return str(data), str(schema)


@pytest.mark.parametrize("name", ["log.parquet", "log.csv"])
def test_eventlog_loads_with_schema_file(tmp_path, name):
    table, schema = load_event_log(*_write(tmp_path, GOOD, name))
    assert table.num_rows == 3
    assert schema.column_of(Role.USER_ID) == "customer" and schema["bought"].role == Role.LABEL
    assert schema["price"].kind == Kind.FLOAT


def test_eventlog_infers_roles_without_schema(tmp_path):
    data, _ = _write(
        tmp_path, GOOD.rename_columns(["user_id", "item_id", "price", "bought", "city"])
    )
    _, schema = load_event_log(data)
    assert [c.role for c in schema.columns] == [
        Role.USER_ID,
        Role.ITEM_ID,
        Role.NUMERIC,
        Role.LABEL,
        Role.CATEGORICAL,
    ]


def test_eventlog_published_dataset_uses_its_manifest_schema(tmp_path):
    uri = str(tmp_path / "ds")
    spec = {
        "columns": {
            n: {"role": r, "kind": k}
            for n, r, k in [
                ("customer", "user_id", "string"),
                ("sku", "item_id", "string"),
                ("price", "numeric", "float"),
                ("bought", "categorical", "int"),
                ("city", "categorical", "string"),
            ]
        }
    }
    storage.write_dataset(GOOD, uri, metadata={"schema": spec})
    _, schema = load_event_log(uri)
    assert schema["bought"].role == Role.CATEGORICAL  # the manifest wins over inference (label)


# --- every bad input of the foundation issue, item 6 -------------------------------------


def test_eventlog_missing_file(tmp_path):
    with pytest.raises(DataError, match="no file or dataset"):
        load_event_log(str(tmp_path / "nope.parquet"))


def test_eventlog_unreadable_format(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match="not readable as Parquet"):
        load_event_log(str(tmp_path / "bad.parquet"))
    (tmp_path / "log.xlsx").write_bytes(b"PK")
    with pytest.raises(DataError, match="unknown format"):
        load_event_log(str(tmp_path / "log.xlsx"))


def test_eventlog_empty_table(tmp_path):
    (tmp_path / "empty.csv").write_text("customer,sku,price,bought,city\n")
    with pytest.raises(SchemaError, match="empty"):
        load_event_log(str(tmp_path / "empty.csv"))


def test_eventlog_missing_column(tmp_path):
    data, schema = _write(tmp_path, GOOD.drop_columns(["price"]))
    with pytest.raises(SchemaError, match="lacks column.*price"):
        load_event_log(data, schema)


def test_eventlog_unexpected_column(tmp_path):
    data, schema = _write(tmp_path, GOOD.append_column("extra", pa.array([1, 2, 3])))
    with pytest.raises(SchemaError, match="unexpected column.*extra"):
        load_event_log(data, schema)


def test_eventlog_wrong_type(tmp_path):
    data, schema = _write(tmp_path, GOOD.set_column(2, "price", pa.array(["cheap", "mid", "dear"])))
    with pytest.raises(SchemaError, match="'price'.*does not fit role numeric"):
        load_event_log(data, schema)


def test_eventlog_declared_kind_mismatch(tmp_path):
    data, schema = _write(
        tmp_path, GOOD, spec=SPEC.replace("{role: numeric}", "{role: numeric, kind: int}")
    )
    with pytest.raises(SchemaError, match="'price'.*kind int"):
        load_event_log(data, schema)


@pytest.mark.parametrize("name", ["log.parquet", "log.csv"])
def test_eventlog_all_null_column(tmp_path, name):
    table = GOOD.set_column(2, "price", pa.array([None, None, None], pa.float64()))
    data, schema = _write(tmp_path, table, name)
    for kwargs in ({}, {"schema_uri": schema}):
        with pytest.raises(SchemaError, match="'price'.*all 3 values are null"):
            load_event_log(data, **kwargs)


def test_eventlog_non_binary_label(tmp_path):
    data, schema = _write(tmp_path, GOOD.set_column(3, "bought", pa.array([0, 1, 5])))
    with pytest.raises(SchemaError, match="'bought'.*binary"):
        load_event_log(data, schema)


def test_eventlog_ids_with_nulls(tmp_path):
    data, schema = _write(tmp_path, GOOD.set_column(0, "customer", pa.array(["a", None, "b"])))
    with pytest.raises(SchemaError, match="'customer'.*1 null ids"):
        load_event_log(data, schema)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("columns: [a, b]", "top-level 'columns'"),
        ("columns: {customer: {role: shopper}}", "role 'shopper' is unknown; allowed: user_id"),
        (
            "columns: {customer: {role: user_id, colour: red}}",
            "unknown key.*colour; allowed: role, kind, nullable",
        ),
        ("columns: {customer: {kind: int}}", "needs a mapping with a 'role'"),
        ("columns: {a: [unclosed", "not valid YAML"),
    ],
)
def test_eventlog_bad_schema_file(tmp_path, spec, message):
    data, schema = _write(tmp_path, GOOD, spec=spec)
    with pytest.raises(SchemaError, match=message):
        load_event_log(data, schema)


def test_eventlog_missing_schema_file(tmp_path):
    data, _ = _write(tmp_path, GOOD)
    with pytest.raises(SchemaError, match="schema file .* does not exist"):
        load_event_log(data, str(tmp_path / "none.yaml"))
