"""GAN training throughput on Ray Train with 1 and N workers, one run, same data and seed.

    .venv/bin/python bench/train_scaling.py [--workers 1 2] [--epochs 3] [--gpu] [--rows 80000]

Trains on the ML-100K train split (first 80,000 rows of events.parquet, or --data URI) and
prints rows/s per run (mean over the epochs after the first, which pays start-up costs),
rows/s per worker, and the speed-up over the first run. With --gpu each worker gets a GPU
and bf16 autocast; bench/gpu_check.sh runs this on a GPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pyarrow.parquet as pq

from synthrec.config import GanConfig, ScalingSection, TrainGanConfig
from synthrec.distributed.gan_train import run_train_gan

ML100K = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ml-100k" / "events.parquet"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=80_000)
    parser.add_argument("--batch-size", type=int, default=500, help="global batch")
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--data", help="table URI (default: ML-100K train split)")
    parser.add_argument("--json", help="also write results here")
    args = parser.parse_args()

    import ray

    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    data = args.data
    if not data:
        data = str(tmp / "train.parquet")
        pq.write_table(pq.read_table(ML100K).slice(0, args.rows), data)
    ray.init(include_dashboard=False, log_to_driver=False)
    cpus = ray.cluster_resources().get("CPU", 1)
    results = []
    for workers in args.workers:
        per_worker_cpu = 1.0 if args.gpu else max(0.25, min(1.0, (cpus - 0.25) / workers))
        cfg = TrainGanConfig(
            data=data,
            out=str(tmp / f"model-{workers}"),
            epochs=args.epochs,
            bf16=args.gpu,
            gan=GanConfig(batch_size=args.batch_size),
            scaling=ScalingSection(
                num_workers=workers, use_gpu=args.gpu, cpus_per_worker=per_worker_cpu
            ),
        )
        start = time.perf_counter()
        summary = run_train_gan(
            cfg,
            progress=lambda m, workers=workers: print(
                f"  workers={workers} epoch {m['epoch']}: {m['rows_per_s']:,.0f} rows/s",
                file=sys.stderr,
            ),
        )
        rates = [h["rows_per_s"] for h in summary["history"]][1:] or [
            summary["history"][0]["rows_per_s"]
        ]
        results.append(
            {
                "workers": workers,
                "rows_per_s": statistics.mean(rates),
                "wall_s": time.perf_counter() - start,
                "fidelity": summary["history"][-1].get("fidelity"),
            }
        )
    ray.shutdown()
    base = results[0]["rows_per_s"]
    device = "GPU" if args.gpu else f"CPU ({os.cpu_count()} cores)"
    rows = f"{args.data}" if args.data else f"{args.rows:,} ML-100K rows"
    print(
        f"\nGAN training on {device}, {rows}, global batch {args.batch_size}, {args.epochs} "
        "epochs\n"
    )
    print(
        "| workers | rows/s | rows/s per worker | speed-up | wall s | fidelity proxy "
        "|\n|---:|---:|---:|---:|---:|---:|"
    )
    for r in results:
        print(
            f"| {r['workers']} | {r['rows_per_s']:,.0f} | {r['rows_per_s'] / r['workers']:,.0f} | "
            f"{r['rows_per_s'] / base:.2f} | {r['wall_s']:.0f} | {r['fidelity']:.3f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
