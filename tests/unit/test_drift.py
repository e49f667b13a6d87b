"""Drift between two periods of real data: per-column shape distance, time column left out."""

import numpy as np
import pyarrow as pa

from synthrec.evaluate.drift import column_drift, max_drift
from synthrec.schema import infer_schema


def _period(rng, share_a: float, mean: float, start: int) -> pa.Table:
    n = 2_000
    return pa.table(
        {
            "user_id": [f"u{i % 50}" for i in range(n)],
            "category": np.where(rng.random(n) < share_a, "a", "b").tolist(),
            "price": rng.normal(mean, 1.0, n),
            "timestamp": np.arange(start, start + n, dtype=np.int64),
        }
    )


def test_drift_is_small_for_the_same_distribution_and_names_the_shifted_column():
    rng = np.random.default_rng(0)
    before = _period(rng, 0.5, 10.0, 0)
    same = _period(rng, 0.5, 10.0, 10_000)
    shifted = _period(rng, 0.9, 10.0, 10_000)
    schema = infer_schema(before)
    calm = column_drift(before, same, schema)
    assert set(calm) == {"category", "price"}  # ids and the time column are not compared
    assert max_drift(calm)[1] < 0.06
    moved = column_drift(before, shifted, schema)
    assert max_drift(moved) == ("category", moved["category"]["distance"])
    assert 0.35 < moved["category"]["distance"] < 0.45  # TV distance of 0.5/0.5 vs 0.9/0.1
    assert moved["category"]["metric"] == "TVComplement"
