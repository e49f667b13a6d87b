"""Differentially private synthesizers at ε ∈ {1, 2, 5, 10}: synthrec's row GAN (DP-SGD on the
critic, noisy category counts) against smartnoise-synth 1.0.8's MST, AIM and DP-CTGAN, on
ML-100K and the demo log, in the same run.

    .venv/bin/python bench/dp.py [--epsilons 1,2,5,10] [--datasets ml100k,demo]
                                 [--systems synthrec,sequences-nodp,sequences,mst,aim,dpctgan]
                                 [--epochs 5] [--seq-epochs 3] [--f-epochs 8] [--batch 1000]
                                 [--smoke]

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
HistGradientBoosting trained on the synthetic rows and tested on the real test split (the mean
of 5 seeded fits), as a ratio to the same model trained on the real train split (label click;
rating left out of ml100k's features, since click = rating >= 4).

Public domains (synthrec's `privacy.domains`, `public_domains` below): every column's value
list is declared public, so synthrec's DP fit releases a noisy count for each declared value
(inside its ε; none dropped, no threshold δ) instead of discovering the values through a
thresholded noisy histogram, which at ε = 1 on a few thousand rows dropped every value of a
column and refused the fit. The binned columns' lists are the bins of fixed, data-independent
edges (plus 'missing'), and hour, weekday, rating, the 0/1 labels and ML-100K's zip regions
are fixed scales. The other columns' lists (gender, occupation, genre; the simulator's
segments, regions, devices, categories and positions) are the data set's own categories, read
from the loaded rows without noise: the same footing smartnoise gets, whose preprocessing
reads each categorical column's values from the data without noise (preprocessor_eps=0).
The sequence generator's DP run declares the domains of its string user attributes the same
way (its users GAN gives them noisy counts); its other columns stay in `public_columns`.
synthrec trains for `--epochs` expected passes (the budget buys exactly those).

The sequence generator (user-level DP, `sequences`; without DP, once per data set,
`sequences-nodp`) learns the log with its ids and times (ML-100K: the
whole log, leave-last-out; demo: the row arm's training rows), its flattened output is binned
like the rows and scored on the same kind of split, and on ML-100K F is trained on its
synthetic users alone (bench/recommender.py's protocol) for NDCG@10.
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
TSTR_SEEDS = 5  # TSTR AUC is the mean of this many seeds (one seed moved ratios by up to 0.09)
ML_AGE_EDGES = [0, 18, 25, 35, 45, 50, 56, 200]  # MovieLens-1M's published age groups
DEMO_AGE_EDGES = [0, 18, 25, 35, 45, 55, 65, 200]
PRICE_EDGES = [0, 5, 10, 20, 50, 100, 200, 500, 1_000, 1e12]
DECADE_EDGES = list(range(1900, 2011, 10))


def bands(col: pa.ChunkedArray, edges: list[float]) -> pa.Array:
    """Values -> 'lo-hi' labels of fixed edges (nulls -> 'missing')."""
    x = col.to_numpy(zero_copy_only=False).astype(np.float64)
    idx = np.clip(np.searchsorted(edges, np.nan_to_num(x, nan=-1), side="right") - 1, 0, None)
    labels = np.array([f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(edges) - 1)] + ["?"])
    out = labels[np.minimum(idx, len(labels) - 2)]
    out[np.isnan(x)] = "missing"
    return pa.array(out)


def band_labels(edges: list[float]) -> list[str]:
    """Every label `bands` can give on `edges`: the bins and 'missing'."""
    return [f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(edges) - 1)] + ["missing"]


def digits(n: int, first: int = 0) -> list[str]:
    return [str(i) for i in range(first, first + n)]


# Fixed public value lists: bins of fixed edges and fixed scales (see the docstring)
FIXED_DOMAINS = {
    "ml100k": {
        "age": band_labels(ML_AGE_EDGES),
        "decade": band_labels(DECADE_EDGES),
        "hour": digits(24),
        "weekday": digits(7),
        "rating": digits(5, 1),
        "zip_region": [*digits(10), "other"],
        LABEL: digits(2),
    },
    "demo": {
        "age": band_labels(DEMO_AGE_EDGES),
        "price": band_labels(PRICE_EDGES),
        LABEL: digits(2),
        "cart": digits(2),
        "purchase": digits(2),
    },
}


def public_domains(name: str, table: pa.Table, columns: list[str] | None = None) -> dict:
    """privacy.domains of `columns` (default all) of `table`: the fixed lists above, else the
    data set's own categories (sorted distinct values of `table`, read without noise)."""
    out = {}
    for c in columns or table.column_names:
        fixed = FIXED_DOMAINS[name].get(c)
        values = pc.unique(pc.cast(table[c], pa.string()).drop_null()).to_pylist()
        out[c] = fixed if fixed is not None else sorted(values)
    return out


