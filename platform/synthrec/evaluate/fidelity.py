"""Fidelity as SDMetrics' single-table `QualityReport` (0.32) defines it, vectorized.

- Column shapes: per column, KS complement (continuous) or TV complement (discrete), nulls
  dropped; the property is the mean over columns. Ids and text are skipped (sdtype id).
- Column pair trends: per pair, correlation similarity `1 - |r_real - r_syn| / 2` (Pearson,
  rows where both are present) for two continuous columns, else contingency similarity
  `1 - TV(joint real, joint synthetic)` with nulls as their own category. A continuous
  column in a mixed pair is cut into 10 equal-width bins over *each table's own* range
  (np.histogram_bin_edges + np.digitize, NaN lands in the top bin), as sdmetrics does.
- sdmetrics' default pair thresholds: a correlation pair counts only when |r_real| > 0.5,
  a contingency pair only when Cramér's V of the real table > 0.3; with threshold 0 every
  pair counts ("all pairs"). Overall = mean of the two property scores (NaN skipped).

Differences from sdmetrics, all deliberate: every row is used (sdmetrics draws a random
50,000-row sample for each contingency pair when a table is larger), and Cramér's V is
computed on all real rows. The agreement test keeps the difference within 0.01.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Literal

import numpy as np
import pyarrow as pa

from synthrec.evaluate.columns import Column, Shape, encode
from synthrec.schema import Schema

NUM_BINS = 10  # sdmetrics' ContingencySimilarity / ColumnPairTrends discretization
CORRELATION_THRESHOLD = 0.5  # sdmetrics.reports.utils.DEFAULT_REAL_CORRELATION_THRESHOLD
ASSOCIATION_THRESHOLD = 0.3  # sdmetrics.reports.utils.DEFAULT_REAL_ASSOCIATION_THRESHOLD
KS_DECIMALS = 14  # sdmetrics rounds to sys.float_info.dig - 1 decimals before ks_2samp
DENSE_SPAN = 1 << 20  # integral columns with a smaller range get the O(n) bincount KS path

CORRELATION = "CorrelationSimilarity"
CONTINGENCY = "ContingencySimilarity"


# ---------------------------------------------------------------------------- column shapes


def ks_complement(real: np.ndarray, synthetic: np.ndarray) -> float:
    """1 - two-sample Kolmogorov-Smirnov D over non-null values; NaN if a side is empty."""
    a, b = real[~np.isnan(real)], synthetic[~np.isnan(synthetic)]
    if not len(a) or not len(b):
        return float("nan")
    a, b = np.round(a, KS_DECIMALS), np.round(b, KS_DECIMALS)
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    if hi - lo < DENSE_SPAN and _integral(a) and _integral(b):
        span = int(hi - lo) + 1
        cdf_a = np.cumsum(np.bincount((a - lo).astype(np.int64), minlength=span)) / len(a)
        cdf_b = np.cumsum(np.bincount((b - lo).astype(np.int64), minlength=span)) / len(b)
        return float(1.0 - np.abs(cdf_a - cdf_b).max())
    # Walk the merged sorted sample: each real value steps the ECDF gap up by 1/na, each
    # synthetic one down by 1/nb; read the gap only after the last copy of tied values.
    x = np.concatenate([a, b])
    order = np.argsort(x, kind="stable")
    steps = np.where(order < len(a), 1.0 / len(a), -1.0 / len(b))
    gap = np.cumsum(steps)
    xs = x[order]
    last_of_tie = np.append(xs[1:] != xs[:-1], True)
    return float(1.0 - np.abs(gap[last_of_tie]).max())


def _integral(x: np.ndarray) -> bool:
    return bool(np.all(x == np.floor(x)))


def tv_complement(real: np.ndarray, synthetic: np.ndarray, num_codes: int) -> float:
    """1 - total variation distance between category frequencies, nulls (last code) dropped."""
    pr = np.bincount(real, minlength=num_codes)[:-1].astype(np.float64)
    ps = np.bincount(synthetic, minlength=num_codes)[:-1].astype(np.float64)
    if not pr.sum() or not ps.sum():
        return float("nan")
    return float(1.0 - 0.5 * np.abs(pr / pr.sum() - ps / ps.sum()).sum())


def column_shapes(columns: dict[str, Column]) -> dict[str, dict]:
    """Per compared column: {"metric", "score"}; values[0] is real, values[1] synthetic."""
    out = {}
    for col in columns.values():
        real, syn = col.values[0], col.values[1]
        if col.shape == Shape.CONTINUOUS:
            out[col.name] = {"metric": "KSComplement", "score": ks_complement(real, syn)}
        elif col.shape == Shape.DISCRETE:
            out[col.name] = {
                "metric": "TVComplement",
                "score": tv_complement(real, syn, col.num_codes),
            }
    return out


# ---------------------------------------------------------------------------- coverage


def coverage(columns: dict[str, Column]) -> dict[str, dict]:
    """sdmetrics' CategoryCoverage (share of real categories the synthetic data has) and
    RangeCoverage (how much of the real [min, max] the synthetic range spans)."""
    out = {}
    for col in columns.values():
        real, syn = col.values[0], col.values[1]
        if col.shape == Shape.CONTINUOUS:
            out[col.name] = {"metric": "RangeCoverage", "score": _range_coverage(real, syn)}
        elif col.shape == Shape.DISCRETE:
            seen = np.bincount(real, minlength=col.num_codes)[:-1] > 0
            made = np.bincount(syn, minlength=col.num_codes)[:-1] > 0
            score = (seen & made).sum() / seen.sum() if seen.any() else float("nan")
            out[col.name] = {"metric": "CategoryCoverage", "score": float(score)}
    return out


def _range_coverage(real: np.ndarray, syn: np.ndarray) -> float:
    if np.isnan(real).all() or np.isnan(syn).all():
        return float("nan")
    lo_r, hi_r, lo_s, hi_s = np.nanmin(real), np.nanmax(real), np.nanmin(syn), np.nanmax(syn)
    if lo_r == hi_r:
        return float("nan")
    below = max((lo_s - lo_r) / (hi_r - lo_r), 0.0)
    above = max((hi_r - hi_s) / (hi_r - lo_r), 0.0)
    return float(max(1.0 - (below + above), 0.0))


# ---------------------------------------------------------------------------- pair trends


def column_pairs(columns: dict[str, Column], num_bins: int = NUM_BINS) -> list[dict]:
    """Every pair of compared columns, in schema order, with its similarity score and the
    real and synthetic association (Pearson r for two continuous columns, else Cramér's V)."""
    compared = [c for c in columns.values() if c.shape in (Shape.CONTINUOUS, Shape.DISCRETE)]
    continuous = [c.name for c in compared if c.shape == Shape.CONTINUOUS]
    corr = [_pearson_matrix([columns[n].values[t] for n in continuous]) for t in (0, 1)]
    at = {n: i for i, n in enumerate(continuous)}
    coded = {c.name: _codes(c, num_bins) for c in compared}
    pairs = []
    for c1, c2 in itertools.combinations(compared, 2):
        if c1.shape == c2.shape == Shape.CONTINUOUS:
            i, j = at[c1.name], at[c2.name]
            r_real, r_syn = corr[0][i, j], corr[1][i, j]
            score = 1.0 - abs(r_real - r_syn) / 2.0
            pairs.append(_pair(c1.name, c2.name, CORRELATION, score, r_real, r_syn))
        else:
            (a_real, a_syn, ka), (b_real, b_syn, kb) = coded[c1.name], coded[c2.name]
            t_real = _joint_counts(a_real, b_real, ka, kb)
            t_syn = _joint_counts(a_syn, b_syn, ka, kb)
            score = 1.0 - 0.5 * np.abs(t_real / t_real.sum() - t_syn / t_syn.sum()).sum()
            pairs.append(
                _pair(c1.name, c2.name, CONTINGENCY, score, cramers_v(t_real), cramers_v(t_syn))
            )
    return pairs


def _pair(a: str, b: str, metric: str, score: float, real: float, synthetic: float) -> dict:
    return {
        "columns": [a, b],
        "metric": metric,
        "score": float(score),
        "real": float(real),
        "synthetic": float(synthetic),
    }


def _codes(col: Column, num_bins: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(real codes, synthetic codes, number of codes) for the contingency tables."""
    if col.shape == Shape.DISCRETE:
        return col.values[0], col.values[1], col.num_codes
    return _bin_codes(col.values[0], num_bins), _bin_codes(col.values[1], num_bins), num_bins + 2


def _bin_codes(x: np.ndarray, num_bins: int) -> np.ndarray:
    """sdmetrics' discretization: equal-width edges over this table's own non-null range;
    np.digitize puts the maximum and NaN both in code num_bins + 1."""
    finite = x[~np.isnan(x)]
    edges = np.histogram_bin_edges(finite, bins=num_bins)
    return np.digitize(x, edges).astype(np.int32)


def _joint_counts(a: np.ndarray, b: np.ndarray, ka: int, kb: int) -> np.ndarray:
    """(ka, kb) contingency table of two code arrays."""
    joint = a.astype(np.int64) * kb + b
    return np.bincount(joint, minlength=ka * kb).reshape(ka, kb).astype(np.float64)


def cramers_v(table: np.ndarray) -> float:
    """Cramér's V of a contingency table (scipy's `association(..., 'cramer')`, no Yates
    correction) over its non-empty rows and columns; NaN when fewer than 2 of either."""
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if min(table.shape) < 2:
        return float("nan")
    n = table.sum()
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    chi2 = ((table - expected) ** 2 / expected).sum()
    return float(np.sqrt(chi2 / n / (min(table.shape) - 1)))


def _pearson_matrix(cols: list[np.ndarray]) -> np.ndarray:
    """(p, p) Pearson correlations over rows where both columns are present; NaN where a
    column is constant (sdmetrics raises ConstantInputError there and scores NaN)."""
    p = len(cols)
    if p < 2:
        return np.full((p, p), np.nan)
    x = np.column_stack(cols)  # (n, p)
    present = ~np.isnan(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        xc = np.where(present, x - np.nanmean(x, axis=0), 0.0)  # centred for precision
        if present.all():
            cov = xc.T @ xc
            sd = np.sqrt(np.diag(cov))
            corr = cov / np.outer(sd, sd)
        else:
            m = present.astype(np.float64)
            n = m.T @ m  # rows where both i and j are present
            s = xc.T @ m  # s[i, j]: sum of x_i over those rows
            sxx = (xc * xc).T @ m
            cov = xc.T @ xc - s * s.T / n
            var = sxx - s * s / n
            corr = cov / np.sqrt(var * var.T)
    constant = np.array(
        [np.nanmin(c) == np.nanmax(c) if present[:, i].any() else True for i, c in enumerate(cols)]
    )
    corr[constant, :] = np.nan
    corr[:, constant] = np.nan
    return corr


# ---------------------------------------------------------------------------- properties


def counted_score(pair: dict, correlation_threshold: float, association_threshold: float) -> float:
    """The pair's score where sdmetrics counts it under these thresholds, else NaN."""
    real = pair["real"]
    if pair["metric"] == CORRELATION:
        return float("nan") if abs(real) <= correlation_threshold else pair["score"]
    if association_threshold > 0 and not real > association_threshold:  # NaN V never counts
        return float("nan")
    return pair["score"]


def fidelity(
    columns: dict[str, Column],
    num_bins: int = NUM_BINS,
    correlation_threshold: float = CORRELATION_THRESHOLD,
    association_threshold: float = ASSOCIATION_THRESHOLD,
    details: bool = True,
) -> dict:
    """Column shapes, pair trends (sdmetrics thresholds and all pairs) and overall scores.

    `columns` holds real values at index 0 and synthetic at index 1.
    """
    shapes = column_shapes(columns)
    pairs = column_pairs(columns, num_bins)
    shape_score = _nanmean([s["score"] for s in shapes.values()])
    counted = [counted_score(p, correlation_threshold, association_threshold) for p in pairs]
    trends = _nanmean(counted)
    all_trends = _nanmean([counted_score(p, 0.0, 0.0) for p in pairs])
    out = {
        "overall": _nanmean([shape_score, trends]),
        "column_shapes": shape_score,
        "column_pair_trends": trends,
        "all_pairs": {
            "overall": _nanmean([shape_score, all_trends]),
            "column_pair_trends": all_trends,
            "num_pairs": len(pairs),
        },
        "thresholds": {"correlation": correlation_threshold, "association": association_threshold},
        "num_pairs_counted": int(np.sum(~np.isnan(counted))),
    }
    if details:
        cover = coverage(columns)
        for pair, score in zip(pairs, counted):
            pair["counted"] = bool(not np.isnan(score))
        out.update(
            columns=shapes,
            pairs=pairs,
            coverage={"overall": _nanmean([c["score"] for c in cover.values()]), "columns": cover},
        )
    return out


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr[~np.isnan(arr)].mean()) if (~np.isnan(arr)).any() else float("nan")


