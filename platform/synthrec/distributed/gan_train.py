"""Data-parallel GAN training on Ray Train: Ray glue only, the math lives in synthrec.gan.

Driver: validate input, fit the encoder once, encode, put one shard per worker in the object
store (each worker fetches only its own), run a TorchTrainer, publish the model directory.
Worker: rebuild the encoder from its state, wrap generator and critic in DDP, run epochs
with a per-worker batch of global_batch / world_size (so the global batch and the learning
rate stay the same as workers change), report metrics every epoch and a checkpoint every K.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from synthrec import storage
from synthrec.config import GanConfig, TrainGanConfig
from synthrec.errors import ConfigError

FAULT_ENV = "SYNTHREC_INJECT_FAILURE"  # "<epoch>:<marker file>": one worker raises once (tests)
PROXY_ROWS = 2_000


# ------------------------------------------------------------------------------ driver side


def prepare(cfg: TrainGanConfig):
    """Read and validate the data and destinations; fit the encoder. Fails before any worker."""
    from synthrec.data.eventlog import load_event_log
    from synthrec.transform import Encoder

    table, schema = load_event_log(cfg.data_uri, cfg.schema_uri, cfg.storage)
    storage.check_writable(cfg.out_uri, cfg.storage)
    storage.check_writable(checkpoint_uri(cfg), cfg.storage)
    per_worker = cfg.gan.batch_size // cfg.scaling.num_workers
    if per_worker < cfg.gan.pac or per_worker % cfg.gan.pac:
        raise ConfigError(
            f"gan.batch_size {cfg.gan.batch_size} split over {cfg.scaling.num_workers} workers "
            f"must give each a multiple of pac ({cfg.gan.pac})"
        )
    encoder = Encoder.fit(table, schema, cfg.gan)
    return table, schema, encoder


def checkpoint_uri(cfg: TrainGanConfig) -> str:
    return cfg.run.checkpoint_uri or f"{cfg.out_uri.rstrip('/')}-runs"


def shard_refs(matrix: np.ndarray, num_workers: int, seed: int) -> list:
    """Split rows (seeded shuffle) into one object-store ref per worker."""
    import ray

    order = np.random.default_rng(seed).permutation(len(matrix))
    return [
        ray.put(np.ascontiguousarray(matrix[idx])) for idx in np.array_split(order, num_workers)
    ]


def table_to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def run_train_gan(
    cfg: TrainGanConfig, progress: Callable[[dict], None] | None = None
) -> dict[str, Any]:
    """Train with Ray Train and publish the model at cfg.out_uri; returns a summary."""
    import ray
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue

    from synthrec.distributed.common import (
        build_run_config,
        build_scaling_config,
        ensure_ray,
        fit_with_progress,
        resolve_run_name,
    )

    start = time.monotonic()
    name = resolve_run_name(
        "gan", cfg.run.run_name, cfg.run.resume, checkpoint_uri(cfg), cfg.storage
    )
    table, schema, encoder = prepare(cfg)
    ensure_ray(cfg.ray_address)
    meta, arrays = encoder.state()
    matrix = encoder.transform(table, seed=cfg.gan.seed)
    proxy = table.take(
        np.random.default_rng(cfg.gan.seed).choice(
            table.num_rows, min(PROXY_ROWS, table.num_rows), replace=False
        )
    )
    events = Queue(maxsize=10_000, actor_options={"num_cpus": 0})
    loop_cfg = {
        "gan": cfg.gan.model_dump_json(),
        "encoder_meta": json.dumps(meta),
        "encoder_arrays": ray.put(arrays),
        "shards": shard_refs(matrix, cfg.scaling.num_workers, cfg.gan.seed),
        "proxy": table_to_ipc(proxy),
        "epochs": cfg.epochs,
        "deadline": time.time() + cfg.time_budget_min * 60 if cfg.time_budget_min else None,
        "checkpoint_every": cfg.run.checkpoint_every,
        "bf16": cfg.bf16,
        "patience": cfg.early_stop_patience,
        "events": events,
        "fault": os.environ.get(FAULT_ENV),
    }
    del matrix
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_cfg,
        scaling_config=build_scaling_config(cfg.scaling),
        run_config=build_run_config(
            name, checkpoint_uri(cfg), cfg.storage, cfg.run.keep_checkpoints, cfg.run.max_failures
        ),
    )
    starts: list[dict] = []  # one per worker start: rank, node, epoch it resumed from

    def relay(item: dict) -> None:
        if "node_id" in item:
            starts.append(item)
        elif progress:
            progress(item)

    result = fit_with_progress(trainer, events, relay, f"GAN training run {name}")
    from synthrec.artifacts import save_synthesizer
    from synthrec.gan.synthesizer import table_fingerprint

    history = _load_history(result.checkpoint)
    metadata = {
        "run_name": name,
        "num_workers": cfg.scaling.num_workers,
        "history": history,
        "train_seconds": round(time.monotonic() - start, 2),
        "data_uri": cfg.data_uri,
        "fingerprint": table_fingerprint(table),
        "metrics": history[-1] if history else {},
    }
    synth = _synthesizer_from_checkpoint(result.checkpoint, encoder, cfg.gan, metadata)
    synth.calibrate_ids()
    save_synthesizer(synth, cfg.out_uri, cfg.storage)
    return {
        "model_uri": cfg.out_uri,
        "run_name": name,
        "checkpoints": f"{checkpoint_uri(cfg)}/{name}",
        "epochs": len(history),
        "last": history[-1] if history else {},
        "seconds": time.monotonic() - start,
        "worker_starts": starts,
        "history": history,
    }


def _load_history(checkpoint) -> list[dict]:
    with checkpoint.as_directory() as path:
        return json.loads(Path(path, "progress.json").read_text())["history"]


def _synthesizer_from_checkpoint(checkpoint, encoder, gan_cfg: GanConfig, metadata: dict):
    import torch

    from synthrec.gan.synthesizer import Synthesizer

    with checkpoint.as_directory() as path:
        state = torch.load(Path(path, "state.pt"), map_location="cpu", weights_only=True)
    return Synthesizer.from_parts(encoder, gan_cfg, state["generator"], metadata=metadata)


# ------------------------------------------------------------------------------ worker side


def train_loop(config: dict[str, Any]) -> None:
    """Per-worker loop (Ray Train). Weights start from gan.seed on every rank; noise from seed + rank."""
    import ray
    import ray.train
    import ray.train.torch
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from synthrec.gan.train import build_gan, build_sampler, train_epoch
    from synthrec.transform import Encoder

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    gan_cfg = GanConfig.model_validate_json(config["gan"])
    device = ray.train.torch.get_device()
    encoder = Encoder.from_state(
        json.loads(config["encoder_meta"]), ray.get(config["encoder_arrays"])
    )
    shard = torch.from_numpy(ray.get(config["shards"][rank])).to(device)
    state = build_gan(encoder, gan_cfg, device, rank=rank)
    sampler = build_sampler(state, encoder, shard)
    _restore(state)
    resumed_from = state.epoch
    config["events"].put(
        {
            "rank": rank,
            "node_id": ray.get_runtime_context().get_node_id(),
            "start_epoch": resumed_from,
        }
    )
    generator, critic = state.generator, state.critic
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        generator, critic = DDP(generator, device_ids=ids), DDP(critic, device_ids=ids)
    autocast = torch.bfloat16 if config["bf16"] and device.type == "cuda" else None
    proxy = pa.ipc.open_stream(config["proxy"]).read_all() if rank == 0 else None
    best = max((h.get("fidelity", 0.0) for h in state.history), default=0.0)
    stale = 0
    while config["epochs"] is None or state.epoch < config["epochs"]:
        _maybe_fail(config.get("fault"), state.epoch, rank, world)
        metrics = train_epoch(
            state,
            shard,
            sampler,
            gan_cfg.batch_size // world,
            generator=generator,
            critic=critic,
            seed=gan_cfg.seed + rank,
            autocast_dtype=autocast,
        )
        metrics.update(rows_per_s=metrics["rows_per_s"] * world, resumed_from=resumed_from)
        if rank == 0:
            metrics["fidelity"] = _fidelity_proxy(state, encoder, proxy, gan_cfg.seed + state.epoch)
            stale = 0 if metrics["fidelity"] > best else stale + 1
            best = max(best, metrics["fidelity"])
            config["events"].put(dict(metrics))
        stop = _agree_stop(config, stale, world, device)
        last = stop or state.epoch == config["epochs"]
        if state.epoch % config["checkpoint_every"] == 0 or last:
            _report_with_checkpoint(metrics, state, rank)
        else:
            ray.train.report(metrics)
        if stop:
            break


def _restore(state) -> None:
    import ray.train
    import torch

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as path:
            state.load_state_dict(
                torch.load(Path(path, "state.pt"), map_location=state.device, weights_only=True)
            )


def _report_with_checkpoint(metrics, state, rank) -> None:
    import ray.train
    import torch
    from ray.train import Checkpoint

    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state.state_dict(), Path(tmp, "state.pt"))
        Path(tmp, "progress.json").write_text(
            json.dumps({"epoch": state.epoch, "history": state.history})
        )
        ray.train.report(
            metrics,
            checkpoint=Checkpoint.from_directory(tmp),
            checkpoint_dir_name=f"epoch-{state.epoch:06d}",
        )


def _fidelity_proxy(state, encoder, proxy: pa.Table, seed: int) -> float:
    """Column-shape + pair-trend score of a small sample against a fixed real sample."""
    from synthrec.evaluate import fidelity_score
    from synthrec.gan.synthesizer import Synthesizer

    synth = Synthesizer.from_parts(
        encoder, state.cfg, state.generator.state_dict(), device=state.device
    )
    return float(fidelity_score(proxy, synth.sample(proxy.num_rows, seed=seed), encoder.schema))


def _agree_stop(config, stale: int, world: int, device) -> bool:
    """All ranks stop together (report is a barrier): any rank's stop vote wins."""
    import torch

    stop = bool(config["patience"]) and stale >= config["patience"]
    stop = stop or (config["deadline"] is not None and time.time() >= config["deadline"])
    if world > 1:
        import torch.distributed as dist

        flag = torch.tensor([float(stop)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        stop = bool(flag.item())
    return stop


def _maybe_fail(fault: str | None, epoch: int, rank: int, world: int) -> None:
    """Fault injection for tests: the last rank raises once at the given epoch."""
    if not fault:
        return
    at, marker = fault.split(":", 1)
    if epoch == int(at) and rank == world - 1 and not os.path.exists(marker):
        Path(marker).write_text(str(epoch))
        raise RuntimeError(f"injected failure at epoch {epoch} on rank {rank}")
