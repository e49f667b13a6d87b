"""synthrec vs SDV's ctgan 0.12.1 vs MOSTLY AI's TabularARGN on MovieLens-100K, same machine,
same wall-clock budget.

    .venv/bin/python bench/gan_vs_ctgan.py [--budget-min 10] [--systems ctgan,synthrec,tabular_argn]

Train = first 80,000 rows of events.parquet, test = last 20,000. Each system is fitted in
its own child process (so its peak RSS is its own) for the same wall-clock budget, counted
from the start of fit() (encoding included); ctgan has no time budget, so SIGALRM stops its
training loop and the model trained so far is used. TabularARGN (`mostlyai-engine`, flat mode,
its defaults) runs in its own venv (`bash bench/peers/setup_argn.sh`; skipped, with the reason,
when it is not installed): its budget caps its training loop only (its `max_training_time`;
encoding comes on top) and its own early stopping on a 20% validation split stays on, so the
table says the seconds each system used and what stopped it. Then, per system: training rows/s,
encoder fit + transform seconds, sampling rows/s (median of 3 timed draws of 100,000 rows;
unconditional, and conditioned on genre=Documentary with the share of rows meeting it),
SDMetrics 0.32 QualityReport of 20,000 synthetic rows vs the train split (default pair
thresholds, and all pairs counted), TSTR ROC AUC for `click` (HistGradientBoosting on 80,000
synthetic rows, tested on the real test split, ratio to the same model trained on real rows),
exact-copy rate, median distance to the closest training record (synthetic vs real test rows,
and vs train rows left out one at a time), peak memory, and synthrec's sampling rows/s as a
share of the bound set by the generator's FLOPs per row and this machine's float32 matmul rate
(same thread count; best of 3 timings, so the bound is a peak). Results go to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from peers import tabular_argn

from synthrec.data.movielens import EVENT_COLUMNS

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO.parent / "shared" / "datasets" / "ml-100k" / "events.parquet"
TRAIN_ROWS = 80_000
SAMPLE_ROWS = 100_000
SAMPLE_REPEATS = 3  # sampling rates are the median of this many timed draws of SAMPLE_ROWS rows
DISCRETE = ["user_id", "item_id", "gender", "occupation", "zip_region", "genre"]
NUMERIC = ["age", "release_year", "hour", "weekday", "timestamp", "rating"]
# TSTR features: every event column but the target and rating (click = rating >= 4)
FEATURES = [c for c in EVENT_COLUMNS if c not in ("rating", "click")]
CONDITION = ("genre", "Documentary")


def splits() -> tuple[pa.Table, pa.Table]:
    table = pq.read_table(EVENTS).replace_schema_metadata(None)
    return table.slice(0, TRAIN_ROWS), table.slice(TRAIN_ROWS)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


def matmul_gflops(n: int = 2048, repeats: int = 10, trials: int = 3) -> float:
    """This machine's float32 matmul rate: the best of `trials` timings (the bound is a peak)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 * repeats / best / 1e9


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def sampling_rate(draw) -> tuple[float, list[float], object]:
    """(median rows/s, each draw's rows/s, the last sample) over SAMPLE_REPEATS timed calls of
    draw(i) for SAMPLE_ROWS rows: one timing spreads ~5% run to run on a shared machine."""
    rates, out = [], None
    for i in range(SAMPLE_REPEATS):
        out, s = timed(lambda i=i: draw(i))
        rates.append(SAMPLE_ROWS / s)
    return float(np.median(rates)), rates, out


# ------------------------------------------------------------------------------- children


