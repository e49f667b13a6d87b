"""synthrec's Python API in one page: a log as a pandas DataFrame -> fit -> sample -> evaluate.

    python examples/quickstart.py [OUT_DIR]

The log is synthrec's simulated e-commerce search log (made up, not real data), small enough
to fit in seconds on a laptop CPU. Swap in your own DataFrame: one row per interaction; name
the user and item columns user_id / item_id or pass a schema (see README, "The schema file").
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa

import synthrec
from synthrec.artifacts import load_synthesizer, save_synthesizer
from synthrec.config import EvaluateConfig, SimulateConfig
from synthrec.data.simulator import simulate
from synthrec.evaluate import evaluate_synthetic, write_report

COLUMNS = ["user_id", "age", "device", "category", "item_id", "price", "click", "purchase"]


def main(out_dir: str = "quickstart-output") -> dict:
    world = SimulateConfig(rows=3_000, num_users=200, num_items=300, num_categories=6)
    df = simulate(world).select(COLUMNS).to_pandas()  # any DataFrame with these columns
    real, holdout = df.iloc[:2_400], df.iloc[2_400:]

    synth = synthrec.Synthesizer().fit(real, time_budget_s=10)  # a few epochs; more is better
    rows = synth.sample(1_000)  # a DataFrame, because fit got one; fresh rows on every call
    phones = synth.sample(200, conditions={"category": real["category"].iloc[0]}, seed=1)
    print(rows.head())
    print(f"conditioned sample: {len(phones)} rows, all {phones['category'].unique().tolist()}")

    model_uri = str(Path(out_dir) / "model")  # or s3://bucket/prefix
    save_synthesizer(synth, model_uri)  # a model directory: header JSON, weights, encoder
    again = load_synthesizer(model_uri)  # what `synthrec generate` and `synthrec serve` load
    same = again.sample(5, seed=3, return_type="arrow")
    assert same.equals(synth.sample(5, seed=3, return_type="arrow"))  # same model, same rows

    tables = [pa.Table.from_pandas(t, preserve_index=False) for t in (real, rows, holdout)]
    cfg = EvaluateConfig(privacy_query_rows=300, utility_max_train_rows=1_000)
    metrics = evaluate_synthetic(*tables, cfg=cfg)
    report = write_report(metrics, *tables, str(Path(out_dir) / "report"))
    print(f"fidelity {metrics['fidelity']['overall']:.3f}, report: {report}")
    return metrics


if __name__ == "__main__":
    main(*sys.argv[1:])
