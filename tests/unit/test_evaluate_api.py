"""`synthrec.evaluate_report`: the evaluation as a notebook calls it, on DataFrames."""

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import synthrec
from synthrec.errors import ConfigError, DataError


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "colour": rng.choice(["red", "blue", "green"], n),
            "price": rng.lognormal(2, 1, n),
            "bought": rng.integers(0, 2, n),
        }
    )


@pytest.fixture(scope="module")
def report():
    return synthrec.evaluate_report(_frame(400, 0), _frame(400, 1), holdout=_frame(200, 2))


def test_evaluate_report_on_dataframes_has_metrics_verdict_and_html(report, tmp_path):
    assert isinstance(report, synthrec.Report)
    assert 0 < report.metrics["fidelity"]["overall"] <= 1
    assert report.verdict is report.metrics["verdict"] and "passed" in report.verdict
    assert report.metrics["meta"]["rows"] == {"real": 400, "synthetic": 400, "holdout": 200}
    page = report.to_html()
    assert page.startswith("<!DOCTYPE html>") and 'id="privacy"' in page
    assert report._repr_html_() == page
    uri = report.save(str(tmp_path / "eval"))
    assert uri.endswith("report.html") and (tmp_path / "eval" / "report.html").exists()
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["fidelity"]["overall"] == report.metrics["fidelity"]["overall"]


def test_evaluate_report_figures_are_public_and_built_from_the_report(report):
    figures = report.figures()
    assert {"distributions", "associations", "dcr"} <= set(figures)
    assert all(isinstance(f, Figure) for f in figures.values())
    assert callable(synthrec.evaluate.distribution_figure)
    assert callable(synthrec.evaluate.dcr_figure)


def test_evaluate_report_usage_errors():
    with pytest.raises(DataError, match="synthetic: expected a pandas DataFrame"):
        synthrec.evaluate_report(_frame(50, 0), [[1, 2]])
    with pytest.raises(ConfigError, match="num_bin"):
        synthrec.evaluate_report(_frame(50, 0), _frame(50, 1), num_binz=3)