def child_synthrec(budget_s: float, out: Path, overrides: dict) -> dict:
    import torch

    from synthrec.config import GanConfig
    from synthrec.gan import Synthesizer, generator_flops_per_row

    train, _ = splits()
    # user_id is scored against real users (sdmetrics, TSTR), as CTGAN emits them: keep real
    # ids here (the library's default pseudonymizes them)
    cfg = GanConfig(**{"encoder": {"id_policy": "keep"}, **overrides})
    synth, fit_s = timed(lambda: Synthesizer().fit(train, cfg=cfg, time_budget_s=budget_s))
    m = synth.metadata["metrics"]
    res = {
        "fit_s": fit_s,
        "peak_rss_gib": peak_rss_gib(),
        "encoder_s": m["encode_seconds"],
        "epochs": m["epochs"],
        "train_rows_per_s": m["train_rows_per_s"],
        "stopped_by": "time budget",
        "config": cfg.model_dump(mode="json"),
        "id_calibration": synth.metadata.get("id_calibration"),
    }
    synth.sample(20_000, seed=99)  # warm-up
    res["sample_rows_per_s"], res["sample_rows_per_s_each"], _ = sampling_rate(
        lambda i: synth.sample(SAMPLE_ROWS, seed=1 + i)
    )
    res["cond_rows_per_s"], res["cond_rows_per_s_each"], cond = sampling_rate(
        lambda i: synth.sample(SAMPLE_ROWS, conditions={CONDITION[0]: CONDITION[1]}, seed=11 + i)
    )
    res["cond_share"] = float(
        np.mean(cond.column(CONDITION[0]).to_numpy(zero_copy_only=False) == CONDITION[1])
    )
    gflops, flops = matmul_gflops(), generator_flops_per_row(synth.generator)
    res.update(
        matmul_gflops=gflops,
        generator_flops_per_row=flops,
        flop_bound_rows_per_s=gflops * 1e9 / flops,
        threads=torch.get_num_threads(),
    )
    res["flop_bound_share"] = res["sample_rows_per_s"] / res["flop_bound_rows_per_s"]
    pq.write_table(synth.sample(TRAIN_ROWS, seed=3), out / "synthrec.parquet")
    return res


class BudgetReached(Exception):
    pass


def child_ctgan(budget_s: float, out: Path, overrides: dict) -> dict:
    import torch
    from ctgan import CTGAN
    from ctgan import data_transformer as dt
    from ctgan.synthesizers import ctgan as ct

    train, _ = splits()
    df = train.to_pandas()
    # ctgan rejects nulls in continuous columns: its 15 null release_year values get the median
    df["release_year"] = df["release_year"].fillna(df["release_year"].median())
    timers = {"transformer_fit": 0.0, "transformer_transform": 0.0, "rows": 0}

    def timing(name, fn):
        def wrapped(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timers[name] += time.perf_counter() - start

        return wrapped

    dt.DataTransformer.fit = timing("transformer_fit", dt.DataTransformer.fit)
    dt.DataTransformer.transform = timing("transformer_transform", dt.DataTransformer.transform)
    sample_data = ct.DataSampler.sample_data

    def counting(self, data, n, col, opt):
        if timers.get("expired") and timers["rows"]:
            raise BudgetReached()  # the budget ran out while encoding: stop after one training step
        timers["rows"] += n
        return sample_data(self, data, n, col, opt)

    ct.DataSampler.sample_data = counting
    model = CTGAN(enable_gpu=False, epochs=100_000, **overrides)

    def stop(*_):
        timers["expired"] = True
        if timers["rows"]:  # training has started: stop now (before it, a model would not exist)
            raise BudgetReached()

    signal.signal(signal.SIGALRM, stop)
    start = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, budget_s)
    try:
        model.fit(df, discrete_columns=DISCRETE)
    except BudgetReached:
        pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    fit_s = time.perf_counter() - start
    encode_s = timers["transformer_fit"] + timers["transformer_transform"]
    res = {
        "fit_s": fit_s,
        "peak_rss_gib": peak_rss_gib(),
        "encoder_s": encode_s,
        "encoder_fit_s": timers["transformer_fit"],
        "encoder_transform_s": timers["transformer_transform"],
        "train_rows_per_s": timers["rows"] / max(fit_s - encode_s, 1e-9),
        "threads": torch.get_num_threads(),
        "epochs": round(timers["rows"] / len(df), 2),
        "stopped_by": "time budget",
    }
    model.sample(20_000)  # warm-up
    res["sample_rows_per_s"], res["sample_rows_per_s_each"], _ = sampling_rate(
        lambda i: model.sample(SAMPLE_ROWS)
    )
    res["cond_rows_per_s"], res["cond_rows_per_s_each"], cond = sampling_rate(
        lambda i: model.sample(
            SAMPLE_ROWS, condition_column=CONDITION[0], condition_value=CONDITION[1]
        )
    )
    res["cond_share"] = float(np.mean(cond[CONDITION[0]].to_numpy() == CONDITION[1]))
    synth = model.sample(TRAIN_ROWS)
    pa_synth = pa.Table.from_pandas(synth, preserve_index=False).cast(train.schema)
    pq.write_table(pa_synth, out / "ctgan.parquet")
    return res


