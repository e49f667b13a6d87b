"""Privacy metrics on tiny tables with known answers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from synthrec.evaluate.columns import encode
from synthrec.evaluate.privacy import (
    Points,
    distance_points,
    evaluate_privacy,
    exact_copy_rate,
    mia_auc,
    nearest,
    nndr,
    row_hashes,
    share_closer_than,
)
from synthrec.schema import ColumnSpec, Kind, Role, Schema

SCHEMA = Schema(
    [
        ColumnSpec("user_id", Role.USER_ID, Kind.STRING),
        ColumnSpec("x", Role.NUMERIC, Kind.FLOAT, nullable=True),
        ColumnSpec("c", Role.CATEGORICAL, Kind.STRING),
    ]
)


def _t(users, xs, cs) -> pa.Table:
    return pa.table({"user_id": users, "x": pa.array(xs, pa.float64()), "c": cs})


def test_exact_copy_rate_counts_rows_equal_on_every_column():
    train = _t(["u1", "u2", "u3"], [0.0, 1.0, None], ["a", "b", "c"])
    syn = _t(["u1", "u2", "u3", "u1"], [0.0, 1.5, None, 0.0], ["a", "b", "c", "b"])
    cols = encode([train, syn], SCHEMA)
    # row 0 and row 2 (null equals null) are copies; row 1 differs in x, row 3 in c
    assert exact_copy_rate(row_hashes(cols, 1), row_hashes(cols, 0)) == pytest.approx(0.5)


def test_distance_space_scales_numerics_and_counts_mismatches():
    train = _t(["u1", "u2"], [0.0, 10.0], ["a", "b"])
    query = _t(["u1", "u9"], [5.0, 10.0], ["b", "b"])
    cols = encode([train, query], SCHEMA)
    ref, q = distance_points(cols, [0, 1], [np.arange(2), np.arange(2)])
    d = nearest(q, ref, k=2)
    # row 0 -> train 0: x 0.5 apart, c differs: sqrt(0.25 + 1);
    #       -> train 1: 0.5, user differs: sqrt(0.25 + 1)
    assert d[0].tolist() == pytest.approx([np.sqrt(1.25), np.sqrt(1.25)])
    # row 1 -> train 1: only the user differs: 1; -> train 0: x 1 apart + user + c: sqrt(3)
    assert d[1].tolist() == pytest.approx([1.0, np.sqrt(3.0)])


def test_nearest_matches_brute_force_over_tiles():
    rng = np.random.default_rng(0)
    q = Points(
        rng.random((300, 4), dtype=np.float32), rng.integers(0, 5, (300, 3)).astype(np.int32)
    )
    r = Points(
        rng.random((5_000, 4), dtype=np.float32), rng.integers(0, 5, (5_000, 3)).astype(np.int32)
    )
    d2 = ((q.numeric[:, None, :].astype(float) - r.numeric[None].astype(float)) ** 2).sum(-1) + (
        q.codes[:, None, :] != r.codes[None]
    ).sum(-1)
    expected = np.sort(np.sqrt(d2), axis=1)[:, :2]
    assert np.allclose(nearest(q, r, k=2), expected, atol=1e-12)
    assert np.allclose(nearest(q, r, k=1)[:, 0], expected[:, 0], atol=1e-12)


def test_share_nndr_and_mia_known_answers():
    assert share_closer_than(np.array([0.0, 0.1, 0.5, 1.0]), 0.2) == 0.5
    assert nndr(np.array([[1.0, 2.0], [0.0, 0.0], [0.0, 3.0]])).tolist() == [0.5, 1.0, 0.0]
    assert mia_auc(np.array([0.0, 0.1]), np.array([1.0, 2.0])) == 1.0  # members all closer
    assert mia_auc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.5


def test_copied_synthetic_data_fails_and_fresh_data_passes():
    rng = np.random.default_rng(1)
    n = 600

    def draw(size):
        return _t(
            [f"u{i}" for i in rng.integers(0, 50, size)],
            rng.normal(size=size),
            rng.choice(list("abcd"), size),
        )

    train, holdout, fresh = draw(n), draw(n), draw(n)
    copied = encode([train, train, holdout], SCHEMA)
    leak = evaluate_privacy(copied, True, query_rows=300, reference_rows=n, seed=0)
    assert leak["exact_copy_rate"] == 1.0
    assert leak["dcr_share_closer_than_holdout_p5"] == 1.0
    assert leak["mia_auc"] > 0.9
    ok = evaluate_privacy(
        encode([train, fresh, holdout], SCHEMA), True, query_rows=300, reference_rows=n, seed=0
    )
    assert ok["exact_copy_rate"] == 0.0
    assert ok["dcr_share_closer_than_holdout_p5"] < 0.15
    assert 0.4 < ok["mia_auc"] < 0.6
    assert ok["sample"]["synthetic_query_rows"] == 300


def test_without_holdout_baseline_metrics_are_none():
    t = _t(["u1", "u2"], [0.0, 1.0], ["a", "b"])
    out = evaluate_privacy(encode([t, t], SCHEMA), False, query_rows=10, reference_rows=10, seed=0)
    assert out["exact_copy_rate"] == 1.0
    assert out["mia_auc"] is None and out["dcr_share_closer_than_holdout_p5"] is None
    assert "holdout" in out["note"]


def test_pseudonymous_user_ids_neither_hide_copies_nor_push_rows_away():
    train = _t(["u1", "u2", "u3"], [0.0, 1.0, 2.0], ["a", "b", "c"])
    fake_users = ["u_0f3a9c1b2d4e5f60", "u_11aa22bb33cc44dd", "u_99ee88ff77aa6655"]
    syn = _t(fake_users, [0.0, 1.0, 2.0], ["a", "b", "c"])  # rows copied, users pseudonymized
    out = evaluate_privacy(encode([train, syn], SCHEMA), False, 10, 10, seed=0)
    assert out["exact_copy_rate"] == 1.0
    assert out["dcr"]["synthetic"]["median"] == 0.0 and "user_id" not in out["distance_columns"]
