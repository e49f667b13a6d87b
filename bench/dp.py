"""Differentially private synthesizers at ε ∈ {1, 2, 5, 10}: synthrec's row GAN (DP-SGD on the
critic, noisy category counts) against smartnoise-synth 1.0.8's MST, AIM and DP-CTGAN, on
ML-100K and the demo log, in the same run.

    .venv/bin/python bench/dp.py [--epsilons 1,2,5,10] [--datasets ml100k,demo]
                                 [--systems synthrec,mst,aim,dpctgan] [--epochs 5] [--smoke]

Tables (every column categorical: the marginal methods need finite domains, and synthrec's DP
run covers categorical columns with noisy counts; numeric columns are binned on fixed, public
edges first, a data-independent transform):
- ml100k: events.parquet without ids and timestamp; age in MovieLens' own bands, release year
  by decade, hour, weekday, rating, click. Train = first 80,000 rows, test = last 20,000.
- demo: 50,000 rows of the simulator (seed 0) without ids, session, query and brand; age in
  bands, price on log-spaced edges. Train = first 40,000, test = last 10,000.
δ = 1/n^1.1 for the n training rows, for every system. Per (dataset, ε, system), each fitted
in its own child process: fit seconds, SDMetrics 0.32 QualityReport overall of the synthetic
table (as many rows as the train split) against the train split, and TSTR: ROC AUC of
HistGradientBoosting trained on the synthetic rows and tested on the real test split, as a
ratio to the same model trained on the real train split (label click; rating left out of
ml100k's features, since click = rating >= 4).

Notes the table carries: smartnoise's preprocessing reads each categorical column's values
from the data without noise (preprocessor_eps=0), synthrec's DP fit releases them through a
thresholded noisy histogram inside its ε; synthrec trains for `--epochs` expected passes (the
budget buys exactly those); the sequence generator has no DP training yet, so it is not in the
table, and neither is F trained on synthetic users (the row tables here have no user ids).
smartnoise runs in its own env (`bash bench/peers/setup_smartnoise.sh`); without it the
smartnoise systems are skipped with the reason. AIM is slow: 887 s for 2,400 rows at ε 2 on a
shared 2-core machine (the smoke run); `--timeout-s` caps each fit (a fit past it is reported
as failed, and the run goes on). Results go to bench/results/dp-*.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO.parent / "shared" / "datasets" / "ml-100k" / "events.parquet"
SMARTNOISE_PY = REPO / "bench" / ".venv" / "smartnoise" / "bin" / "python"
RUNNER = REPO / "bench" / "peers" / "smartnoise_runner.py"
RESULTS = REPO / "bench" / "results"
SMARTNOISE = ("mst", "aim", "dpctgan")
LABEL = "click"
ML_AGE_EDGES = [0, 18, 25, 35, 45, 50, 56, 200]  # MovieLens-1M's published age groups
DEMO_AGE_EDGES = [0, 18, 25, 35, 45, 55, 65, 200]
PRICE_EDGES = [0, 5, 10, 20, 50, 100, 200, 500, 1_000, 1e12]


def bands(col: pa.ChunkedArray, edges: list[float]) -> pa.Array:
    """Values -> 'lo-hi' labels of fixed edges (nulls -> 'missing')."""
    x = col.to_numpy(zero_copy_only=False).astype(np.float64)
    idx = np.clip(np.searchsorted(edges, np.nan_to_num(x, nan=-1), side="right") - 1, 0, None)
    labels = np.array([f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(edges) - 1)] + ["?"])
    out = labels[np.minimum(idx, len(labels) - 2)]
    out[np.isnan(x)] = "missing"
    return pa.array(out)


def as_strings(table: pa.Table) -> pa.Table:
    return pa.table({c: pc.cast(table[c], pa.string()) for c in table.column_names})


def ml100k(rows: int | None) -> tuple[pa.Table, pa.Table, list[str]]:
    t = pq.read_table(EVENTS).replace_schema_metadata(None)
    t = t.slice(0, rows) if rows else t
    cols = {
        "age": bands(t["age"], ML_AGE_EDGES),
        "gender": t["gender"],
        "occupation": t["occupation"],
        "zip_region": t["zip_region"],
        "genre": t["genre"],
        "decade": bands(t["release_year"], list(range(1900, 2011, 10))),
        "hour": t["hour"],
        "weekday": t["weekday"],
        "rating": t["rating"],
        LABEL: t[LABEL],
    }
    table = as_strings(pa.table(cols))
    cut = int(table.num_rows * 0.8)
    features = [c for c in table.column_names if c not in (LABEL, "rating")]
    return table.slice(0, cut), table.slice(cut), features


def demo(rows: int | None) -> tuple[pa.Table, pa.Table, list[str]]:
    from synthrec.config import SimulateConfig
    from synthrec.data.simulator import simulate

    t = simulate(SimulateConfig(rows=rows or 50_000, seed=0))
    cols = {
        "user_segment": t["user_segment"],
        "age": bands(t["age"], DEMO_AGE_EDGES),
        "gender": t["gender"],
        "region": t["region"],
        "device": t["device"],
        "category": t["category"],
        "price": bands(t["price"], PRICE_EDGES),
        "position": t["position"],
        LABEL: t[LABEL],
        "cart": t["cart"],
        "purchase": t["purchase"],
    }
    table = as_strings(pa.table(cols))
    cut = int(table.num_rows * 0.8)
    features = [c for c in table.column_names if c != LABEL]
    return table.slice(0, cut), table.slice(cut), features


DATASETS = {"ml100k": ml100k, "demo": demo}


# ------------------------------------------------------------------------------- children


def child_synthrec(train_uri: str, out_uri: str, epsilon: float, delta: float, epochs: int) -> dict:
    """synthrec's row GAN with gan.privacy: every column categorical (noisy counts)."""
    from synthrec.config import GanConfig
    from synthrec.gan import Synthesizer
    from synthrec.schema import ColumnSpec, Kind, Role, Schema

    train = pq.read_table(train_uri)
    schema = Schema([ColumnSpec(c, Role.CATEGORICAL, Kind.STRING) for c in train.column_names])
    cfg = GanConfig(batch_size=1_000, epochs=epochs, privacy={"epsilon": epsilon, "delta": delta})
    start = time.perf_counter()
    synth = Synthesizer().fit(train, schema, cfg, epochs=epochs)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    sample = synth.sample(train.num_rows, seed=1)
    sample_s = time.perf_counter() - start
    pq.write_table(sample, out_uri)
    dp = synth.metadata["differential_privacy"]
    return {
        "epsilon_dp_accounting": independent_epsilon(dp),
        "fit_s": fit_s,
        "sample_s": sample_s,
        "epsilon_spent": synth.metadata["epsilon_spent"],
        "noise_multiplier": dp["noise_multiplier"],
        "steps": dp["steps"],
        "encoder_epsilon": dp["encoder_epsilon"],
    }