def child_argn(budget_s: float, out: Path, overrides: dict) -> dict:
    """TabularARGN through bench/peers/tabular_argn.py: fit, the 80,000-row sample and the same
    timed draws as the others (warm-up, 3 unconditional, 3 conditional) all in its runner; the
    engine reloads its model from its workspace on every draw, so that is in the timings."""
    import torch

    train, _ = splits()
    condition = {CONDITION[0]: CONDITION[1]}
    draws = [{"rows": 20_000, "seed": 99}]  # warm-up
    draws += [{"rows": SAMPLE_ROWS, "seed": 1 + i} for i in range(SAMPLE_REPEATS)]
    draws += [
        {"rows": SAMPLE_ROWS, "seed": 11 + i, "conditions": condition}
        for i in range(SAMPLE_REPEATS)
    ]
    synth, info = tabular_argn.flat(
        train, TRAIN_ROWS, budget_s, seed=3, threads=torch.get_num_threads(), draws=draws
    )
    pq.write_table(synth, out / "tabular_argn.parquet")
    fit, timed_draws = info["fit"], info["draws"][1:]
    uncond = [d["rows_per_s"] for d in timed_draws[:SAMPLE_REPEATS]]
    cond = [d["rows_per_s"] for d in timed_draws[SAMPLE_REPEATS:]]
    return {
        "fit_s": sum(fit[k] for k in ("split_s", "analyze_s", "encode_s", "train_s")),
        "train_loop_s": fit["train_loop_s"],
        "stopped_by": fit["stopped_by"],
        "peak_rss_gib": fit["peak_rss_gib"],  # the runner's, at the end of its fit
        "encoder_s": fit["split_s"] + fit["analyze_s"] + fit["encode_s"],
        "epochs": fit["epochs"],
        "train_rows_per_s": fit["train_rows_per_s"],
        "sample_rows_per_s": float(np.median(uncond)),
        "sample_rows_per_s_each": uncond,
        "cond_rows_per_s": float(np.median(cond)),
        "cond_rows_per_s_each": cond,
        "cond_share": timed_draws[-1]["condition_share"],
        "threads": info["threads"],
        "argn": info,
    }


def child_sequences(budget_s: float, out: Path, overrides: dict) -> dict:
    """synthrec's sequence generator (users table by the row GAN, each user's events by the
    sequence model, item attributes read from the catalog, hour and weekday recomputed from
    the timestamp), flattened to one row per event. Its users are new people with pseudonymous
    ids; to score user_id as a categorical column like the other systems' real ids, the
    synthetic users are given the train split's real ids by rank of event count (most active
    synthetic user -> most active real user), so the user_id column scores the per-user
    activity distribution. Rows per second here are events per second."""
    import torch

    from synthrec.config import SequenceConfig
    from synthrec.sequences import SequenceSynthesizer

    train, _ = splits()
    cfg = SequenceConfig(**overrides)
    synth, fit_s = timed(lambda: SequenceSynthesizer().fit(train, cfg=cfg, time_budget_s=budget_s))
    m = synth.metadata.get("metrics", {})
    res = {
        "fit_s": fit_s,
        "peak_rss_gib": peak_rss_gib(),
        "encoder_s": m.get("encode_seconds"),
        "epochs": m.get("epochs"),
        "train_rows_per_s": m.get("train_events_per_s"),
        "stopped_by": "time budget",
        "config": cfg.model_dump(mode="json"),
        "threads": torch.get_num_threads(),
    }
    synth.sample(events=20_000, seed=99)  # warm-up
    res["sample_rows_per_s"], res["sample_rows_per_s_each"], _ = sampling_rate(
        lambda i: synth.sample(events=SAMPLE_ROWS, seed=1 + i)
    )
    res["cond_rows_per_s"], res["cond_rows_per_s_each"], cond = sampling_rate(
        lambda i: synth.sample(
            events=SAMPLE_ROWS, conditions={CONDITION[0]: CONDITION[1]}, seed=11 + i
        )
    )
    flat_cond = cond.flatten()
    res["cond_share"] = float(
        np.mean(flat_cond.column(CONDITION[0]).to_numpy(zero_copy_only=False) == CONDITION[1])
    )
    flat = synth.sample_table(events=TRAIN_ROWS, seed=3, return_type="arrow")
    flat = flat.set_column(
        flat.schema.get_field_index("user_id"),
        "user_id",
        relabel_by_activity(flat.column("user_id"), train.column("user_id")),
    )
    pq.write_table(flat.select(train.column_names).cast(train.schema), out / "sequences.parquet")
    return res


