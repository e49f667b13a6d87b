"""synthrec's library on one GPU, each path against the CPU in the same run: GAN training steps
(fp32 and bf16 autocast), sampling (plain and conditional), recommender F training steps and
top-k scoring. No Ray here (bench/gpu_check.sh times Ray Train on a GPU where Ray is
installed); the data is the built-in simulator's.

    python bench/gpu_paths.py [--rows 200000] [--gan-steps 300] [--out FILE.json]

Checks, each printed and recorded: every loss finite on every device; conditional rows 100%
exact on the GPU; F's top-10 on the GPU equal to the same weights' top-10 on the CPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time

import numpy as np
import pyarrow.compute as pc
import torch

from synthrec.config import GanConfig, RecommenderConfig, SimulateConfig
from synthrec.data.simulator import simulate, simulated_schema
from synthrec.encoding import Encoder
from synthrec.gan import Synthesizer
from synthrec.gan.train import build_gan, build_sampler, train_epoch
from synthrec.recommender.artifacts import build_recommender
from synthrec.recommender.data import InteractionEncoder
from synthrec.recommender.train import build_model, iterate_batches, make_optimizer, training_arrays
from synthrec.recommender.train import train_epoch as rec_train_epoch
from synthrec.serving.scoring import BatchRecommender

CONDITION = "category"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gan_steps(
    encoder: Encoder,
    cfg: GanConfig,
    data: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype | None,
    steps: int,
):
    state = build_gan(encoder, cfg, device)
    sampler = build_sampler(state, encoder, data)
    train_epoch(
        state,
        sampler.shard,
        sampler,
        cfg.batch_size,
        seed=cfg.seed,
        autocast_dtype=dtype,
        max_steps=5,
    )
    sync(device)
    start = time.perf_counter()
    m = train_epoch(
        state,
        sampler.shard,
        sampler,
        cfg.batch_size,
        seed=cfg.seed,
        autocast_dtype=dtype,
        max_steps=steps,
    )
    sync(device)
    seconds = time.perf_counter() - start
    finite = all(math.isfinite(v) for v in m.values()) and "diverged" not in m
    return state, {
        "rows_per_s": round(steps * cfg.batch_size / seconds),
        "steps": steps,
        "finite": finite,
        "critic_loss": round(m.get("critic_loss", float("nan")), 4),
    }


def sampling(synth: Synthesizer, device: torch.device, rows: int, value) -> dict:
    synth.sample(10_000, seed=1)  # warm-up
    times = []
    for seed in range(3):
        sync(device)
        start = time.perf_counter()
        table = synth.sample(rows, seed=seed)
        sync(device)
        times.append(time.perf_counter() - start)
    cond = synth.sample(20_000, conditions={CONDITION: value}, seed=5)
    exact = float(pc.mean(pc.equal(cond.column(CONDITION), value).cast("float64")).as_py())
    return {
        "rows_per_s": round(rows / float(np.median(times))),
        "rows": table.num_rows,
        "conditional_exact": exact,
    }


def recommender(table, device: torch.device, epochs: int, state: dict | None, seed: int = 0):
    cfg = RecommenderConfig(
        dim=64, num_layers=2, num_heads=1, max_len=50, batch_size=256, epochs=epochs, seed=seed
    )
    enc = InteractionEncoder.fit(table, cfg)
    log = enc.encode(table, "simulated rows")
    arrays = training_arrays(enc, cfg, log, None)
    torch.manual_seed(seed)
    model = build_model(enc, cfg)
    if state is not None:
        model.load_state_dict(state)
    model = model.to(device)
    optimizer = make_optimizer(model, cfg)
    generator = torch.Generator().manual_seed(seed)
    losses, seconds = [], 0.0
    for epoch in range(epochs):
        batches = (
            {k: v.to(device) for k, v in b.items()}
            for b in iterate_batches(arrays, cfg.batch_size, seed + epoch)
        )
        sync(device)
        start = time.perf_counter()
        stats = rec_train_epoch(model, optimizer, batches, cfg, generator)
        sync(device)
        seconds += time.perf_counter() - start
        losses.append(stats["loss"])
    windows = len(arrays["tokens"]) * epochs
    popularity = np.bincount(log.items, minlength=enc.num_items + 1).astype(np.float64)
    rec = build_recommender(model, enc, cfg, log, popularity, {})
    return rec, {
        "windows_per_s": round(windows / seconds),
        "epochs": epochs,
        "losses": [round(x, 4) for x in losses],
        "finite": all(math.isfinite(x) for x in losses),
    }


def top10_agreement(rec, users: list[str], device: torch.device) -> dict:
    cpu_rec = copy.deepcopy(rec)
    gpu = BatchRecommender(rec, str(device))
    cpu = BatchRecommender(cpu_rec, "cpu")
    requests = [(u, [], None, 10, True) for u in users]
    a, b = gpu.recommend_many(requests), cpu.recommend_many(requests)
    same = [x.item_ids == y.item_ids for x, y in zip(a, b)]
    overlap = [len(set(x.item_ids) & set(y.item_ids)) / 10 for x, y in zip(a, b)]
    return {
        "users": len(users),
        "identical_top10": float(np.mean(same)),
        "mean_overlap": float(np.mean(overlap)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--gan-steps", type=int, default=300)
    parser.add_argument("--cpu-steps", type=int, default=30)
    parser.add_argument("--large-batches", type=int, nargs="*", default=[5000, 20000])
    parser.add_argument("--sample-rows", type=int, default=500_000)
    parser.add_argument("--rec-epochs", type=int, default=2)
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--device", default="cuda", help="the accelerator ('cpu' only smoke-tests this script)"
    )
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device: run this on a GPU machine")
    gpu, cpu = torch.device(args.device), torch.device("cpu")
    result: dict = {
        "gpu": torch.cuda.get_device_name(0) if gpu.type == "cuda" else "none",
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
    }
    table = simulate(SimulateConfig(rows=args.rows, seed=0))
    cfg = GanConfig(seed=0)
    encoder = Encoder.fit(table, simulated_schema(), cfg.encoder, seed=cfg.seed)
    data = torch.from_numpy(encoder.transform(table, seed=0))

    def report(key: str, value: dict) -> None:
        result[key] = value
        print(f"{key}: {value}", flush=True)

    _, m = gan_steps(encoder, cfg, data, cpu, None, args.cpu_steps)
    report("gan_train_cpu_fp32", m)
    _, m = gan_steps(encoder, cfg, data, gpu, None, args.gan_steps)
    report("gan_train_gpu_fp32", m)
    state, m = gan_steps(encoder, cfg, data, gpu, torch.bfloat16, args.gan_steps)
    report("gan_train_gpu_bf16", m)
    for batch in args.large_batches:  # a larger global batch (many workers' worth) on the one GPU
        big = cfg.model_copy(update={"batch_size": batch})
        for label, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            _, m = gan_steps(
                encoder, big, data, gpu, dtype, max(20, args.gan_steps * cfg.batch_size // batch)
            )
            report(f"gan_train_gpu_{label}_batch{batch}", m)

    value = table.column(CONDITION)[0].as_py()
    weights = state.generator.state_dict()
    for name, device in (("cpu", cpu), ("gpu", gpu)):
        synth = Synthesizer.from_parts(
            encoder, cfg, {k: v.to(device) for k, v in weights.items()}, device=device
        )
        report(
            f"sampling_{name}",
            sampling(
                synth, device, args.sample_rows if name == "gpu" else args.sample_rows // 5, value
            ),
        )

    rec_rows = table.slice(0, min(table.num_rows, 100_000))
    rec_cpu, m = recommender(rec_rows, cpu, 1, None)
    report("recommender_train_cpu", m)
    rec_gpu, m = recommender(rec_rows, gpu, args.rec_epochs, rec_cpu.model.state_dict())
    report("recommender_train_gpu", m)
    users = [str(u) for u in rec_gpu.user_ids.to_pylist()[:500]]
    report("recommender_top10_gpu_vs_cpu", top10_agreement(rec_gpu, users, gpu))

    checks = {
        "losses finite": all(
            result[k]["finite"]
            for k in result
            if k.startswith("gan_train") or k.startswith("recommender_train")
        ),
        "conditional rows exact on GPU": result["sampling_gpu"]["conditional_exact"] == 1.0,
        "top-10 on GPU = on CPU (>= 99% of users)": result["recommender_top10_gpu_vs_cpu"][
            "identical_top10"
        ]
        >= 0.99,
    }
    result["checks"] = checks
    print(json.dumps(checks), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