def independent_epsilon(dp: dict) -> float:
    """The run's ε recomputed with Google's dp-accounting (RDP) from the metadata's events:
    the encoder's Gaussian release, then `steps` Poisson-sampled Gaussian steps."""
    from dp_accounting import dp_event, rdp

    acc = rdp.RdpAccountant()
    if dp["encoder_noise_multiplier"]:
        acc.compose(dp_event.GaussianDpEvent(dp["encoder_noise_multiplier"]))
    step = dp_event.GaussianDpEvent(dp["noise_multiplier"])
    acc.compose(dp_event.PoissonSampledDpEvent(dp["sample_rate"], step), dp["steps"])
    return float(acc.get_epsilon(dp["delta"] - dp["threshold_delta"]))


def run_child(system: str, train_uri: str, out_uri: str, eps: float, delta: float, args) -> dict:
    """Fit `system` in a child process; its result dict, or {"skipped": reason}."""
    if system == "synthrec":
        spec = json.dumps([train_uri, out_uri, eps, delta, args.epochs])
        cmd = [sys.executable, __file__, "--child", spec]
    else:
        if not SMARTNOISE_PY.exists():
            return {"skipped": "no smartnoise env: bash bench/peers/setup_smartnoise.sh"}
        rows = pq.read_metadata(train_uri).num_rows
        cmd = [str(SMARTNOISE_PY), str(RUNNER), train_uri, out_uri, "--synth", system]
        cmd += ["--epsilon", str(eps), "--delta", str(delta), "--rows", str(rows)]
        cmd += ["--epochs", str(args.epochs)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout_s)
    except subprocess.TimeoutExpired:
        return {"failed": f"no result within --timeout-s {args.timeout_s} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"failed": proc.stderr[-2000:]}
    return json.loads(lines[-1])


# ------------------------------------------------------------------------------- evaluation


def quality(real: pd.DataFrame, synth: pd.DataFrame) -> float:
    import warnings

    warnings.filterwarnings("ignore")
    from sdmetrics.reports.single_table import QualityReport

    meta = {"columns": {c: {"sdtype": "categorical"} for c in real.columns}}
    report = QualityReport()
    report.generate(real, synth[real.columns], meta, verbose=False)
    return float(report.get_score())


def tstr_auc(train: pd.DataFrame, test: pd.DataFrame, features: list[str]) -> float:
    """ROC AUC on the real test rows of HGB trained on `train` (codes of the real categories;
    unseen values missing)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    def codes(df: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(index=df.index)
        for c in features:
            code = pd.Categorical(df[c], categories=sorted(test[c].unique())).codes
            out[c] = np.where(code < 0, np.nan, code)
        return out

    y = (train[LABEL] == "1").astype(int)
    if y.nunique() < 2:
        return 0.5  # a synthetic table with one label value predicts nothing
    model = HistGradientBoostingClassifier(categorical_features=[True] * len(features))
    model.fit(codes(train), y)
    return float(
        roc_auc_score((test[LABEL] == "1").astype(int), model.predict_proba(codes(test))[:, 1])
    )


def evaluate(
    train: pa.Table, test: pa.Table, synth: pa.Table, features: list[str], real_auc: float
) -> dict:
    real_df, test_df = train.to_pandas(), test.to_pandas()
    synth_df = synth.to_pandas().astype(str)
    auc = tstr_auc(synth_df, test_df, features)
    return {
        "sdmetrics_overall": quality(real_df, synth_df),
        "tstr_auc": auc,
        "tstr_ratio": auc / real_auc,
    }


# ------------------------------------------------------------------------------- main


def table_md(results: list[dict]) -> str:
    head = (
        "| data | ε | system | SDMetrics overall | TSTR ratio | fit s | ε spent (dp-accounting) |\n"
    )
    head += "|---|---|---|---|---|---|---|\n"
    rows = []
    for r in results:
        if "skipped" in r or "failed" in r:
            why = r.get("skipped") or "failed (see json)"
            rows.append(f"| {r['dataset']} | {r['epsilon']:g} | {r['system']} | {why} | | | |")
            continue
        spent, other = r.get("epsilon_spent"), r.get("epsilon_dp_accounting")
        rows.append(
            f"| {r['dataset']} | {r['epsilon']:g} | {r['system']} | {r['sdmetrics_overall']:.3f} "
            f"| {r['tstr_ratio']:.3f} | {r['fit_s']:.0f} | "
            f"{'' if spent is None else f'{spent:.3f} ({other:.3f})'} |"
        )
    return head + "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epsilons", default="1,2,5,10")
    ap.add_argument("--datasets", default="ml100k,demo")
    ap.add_argument("--systems", default="synthrec,mst,aim,dpctgan")
    ap.add_argument("--epochs", type=int, default=5, help="synthrec's and DP-CTGAN's passes")
    ap.add_argument("--rows", type=int, default=None, help="first rows of each dataset only")
    ap.add_argument("--timeout-s", type=int, default=3_600, help="per fit")
    ap.add_argument("--smoke", action="store_true", help="ε 2, 3,000 rows, 1 epoch: a check")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child_synthrec(*json.loads(args.child))))
        return
    if args.smoke:
        args.epsilons, args.rows, args.epochs = "2", 3_000, 1
    epsilons = [float(e) for e in args.epsilons.split(",")]
    results, work = [], Path(tempfile.mkdtemp(prefix="dp-bench-"))
    for name in args.datasets.split(","):
        train, test, features = DATASETS[name](args.rows)
        train_uri = str(work / f"{name}-train.parquet")
        pq.write_table(train, train_uri)
        real_auc = tstr_auc(train.to_pandas(), test.to_pandas(), features)
        delta = 1.0 / train.num_rows**1.1
        print(
            f"{name}: {train.num_rows} train rows, δ = {delta:.3g}, real AUC {real_auc:.4f}",
            flush=True,
        )
        for eps in epsilons:
            for system in args.systems.split(","):
                out_uri = str(work / f"{name}-{eps:g}-{system}.parquet")
                res = {"dataset": name, "epsilon": eps, "delta": delta, "system": system}
                res.update(run_child(system, train_uri, out_uri, eps, delta, args))
                if "fit_s" in res:
                    res.update(evaluate(train, test, pq.read_table(out_uri), features, real_auc))
                res["real_auc"] = real_auc
                results.append(res)
                print(json.dumps(res)[:400], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"dp-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print(table_md(results))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
