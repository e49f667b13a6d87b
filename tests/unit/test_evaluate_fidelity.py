"""Fidelity metrics on tiny tables with answers worked out by hand (and scipy where it has one)."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest
from scipy.stats import ks_2samp
from scipy.stats.contingency import association

from synthrec.evaluate import fidelity_score
from synthrec.evaluate.columns import encode
from synthrec.evaluate.fidelity import (
    _bin_codes,
    _pearson_matrix,
    column_pairs,
    coverage,
    cramers_v,
    fidelity,
    ks_complement,
    tv_complement,
)
from synthrec.schema import ColumnSpec, Kind, Role, Schema

NAN = float("nan")


def _schema(**roles: Role) -> Schema:
    kinds = {
        Role.NUMERIC: Kind.FLOAT,
        Role.CATEGORICAL: Kind.STRING,
        Role.LABEL: Kind.INT,
        Role.USER_ID: Kind.STRING,
    }
    return Schema([ColumnSpec(n, r, kinds[r]) for n, r in roles.items()])


def test_ks_complement_known_answer_and_nulls_dropped():
    # ECDFs of {1,2,3,4} and {3,4,5,6} differ by at most 0.5 (at x = 2)
    assert ks_complement(np.array([1, 2, 3, 4, NAN]), np.array([3, 4, 5, 6.0])) == pytest.approx(
        0.5
    )
    assert ks_complement(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 1.0
    assert np.isnan(ks_complement(np.array([NAN]), np.array([1.0])))


@pytest.mark.parametrize("integral", [True, False])
def test_ks_complement_matches_scipy_on_both_paths(integral):
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 5, 3_000), rng.normal(1, 5, 5_000)
    if integral:  # the bincount path
        a, b = np.round(a), np.round(b)
    assert ks_complement(a, b) == pytest.approx(1 - ks_2samp(a, b).statistic, abs=1e-12)


def test_tv_complement_known_answer_ignores_nulls():
    # codes: 0 = a, 1 = b, 2 = null; (.5, .5) vs (.75, .25) -> TV 0.25
    assert tv_complement(
        np.array([0, 0, 1, 1, 2]), np.array([0, 0, 0, 1, 2, 2]), 3
    ) == pytest.approx(0.75)
    assert tv_complement(np.array([0]), np.array([1]), 3) == 0.0


def test_cramers_v_matches_scipy_and_drops_empty_rows():
    table = np.array(
        [[100, 150, 0], [203, 322, 0], [420, 700, 0], [320, 210, 0], [0, 0, 0]], dtype=float
    )
    expected = association(table[:4, :2].astype(int), method="cramer")
    assert cramers_v(table) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(cramers_v(np.array([[5.0, 3.0]])))


def test_pearson_matrix_uses_pairwise_complete_rows_and_nans_constants():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=200), rng.normal(size=200)
    y[::7] = NAN
    const = np.ones(200)
    corr = _pearson_matrix([x, x + y, const])
    keep = ~np.isnan(y)
    assert corr[0, 1] == pytest.approx(np.corrcoef(x[keep], (x + y)[keep])[0, 1], abs=1e-12)
    assert np.isnan(corr[0, 2]) and np.isnan(corr[1, 2])


def test_bin_codes_follow_sdmetrics_digitize():
    # edges 0, 1, ..., 10 over the table's own range; max and NaN both land in code 11
    codes = _bin_codes(np.array([0.0, 0.5, 5.0, 9.99, 10.0, NAN]), 10)
    assert codes.tolist() == [1, 1, 6, 10, 11, 11]


def _table(**cols) -> pa.Table:
    return pa.table(cols)


def test_pair_scores_known_answers():
    schema = _schema(x=Role.NUMERIC, y=Role.NUMERIC, c=Role.CATEGORICAL)
    real = _table(x=[1.0, 2, 3, 4], y=[1.0, 2, 3, 4], c=["a", "a", "b", "b"])
    syn = _table(x=[1.0, 2, 3, 4], y=[4.0, 3, 2, 1], c=["a", "b", "a", "b"])
    pairs = {tuple(p["columns"]): p for p in column_pairs(encode([real, syn], schema))}
    # r_real = 1, r_syn = -1 -> 1 - |1 - (-1)| / 2 = 0
    assert pairs[("x", "y")]["score"] == pytest.approx(0.0)
    # x bins: real (1,a) (4,b) ... joint cells {(1,a),(4,a),(7,b),(11,b)}
    # vs {(1,a),(4,b),(7,a),(11,b)}: TV = 0.5
    assert pairs[("x", "c")]["metric"] == "ContingencySimilarity"
    assert pairs[("x", "c")]["score"] == pytest.approx(0.5)
    assert pairs[("x", "c")]["real"] == pytest.approx(1.0)  # c is a function of x's bin: V = 1


def test_thresholds_count_only_strong_real_pairs():
    rng = np.random.default_rng(2)
    n = 2_000
    a = rng.normal(size=n)
    real = _table(a=a, strong=a + 0.1 * rng.normal(size=n), weak=rng.normal(size=n))
    syn = _table(a=a, strong=rng.normal(size=n), weak=rng.normal(size=n))
    schema = _schema(a=Role.NUMERIC, strong=Role.NUMERIC, weak=Role.NUMERIC)
    result = fidelity(encode([real, syn], schema))
    counted = [p["columns"] for p in result["pairs"] if p["counted"]]
    assert counted == [["a", "strong"]]  # |r| > 0.5 only there
    strong_score = result["pairs"][0]["score"]
    assert result["column_pair_trends"] == pytest.approx(strong_score)
    assert result["all_pairs"]["column_pair_trends"] == pytest.approx(
        np.mean([p["score"] for p in result["pairs"]])
    )
    assert result["overall"] == pytest.approx((result["column_shapes"] + strong_score) / 2)


def test_coverage_known_answers():
    schema = _schema(x=Role.NUMERIC, c=Role.CATEGORICAL)
    real = _table(x=[0.0, 5, 10, None], c=["a", "b", "c", "d"])
    syn = _table(x=[2.0, 10, 10, 10], c=["a", "b", "b", None])
    cover = coverage(encode([real, syn], schema))
    assert cover["c"]["score"] == pytest.approx(0.5)  # 2 of 4 real categories
    assert cover["x"]["score"] == pytest.approx(0.8)  # misses [0, 2) of [0, 10]


def test_ids_and_text_are_not_scored():
    schema = Schema(
        [
            ColumnSpec("user_id", Role.USER_ID, Kind.STRING),
            ColumnSpec("x", Role.NUMERIC, Kind.FLOAT),
            ColumnSpec("note", Role.TEXT, Kind.STRING),
        ]
    )
    t = _table(user_id=["u1", "u2"], x=[1.0, 2.0], note=["a b c", "d e f"])
    result = fidelity(encode([t, t], schema))
    assert list(result["columns"]) == ["x"] and result["pairs"] == []


def test_fidelity_score_is_cheap_deterministic_and_ranks_quality():
    rng = np.random.default_rng(3)
    n = 20_000
    age = rng.integers(18, 70, n)
    real = _table(
        age=age.astype(float),
        spend=age * 2.0 + rng.normal(0, 5, n),
        cat=rng.choice(list("abcdefgh"), n),
        click=(rng.random(n) < 0.3).astype(np.int64),
    )
    good = real.take(rng.permutation(n))
    bad = _table(
        age=rng.uniform(18, 70, n),
        spend=rng.uniform(0, 200, n),
        cat=rng.choice(list("ab"), n),
        click=(rng.random(n) < 0.9).astype(np.int64),
    )
    schema = _schema(age=Role.NUMERIC, spend=Role.NUMERIC, cat=Role.CATEGORICAL, click=Role.LABEL)
    start = time.perf_counter()
    score = fidelity_score(real, good, schema)
    assert time.perf_counter() - start < 1.0
    assert score == fidelity_score(real, good, schema)
    assert score > 0.95 > 0.6 > fidelity_score(real, bad, schema)