def pick(
    columns: dict[str, Column], real: int, synthetic: int, masks: tuple | None = None
) -> dict[str, Column]:
    """A two-table view (real at 0, synthetic at 1) of columns encoded over more tables,
    optionally restricted to rows where `masks` (real mask, synthetic mask) are true."""
    out = {}
    for name, col in columns.items():
        a, b = col.values[real], col.values[synthetic]
        if masks is not None:
            a, b = a[masks[0]], b[masks[1]]
        out[name] = replace(col, values=[a, b])
    return out


def fidelity_score(
    real: pa.Table,
    synthetic: pa.Table,
    schema: Schema,
    sample_rows: int = 5_000,
    seed: int = 0,
    pairs: Literal["sdmetrics", "all"] = "sdmetrics",
) -> float:
    """Cheap fidelity proxy (e.g. per training epoch): the overall score on at most
    `sample_rows` seeded random rows of each table. Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    tables = [_sample(t, sample_rows, rng) for t in (real, synthetic)]
    columns = encode([t.select(schema.names) for t in tables], schema)
    result = fidelity(columns, details=False)
    return result["overall"] if pairs == "sdmetrics" else result["all_pairs"]["overall"]


def _sample(table: pa.Table, rows: int, rng: np.random.Generator) -> pa.Table:
    if table.num_rows <= rows:
        return table
    return table.take(np.sort(rng.choice(table.num_rows, rows, replace=False)))
