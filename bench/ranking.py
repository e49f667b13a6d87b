"""F's ranking heads on real held-out impressions: real only against real + synthetic (the
seed's loss), beside item CTR, position only, boosted trees and, on the simulator, the oracle.

    .venv/bin/python bench/ranking.py [--data sim|ml100k] [--rows 1000000] [--seeds 3]
        [--synthetic gan|none|PATH.parquet] [--gan-budget-min 10] [--gan-per-seed]
        [--synthetic-rows N]
        [--synthetic-weight 1.0] [--epochs 20] [--time-budget-min M] [--smoke]

Protocol: the log in time order; the last 20% of rows are the test impressions, the first 80%
train F (its last 10% in time validate, for early stopping on click GAUC per user). Every
test impression is scored from its user's positives (click or stronger) before its request,
without its display position. Metrics (synthrec.recommender.rank_metrics): click AUC, GAUC
per user and per query, NDCG@10 of each test list (request) re-ranked, purchase AUC; GAUC per
user also for new users (no training row) and rare categories (least frequent categories
holding <= 10% of training impressions); next-item NDCG@10 of the test positives over all
items (today's recommendation metric). Baselines are fitted on all training impressions.
The synthetic rows come from synthrec's GAN fitted, inside this run, on the training rows only
(or from a Parquet file). Each F arm runs `--seeds` seeds; the table gives mean and spread.
Arms of F: real only; real + synthetic (the seed's loss); synthetic only (trained and early-
stopped on synthetic rows alone, tested on real). On ML-100K, `--rows N` below its 100,000 takes
a seeded sample of whole users holding about N rows.
Results: bench/results/ranking_<data>.{json,md} (`--smoke`: ranking_smoke.*).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from synthrec.config import GanConfig, RecommenderConfig, SimulateConfig
from synthrec.data.simulator import click_propensity, simulate
from synthrec.recommender.data import InteractionEncoder
from synthrec.recommender.impressions import Impressions, build_impressions
from synthrec.recommender.metrics import Queries, evaluate_ranking
from synthrec.recommender.rank_metrics import (
    BoostedTrees,
    ItemCTR,
    PositionOnly,
    gauc,
    impression_metrics,
)
from synthrec.recommender.ranking import RankScorer, fit_ranking, prepare_ranking
from synthrec.recommender.train import ModelScorer, next_item_rows

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO.parent / "shared" / "datasets" / "ml-100k" / "events.parquet"
RESULTS = REPO / "bench" / "results"
TEST_SHARE = 0.2
RARE_SHARE = 0.10
ARMS = ("real_only", "real_plus_synthetic", "synthetic_only")
NEXT_ITEM_QUERIES = 5_000  # test positives ranked over all items (a seeded sample)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- data


def load(args) -> tuple[pa.Table, SimulateConfig | None]:
    if args.data == "ml100k":
        table = pq.read_table(EVENTS)
        if args.rows < table.num_rows:  # a seeded sample of whole users, about `rows` rows
            users, counts = np.unique(table.column("user_id").to_numpy(), return_counts=True)
            order = np.random.default_rng(0).permutation(len(users))
            keep = users[order[: int(np.searchsorted(np.cumsum(counts[order]), args.rows)) + 1]]
            table = table.filter(pc.is_in(table.column("user_id"), pa.array(keep)))
        return table.take(pc.sort_indices(table, [("timestamp", "ascending")])), None
    sim = SimulateConfig(rows=args.rows, seed=0)
    return simulate(sim).drop_columns(["session_id"]), sim  # a session is its (user, query) run


def time_split(table: pa.Table, time_column: str) -> np.ndarray:
    """(N,) bool: the rows in the last TEST_SHARE of the log in time order."""
    order = np.argsort(table.column(time_column).to_numpy(), kind="stable")
    test = np.zeros(table.num_rows, dtype=bool)
    test[order[int(round(table.num_rows * (1 - TEST_SHARE))) :]] = True
    return test


_GANS: dict[int, tuple] = {}  # fit seed -> (Synthesizer, fit seconds)


def synthesize(train: pa.Table, args, seed: int) -> tuple[pa.Table | None, dict]:
    """Synthetic rows for F's seed `seed`: from one GAN fitted once (seed 0), sampled with
    `seed`, or with --gan-per-seed from a GAN fitted with `seed`."""
    if args.synthetic == "none":
        return None, {}
    if args.synthetic != "gan":
        table = pq.read_table(args.synthetic).select(train.column_names)
        return table, {"synthetic_uri": args.synthetic, "synthetic_rows": table.num_rows}
    from synthrec.gan import Synthesizer

    fit_seed = seed if args.gan_per_seed else 0
    if fit_seed not in _GANS:
        start = time.monotonic()
        synth = Synthesizer().fit(
            train, cfg=GanConfig(seed=fit_seed), time_budget_s=args.gan_budget_min * 60
        )
        _GANS[fit_seed] = (synth, time.monotonic() - start)
    synth, fit_s = _GANS[fit_seed]
    rows = args.synthetic_rows or train.num_rows
    table = synth.sample(rows, seed=seed).select(train.column_names)
    return table, {
        "gan_fit_seed": fit_seed,
        "gan_fit_seconds": round(fit_s, 1),
        "synthetic_rows": table.num_rows,
        "synthetic_ctr": float(np.mean(table.column("click").to_numpy())),
    }


# ---------------------------------------------------------------------------- segments


def segments(
    imp: Impressions, train: Impressions, enc: InteractionEncoder
) -> dict[str, np.ndarray]:
    """Masks over the test impressions: users without training rows, rare categories."""
    trained_users = np.unique(train.user)
    masks = {"new_users": ~np.isin(imp.user, trained_users)}
    if enc.item_codec.categorical:
        column = (
            "category"
            if "category" in enc.item_codec.categorical
            else next(iter(enc.item_codec.categorical))
        )
        j = list(enc.item_codec.categorical).index(column)
        codes = enc.item_cat[:, j]
        counts = np.bincount(codes[train.items], minlength=int(codes.max()) + 1).astype(float)
        share = counts / max(counts.sum(), 1.0)
        order = np.argsort(share[1:], kind="stable") + 1
        rare = order[np.cumsum(share[order]) <= RARE_SHARE]
        masks["rare_categories"] = np.isin(codes[imp.items], rare)
    return masks


def report(scores: np.ndarray, test: Impressions, masks: dict[str, np.ndarray]) -> dict:
    out = impression_metrics(scores, test)
    click = scores if scores.ndim == 1 else scores[:, 0]
    for name, mask in masks.items():
        out[f"gauc_user_{name}"] = gauc(click[mask], test.labels[mask, 0], test.user[mask])
        out[f"n_{name}"] = int(mask.sum())
    return out


def next_item_queries(full: pa.Table, test_mask: np.ndarray, enc, cfg, seed: int) -> Queries:
    """Test positives as next-item queries over the log of all positives (history before)."""
    index = np.arange(full.num_rows)
    positives = next_item_rows(full.append_column("__row", pa.array(index)), enc, cfg, "real table")
    rows = positives.column("__row").to_numpy()
    plog = enc.encode(positives.drop_columns(["__row"]), "real positives")
    local = np.flatnonzero(test_mask[rows])
    rng = np.random.default_rng(seed)
    local = np.sort(rng.choice(local, min(len(local), NEXT_ITEM_QUERIES), replace=False))
    group, stop = plog.locate_rows(local)
    return Queries(plog, group, stop)


# ---------------------------------------------------------------------------- run


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    full, sim = load(args)
    cfg = RecommenderConfig(
        dim=args.dim,
        max_len=args.max_len,
        epochs=args.epochs,
        time_budget_s=args.time_budget_min * 60 if args.time_budget_min else None,
        patience=args.patience,
        synthetic_weight=args.synthetic_weight,
        ranking_batch_size=args.batch_size,
        lr=args.lr,
        seed=0,
    )
    enc = InteractionEncoder.fit(full, cfg)  # the catalog and feature codecs: known to a shop
    test_mask = time_split(full, enc.columns.time)
    train_table = full.filter(pa.array(~test_mask))
    every = build_impressions(enc, full, cfg.max_len, cfg.max_positions, "real table")
    test = every.subset(test_mask[every.rows])
    train_imp = every.subset(~test_mask[every.rows])
    masks = segments(test, train_imp, enc)
    log(f"{full.num_rows} rows: {len(train_imp)} train impressions, {len(test)} test")
    results: dict = {"baselines": {}, "arms": {}, "facts": {}}
    start = time.monotonic()
    results["baselines"]["item_ctr"] = report(
        ItemCTR(train_imp, enc.num_items).predict(test), test, masks
    )
    results["baselines"]["position_only"] = report(
        PositionOnly(train_imp).predict(test), test, masks
    )
    trees = BoostedTrees(train_imp, enc, seed=0, max_iter=args.tree_iter)
    results["baselines"]["boosted_trees"] = report(trees.predict(test), test, masks)
    if sim is not None:
        results["baselines"]["oracle"] = report(click_propensity(sim, full)[test.rows], test, masks)
    results["facts"]["baseline_seconds"] = round(time.monotonic() - start, 1)
    gaucs = {k: round(v["gauc_user"], 4) for k, v in results["baselines"].items()}
    log(f"baselines (GAUC per user): {json.dumps(gaucs)}")
    queries = next_item_queries(full, test_mask, enc, cfg, seed=0)
    arms = ["real_only"] if args.synthetic == "none" else list(ARMS)
    for seed in range(args.seeds):
        seed_cfg = cfg.model_copy(update={"seed": seed})
        synthetic, info = synthesize(train_table, args, seed) if len(arms) > 1 else (None, {})
        results["facts"][f"synthetic_seed{seed}"] = info
        data = prepare_ranking(train_table, synthetic, seed_cfg, encoder=enc)
        for arm in arms:
            if arm == "synthetic_only":  # TSTR: trained and validated on synthetic rows alone
                arm_data, use_synthetic = (
                    prepare_ranking(synthetic, None, seed_cfg, encoder=enc),
                    False,
                )
            else:
                arm_data, use_synthetic = data, arm == "real_plus_synthetic"
            t0 = time.monotonic()
            fit = fit_ranking(arm_data, seed_cfg, use_synthetic=use_synthetic)
            metrics = report(RankScorer(fit.model).predict(test), test, masks)
            scorer = ModelScorer(fit.model, enc.user_token)
            metrics["next_item_ndcg@10"] = evaluate_ranking(scorer, queries, {})["overall"][
                "ndcg@10"
            ]
            metrics["epochs"], metrics["best_epoch"] = len(fit.history), fit.best_epoch
            metrics["train_seconds"] = round(time.monotonic() - t0, 1)
            results["arms"].setdefault(arm, []).append(metrics)
            gauc_user, epochs = metrics["gauc_user"], metrics["epochs"]
            log(f"seed {seed} {arm}: gauc_user {gauc_user:.4f} ({epochs} epochs)")
    results["summary"] = summarize(results)
    results["config"] = {**vars(args), "model": cfg.model_dump(mode="json")}
    return results


def summarize(results: dict) -> dict:
    """Per arm and metric: mean and spread (max - min) over seeds; baselines as they are."""
    out = {
        name: {k: (v, 0.0) for k, v in m.items() if isinstance(v, float)}
        for name, m in results["baselines"].items()
    }
    for arm, runs in results["arms"].items():
        keys = [k for k, v in runs[0].items() if isinstance(v, float)]
        out[f"F {arm}"] = {
            k: (float(np.nanmean([r[k] for r in runs])), float(np.ptp([r[k] for r in runs])))
            for k in keys
        }
    return out


COLUMNS = (
    "click_auc",
    "gauc_user",
    "gauc_query",
    "ndcg@10",
    "purchase_auc",
    "gauc_user_new_users",
    "gauc_user_rare_categories",
    "next_item_ndcg@10",
)


def markdown(summary: dict) -> str:
    lines = ["| scorer | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, metrics in summary.items():
        cells = []
        for c in COLUMNS:
            if c not in metrics:
                cells.append("-")
            else:
                mean, spread = metrics[c]
                cells.append(f"{mean:.4f}" + (f" ±{spread / 2:.4f}" if spread else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", choices=("sim", "ml100k"), default="sim")
    p.add_argument(
        "--rows",
        type=int,
        default=1_000_000,
        help="simulated impressions; ml100k: about this many rows from a seeded sample of users",
    )
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--synthetic", default="gan", help="gan | none | PATH.parquet")
    p.add_argument("--gan-budget-min", type=float, default=10.0)
    p.add_argument(
        "--gan-per-seed",
        action="store_true",
        help="fit a GAN per F seed (default: one GAN, fitted with seed 0, sampled per seed)",
    )
    p.add_argument("--synthetic-rows", type=int, default=None, help="default: as many as real")
    p.add_argument("--synthetic-weight", type=float, default=1.0, help="λ (the seed's: 1)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--time-budget-min", type=float, default=None, help="per F fit")
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=1024, help="impressions per step and source")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--tree-iter", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs")
    args = p.parse_args()
    if args.smoke:
        args.rows, args.seeds, args.epochs, args.gan_budget_min = 20_000, 1, 1, 0.1
        args.dim, args.max_len, args.tree_iter = 16, 10, 20
        args.synthetic_rows = args.synthetic_rows or 5_000
    results = run(args)
    name = "ranking_smoke" if args.smoke else f"ranking_{args.data}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2, default=str))
    table = markdown(results["summary"])
    (RESULTS / f"{name}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
