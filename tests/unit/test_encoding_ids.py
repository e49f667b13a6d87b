"""Catalog-scale ids: clusters, consistent decoding, label-aware draws, draw-weight calibration."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from encoding_tables import CFG, fit_table, make_table

from synthrec.encoding import Encoder
from synthrec.encoding.id_search import CALIB_LIMIT, CALIB_STEP, calibration_step, total_variation
from synthrec.schema import infer_schema


@pytest.fixture(scope="module")
def fitted():
    return fit_table()


def test_transform_ids_use_clusters_not_catalog_one_hot(fitted):
    _, enc = fitted
    ids = enc.codec("user_id")
    c = len(ids.values)
    onehot = [s for s in enc.spans if s.column == "user_id" and s.kind == "onehot"][0]
    assert onehot.size <= 2 * int(np.ceil(np.sqrt(c)))  # ~sqrt(C) clusters, not C
    assert ids.vectors.shape == (c, CFG.id_embedding_dim)  # memory ~ C x dim
    assert np.abs(ids.vectors).max() < 1


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
    # a flat kernel: each draw ~ frequency x calibration weight within the cluster
    ids.inv_h2 = np.float32(0.0)
    bias = np.random.default_rng(7).uniform(-1.5, 1.5, len(ids.freq)).astype(np.float32)
    weights = {"user_id": bias}  # the draw weights a generator would pass in

    def drawn(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        parts = [
            rng.uniform(-1, 1, (n, s.size)) if s.kind == "scalar" else rng.integers(0, s.size, n)
            for s in enc.spans
        ]
        parts[span] = rng.choice(len(clusters), n, p=clusters)  # clusters as in training
        out = enc.decode(parts, rng=rng, id_weights=weights)
        return np.bincount(ids.output_codes(out.column("user_id")), minlength=ids.num_ids)

    def total_variation_of(counts: np.ndarray) -> float:
        return 0.5 * np.abs(counts / counts.sum() - ids.freq / ids.freq.sum()).sum()

    before = total_variation_of(drawn(99))
    steps = []
    for seed in range(4):
        counts = drawn(seed)
        steps.append(total_variation(ids.freq, counts))
        weights["user_id"] = calibration_step(ids.freq, counts, weights["user_id"])
    after = total_variation_of(drawn(99))
    assert steps[0] == pytest.approx(before, abs=0.02)  # the sample's distance, as recorded
    assert before > 0.15 and after < 0.4 * before, (before, steps, after)
    assert np.abs(weights["user_id"]).max() <= CALIB_LIMIT
    # the encoder holds no draw weights: its state does not depend on the generator
    meta, arrays = enc.state()
    assert not any("calib" in k for k in arrays)
    assert (
        Encoder.from_state(meta, arrays)
        .decode(
            [
                np.zeros(3, np.int64) if s.kind == "onehot" else np.zeros((3, s.size))
                for s in enc.spans
            ]
        )
        .num_rows
        == 3
    )


def test_transform_id_calibration_steps_are_bounded():
    enc = Encoder.fit(make_table(), infer_schema(make_table()), CFG)
    ids = enc.codec("item_id")
    drawn = np.round(ids.freq / ids.freq.sum() * 10_000).astype(np.int64)
    drawn[0], drawn[1] = 0, drawn[1] * 100 + 100  # one id never drawn, one drawn far too often
    share = ids.freq / ids.freq.sum()
    assert total_variation(ids.freq, drawn) == pytest.approx(
        0.5 * np.abs(share - drawn / drawn.sum()).sum()
    )
    calib = calibration_step(ids.freq, drawn, np.zeros(len(ids.freq), np.float32))
    assert calib[0] > 0 and calib[1] == pytest.approx(-CALIB_STEP)
    for _ in range(10):
        calib = calibration_step(ids.freq, drawn, calib)
    assert calib[1] == pytest.approx(-CALIB_LIMIT) and np.abs(calib).max() <= CALIB_LIMIT