def as_strings(table: pa.Table) -> pa.Table:
    return pa.table({c: pc.cast(table[c], pa.string()) for c in table.column_names})


def ml100k(rows: int | None) -> tuple[pa.Table, pa.Table, list[str]]:
    t = pq.read_table(EVENTS).replace_schema_metadata(None)
    t = t.slice(0, rows) if rows else t
    table = ml100k_bins(t)
    cut = int(table.num_rows * 0.8)
    features = [c for c in table.column_names if c not in (LABEL, "rating")]
    return table.slice(0, cut), table.slice(cut), features


def ml100k_bins(t: pa.Table) -> pa.Table:
    """ML-100K's event log (ids and time dropped) as the all-categorical table on public bins."""
    cols = {
        "age": bands(t["age"], ML_AGE_EDGES),
        "gender": t["gender"],
        "occupation": t["occupation"],
        "zip_region": t["zip_region"],
        "genre": t["genre"],
        "decade": bands(t["release_year"], DECADE_EDGES),
        "hour": t["hour"],
        "weekday": t["weekday"],
        "rating": t["rating"],
        LABEL: t[LABEL],
    }
    return as_strings(pa.table(cols))


def demo(rows: int | None) -> tuple[pa.Table, pa.Table, list[str]]:
    table = demo_bins(demo_log(rows))
    cut = int(table.num_rows * 0.8)
    features = [c for c in table.column_names if c != LABEL]
    return table.slice(0, cut), table.slice(cut), features


def demo_log(rows: int | None) -> pa.Table:
    from synthrec.config import SimulateConfig
    from synthrec.data.simulator import simulate

    return simulate(SimulateConfig(rows=rows or 50_000, seed=0))


def demo_bins(t: pa.Table) -> pa.Table:
    """The simulator's log (ids, session, query and brand dropped) on public bins."""
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
    return as_strings(pa.table(cols))


DATASETS = {"ml100k": ml100k, "demo": demo}

# The sequence generator's DP runs: the columns declared public (public vocabularies: the
# catalog, rating scale, demographics' value lists, the simulator's own value lists), the
# string user attributes with public domains (SEQ_DOMAINS: noisy counts in the users GAN;
# their lists set in seq_data) and the public bounds (ML-100K's documented collection period,
# 1997-09-19 .. 1998-04-22; the simulator's configured period; a cap on events per user).
SEQ_PRIVACY = {
    "ml100k": {
        "public_columns": ["item_id", "rating", "age", "genre", "release_year"],
        "bounds": {"timestamp": [874_540_800, 893_376_000], "__events": [1, 1_000]},
    },
    "demo": {
        "public_columns": ["item_id", "device", "query", "position", "click", "cart"]
        + ["purchase", "age", "category", "brand", "price"],
        "bounds": {"__events": [1, 500]},  # + the simulator's period, set in seq_data
    },
}
SEQ_DOMAINS = {
    "ml100k": ["gender", "occupation", "zip_region"],
    "demo": ["user_segment", "gender", "region"],
}
SEQ_BATCH_USERS = 64  # expected users per DP-SGD step (and windows per step without DP)


