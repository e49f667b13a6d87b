import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthrec.errors import SchemaError
from synthrec.schema import (
    Kind,
    Role,
    Schema,
    infer_schema,
    null_mask,
    time_column,
    validate_table,
)


def test_schema_infers_roles_on_ml100k(ml100k_dir):
    schema = infer_schema(pq.read_table(ml100k_dir / "events.parquet"))
    roles = {c.name: c.role for c in schema.columns}
    assert roles["user_id"] == Role.USER_ID and roles["item_id"] == Role.ITEM_ID
    assert (
        roles["click"] == Role.LABEL
        and roles["age"] == Role.NUMERIC
        and roles["genre"] == Role.CATEGORICAL
    )
    assert schema["release_year"].nullable and not schema["age"].nullable


def test_schema_text_and_overrides():
    t = pa.table({"review": ["a long free text here", "and another long one"], "n": [1, 7]})
    schema = infer_schema(t, {"n": "categorical"})
    assert schema["review"].role == Role.TEXT and schema["n"].role == Role.CATEGORICAL
    with pytest.raises(SchemaError, match="role 'shopper' is unknown"):
        infer_schema(t, {"n": "shopper"})
    with pytest.raises(SchemaError, match="lacks"):
        infer_schema(t, {"missing": "numeric"})


def test_schema_dict_round_trip_and_malformed():
    schema = infer_schema(pa.table({"user_id": ["a"], "x": [1.5]}))
    assert Schema.from_dict(schema.to_dict()) == schema
    with pytest.raises(SchemaError, match="malformed"):
        Schema.from_dict({"columns": {"x": {"role": "numeric"}}})


def test_schema_validate_string_label_with_three_values():
    t = pa.table({"y": ["yes", "no", "maybe"]})
    schema = Schema.from_dict({"columns": {"y": {"role": "label", "kind": "string"}}})
    with pytest.raises(SchemaError, match="binary"):
        validate_table(t, schema)


def test_schema_unsupported_type_is_named():
    with pytest.raises(SchemaError, match="'tags'.*not supported"):
        infer_schema(pa.table({"tags": pa.array([[1, 2]])}))


def test_schema_null_mask_counts_nan():
    assert null_mask(pa.chunked_array([[1.0, float("nan"), None]])).tolist() == [False, True, True]
    assert Kind("float") == Kind.FLOAT


def test_schema_infers_dictionary_encoded_strings():
    import pyarrow as pa

    from synthrec.schema import Role, infer_schema

    table = pa.table({"genre": pa.array(["Drama", "Comedy", "Drama"]).dictionary_encode()})
    assert infer_schema(table)["genre"].role == Role.CATEGORICAL


def test_schema_time_column_prefers_datetime_then_numeric_time_names():
    when = pa.array([0, 1], pa.timestamp("s"))
    assert time_column(infer_schema(pa.table({"ts": [5, 6], "placed": when}))) == "placed"
    assert time_column(infer_schema(pa.table({"x": [1, 2], "event_time": [5, 6]}))) == "event_time"
    assert time_column(infer_schema(pa.table({"timestamp": ["monday", "tuesday"]}))) is None
    assert time_column(infer_schema(pa.table({"x": [1, 2]}))) is None
