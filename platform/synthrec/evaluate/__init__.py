"""Fidelity, utility and privacy of synthetic tables, and a self-contained HTML report.

metrics = evaluate_synthetic(real, synthetic, holdout, schema, cfg, segments)
write_report(metrics, real, synthetic, holdout, "out/eval")   # report.html + metrics.json
run_evaluate(cfg)                                              # the same from URIs
fidelity_score(real, synthetic, schema)                        # cheap per-epoch proxy
"""

from synthrec.evaluate.fidelity import fidelity_score
from synthrec.evaluate.report import write_report
from synthrec.evaluate.suite import evaluate_synthetic, run_evaluate

__all__ = ["evaluate_synthetic", "write_report", "run_evaluate", "fidelity_score"]