def seq_data(name: str, rows: int | None) -> dict:
    """The sequence generator's training log (with ids and time) and the binned real tables
    its output is scored against. ml100k: the whole log (943 users), leave-last-out: each
    user's last two events are the test rows; F's protocol (bench/recommender.py) on the
    same split. demo: the row arm's own split (first 80% of the rows), no F."""
    if name == "ml100k":
        from synthrec.data.splits import leave_last_out

        full = pq.read_table(EVENTS).replace_schema_metadata(None)
        train = leave_last_out(full)[0]

        def key(t: pa.Table) -> pa.ChunkedArray:
            parts = [pc.cast(t[c], pa.string()) for c in ("user_id", "item_id", "timestamp")]
            return pc.binary_join_element_wise(*parts, "|")

        key, seen = key(full), key(train)
        test = full.filter(pc.invert(pc.is_in(key, value_set=seen)))
        return {
            "log": train,
            "train": ml100k_bins(train),
            "test": ml100k_bins(test),
            "features": [
                c for c in ml100k_bins(train.slice(0, 1)).column_names if c not in (LABEL, "rating")
            ],  # fmt: skip
            "privacy": {
                **SEQ_PRIVACY[name],
                "domains": public_domains(name, full, SEQ_DOMAINS[name]),
            },
        }
    t = demo_log(rows)
    cut = int(t.num_rows * 0.8)
    day = 86_400
    lo, hi = pc.min_max(t["timestamp"]).values()
    privacy = {**SEQ_PRIVACY[name], "domains": public_domains(name, t, SEQ_DOMAINS[name])}
    privacy["bounds"] = {
        **privacy["bounds"],
        "timestamp": [lo.as_py() // day * day, (hi.as_py() // day + 1) * day],
    }
    binned = demo_bins(t)
    return {
        "log": t.slice(0, cut),
        "train": binned.slice(0, cut),
        "test": binned.slice(cut),
        "features": [c for c in binned.column_names if c != LABEL],
        "privacy": privacy,
    }


# ------------------------------------------------------------------------------- children


def child_synthrec(
    train_uri: str,
    out_uri: str,
    epsilon: float,
    delta: float,
    epochs: int,
    batch: int = 1_000,
    domains: dict | None = None,
) -> dict:
    """synthrec's row GAN with gan.privacy: every column categorical, noisy counts over its
    public domain (`domains`; none: values through the noisy-count threshold)."""
    from synthrec.config import GanConfig
    from synthrec.gan import Synthesizer
    from synthrec.schema import ColumnSpec, Kind, Role, Schema

    train = pq.read_table(train_uri)
    schema = Schema([ColumnSpec(c, Role.CATEGORICAL, Kind.STRING) for c in train.column_names])
    privacy = {"epsilon": epsilon, "delta": delta, "domains": domains or {}}
    cfg = GanConfig(batch_size=batch, epochs=epochs, privacy=privacy)
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


def child_sequences(
    train_uri: str, out_uri: str, epsilon: float, delta: float, epochs: int, privacy: dict
) -> dict:
    """synthrec's sequence generator, user-level DP at `epsilon` (0: without DP, the
    reference), `epochs` passes, no adversarial phase; samples as many users as it learnt."""
    from synthrec.config import SequenceConfig
    from synthrec.sequences import SequenceSynthesizer

    train = pq.read_table(train_uri)
    priv = {**privacy, "epsilon": epsilon, "delta": delta} if epsilon else None
    cfg = SequenceConfig(
        seed=0, adversarial_steps=0, batch_size=SEQ_BATCH_USERS, epochs=epochs, privacy=priv
    )
    start = time.perf_counter()
    synth = SequenceSynthesizer().fit(train, cfg=cfg, epochs=epochs)
    fit_s = time.perf_counter() - start
    users = synth.metadata["metrics"]["users"]
    start = time.perf_counter()
    flat = synth.sample_table(users=users, seed=1)
    sample_s = time.perf_counter() - start
    pq.write_table(flat, out_uri)
    out = {"fit_s": fit_s, "sample_s": sample_s, "users": users, "events": flat.num_rows}
    if priv:
        dp = synth.metadata["differential_privacy"]
        users_part, seq_part = dp["users_gan"], dp["sequence_model"]
        out.update(
            epsilon_spent=synth.metadata["epsilon_spent"],
            epsilon_dp_accounting=independent_epsilon(users_part) + independent_epsilon(seq_part),
            noise_multiplier=seq_part["noise_multiplier"],
            steps=seq_part["steps"],
            users_noise_multiplier=users_part["noise_multiplier"],
        )
    return out


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
        spec = json.dumps([train_uri, out_uri, eps, delta, args.epochs, args.batch, args.domains])
        cmd = [sys.executable, __file__, "--child", spec]
    elif system.startswith("sequences"):
        epsilon = 0.0 if system == "sequences-nodp" else eps
        spec = [train_uri, out_uri, epsilon, delta, args.seq_epochs, args.seq_privacy]
        cmd = [sys.executable, __file__, "--child-sequences", json.dumps(spec)]
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
    unseen values missing), the mean over TSTR_SEEDS seeds."""
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
    aucs = []
    for seed in range(TSTR_SEEDS):  # seeded: its early stopping draws a validation split
        model = HistGradientBoostingClassifier(
            categorical_features=[True] * len(features), random_state=seed
        )
        model.fit(codes(train), y)
        truth = (test[LABEL] == "1").astype(int)
        aucs.append(roc_auc_score(truth, model.predict_proba(codes(test))[:, 1]))
    return float(np.mean(aucs))


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
        "| data | ε | system | SDMetrics overall | TSTR ratio | F synthetic-only NDCG@10 "
        "(share of no-DP) | fit s | ε spent (dp-accounting) |\n"
    )
    head += "|---|---|---|---|---|---|---|---|\n"
    nodp = {
        r["dataset"]: r["f_ndcg@10"]
        for r in results
        if r["system"] == "sequences-nodp" and "f_ndcg@10" in r
    }
    rows = []
    for r in results:
        eps = "-" if r["system"] == "sequences-nodp" else f"{r['epsilon']:g}"
        if "skipped" in r or "failed" in r:
            why = r.get("skipped") or "failed (see json)"
            rows.append(f"| {r['dataset']} | {eps} | {r['system']} | {why} | | | | |")
            continue
        spent, other = r.get("epsilon_spent"), r.get("epsilon_dp_accounting")
        f = r.get("f_ndcg@10")
        base = nodp.get(r["dataset"])
        f_cell = "" if f is None else f"{f:.4f}" + (f" ({f / base:.0%})" if base else "")
        rows.append(
            f"| {r['dataset']} | {eps} | {r['system']} | {r['sdmetrics_overall']:.3f} "
            f"| {r['tstr_ratio']:.3f} | {f_cell} | {r['fit_s']:.0f} | "
            f"{'' if spent is None else f'{spent:.3f} ({other:.3f})'} |"
        )
    return head + "\n".join(rows)


class FScorer:
    """F trained on synthetic users only, judged on ML-100K's real held-out items
    (bench/recommender.py's protocol, one seed, `f_epochs` cap)."""

    def __init__(self, f_epochs: int):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from recommender import F_CONFIG, load

        from synthrec.recommender.data import InteractionEncoder
        from synthrec.recommender.metrics import SegmentSpec, segment_masks, split_leave_last_out

        table = load()
        self.enc = InteractionEncoder.fit(table, F_CONFIG)
        self.split = split_leave_last_out(table, self.enc)
        self.masks, _ = segment_masks(
            self.split.test, self.enc.encode(self.split.train, "real train"), self.enc,
            SegmentSpec(),
        )  # fmt: skip
        self.f_epochs = f_epochs

    def __call__(self, flat: pa.Table, train_log: pa.Table) -> float:
        from sequences import f_runs

        flat = flat.select(train_log.column_names).cast(train_log.schema)
        out = f_runs(self.enc, self.split, self.masks, None, flat, 1, self.f_epochs)
        return out["ndcg@10"]


def rescore(results_json: Path, work: Path) -> None:
    """The row systems' results of an earlier run, scored again from its kept synthetic
    tables (same data split, this code's `evaluate`); fit figures are kept as they were."""
    run = json.loads(results_json.read_text())
    rows = run["args"].get("rows")
    data, out = {}, []
    for res in run["results"]:
        res = dict(res)
        path = work / f"{res['dataset']}-{res['epsilon']:g}-{res['system']}.parquet"
        if "fit_s" in res and not res["system"].startswith("sequences") and path.exists():
            if res["dataset"] not in data:
                train, test, features = DATASETS[res["dataset"]](rows)
                real = tstr_auc(train.to_pandas(), test.to_pandas(), features)
                data[res["dataset"]] = (train, test, features, real)
            train, test, features, real = data[res["dataset"]]
            res.update(evaluate(train, test, pq.read_table(path), features, real))
            res["real_auc"] = real
            res["rescored"] = True
        out.append(res)
        print(json.dumps(res)[:400], flush=True)
    dest = RESULTS / f"{results_json.stem}-rescored.json"
    dest.write_text(json.dumps({**run, "rescored_from": str(results_json), "results": out}))
    print(table_md(out))
    print(f"results: {dest}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epsilons", default="1,2,5,10")
    ap.add_argument("--datasets", default="ml100k,demo")
    ap.add_argument(
        "--systems", default="synthrec,sequences-nodp,sequences,mst,aim,dpctgan",
        help="sequences-nodp: the sequence generator without DP (once per data set)",
    )  # fmt: skip
    ap.add_argument("--epochs", type=int, default=5, help="synthrec's and DP-CTGAN's passes")
    ap.add_argument("--batch", type=int, default=1_000, help="the row GAN's expected batch")
    ap.add_argument("--seq-epochs", type=int, default=3, help="the sequence generator's passes")
    ap.add_argument("--f-epochs", type=int, default=8, help="F's epochs cap (synthetic only)")
    ap.add_argument("--rows", type=int, default=None, help="first rows of each dataset only")
    ap.add_argument("--timeout-s", type=int, default=3_600, help="per fit")
    ap.add_argument("--smoke", action="store_true", help="ε 2, 3,000 rows, 1 epoch: a check")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-sequences", help=argparse.SUPPRESS)
    ap.add_argument(
        "--rescore",
        nargs=2,
        metavar=("RESULTS_JSON", "WORK_DIR"),
        help="score a finished run's synthetic tables (kept in its dp-bench-* work folder) "
        "again with this code's evaluation; writes a new results file",
    )
    args = ap.parse_args()
    if args.rescore:
        rescore(Path(args.rescore[0]), Path(args.rescore[1]))
        return
    if args.child:
        print(json.dumps(child_synthrec(*json.loads(args.child))))
        return
    if args.child_sequences:
        print(json.dumps(child_sequences(*json.loads(args.child_sequences))))
        return
    if args.smoke:
        args.epsilons, args.rows, args.epochs = "2", 3_000, 1
    epsilons = [float(e) for e in args.epsilons.split(",")]
    systems = args.systems.split(",")
    results, work = [], Path(tempfile.mkdtemp(prefix="dp-bench-"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"dp-{time.strftime('%Y%m%d-%H%M%S')}.json"
    f_scorer = None

    def keep(res: dict) -> None:  # written after every fit: a cut run keeps what it did
        results.append(res)
        print(json.dumps(res)[:400], flush=True)
        out.write_text(
            json.dumps({"args": vars(args), "work": str(work), "results": results}, indent=1)
        )

    for name in args.datasets.split(","):
        train, test, features = DATASETS[name](args.rows)
        args.domains = public_domains(name, pa.concat_tables([train, test]))
        train_uri = str(work / f"{name}-train.parquet")
        pq.write_table(train, train_uri)
        real_auc = tstr_auc(train.to_pandas(), test.to_pandas(), features)
        delta = 1.0 / train.num_rows**1.1
        print(
            f"{name}: {train.num_rows} train rows, δ = {delta:.3g}, real AUC {real_auc:.4f}",
            flush=True,
        )
        seq = None
        if any(s.startswith("sequences") for s in systems):
            seq = seq_data(name, args.rows)
            seq["uri"] = str(work / f"{name}-seq-train.parquet")
            pq.write_table(seq["log"], seq["uri"])
            seq["users"] = len(pc.unique(seq["log"]["user_id"]))
            seq["delta"] = 1.0 / seq["users"] ** 1.1
            seq["real_auc"] = tstr_auc(seq["train"].to_pandas(), seq["test"].to_pandas(),
                                       seq["features"])  # fmt: skip
            print(f"{name} sequences: {seq['users']} users, δ = {seq['delta']:.3g}, real AUC "
                  f"{seq['real_auc']:.4f}", flush=True)  # fmt: skip
            if name == "ml100k" and f_scorer is None:
                f_scorer = FScorer(args.f_epochs)
        order = [("sequences-nodp", 0.0)] if "sequences-nodp" in systems else []
        order += [(s, e) for e in epsilons for s in systems if s != "sequences-nodp"]
        for system, eps in order:
            out_uri = str(work / f"{name}-{eps:g}-{system}.parquet")
            if system.startswith("sequences"):
                res = {"dataset": name, "epsilon": eps, "delta": seq["delta"], "system": system}
                args.seq_privacy = seq["privacy"]
                res.update(run_child(system, seq["uri"], out_uri, eps, seq["delta"], args))
                if "fit_s" in res:
                    try:  # a scoring error is recorded, the run goes on
                        flat = pq.read_table(out_uri)
                        binned = (ml100k_bins if name == "ml100k" else demo_bins)(flat)
                        res.update(evaluate(seq["train"], seq["test"], binned, seq["features"],
                                            seq["real_auc"]))  # fmt: skip
                        if f_scorer is not None and name == "ml100k":
                            res["f_ndcg@10"] = f_scorer(flat, seq["log"])
                    except Exception as e:  # noqa: BLE001
                        res["failed"] = f"scoring: {type(e).__name__}: {e}"
                res["real_auc"] = seq["real_auc"]
                keep(res)
                continue
            res = {"dataset": name, "epsilon": eps, "delta": delta, "system": system}
            res.update(run_child(system, train_uri, out_uri, eps, delta, args))
            if "fit_s" in res:
                res.update(evaluate(train, test, pq.read_table(out_uri), features, real_auc))
            res["real_auc"] = real_auc
            keep(res)
    print(table_md(results))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
