"""Synthetic users with their event sequences: what F learns from them, how close their
sequences are to the real ones, and how much of any training user they repeat. synthrec's
sequence generator against MOSTLY AI's TabularARGN (sequential mode), same budget, same run.

    .venv/bin/python bench/sequences.py [--budget-min 10] [--seeds 3] [--threads 1]
        [--systems synthrec,synthrec+critic,argn,argn-real-users] [--skip-privacy] [--skip-demo]

ML-100K, bench/recommender.py's protocol: leave-last-out per user, F trained and early-stopped
on real rows (real only), on synthetic users alone (its own leave-last-out validation, so it
never sees a real row) and on real + synthetic (L = mean real + λ·mean synthetic), judged on
the real held-out items; `--seeds` F seeds per arm, mean and spread. Each generator is fitted
on the leave-last-out training rows within `--budget-min` minutes of wall clock and makes as
many users as the real log has.

Systems: synthrec (maximum likelihood only), synthrec+critic (the same, then the adversarial
phase against the sequence critic, inside the same budget), argn (TabularARGN: a flat model
of the users table makes the users, the sequential model their events; its own early
stopping on a 20% validation split; `rare_category_replacement_method="SAMPLE"`), argn-real-
users (TabularARGN's events for the real users table as context: not shareable data, the
issue's reference). TabularARGN runs in its own venv (bench/peers/setup_argn.sh); without it
the systems are skipped with the reason. Both get the catalog the same way: the events carry
the item, its attributes (genre, release year) are joined from the real catalog, and the
derived columns (hour, weekday, click) are recomputed from the time and rating.

Scorers (synthrec.evaluate.sequences): events per user, inter-event times, item popularity
total variation, share of (previous -> next item) pairs that occur in the real log, repeat
rate, per-user genre entropy. Privacy (`--skip-privacy` to skip): each system refitted on 80%
of the users (half the budget), judged against the 20% it never saw: users sharing a run of
>= 5 consecutive items with a training user (synthetic vs real held-out users), exact
sequence copies, user-level membership attack AUC. Demo search log (`--skip-demo`): the
simulator's log, synthrec's sequence generator against its row GAN, pair scores of
category x brand and query x category and the timestamp shape.

Results: bench/results/sequences.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recommender import F_CONFIG, f_arm, load, log, save_results  # noqa: E402

from synthrec.config import SYNTHETIC_WEIGHT, SequenceConfig  # noqa: E402
from synthrec.data.relational import RelationalLog, relational_view  # noqa: E402
from synthrec.data.splits import leave_last_out  # noqa: E402
from synthrec.evaluate.sequences import sequence_metrics  # noqa: E402
from synthrec.recommender.data import InteractionEncoder  # noqa: E402
from synthrec.recommender.metrics import (  # noqa: E402
    SegmentSpec,
    evaluate_ranking,
    segment_masks,
    split_leave_last_out,
)
from synthrec.sequences import SequenceSynthesizer  # noqa: E402

SPEED_USERS = 10_000  # users sampled to time synthrec's sampling rate
SYSTEMS = ("synthrec", "synthrec+critic", "argn", "argn-real-users")
ARMS = (("synthetic_only", "synthetic users only"), ("real_plus", "real + synthetic"))
SCORES = {  # column of the table -> path in sequence_metrics' output
    "events/user KS": ("events_per_user", "ks_complement"),
    "gaps KS": ("inter_event_seconds", "ks_complement"),
    "item popularity TV": ("item_popularity", "tv_distance"),
    "pairs seen in real": ("transitions", "pair_share_in_real"),
    "repeat rate": ("repeat_rate", "synthetic"),
    "genre entropy KS": ("category_entropy", "ks_complement"),
}


# ---------------------------------------------------------------------------- generators


def fit_sample(system: str, train: pa.Table, users: int, budget_s: float, seed: int, threads):
    """(synthetic flat log in train's columns and types, info) of one system."""
    start = time.monotonic()
    if system.startswith("synthrec"):
        cfg = SequenceConfig(seed=seed, adversarial_steps=100_000 if "critic" in system else 0)
        synth = SequenceSynthesizer().fit(
            train, cfg=cfg, time_budget_s=budget_s, progress=_progress(system)
        )
        fit_s = time.monotonic() - start
        flat = synth.sample_table(users=users, seed=seed)
        t0 = time.monotonic()
        rate_events = synth.sample(users=SPEED_USERS, seed=seed + 1).events.num_rows
        sample_rate = rate_events / (time.monotonic() - t0)
        metrics = synth.metadata["metrics"]
        info = {
            "fit_seconds": round(fit_s, 1),
            "sample_seconds": round(time.monotonic() - start - fit_s, 1),
            "epochs": metrics["epochs"],
            "best_epoch": metrics["best_epoch"],
            "train_events_per_s": metrics["train_events_per_s"],
            "adversarial_steps": metrics.get("adversarial_steps", 0),
            "sample_events_per_s": round(sample_rate, 1),
        }
    else:
        from peers import tabular_argn

        reason = tabular_argn.available()
        if reason is not None:
            return None, {"skipped": reason}
        view = relational_view(train)
        context = "real" if system == "argn-real-users" else "synthetic"
        events, users_t, info = tabular_argn.sequential(
            view.events,
            view.users,
            view.user_col,
            view.time_col,
            users,
            budget_s,
            seed=seed,
            threads=threads,
            context=context,
        )
        synthetic = RelationalLog.from_dict(view.to_dict(), events, users_t, view.items)
        flat = synthetic.flatten().cast(train.schema)
        info = {"fit_seconds": round(time.monotonic() - start, 1), **info}
    info["events"] = flat.num_rows
    return flat.select(train.column_names).cast(train.schema), info


def row_gan_rate(train: pa.Table, seconds: float) -> float:
    from synthrec.gan import Synthesizer

    rates = []
    Synthesizer().fit(
        train, time_budget_s=seconds, progress=lambda **m: rates.append(m.get("rows_per_s", 0))
    )
    return round(float(np.median(rates[1:] or rates)), 1)


def _progress(name: str):
    def show(**m):
        if m.get("phase") == "likelihood":
            log(f"  {name} epoch {m['epoch']}: valid nll {m.get('valid_nll')} ({m['seconds']} s)")
        elif m.get("phase") == "adversarial":
            log(f"  {name} critic step {m['epoch']}: {m}")

    return show


# ---------------------------------------------------------------------------- F arms


def f_runs(enc, split, masks, real, synthetic, seeds: int, epochs: int | None = None) -> dict:
    """F's ranking metrics, mean and spread over seeds."""
    runs = []
    for seed in range(seeds):
        update = {"seed": seed, "synthetic_weight": SYNTHETIC_WEIGHT}
        cfg = F_CONFIG.model_copy(update=update | ({"epochs": epochs} if epochs else {}))
        scorer, info = f_arm(enc, split, real, synthetic, cfg)
        r = evaluate_ranking(scorer, split.test, masks)
        runs.append(
            {
                "ndcg@10": r["overall"]["ndcg@10"],
                "short_ndcg@10": r["short_history"]["ndcg@10"],
                "best_epoch": info["best_epoch"],
            }
        )
        log(f"    F seed {seed}: NDCG@10 {runs[-1]['ndcg@10']:.4f}")
    out = {}
    for key in ("ndcg@10", "short_ndcg@10"):
        values = np.array([r[key] for r in runs])
        out[key] = float(values.mean())
        out[key + "_spread"] = float(values.max() - values.min()) if len(values) > 1 else 0.0
    out["runs"] = runs
    return out


def scores(real: pa.Table, synthetic: pa.Table, holdout: pa.Table | None = None) -> dict:
    return sequence_metrics(
        real,
        synthetic,
        user_col="user_id",
        item_col="item_id",
        time_col="timestamp",
        category_col="genre",
        holdout=holdout,
    )


def user_split(table: pa.Table, share: float, seed: int) -> tuple[pa.Table, pa.Table]:
    users = pc.unique(table.column("user_id"))
    rng = np.random.default_rng(seed)
    held = users.take(pa.array(rng.permutation(len(users))[: int(round(share * len(users)))]))
    mask = pc.is_in(table.column("user_id"), value_set=held)
    return table.filter(pc.invert(mask)), table.filter(mask)


# ---------------------------------------------------------------------------- demo log


def demo_block(budget_s: float, seed: int) -> dict:
    """The simulator's search log: sequence generator vs row GAN on the pairs the issue names."""
    from synthrec.config import GanConfig, SimulateConfig
    from synthrec.data.simulator import simulate, simulated_schema
    from synthrec.evaluate.suite import evaluate_synthetic
    from synthrec.gan import Synthesizer

    cfg = SimulateConfig(rows=40_000, num_users=1_000, num_items=2_000, seed=seed)
    real = simulate(cfg)
    schema = simulated_schema()
    out = {"log_rows": real.num_rows}
    users = len(pc.unique(real.column("user_id")))
    log("demo log: sequence generator")
    t0 = time.monotonic()
    seq = SequenceSynthesizer().fit(real, schema=schema, time_budget_s=budget_s)
    seq_flat = seq.sample_table(users=users, seed=seed)
    out["sequences_seconds"] = round(time.monotonic() - t0, 1)
    log("demo log: row GAN")
    t0 = time.monotonic()
    rows = Synthesizer().fit(real, schema=schema, cfg=GanConfig(seed=seed), time_budget_s=budget_s)
    row_flat = rows.sample(real.num_rows, seed=seed)
    out["rows_seconds"] = round(time.monotonic() - t0, 1)
    for name, synthetic in (("sequences", seq_flat), ("rows", row_flat)):
        m = evaluate_synthetic(real, synthetic, schema=schema)
        f = m["fidelity"]
        pairs = {tuple(sorted(p["columns"])): p["score"] for p in f["pairs"]}
        out[name] = {
            "overall": f["overall"],
            "all pairs": f["all_pairs"]["overall"],
            "category x brand": pairs.get(("brand", "category")),
            "query x category": pairs.get(("category", "query")),
            "timestamp shape": f["columns"].get("timestamp", {}).get("score"),
            "events": synthetic.num_rows,
        }
    return out


# ---------------------------------------------------------------------------- report


def markdown(result: dict) -> str:
    ref = result["real"]["ndcg@10"]
    lines = [
        f"`{result['command']}` ({result['date']}, {result['total_seconds'] / 60:.0f} min, "
        f"budget {result['args']['budget_min']} min per generator, {result['args']['seeds']} F "
        "seed(s) per arm; ML-100K leave-last-out; the row GAN trains at "
        f"{result['row_gan_train_rows_per_s']:,.0f} rows/s on the same rows)",
        "",
        "| F trained on | NDCG@10 (spread) | share of real | short-history NDCG@10 | "
        "vs real only |",
        "|---|---:|---:|---:|---:|",
        f"| real rows | {ref:.4f} ({result['real']['ndcg@10_spread']:.4f}) | 100% | "
        f"{result['real']['short_ndcg@10']:.4f} | |",
    ]
    for name, s in result["systems"].items():
        if "skipped" in s:
            lines.append(f"| {name} | skipped: {s['skipped']} | | | |")
            continue
        short_ref = result["real"]["short_ndcg@10"]
        for arm, label in ARMS:
            r = s[arm]
            gain = ""
            if arm == "real_plus":
                gain = (
                    f"{r['ndcg@10'] / ref - 1:+.1%} "
                    f"(short {r['short_ndcg@10'] / short_ref - 1:+.1%})"
                )
            lines.append(
                f"| {name}: {label} | {r['ndcg@10']:.4f} ({r['ndcg@10_spread']:.4f}) | "
                f"{r['ndcg@10'] / ref:.0%} | {r['short_ndcg@10']:.4f} | {gain} |"
            )
    extra = " | fit s | train events/s | sample events/s |"
    lines += ["", "| system | " + " | ".join(SCORES) + extra]
    lines.append("|---" * (len(SCORES) + 4) + "|")
    for name, s in result["systems"].items():
        if "skipped" in s:
            continue
        cells = [_cell(_at(s["scores"], *path)) for path in SCORES.values()]
        info = s["info"]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {info.get('fit_seconds')} | "
            f"{info.get('train_events_per_s', '')} | {info.get('sample_events_per_s', '')} |"
        )
    if result.get("privacy"):
        lines += [
            "",
            "| system (fitted on 80% of users) | users with a shared run >= 5: synthetic | "
            "real held-out | exact copies | membership AUC |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, p in result["privacy"].items():
            if "skipped" in p:
                continue
            lines.append(
                f"| {name} | {_cell(p.get('run5_synthetic'))} | {_cell(p.get('run5_holdout'))} | "
                f"{_cell(p.get('exact_copies'))} | {_cell(p.get('membership_auc'))} |"
            )
    if result.get("demo"):
        lines += ["", *demo_lines(result["demo"])]
    return "\n".join(lines) + "\n"


def demo_lines(d: dict) -> list[str]:
    lines = [
        f"Demo search log ({d['log_rows']:,} rows), pair scores:",
        "",
        "| generator | overall | all pairs | category x brand | query x category | "
        "timestamp shape |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("sequences", "rows"):
        r = d[name]
        lines.append(
            f"| {name} | {_cell(r['overall'])} | {_cell(r['all pairs'])} | "
            f"{_cell(r['category x brand'])} | {_cell(r['query x category'])} | "
            f"{_cell(r['timestamp shape'])} |"
        )
    return lines


def demo_markdown(result: dict) -> str:
    head = f"`{result['command']}` ({result['date']}, {result['total_seconds'] / 60:.0f} min)"
    return "\n".join([head, "", *demo_lines(result["demo"])]) + "\n"


def _at(d: dict, *keys):
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def _cell(v) -> str:
    if isinstance(v, dict):
        v = v.get("score", v.get("value"))
    return "" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-min", type=float, default=10.0)
    parser.add_argument("--seeds", type=int, default=3, help="F seeds per arm")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--skip-privacy", action="store_true")
    parser.add_argument(
        "--privacy-systems", default="synthrec,argn", help="systems refitted for privacy"
    )
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument(
        "--only-demo", action="store_true", help="only the demo search log (its own results file)"
    )
    parser.add_argument("--f-epochs", type=int, default=None, help="cap F's epochs (smoke runs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    start = time.monotonic()
    if args.only_demo:
        result = {
            "command": " ".join(["python", *sys.argv]),
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
        result["demo"] = demo_block(args.budget_min * 60, seed=0)
        result["total_seconds"] = round(time.monotonic() - start, 1)
        save_results("sequences_demo", result, demo_markdown(result))
        return
    table = load()
    enc = InteractionEncoder.fit(table, F_CONFIG)
    split = split_leave_last_out(table, enc)
    masks, _ = segment_masks(split.test, enc.encode(split.train, "real train"), enc, SegmentSpec())
    train = leave_last_out(table)[0]
    n_users = len(pc.unique(train.column("user_id")))
    budget = args.budget_min * 60
    result: dict = {
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "args": vars(args),
        "systems": {},
    }
    log("row GAN on the same rows for 60 s: its training rows/s, the speed reference")
    result["row_gan_train_rows_per_s"] = row_gan_rate(train, 60.0)
    log("F on the real rows")
    result["real"] = f_runs(enc, split, masks, split.train, None, args.seeds, args.f_epochs)
    systems = [s for s in args.systems.split(",") if s]
    for name in systems:
        log(f"{name}: fitting for {args.budget_min} min")
        flat, info = fit_sample(name, train, n_users, budget, 0, args.threads)
        if flat is None:
            result["systems"][name] = info
            log(f"{name} skipped: {info['skipped']}")
            continue
        entry = {"info": info, "scores": scores(train, flat)}
        log(f"{name}: F on synthetic users only")
        entry["synthetic_only"] = f_runs(enc, split, masks, None, flat, args.seeds, args.f_epochs)
        log(f"{name}: F on real + synthetic")
        entry["real_plus"] = f_runs(enc, split, masks, split.train, flat, args.seeds, args.f_epochs)
        result["systems"][name] = entry
    if not args.skip_privacy:
        result["privacy"] = {}
        members, held = user_split(train, 0.2, seed=0)
        for name in args.privacy_systems.split(","):
            if name not in systems or "skipped" in result["systems"].get(name, {}):
                continue
            log(f"privacy: {name} on 80% of the users")
            n = len(pc.unique(members.column("user_id")))
            flat, _ = fit_sample(name, members, n, budget / 2, 0, args.threads)
            p = scores(members, flat, holdout=held).get("privacy", {})
            result["privacy"][name] = _privacy_summary(p)
    if not args.skip_demo:
        result["demo"] = demo_block(budget / 2, seed=0)
    result["total_seconds"] = round(time.monotonic() - start, 1)
    save_results("sequences", result, markdown(result))


def _privacy_summary(p: dict) -> dict:
    return {
        "run5_synthetic": _at(p, "longest_shared_run", "synthetic", "share_at_least_5"),
        "run5_holdout": _at(p, "longest_shared_run", "holdout", "share_at_least_5"),
        "exact_copies": _at(p, "exact_copies", "synthetic"),
        "membership_auc": p.get("membership_auc"),
        "raw": p,
    }


if __name__ == "__main__":
    main()
