"""Marginal calibration of sampled rows (gan/marginals.py): raking reaches the target shares,
the weighted subset is exact in size and seeded, and a DP model's rows follow its released
noisy counts more closely with it than without."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.config import EncoderConfig, GanConfig
from synthrec.gan import Synthesizer
from synthrec.gan.marginals import raking_weights, weighted_subset
from synthrec.schema import infer_schema


def test_raking_weights_reach_every_columns_target_shares():
    rng = np.random.default_rng(0)
    a = rng.choice(3, 20_000, p=[0.7, 0.2, 0.1])
    b = (a + rng.choice(2, 20_000, p=[0.8, 0.2])) % 2  # b depends on a
    targets = [np.array([1.0, 1.0, 2.0]), np.array([30.0, 70.0])]
    w = raking_weights([a, b], targets)
    for codes, t in zip((a, b), targets):
        shares = np.bincount(codes, weights=w, minlength=len(t)) / w.sum()
        np.testing.assert_allclose(shares, t / t.sum(), atol=1e-3)


def test_weighted_subset_is_exact_seeded_and_follows_the_weights():
    w = np.r_[np.full(5_000, 3.0), np.full(15_000, 1.0), np.zeros(5_000)]
    first = weighted_subset(w, 5_000, np.random.default_rng(1))
    again = weighted_subset(w, 5_000, np.random.default_rng(1))
    np.testing.assert_array_equal(first, again)
    assert len(np.unique(first)) == 5_000 and np.all(np.diff(first) > 0)
    assert not np.any(first >= 20_000), "a candidate of weight 0 was kept"
    heavy = np.mean(first < 5_000)  # kept with probability 1/2 vs 1/6: half of the subset
    assert 0.45 < heavy < 0.55, heavy


def _table(n: int = 3_000) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table(
        {
            "segment": rng.choice(["new", "loyal", "lapsed", "vip"], n, p=[0.5, 0.3, 0.15, 0.05]),
            "device": rng.choice(["app", "web"], n, p=[0.75, 0.25]),
            "click": rng.choice(["0", "1"], n, p=[0.9, 0.1]),
        }
    )


def _tv(table: pa.Table, synth: Synthesizer, column: str) -> float:
    codec = next(c for c in synth.encoder.codecs if c.name == column)
    target = codec.freq[: len(codec.values)] / codec.freq[: len(codec.values)].sum()
    counts = pc.value_counts(table[column]).to_pylist()
    got = {c["values"]: c["counts"] / table.num_rows for c in counts}
    return 0.5 * sum(abs(got.get(v, 0.0) - p) for v, p in zip(codec.values.to_pylist(), target))


def test_dp_model_rows_follow_the_released_counts_with_calibration():
    """A DP-SGD generator after one epoch draws its marginals poorly; calibrated draws
    follow the noisy counts the encoder released (the defaults turn it on under privacy)."""
    table = _table()
    cfg = GanConfig(
        embedding_dim=8,
        generator_dims=[16],
        critic_dims=[16],
        batch_size=200,
        privacy={"epsilon": 8.0},
        encoder=EncoderConfig(mode_fit_rows=500),
    )
    synth = Synthesizer().fit(table, infer_schema(table), cfg, epochs=1)
    assert synth.cfg.marginal_calibration is None and synth._calibrated
    calibrated = synth.sample(4_000, seed=3)
    np.testing.assert_array_equal(
        calibrated["segment"].to_numpy(), synth.sample(4_000, seed=3)["segment"].to_numpy()
    )
    synth.cfg = synth.cfg.model_copy(update={"marginal_calibration": False})
    synth._calibrated = []  # as a model with marginal_calibration false builds it
    raw = synth.sample(4_000, seed=3)
    for column in ("segment", "device", "click"):
        assert _tv(calibrated, synth, column) < 0.015, column
    assert sum(_tv(calibrated, synth, c) for c in ("segment", "device", "click")) < sum(
        _tv(raw, synth, c) for c in ("segment", "device", "click")
    )
    # a condition leaves the other columns' conditional shares alone: no calibration there
    assert set(synth.sample(100, conditions={"device": "web"}, seed=1)["device"].to_pylist()) == {
        "web"
    }
