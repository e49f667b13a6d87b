"""Generation throughput: plain in-process vs the Ray Data path (local disk and S3), one run.

    .venv/bin/python bench/generate.py [--rows 5000000] [--model URI] [--workers 1,2] \
        [--fit-minutes 5]

(a) one process, one torch thread, blocks written to one local Parquet file (zstd);
(b) `run_generate` (Ray Data actor pool of one-thread actors) to local disk, once per worker
    count in --workers (throughput against the number of workers);
(c) the same with the largest worker count to a SeaweedFS S3 server on loopback.
Per-core rates divide by the cores the actors use; per-core efficiency is that over (a), for the
whole run and for the time after the actor pool had started (actor start and model loading,
timed by run_generate, are the fixed cost, reported apart). The
FLOP bound is this machine's measured float32 matmul rate on one thread divided by the
generator's FLOPs per row. Without --model, a model is fitted on the ML-100K train split for
--fit-minutes (sampling cost depends on training too: a trained generator picks id clusters
consistent with the row, so ids are searched in small groups).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

import pyarrow.parquet as pq
import torch
from gan_vs_ctgan import (
    matmul_gflops,
)  # same FLOP-rate probe as the GAN benchmark (bench/ is on sys.path)

from synthrec.artifacts import load_synthesizer, save_synthesizer
from synthrec.config import GanConfig, GenerateConfig, auto_block_size
from synthrec.distributed.generate import block_sizes, run_generate
from synthrec.gan import generator_flops_per_row

ML100K = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ml-100k" / "events.parquet"


def plain_in_process(model_uri: str, rows: int, block: int, path: Path) -> float:
    torch.set_num_threads(1)
    synth = load_synthesizer(model_uri)
    start = time.perf_counter()
    writer = None
    for index, size in enumerate(block_sizes(rows, block)):
        table = synth.sample_block(index, int(size), seed=0)
        writer = writer or pq.ParquetWriter(path, table.schema, compression="zstd")
        writer.write_table(table)
    writer.close()
    return rows / (time.perf_counter() - start)


def ray_path(model_uri: str, rows: int, block: int, out: str, workers: int) -> tuple:
    """(rows/s over the whole run, rows/s once the actors had started, actor start s)."""
    cfg = GenerateConfig(
        model_uri=model_uri,
        rows=rows,
        out_uri=out,
        rows_per_file=block,
        concurrency=workers,
        cpus_per_actor=min(1.0, (os.cpu_count() or 2) / (workers + 0.5)),
    )
    start = time.perf_counter()
    summary = run_generate(cfg)
    assert summary.rows == rows
    seconds = time.perf_counter() - start
    return rows / seconds, rows / max(seconds - summary.startup_s, 1e-9), summary.startup_s


def fit_model(uri: str, minutes: float) -> None:
    from synthrec.gan.synthesizer import Synthesizer

    torch.set_num_threads(1)
    table = pq.read_table(ML100K).slice(0, 80_000)
    save_synthesizer(Synthesizer().fit(table, cfg=GanConfig(), time_budget_s=minutes * 60), uri)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument(
        "--block", type=int, default=None, help="rows per block (default: generate's own choice)"
    )
    parser.add_argument("--workers", default="1,2", help="comma-separated actor counts for (b)")
    parser.add_argument(
        "--fit-minutes",
        type=float,
        default=5.0,
        help="fit budget of the model made without --model",
    )
    parser.add_argument("--model", help="model directory URI (default: fit one on ML-100K)")
    parser.add_argument("--skip-s3", action="store_true")
    args = parser.parse_args()
    args.block = args.block or auto_block_size("rows", args.rows)

    import ray

    from synthrec.local_s3 import LocalS3

    tmp = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    model = args.model or str(tmp / "model")
    workers = [int(w) for w in args.workers.split(",")]
    if not args.model:
        print(
            f"fitting a model on the ML-100K train split ({args.fit_minutes:g} min)...",
            file=sys.stderr,
        )
        fit_model(model, args.fit_minutes)
    synth = load_synthesizer(model)
    flops_row = generator_flops_per_row(synth.generator)
    torch.set_num_threads(1)
    gflops = matmul_gflops()
    bound = gflops * 1e9 / flops_row

    a = plain_in_process(model, args.rows, args.block, tmp / "plain.parquet")
    s3 = None if args.skip_s3 else LocalS3().start()
    if s3:
        os.environ.update(s3.env)
    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": s3.env if s3 else {}},
    )
    try:
        b = {
            w: ray_path(model, args.rows, args.block, str(tmp / f"ray-local-{w}"), w)
            for w in workers
        }
        c = None
        if s3:
            s3.create_bucket("bench")
            c = ray_path(model, args.rows, args.block, "s3://bench/synthetic", max(workers))
    finally:
        ray.shutdown()
        if s3:
            s3.stop()

    cores = lambda w: min(w, os.cpu_count() or 1)  # noqa: E731
    rows = [("(a) in-process, 1 thread -> local Parquet", (a, a, 0.0), 1)]
    rows += [(f"(b) Ray Data, {w} actor{'s' if w > 1 else ''} -> local", b[w], w) for w in workers]
    if c is not None:
        rows.append((f"(c) Ray Data, {max(workers)} actors -> SeaweedFS S3", c, max(workers)))
    print(
        f"\n{args.rows:,} rows, blocks of {args.block:,}; machine: {os.cpu_count()} cores; torch "
        f"{torch.__version__}"
    )
    print(
        f"generator: {flops_row / 1e6:.2f} MFLOP/row; matmul {gflops:.1f} GFLOP/s on 1 thread; "
        f"bound {bound:,.0f} rows/s per core\n"
    )
    print(
        "| path | rows/s | actor start s | rows/s after start | per-core efficiency "
        "(whole run / after start, vs (a)) |\n|---|---:|---:|---:|---:|"
    )
    for name, (rate, steady, startup), w in rows:
        whole, after = rate / cores(w) / a, steady / cores(w) / a
        print(
            f"| {name} | {rate:,.0f} | {startup:.1f} | {steady:,.0f} | {whole:.2f} / {after:.2f} |"
        )
    print(f"\nin-process share of the FLOP bound: {a / bound:.1%}")
    if len(workers) > 1:
        lo, hi = min(workers), max(workers)
        print(f"Ray Data throughput, {hi} vs {lo} actor(s): {b[hi][0] / b[lo][0]:.2f}x")


if __name__ == "__main__":
    main()