def relabel_by_activity(synthetic: pa.ChunkedArray, real: pa.ChunkedArray) -> pa.Array:
    """Each synthetic user id -> the real id of the same activity rank (ties by id order);
    synthetic users beyond the real count reuse the real ids cyclically."""
    syn = pd.Series(synthetic.to_numpy(zero_copy_only=False))
    real_order = pd.Series(real.to_numpy(zero_copy_only=False)).value_counts().index.to_numpy()
    syn_order = syn.value_counts().index.to_numpy()
    mapping = dict(zip(syn_order, real_order[np.arange(len(syn_order)) % len(real_order)]))
    return pa.array(syn.map(mapping).to_numpy(), type=real.type)


CHILDREN = {
    "ctgan": child_ctgan,
    "synthrec": child_synthrec,
    "tabular_argn": child_argn,
    "sequences": child_sequences,
}


# ------------------------------------------------------------------------------- evaluation


def sdv_metadata(ids_as_id: bool = False) -> dict:
    """user_id and item_id as categorical columns (this benchmark's scoring since issue 1), or
    as SDV labels id columns (sdtype id: left out of the report)."""
    cols = {c: {"sdtype": "categorical"} for c in DISCRETE + ["click"]}
    cols.update({c: {"sdtype": "numerical"} for c in NUMERIC})
    if ids_as_id:
        cols.update({c: {"sdtype": "id"} for c in ("user_id", "item_id")})
    return {"columns": cols}


def quality(real: pd.DataFrame, synth: pd.DataFrame) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    from sdmetrics.reports.single_table import QualityReport

    out = {}
    for name, threshold, ids_as_id in (
        ("default", None, False),
        ("all_pairs", 0.0, False),
        ("ids_as_id", None, True),
    ):
        report = QualityReport()
        if threshold is not None:
            report.real_correlation_threshold = threshold
            report.real_association_threshold = threshold
        report.generate(real, synth, sdv_metadata(ids_as_id), verbose=False)
        props = report.get_properties().set_index("Property")["Score"]
        out[name] = {
            "overall": float(report.get_score()),
            "column_shapes": float(props["Column Shapes"]),
            "pair_trends": float(props["Column Pair Trends"]),
        }
    return out


def features(df: pd.DataFrame, categories: dict) -> pd.DataFrame:
    x = df[FEATURES].copy()
    for c in {"user_id", "item_id"} & set(FEATURES):
        x[c] = pd.to_numeric(x[c]).astype(
            "int64"
        )  # integer codes: HGB's categorical support stops at 255
    for c in {"gender", "occupation", "zip_region", "genre"} & set(FEATURES):
        x[c] = pd.Categorical(x[c], categories=categories[c]).codes
    return x


def tstr_auc(train: pd.DataFrame, test: pd.DataFrame, categories: dict, seed: int = 0) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    cat_mask = [c in ("gender", "occupation", "zip_region", "genre") for c in FEATURES]
    model = HistGradientBoostingClassifier(categorical_features=cat_mask, random_state=seed)
    model.fit(features(train, categories), train["click"].astype(int))
    return float(
        roc_auc_score(
            test["click"].astype(int), model.predict_proba(features(test, categories))[:, 1]
        )
    )


