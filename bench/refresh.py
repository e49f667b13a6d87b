"""The refresh loop against retraining from scratch and against never refreshing.

    .venv/bin/python bench/refresh.py [--datasets ml100k demo] [--periods 4]

Each log is sorted by time and cut into `--periods` consecutive periods of equal rows. After
period k (k = 1 .. P-1) each strategy holds a model F, judged on period k+1:
  refresh  `synthrec refresh` on period k alone, generator and F warm-started from the
           production version (the first period trains from scratch); what serves is
           production, so a rejected candidate leaves the previous model in place
  retrain  a fresh loop on periods 1..k as one partition: generator and F from scratch
           (after period 1 that is the loop's own first refresh, which trains from scratch)
  never    the model of period 1, never updated
Judged on the same rows for every strategy: each user of period k+1, their log up to the end
of period k+1, rows of items one of the models never saw dropped (the never-refreshed model
knows only period 1's items); leave-last-out: NDCG@10 of their last interaction, ranked over
each model's own catalog (larger for the refreshed and retrained models: a harder ranking),
and the temporal click AUC of evaluate_recommender on the same rows. Wall time
is each strategy's summed run_refresh time (one local Ray, 2 CPUs, all strategies alike).
Results: bench/results/refresh.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec import storage
from synthrec.config import RefreshConfig, SimulateConfig

REPO = Path(__file__).resolve().parents[1]

ML100K = REPO.parent / "shared" / "datasets" / "ml-100k" / "events.parquet"
RESULTS = REPO / "bench" / "results"
SETTINGS = {
    "generator": "rows",
    "gan": {"generator_dims": [128, 128], "critic_dims": [128, 128], "batch_size": 500},
    "gan_epochs": 2,
    "scratch_gan_epochs": 5,
    "synthetic_rows": 10_000,
    "recommender_epochs": 4,
    "recommender": {"epochs": 15, "patience": 3, "dim": 32, "num_layers": 1, "max_len": 30},
    "scaling": {"num_workers": 1, "cpus_per_worker": 1},
    "evaluate": {"privacy_query_rows": 1_000, "utility_max_train_rows": 10_000},
}


def load(name: str, tmp: str) -> tuple[pa.Table, str]:
    if name == "ml100k":
        return storage.read_table(str(ML100K)), "timestamp"
    from synthrec.data.simulator import run_simulate

    uri = os.path.join(tmp, "demo-log")
    sim = SimulateConfig(
        rows=16_000, num_users=500, num_items=600, num_categories=12, num_brands=60,
        num_queries=120, rows_per_file=6_000, out_uri=uri,
    )  # fmt: skip
    run_simulate(sim)
    return storage.read_table(uri), "timestamp"


def periods(table: pa.Table, time_col: str, count: int) -> list[pa.Table]:
    order = np.argsort(table.column(time_col).to_numpy(), kind="stable")
    table = table.take(pa.array(order))
    return [table.take(pa.array(rows)) for rows in np.array_split(np.arange(table.num_rows), count)]


def judge(model_uris: dict[str, str], parts: list[pa.Table], k: int) -> dict[str, dict]:
    """Each strategy's F on period k+1 (0-based index k+1), all on the same rows: the users
    of that period, their log so far, rows of items every one of the models knows."""
    from synthrec.recommender.artifacts import load_recommender
    from synthrec.recommender.evaluation import evaluate_recommender

    models = {name: load_recommender(uri) for name, uri in model_uris.items()}
    enc = next(iter(models.values())).encoder
    users = pc.unique(parts[k + 1].column(enc.columns.user))
    log = pa.concat_tables(parts[: k + 2])
    log = log.filter(pc.is_in(log.column(enc.columns.user), value_set=users))
    for rec in models.values():
        log = log.filter(pc.is_in(log.column(enc.columns.item), value_set=rec.encoder.item_ids))
    judged = {}
    for name, rec in models.items():
        report = evaluate_recommender(rec, log, baselines=False)
        judged[name] = {
            "ndcg@10": round(float(report["ranking"]["F"]["overall"]["ndcg@10"]), 5),
            "click_auc": report["click_auc"].get("F"),
            "catalog": rec.encoder.num_items,
        }
    return judged


def run_dataset(name: str, count: int, tmp: str) -> dict:
    from synthrec.refresh import run_refresh

    table, time_col = load(name, tmp)
    parts = periods(table, time_col, count)
    uris = []
    for k, part in enumerate(parts):
        uri = os.path.join(tmp, name, f"period-{k}")
        storage.write_dataset(part, uri)
        uris.append(uri)
    rows: list[dict] = []
    seconds = {"refresh": 0.0, "retrain": 0.0, "never": 0.0}
    first_model = None
    for k in range(count - 1):
        # refresh: the loop's production model after period k
        start = time.monotonic()
        cfg = RefreshConfig(
            out_uri=os.path.join(tmp, name, "loop"), partition_uri=uris[k], **SETTINGS
        )
        result = run_refresh(cfg)
        seconds["refresh"] += time.monotonic() - start
        from synthrec.registry import PRODUCTION, Registry

        with Registry(cfg.out_uri) as reg:
            production = reg.alias(PRODUCTION).model_uri
        if k == 0:  # period 1 alone: the loop's first refresh is a training from scratch
            first_model = retrain_model = production
            seconds["retrain"] = seconds["never"] = seconds["refresh"]
        else:  # retrain: everything so far, from scratch, in a loop of its own
            start = time.monotonic()
            so_far = os.path.join(tmp, name, f"so-far-{k}")
            storage.write_dataset(pa.concat_tables(parts[: k + 1]), so_far)
            scratch = RefreshConfig(
                out_uri=os.path.join(tmp, name, f"scratch-{k}"), partition_uri=so_far, **SETTINGS
            )
            retrained = run_refresh(scratch)
            seconds["retrain"] += time.monotonic() - start
            retrain_model = f"{scratch.out_uri}/refreshes/{retrained['id']}/models/recommender"
        row = {
            "after_period": k + 1,
            "refresh_promoted": result["promoted"],
            "refresh_reason": result["reason"],
            **judge(
                {"refresh": production, "retrain": retrain_model, "never": first_model}, parts, k
            ),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return {"dataset": name, "periods": count, "rows": table.num_rows, "steps": rows,
            "seconds": {k: round(v, 1) for k, v in seconds.items()}}  # fmt: skip


def markdown(results: list[dict]) -> str:
    lines = [
        "| dataset | after period | refresh NDCG@10 | retrain NDCG@10 | never NDCG@10 | "
        "refresh click AUC | retrain click AUC | never click AUC | refresh promoted |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for s in res["steps"]:
            auc = [s[k]["click_auc"] for k in ("refresh", "retrain", "never")]
            lines.append(
                f"| {res['dataset']} | {s['after_period']} | {s['refresh']['ndcg@10']:.4f} | "
                f"{s['retrain']['ndcg@10']:.4f} | {s['never']['ndcg@10']:.4f} | "
                + " | ".join("n/a" if a is None else f"{a:.4f}" for a in auc)
                + f" | {'yes' if s['refresh_promoted'] else 'no'} |"
            )
    lines += [
        "",
        "| dataset | refresh wall s | retrain wall s | never wall s |",
        "|---|---|---|---|",
    ]
    for res in results:
        sec = res["seconds"]
        walls = " | ".join(f"{sec[k]:.0f}" for k in ("refresh", "retrain", "never"))
        lines.append(f"| {res['dataset']} | {walls} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml100k", "demo"])
    parser.add_argument("--periods", type=int, default=4)
    args = parser.parse_args()
    for key, value in {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    }.items():
        os.environ.setdefault(key, value)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    results = []
    with tempfile.TemporaryDirectory(prefix="synthrec-bench-refresh-") as tmp:
        for name in args.datasets:
            results.append(run_dataset(name, args.periods, tmp))
            RESULTS.mkdir(parents=True, exist_ok=True)  # written after each dataset
            (RESULTS / "refresh.json").write_text(json.dumps(results, indent=1))
            (RESULTS / "refresh.md").write_text(markdown(results))
            print(markdown(results), flush=True)


if __name__ == "__main__":
    main()
