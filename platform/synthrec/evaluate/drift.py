"""Drift of real data between two periods: each column's shape, as fidelity compares real and
synthetic data (KS complement for continuous columns, TV complement for discrete ones), with
the earlier period in the place of the real table. Distance = 1 - score: 0 when the period's
column has the same distribution, 1 when the two share nothing. Time columns are left out
(two periods differ there by construction), and so are ids (as fidelity skips them).
"""

from __future__ import annotations

import math

import pyarrow as pa

from synthrec.evaluate.columns import encode
from synthrec.evaluate.fidelity import column_shapes
from synthrec.schema import Role, Schema, time_column


def column_drift(previous: pa.Table, current: pa.Table, schema: Schema) -> dict[str, dict]:
    """{column: {"metric", "distance"}} for every compared column of `schema`."""
    when = time_column(schema)
    specs = [s for s in schema.columns if s.role != Role.DATETIME and s.name != when]
    kept = Schema([s for s in specs if s.name in previous.column_names])
    names = kept.names
    columns = encode([previous.select(names), current.select(names)], kept)
    return {
        name: {"metric": shape["metric"], "distance": round(1.0 - shape["score"], 4)}
        for name, shape in column_shapes(columns).items()
        if not math.isnan(shape["score"])
    }


def max_drift(drift: dict[str, dict]) -> tuple[str | None, float]:
    """The column that drifted most and its distance ((None, 0.0) when nothing was compared)."""
    if not drift:
        return None, 0.0
    name = max(drift, key=lambda n: drift[n]["distance"])
    return name, drift[name]["distance"]