def copy_rate(train: pd.DataFrame, synth: pd.DataFrame) -> float:
    cols = list(train.columns)
    real = set(pd.util.hash_pandas_object(train[cols], index=False).to_numpy())
    hashes = pd.util.hash_pandas_object(synth[cols], index=False).to_numpy()
    return float(np.mean([h in real for h in hashes]))


def dcr(
    train: pd.DataFrame, query: pd.DataFrame | None, n: int = 2_000, seed: int = 0
) -> tuple[float, dict]:
    """Median Euclidean distance to the closest train row (z-scored numerics + 1 per differing
    category), and what it is made of: per column, the mean squared z-difference (numeric) or
    the share of rows differing (categorical) between each query row and its closest train row.

    With `query=None`, the queries are train rows themselves, each matched against the *other*
    train rows (leave-one-out): a fresh draw from the training distribution, which the temporal
    test split is not (it is later in time, and most of its users are new)."""
    rng = np.random.default_rng(seed)
    source = train if query is None else query
    chosen = rng.choice(len(source), size=min(n, len(source)), replace=False)
    q = source.iloc[chosen]
    mu, sd = train[NUMERIC].mean(), train[NUMERIC].std()
    tn = ((train[NUMERIC] - mu) / sd).fillna(0).to_numpy(np.float32)
    qn = ((q[NUMERIC] - mu) / sd).fillna(0).to_numpy(np.float32)
    cats = DISCRETE + ["click"]
    codes = {c: pd.factorize(pd.concat([train[c].astype(str), q[c].astype(str)]))[0] for c in cats}
    tc = np.stack([codes[c][: len(train)] for c in cats], 1)
    qc = np.stack([codes[c][len(train) :] for c in cats], 1)
    best = np.empty(len(q))
    parts = np.empty((len(q), len(NUMERIC) + len(cats)))
    for lo in range(0, len(q), 100):
        num = (qn[lo : lo + 100, None, :] - tn[None]) ** 2
        cat = qc[lo : lo + 100, None, :] != tc[None]
        d2 = num.sum(-1) + cat.sum(-1)
        if query is None:  # leave one out: a train row is not its own neighbour
            d2[np.arange(len(d2)), chosen[lo : lo + 100]] = np.inf
        nearest = d2.argmin(1)
        best[lo : lo + 100] = np.sqrt(d2.min(1))
        rows = np.arange(len(nearest))
        parts[lo : lo + 100] = np.concatenate([num[rows, nearest], cat[rows, nearest]], axis=1)
    return float(np.median(best)), dict(zip(NUMERIC + cats, parts.mean(0).round(3).tolist()))


def evaluate(system: str, out: Path) -> dict:
    train_t, test_t = splits()
    train, test = train_t.to_pandas(), test_t.to_pandas()
    synth = pq.read_table(out / f"{system}.parquet").to_pandas()
    categories = {
        c: sorted(train[c].unique()) for c in ("gender", "occupation", "zip_region", "genre")
    }
    res = {"quality": quality(train, synth.iloc[:20_000])}
    res["tstr_auc"] = tstr_auc(synth, test, categories)
    res["trtr_auc"] = tstr_auc(train, test, categories)
    res["tstr_ratio"] = res["tstr_auc"] / res["trtr_auc"]
    res["copy_rate"] = copy_rate(train, synth.iloc[:20_000])
    res["dcr_synthetic"], res["dcr_parts_synthetic"] = dcr(train, synth)
    res["dcr_real_test"], res["dcr_parts_real_test"] = dcr(train, test)
    res["dcr_real_train_loo"], res["dcr_parts_real_train_loo"] = dcr(train, None)
    res["dcr_ratio_test"] = res["dcr_synthetic"] / res["dcr_real_test"]
    res["dcr_ratio_loo"] = res["dcr_synthetic"] / res["dcr_real_train_loo"]
    return res


# ------------------------------------------------------------------------------- report


