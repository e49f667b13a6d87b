"""The evaluation as a notebook uses it: `evaluate_report` returns a `Report`.

    report = synthrec.evaluate_report(real_df, synthetic_df, holdout=holdout_df)
    report.verdict["passed"], report.metrics["fidelity"]["overall"]
    report                          # rendered inline in Jupyter
    report.figures()["distributions"]
    report.save("out/eval")         # report.html + metrics.json, as `synthrec evaluate`

The same metrics and page as `synthrec evaluate` (evaluate_synthetic + write_report).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from matplotlib.figure import Figure

from synthrec.config import EvaluateConfig, StorageConfig, validate_config
from synthrec.data.eventlog import with_schema
from synthrec.errors import DataError
from synthrec.evaluate.columns import encode
from synthrec.evaluate.report import (
    association_figure,
    dcr_figure,
    distribution_figure,
    render_html,
    segment_figure,
    sequence_figure,
    write_report,
)
from synthrec.evaluate.suite import evaluate_synthetic
from synthrec.schema import Schema


@dataclass
class Report:
    """Metrics of a synthetic table against the real one, and the tables they came from."""

    metrics: dict[str, Any]
    real: pa.Table
    synthetic: pa.Table
    holdout: pa.Table | None = None
    max_categories: int = 20

    @property
    def verdict(self) -> dict[str, Any]:
        """{"passed", "privacy_passed", "checks", "skipped"} against the configured limits."""
        return self.metrics["verdict"]

    def to_html(self) -> str:
        """The self-contained report page (inline CSS and figures), as `synthrec evaluate`
        writes it."""
        return render_html(
            self.metrics, self.real, self.synthetic, self.holdout, self.max_categories
        )

    def _repr_html_(self) -> str:  # Jupyter shows the report inline
        return self.to_html()

    def save(self, out_uri: str, storage: StorageConfig | None = None) -> str:
        """Write report.html and metrics.json under `out_uri` (a folder or an s3:// prefix);
        returns the report's URI."""
        return write_report(
            self.metrics,
            self.real,
            self.synthetic,
            self.holdout,
            out_uri,
            storage_cfg=storage,
            max_categories=self.max_categories,
        )

    def figures(self) -> dict[str, Figure]:
        """The report's figures by name (matplotlib Figures): "distributions",
        "associations", and "dcr", "segments", "sequences" where the metrics hold them."""
        m = self.metrics
        schema = Schema.from_dict(m["meta"]["schema"])
        columns = encode([t.select(schema.names) for t in (self.real, self.synthetic)], schema)
        fid = m["fidelity"]
        out = {
            "distributions": distribution_figure(columns, fid["columns"], self.max_categories),
            "associations": association_figure(fid["pairs"], list(fid["columns"])),
        }
        if m["privacy"].get("dcr_histogram"):
            out["dcr"] = dcr_figure(m["privacy"])
        if m.get("segments"):
            out["segments"] = segment_figure(m["segments"])
        seq = m.get("sequences") or {}
        if "histograms" in seq:
            runs = seq["privacy"]["longest_shared_run"].get("histogram")
            out["sequences"] = sequence_figure(seq["histograms"], runs)
        return out


def evaluate_report(
    real: Any,
    synthetic: Any,
    holdout: Any = None,
    schema: Schema | str | None = None,
    segments: dict | None = None,
    **config: Any,
) -> Report:
    """Fidelity, utility and privacy of `synthetic` against `real` (the generator's training
    rows), as `synthrec evaluate` measures them. Tables are pandas DataFrames or pyarrow
    Tables; `holdout` (real rows the generator never saw) enables the privacy baselines and is
    the utility test set. `schema`: a Schema or a schema file's path (default: inferred from
    `real`). `config`: any key of `synthrec config show evaluate` (label=, seed=, roles=...)."""
    cfg = validate_config(EvaluateConfig, config, source="evaluate_report")
    real, schema = with_schema(_arrow(real, "real"), schema)
    synthetic = with_schema(_arrow(synthetic, "synthetic"), schema)[0]
    if holdout is not None:
        holdout = with_schema(_arrow(holdout, "holdout"), schema)[0]
    metrics = evaluate_synthetic(real, synthetic, holdout, schema, cfg, segments)
    return Report(metrics, real, synthetic, holdout, cfg.report_max_categories)


def _arrow(table: Any, where: str) -> pa.Table:
    """A pyarrow Table from a Table or a pandas DataFrame (pandas is looked up, not
    imported: a DataFrame means it is loaded)."""
    if isinstance(table, pa.Table):
        return table
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(table, pandas.DataFrame):
        return pa.Table.from_pandas(table, preserve_index=False)
    raise DataError(
        f"{where}: expected a pandas DataFrame or a pyarrow Table, got {type(table).__name__}"
    )
