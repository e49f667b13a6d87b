"""Our fidelity equals sdmetrics 0.32's single-table QualityReport within 0.01 on ML-100K.

Two cases: the standard temporal real-vs-real split (first 80,000 rows vs last 20,000) and a
degraded copy of all 100,000 rows; both with sdmetrics' default pair thresholds and with
every pair counted (thresholds 0). sdmetrics samples 50,000 rows per contingency pair at
random, so it is seeded here and the tolerance covers its sampling noise.
"""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthrec.evaluate.columns import encode
from synthrec.evaluate.fidelity import fidelity
from synthrec.schema import Role, infer_schema

pytestmark = pytest.mark.integration

SDTYPE = {
    Role.USER_ID: "id",
    Role.ITEM_ID: "id",
    Role.CATEGORICAL: "categorical",
    Role.LABEL: "categorical",
    Role.NUMERIC: "numerical",
    Role.DATETIME: "datetime",
}


def degrade(table: pa.Table, seed: int = 0) -> pa.Table:
    """Blurred ages, uniform hours, 30 % of genres reassigned, ratings detached from clicks,
    5 % of release years dropped: every property gets worse, some pairs a lot."""
    rng = np.random.default_rng(seed)
    df = table.to_pandas()
    df["age"] = df["age"] + rng.normal(0, 8, len(df)).round().astype(np.int64)
    df["hour"] = rng.integers(0, 24, len(df))
    swap = rng.random(len(df)) < 0.3
    df.loc[swap, "genre"] = rng.choice(df["genre"].unique(), swap.sum())
    df["rating"] = rng.permutation(df["rating"].to_numpy())
    df.loc[rng.random(len(df)) < 0.05, "release_year"] = np.nan
    return pa.Table.from_pandas(df, preserve_index=False)


def _quality_report():
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # the single-table report is deprecated in favour of the unified one
        from sdmetrics.reports.single_table import QualityReport
    return QualityReport()


@pytest.fixture(scope="module")
def ml100k(ml100k_dir):
    return pq.read_table(ml100k_dir / "events.parquet")


@pytest.mark.parametrize("case", ["temporal_split", "degraded_copy"])
def test_fidelity_agrees_with_sdmetrics_quality_report(ml100k, case):
    real, synthetic = (
        (ml100k.slice(0, 80_000), ml100k.slice(80_000))
        if case == "temporal_split"
        else (ml100k, degrade(ml100k))
    )
    schema = infer_schema(real)
    assert schema["user_id"].role == Role.USER_ID and schema["click"].role == Role.LABEL
    ours = fidelity(encode([real, synthetic], schema))
    metadata = {"columns": {c.name: {"sdtype": SDTYPE[c.role]} for c in schema.columns}}
    real_df, syn_df = real.to_pandas(), synthetic.to_pandas()
    for counted_pairs, mine in (
        ("sdmetrics defaults", ours),
        ("every pair", ours["all_pairs"] | {"column_shapes": ours["column_shapes"]}),
    ):
        np.random.seed(0)  # sdmetrics subsamples contingency pairs with the global RNG
        report = _quality_report()
        if counted_pairs == "every pair":
            report.real_correlation_threshold = report.real_association_threshold = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report.generate(real_df, syn_df, metadata, verbose=False)
        props = report.get_properties().set_index("Property")["Score"]
        assert mine["overall"] == pytest.approx(report.get_score(), abs=0.01), counted_pairs
        assert mine["column_shapes"] == pytest.approx(props["Column Shapes"], abs=1e-9), (
            counted_pairs
        )
        assert mine["column_pair_trends"] == pytest.approx(props["Column Pair Trends"], abs=0.01), (
            counted_pairs
        )


def _events(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 70, n)
    price = rng.gamma(2.0, 10.0, n) + age / 2
    price[rng.random(n) < 0.05] = np.nan
    ts = np.datetime64("2024-01-01") + rng.integers(0, 90 * 86_400, n).astype("timedelta64[s]")
    return pa.table(
        {
            "user_id": [f"u{i}" for i in rng.integers(0, 80, n)],
            "age": age,
            "price": pa.array(price, from_pandas=True),
            "category": pa.array(
                np.where(rng.random(n) < 0.03, None, rng.choice(["books", "games", "music"], n))
            ),
            "ts": pa.array(ts, pa.timestamp("s")),
            "click": (rng.random(n) < age / 100).astype(np.int64),
        }
    )


def test_datetimes_and_nulls_agree_exactly_below_the_subsample_size():
    """A timestamp column (sdtype datetime) and nulls in numeric and categorical columns;
    under 50,000 rows sdmetrics does not subsample, so the scores are the same numbers."""
    real, synthetic = _events(20_000, 0), _events(20_000, 1)
    schema = infer_schema(real)
    assert schema["ts"].role == Role.DATETIME
    ours = fidelity(encode([real, synthetic], schema))
    metadata = {"columns": {c.name: {"sdtype": SDTYPE[c.role]} for c in schema.columns}}
    for thresholds, expected in ((None, ours["overall"]), (0, ours["all_pairs"]["overall"])):
        report = _quality_report()
        if thresholds is not None:
            report.real_correlation_threshold = report.real_association_threshold = thresholds
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report.generate(real.to_pandas(), synthetic.to_pandas(), metadata, verbose=False)
        assert expected == pytest.approx(report.get_score(), abs=1e-9)