def table(results: dict) -> str:
    rows = [
        ("fit wall-clock s (encoding included)", "fit_s", "{:,.0f}"),
        ("training loop s (TabularARGN's budget counts only this)", "train_loop_s", "{:,.0f}"),
        ("stopped by", "stopped_by", "{}"),
        ("training rows/s", "train_rows_per_s", "{:,.0f}"),
        ("epochs in budget", "epochs", "{}"),
        ("encoder fit + transform s", "encoder_s", "{:.1f}"),
        ("peak memory of the fit GiB", "peak_rss_gib", "{:.2f}"),
        ("CPU s the system's process got (fit, draws, sample)", "child_cpu_s", "{:,.0f}"),
        ("  per wall-clock s (1.0 = a whole core)", "cpu_share", "{:.2f}"),
        ("  load average when it ended", "load_at_end", "{:.1f}"),
        ("sampling rows/s (unconditional, median of 3)", "sample_rows_per_s", "{:,.0f}"),
        ("sampling rows/s (genre=Documentary, median of 3)", "cond_rows_per_s", "{:,.0f}"),
        ("share meeting genre=Documentary", "cond_share", "{:.1%}"),
        ("SDMetrics overall (default thresholds)", ("quality", "default", "overall"), "{:.3f}"),
        ("  Column Shapes", ("quality", "default", "column_shapes"), "{:.3f}"),
        ("  Column Pair Trends", ("quality", "default", "pair_trends"), "{:.3f}"),
        ("SDMetrics overall (all pairs)", ("quality", "all_pairs", "overall"), "{:.3f}"),
        ("  Column Pair Trends (all pairs)", ("quality", "all_pairs", "pair_trends"), "{:.3f}"),
        ("SDMetrics overall (ids as SDV's id type)", ("quality", "ids_as_id", "overall"), "{:.3f}"),
        ("TSTR click AUC", "tstr_auc", "{:.3f}"),
        ("TRTR click AUC (real rows)", "trtr_auc", "{:.3f}"),
        ("TSTR / TRTR", "tstr_ratio", "{:.3f}"),
        ("exact copies of train rows", "copy_rate", "{:.2%}"),
        ("median DCR synthetic", "dcr_synthetic", "{:.3f}"),
        ("median DCR real test (temporal split)", "dcr_real_test", "{:.3f}"),
        ("median DCR real train, leave-one-out", "dcr_real_train_loo", "{:.3f}"),
        ("synthetic DCR / real test DCR", "dcr_ratio_test", "{:.2f}"),
        ("synthetic DCR / leave-one-out DCR", "dcr_ratio_loo", "{:.2f}"),
        ("share of FLOP bound (sampling)", "flop_bound_share", "{:.1%}"),
        ("encoder speed-up vs ctgan", "encoder_speedup", "{:.1f}x"),
        ("sampling speed-up vs ctgan (unconditional)", "sample_speedup", "{:.1f}x"),
        ("conditional sampling vs ctgan's unconditional", "cond_speedup", "{:.1f}x"),
    ]
    systems = list(results)
    lines = ["| metric | " + " | ".join(systems) + " |", "|---|" + "---|" * len(systems)]
    skipped = [
        f"skipped: {results[s]['skipped']}" if "skipped" in results[s] else "" for s in systems
    ]
    if any(skipped):
        lines.append("| status | " + " | ".join(skipped) + " |")
    for label, key, fmt in rows:
        cells = []
        for s in systems:
            v = results[s]
            for k in key if isinstance(key, tuple) else (key,):
                v = v.get(k) if isinstance(v, dict) else None
            cells.append(fmt.format(v) if v is not None else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def dcr_table(results: dict) -> str:
    """Per column, at each row's closest train row: mean squared z-difference (numeric) or share
    differing (categorical), for each system's synthetic rows and for the real reference rows."""
    results = {s: r for s, r in results.items() if "skipped" not in r}
    if not results:
        return ""
    first = next(iter(results.values()))
    columns = [
        ("real test", first["dcr_parts_real_test"]),
        ("real train (LOO)", first["dcr_parts_real_train_loo"]),
    ]
    columns += [(s, r["dcr_parts_synthetic"]) for s, r in results.items()]
    lines = [
        "| closest-train-row distance, per column | " + " | ".join(n for n, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for col in columns[0][1]:
        lines.append(f"| {col} | " + " | ".join(f"{parts[col]:.3f}" for _, parts in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--budget-min", type=float, default=10.0, help="wall-clock fit budget per system (minutes)"
    )
    ap.add_argument(
        "--systems", default=",".join(CHILDREN), help=f"comma-separated, of {','.join(CHILDREN)}"
    )
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "gan_vs_ctgan"))
    ap.add_argument("--synthrec-config", default="{}", help="JSON GanConfig overrides for synthrec")
    ap.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="torch/BLAS threads per system (1 is faster on a machine shared with other jobs)",
    )
    ap.add_argument(
        "--evaluate-only",
        action="store_true",
        help="re-evaluate the systems' saved samples and fit results in --out (no fitting)",
    )
    ap.add_argument("--child", choices=list(CHILDREN), help=argparse.SUPPRESS)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        overrides = (
            json.loads(args.synthrec_config) if args.child in ("synthrec", "sequences") else {}
        )
        res = CHILDREN[args.child](args.budget_min * 60, out, overrides)
        (out / f"{args.child}.json").write_text(json.dumps(res, indent=1))
        return
    systems = args.systems.split(",")
    if unknown := set(systems) - set(CHILDREN):
        ap.error(f"--systems: unknown {sorted(unknown)}; choose from {','.join(CHILDREN)}")
    results = {}
    for system in systems:
        if system == "tabular_argn" and (reason := tabular_argn.available()) is not None:
            print(f"skipping tabular_argn: {reason}", file=sys.stderr)
            results[system] = {"skipped": reason}
            continue
        if not args.evaluate_only:
            print(
                f"[{time.strftime('%H:%M:%S')}] fitting {system} for {args.budget_min} min ...",
                file=sys.stderr,
            )
            env = {
                **os.environ,
                **{
                    k: str(args.threads)
                    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
                },
            }
            before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    system,
                    "--budget-min",
                    str(args.budget_min),
                    "--out",
                    str(out),
                    "--synthrec-config",
                    args.synthrec_config,
                    "--threads",
                    str(args.threads),
                ],
                check=True,
                env=env,
            )
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            # what the system got of a shared machine: CPU seconds of its whole child process
            # (fit, timed draws, the saved sample; TabularARGN's runner included) per second
            cpu = {
                "child_cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
                "child_wall_s": time.monotonic() - start,
                "load_at_end": os.getloadavg()[0],
            }
            cpu["cpu_share"] = cpu["child_cpu_s"] / cpu["child_wall_s"]
            saved = json.loads((out / f"{system}.json").read_text())
            (out / f"{system}.json").write_text(json.dumps({**saved, **cpu}, indent=1))
        res = json.loads((out / f"{system}.json").read_text())
        print(f"[{time.strftime('%H:%M:%S')}] evaluating {system} ...", file=sys.stderr)
        res.update(evaluate(system, out))
        results[system] = res
    base = results.get("ctgan", {})
    for system, res in results.items():
        if system != "ctgan" and "skipped" not in res and "skipped" not in base and base:
            if res.get("encoder_s"):
                res["encoder_speedup"] = base["encoder_s"] / res["encoder_s"]
            res.update(
                sample_speedup=res["sample_rows_per_s"] / base["sample_rows_per_s"],
                cond_speedup=res["cond_rows_per_s"] / base["sample_rows_per_s"],
            )
    labels = {
        "ctgan": "ctgan 0.12.1",
        "synthrec": "synthrec",
        "tabular_argn": f"TabularARGN (mostlyai-engine {tabular_argn.version() or 'skipped'})",
        "sequences": "synthrec sequences (flattened)",
    }
    names = [labels[s] for s in results]
    cmd = "python bench/gan_vs_ctgan.py " + " ".join(sys.argv[1:])
    text = (
        f"# {' vs '.join(names)} on ML-100K ({args.budget_min:g} min fit budget each)\n\n"
        f"`{cmd}` on {os.cpu_count()} CPU cores ({args.threads} torch thread(s) per system, load "
        "average "
        f"{os.getloadavg()[0]:.1f} at the end), "
        f"{time.strftime('%Y-%m-%d %H:%M')}\n\n{table(results)}\n\n"
        f"{dcr_table(results)}\n"
    )
    print(text)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
