"""Encoder and its codecs: round trip, types, state without pickle, every error."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from encoding_tables import CFG, fit_table, make_table

from synthrec.encoding import DiscreteCodec, Encoder, IdCodec, NumericCodec
from synthrec.errors import DataError, ModelError
from synthrec.schema import infer_schema


@pytest.fixture(scope="module")
def fitted():
    return fit_table()


def test_transform_round_trip_keeps_values_types_and_nulls(fitted):
    table, enc = fitted
    matrix = enc.transform(table, seed=1)
    assert matrix.dtype == np.float32 and matrix.shape == (table.num_rows, enc.output_dim)
    back = enc.inverse_transform(matrix)
    assert back.schema == table.schema
    for name in ("user_id", "item_id", "genre", "brand", "qty", "click"):
        assert back.column(name).equals(table.column(name)), name
    assert back.column("price").null_count == table.column("price").null_count
    assert back.column("price").is_null().equals(table.column("price").is_null())
    for name in ("price", "age", "when"):
        x = (
            table.column(name)
            .cast(pa.int64() if name == "when" else pa.float64())
            .to_numpy(zero_copy_only=False)
        )
        y = (
            back.column(name)
            .cast(pa.int64() if name == "when" else pa.float64())
            .to_numpy(zero_copy_only=False)
        )
        ok = np.isnan(x) | (np.abs(x - y) <= 1e-6 * np.maximum(1.0, np.abs(x)))
        assert ok.mean() > 0.995, name  # only values > 4 sd from their mode are clipped


def test_transform_integers_stay_integral_and_in_range(fitted):
    table, enc = fitted
    rng = np.random.default_rng(0)
    parts = [
        rng.uniform(-1, 1, (500, s.size)) if s.kind == "scalar" else rng.integers(0, s.size, 500)
        for s in enc.spans
    ]
    out = enc.decode(parts)
    assert out.schema == table.schema
    age = out.column("age").to_numpy()
    assert age.dtype == np.int64 and age.min() >= 18 and age.max() <= 79


def test_transform_codecs_follow_roles_and_thresholds(fitted):
    _, enc = fitted
    kinds = {c.name: type(c) for c in enc.codecs}
    assert kinds["user_id"] is IdCodec and kinds["item_id"] is IdCodec and kinds["brand"] is IdCodec
    assert (
        kinds["genre"] is DiscreteCodec
        and kinds["qty"] is DiscreteCodec
        and kinds["click"] is DiscreteCodec
    )
    assert (
        kinds["age"] is NumericCodec
        and kinds["price"] is NumericCodec
        and kinds["when"] is NumericCodec
    )


def test_transform_state_is_json_and_arrays(fitted):
    import json

    table, enc = fitted
    meta, arrays = enc.state()
    json.dumps(meta)
    assert all(isinstance(a, np.ndarray) and a.dtype != object for a in arrays.values())
    again = Encoder.from_state(json.loads(json.dumps(meta)), arrays)
    np.testing.assert_array_equal(again.transform(table, seed=3), enc.transform(table, seed=3))
    assert again.inverse_transform(enc.transform(table)).equals(
        enc.inverse_transform(enc.transform(table))
    )


def test_transform_unseen_value_is_data_error(fitted):
    table, enc = fitted
    bad = table.set_column(2, "genre", pa.array(["zzz"] * table.num_rows))
    with pytest.raises(DataError, match="'genre'.*never saw"):
        enc.transform(bad)


def test_transform_missing_column_is_data_error(fitted):
    table, enc = fitted
    with pytest.raises(DataError, match="lacks column.*price"):
        enc.transform(table.drop_columns(["price"]))


def test_transform_empty_table_is_data_error():
    table = make_table(10).slice(0, 0)
    with pytest.raises(DataError, match="empty"):
        Encoder.fit(table, infer_schema(make_table(10), {"genre": "categorical"}), CFG)


def test_transform_bad_state_is_model_error(fitted):
    _, enc = fitted
    meta, arrays = enc.state()
    with pytest.raises(ModelError, match="format"):
        Encoder.from_state({**meta, "format": 99}, arrays)
    arrays.pop("age.means")
    with pytest.raises(ModelError, match="incomplete or corrupt"):
        Encoder.from_state(meta, arrays)


def test_encoding_old_encoder_format_says_to_retrain(fitted):
    _, enc = fitted
    meta, arrays = enc.state()
    with pytest.raises(ModelError, match="format 1 kept id draw weights.*retrain"):
        Encoder.from_state({**meta, "format": 1}, arrays)


def test_encoding_config_flat_gan_keys_still_load_with_a_warning():
    from pydantic import ValidationError

    from synthrec.config import GanConfig

    with pytest.warns(DeprecationWarning, match="gan.num_modes: write these under gan.encoder"):
        cfg = GanConfig(num_modes=3)
    assert cfg.encoder.num_modes == 3 and cfg == GanConfig(encoder={"num_modes": 3})
    with pytest.raises(ValidationError, match="num_modes given both"):
        GanConfig(num_modes=3, encoder={"num_modes": 4})


def test_encoding_codecs_share_one_protocol(fitted):
    table, enc = fitted
    for codec in enc.codecs:
        assert codec.meta["codec"] == codec.kind
        block = codec.transform(table.column(codec.name), np.random.default_rng(0))
        assert block.shape == (table.num_rows, sum(s.size for s in codec.span_specs()))
        assert len(codec.counts()) == len(codec.span_specs())
        again = type(codec)(codec.name, codec.meta, codec.arrays())  # from state
        assert again.span_specs() == codec.span_specs()
