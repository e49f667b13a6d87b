"""Encoder: round trip, types, ids at catalog scale, state without pickle, every error."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from synthrec.config import GanConfig
from synthrec.errors import DataError, ModelError
from synthrec.schema import infer_schema
from synthrec.transform import (
    CALIB_LIMIT,
    CALIB_STEP,
    DiscreteCodec,
    Encoder,
    IdCodec,
    NumericCodec,
)

CFG = GanConfig(mode_fit_rows=1_000, id_profile_rows=2_000, max_onehot_cardinality=16)


def make_table(n: int = 3_000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    price = np.round(rng.lognormal(3, 1, n), 2)
    price_mask = rng.random(n) < 0.05
    genre = rng.choice(["a", "b", "c", "d"], n, p=[0.6, 0.25, 0.1, 0.05])
    return pa.table(
        {
            "user_id": pa.array([f"u{i}" for i in rng.integers(0, 300, n)]),
            "item_id": pa.array(rng.zipf(1.5, n) % 500, pa.int64()),
            "genre": pa.array(genre).dictionary_encode(),
            "brand": pa.array(
                [f"b{i}" for i in rng.integers(0, 40, n)]
            ),  # above the one-hot threshold
            "price": pa.array(price, mask=price_mask),
            "qty": pa.array(rng.integers(1, 4, n), pa.int32()),  # few levels -> one-hot
            "age": pa.array(rng.integers(18, 80, n), pa.int64()),  # many levels -> modes
            "when": pa.array(1_700_000_000_000_000 + rng.integers(0, 10**12, n), pa.int64()).cast(
                pa.timestamp("us")
            ),
            "click": pa.array(rng.integers(0, 2, n), pa.int64()),
        }
    )


@pytest.fixture(scope="module")
def fitted():
    table = make_table()
    return table, Encoder.fit(table, infer_schema(table, {"genre": "categorical"}), CFG)


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


def test_transform_ids_use_clusters_not_catalog_one_hot(fitted):
    _, enc = fitted
    ids = enc.codec("user_id")
    c = len(ids.values)
    onehot = [s for s in enc.spans if s.column == "user_id" and s.kind == "onehot"][0]
    assert onehot.size <= 2 * int(np.ceil(np.sqrt(c)))  # ~sqrt(C) clusters, not C
    assert ids.vectors.shape == (c, CFG.id_embedding_dim)  # memory ~ C x dim
    assert np.abs(ids.vectors).max() < 1


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


def test_transform_ids_decode_consistently_with_the_columns_they_determine():
    rng = np.random.default_rng(0)
    items = rng.integers(0, 200, 4_000)
    genre_of, year_of = rng.choice(["a", "b", "c"], 200), rng.integers(1950, 2000, 200)
    table = pa.table(
        {
            "item_id": pa.array(items),
            "genre": pa.array(genre_of[items]),
            "year": pa.array(year_of[items].astype(float)),
            "noise": pa.array(rng.choice(["x", "y"], 4_000)),
        }
    )
    enc = Encoder.fit(table, infer_schema(table, {"item_id": "item_id"}), CFG)
    ids = enc.codec("item_id")
    assert set(ids.dep_sizes) == {"genre"} and set(ids.dep_numeric) == {
        "year"
    }  # 'noise' is not determined
    parts = [
        rng.uniform(-1, 1, (3_000, s.size))
        if s.kind == "scalar"
        else rng.integers(0, s.size, 3_000)
        for s in enc.spans
    ]
    out = enc.decode(parts).to_pandas()
    truth = table.to_pandas().drop_duplicates("item_id").set_index("item_id")
    assert (out["genre"].to_numpy() == truth.loc[out["item_id"], "genre"].to_numpy()).all()
    assert (out["year"].to_numpy() == truth.loc[out["item_id"], "year"].to_numpy()).all()
    genre_span = [i for i, s in enumerate(enc.spans) if s.column == "genre"][0]
    parts[genre_span] = np.zeros(3_000, np.int64)  # a condition: genre = 'a'
    out = enc.decode(parts, keep={"genre"}).to_pandas()
    assert (out["genre"] == "a").all() and (truth.loc[out["item_id"], "genre"] == "a").all()


def test_transform_ids_follow_the_row_labels_when_drawn():
    rng = np.random.default_rng(1)
    items = rng.integers(0, 200, 6_000)
    click = (rng.random(6_000) < np.where(items % 2 == 0, 0.9, 0.1)).astype(
        np.int64
    )  # item decides the label
    table = pa.table(
        {
            "item_id": pa.array(items),
            "genre": pa.array(np.where(items < 100, "a", "b")),
            "click": pa.array(click),
        }
    )
    enc = Encoder.fit(table, infer_schema(table, {"item_id": "item_id", "click": "label"}), CFG)
    ids = enc.codec("item_id")
    assert ids.meta["labels"] == ["click"]
    even = np.asarray(ids.values.to_numpy()) % 2 == 0
    assert (ids.label_logp["click"][even, 1] > ids.label_logp["click"][~even, 1].max()).all()
    parts = [
        rng.uniform(-1, 1, (4_000, s.size))
        if s.kind == "scalar"
        else rng.integers(0, s.size, 4_000)
        for s in enc.spans
    ]
    parts[1] = np.zeros_like(parts[1])  # an uninformative id vector: labels must decide
    out = enc.decode(parts, rng=np.random.default_rng(0)).to_pandas()
    assert ((out["item_id"] % 2 == 0) == (out["click"] == 1)).mean() > 0.58  # chance would be 0.5


def test_transform_id_calibration_corrects_a_per_id_bias_of_the_draws():
    table = make_table(20_000)
    enc = Encoder.fit(table, infer_schema(table), CFG)
    ids = enc.codec("user_id")
    n, span = 60_000, [i for i, s in enumerate(enc.spans) if s.column == "user_id"][0]
    clusters = ids.counts()[0] / ids.counts()[0].sum()
    ids.inv_h2 = np.float32(
        0.0
    )  # a flat kernel: each draw ~ frequency x calibration weight within the cluster
    ids.calib = (
        np.random.default_rng(7).uniform(-1.5, 1.5, len(ids.freq)).astype(np.float32)
    )  # the bias
    ids._tables = None

    def drawn(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        parts = [
            rng.uniform(-1, 1, (n, s.size)) if s.kind == "scalar" else rng.integers(0, s.size, n)
            for s in enc.spans
        ]
        parts[span] = rng.choice(len(clusters), n, p=clusters)  # clusters as in training
        return np.bincount(
            ids.codes(enc.decode(parts, rng=rng).column("user_id")), minlength=len(ids.freq)
        )

    def total_variation(counts: np.ndarray) -> float:
        return 0.5 * np.abs(counts / counts.sum() - ids.freq / ids.freq.sum()).sum()

    before = total_variation(drawn(99))
    steps = [ids.calibrate(drawn(seed)) for seed in range(4)]
    after = total_variation(drawn(99))
    assert steps[0] == pytest.approx(before, abs=0.02)  # calibrate reports the sample's distance
    assert before > 0.15 and after < 0.4 * before, (before, steps, after)
    assert np.abs(ids.calib).max() <= CALIB_LIMIT
    meta, arrays = enc.state()
    assert np.array_equal(
        Encoder.from_state(meta, arrays).codec("user_id").calib, ids.calib
    )  # saved with the model


def test_transform_id_calibration_steps_are_bounded():
    enc = Encoder.fit(make_table(), infer_schema(make_table()), CFG)
    ids = enc.codec("item_id")
    drawn = np.round(ids.freq / ids.freq.sum() * 10_000).astype(np.int64)
    drawn[0], drawn[1] = 0, drawn[1] * 100 + 100  # one id never drawn, one drawn far too often
    share = ids.freq / ids.freq.sum()
    assert ids.calibrate(drawn) == pytest.approx(0.5 * np.abs(share - drawn / drawn.sum()).sum())
    assert ids.calib[0] > 0 and ids.calib[1] == pytest.approx(-CALIB_STEP)
    for _ in range(10):
        ids.calibrate(drawn)
    assert ids.calib[1] == pytest.approx(-CALIB_LIMIT) and np.abs(ids.calib).max() <= CALIB_LIMIT
