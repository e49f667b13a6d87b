"""Fidelity, utility and privacy of synthetic tables, and a self-contained HTML report.

report = evaluate_report(real_df, synthetic_df, holdout_df)   # a Report: .metrics, .verdict,
report.to_html(); report.save("out/eval"); report.figures()   # the figures as matplotlib Figures

metrics = evaluate_synthetic(real, synthetic, holdout, schema, cfg, segments)
write_report(metrics, real, synthetic, holdout, "out/eval")   # report.html + metrics.json
run_evaluate(cfg)                                              # the same from URIs
fidelity_score(real, synthetic, schema)                        # cheap per-epoch proxy
"""

from synthrec.evaluate.api import Report, evaluate_report
from synthrec.evaluate.fidelity import fidelity_score
from synthrec.evaluate.report import (
    association_figure,
    dcr_figure,
    distribution_figure,
    segment_figure,
    sequence_figure,
    write_report,
)
from synthrec.evaluate.suite import evaluate_synthetic, run_evaluate

__all__ = [
    "Report",
    "association_figure",
    "dcr_figure",
    "distribution_figure",
    "evaluate_report",
    "evaluate_synthetic",
    "fidelity_score",
    "run_evaluate",
    "segment_figure",
    "sequence_figure",
    "write_report",
]
