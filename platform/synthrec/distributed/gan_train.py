"""Data-parallel GAN training on Ray Train: Ray glue only, the math lives in synthrec.gan.

Driver: validate input, fit the encoder once, encode, put one shard per worker in the object
store (each worker fetches only its own), run the Train skeleton (train_loop.py), publish the
model directory. Worker (`GanTask`): rebuild generator and critic, wrap them in DDP, train
epochs with a per-worker batch of global_batch / world_size (so the global batch and the
learning rate stay the same as workers change); rank 0 scores a fidelity proxy every epoch.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from synthrec.config import GanConfig, TrainGanConfig
from synthrec.distributed.train_loop import (
    LoopConfig,
    WorkerContext,
    run_summary,
    run_training,
    start_run,
    sum_across_workers,
)
from synthrec.distributed.warm import copy_matching, row_generator_init
from synthrec.errors import ConfigError

PROXY_ROWS = 2_000
PRIVATE_ENCODER = "dp-encoder"  # a DP run's encoder and plan, in the run's folder


# ------------------------------------------------------------------------------ driver side


def prepare(cfg: TrainGanConfig, loaded: tuple | None = None, name: str | None = None):
    """Read and validate the data (or take `loaded`: (table, schema) already read); fit the
    encoder (a DP run's: see `private_encoder`, which needs the run `name`). Fails before
    any worker starts. Returns (table, schema, encoder, budget or None)."""
    from synthrec.data.eventlog import load_event_log
    from synthrec.encoding import Encoder

    per_worker = cfg.gan.batch_size // cfg.scaling.num_workers
    if per_worker < cfg.gan.pac or per_worker % cfg.gan.pac:
        raise ConfigError(
            f"gan.batch_size {cfg.gan.batch_size} split over {cfg.scaling.num_workers} workers "
            f"must give each a multiple of pac ({cfg.gan.pac})"
        )
    table, schema = loaded or load_event_log(cfg.data_uri, cfg.schema_uri, cfg.storage)
    if cfg.gan.privacy is not None:
        return (table, schema, *private_encoder(cfg, table, schema, name or "unnamed"))
    encoder = Encoder.fit(table, schema, cfg.gan.encoder, seed=cfg.gan.seed)
    return table, schema, encoder, None


def private_encoder(cfg: TrainGanConfig, table: pa.Table, schema, name: str):
    """(encoder, budget) of a DP run. The first start fits the encoder with noisy counts and
    keeps it, with the plan, in the run's folder; a resume reads both back, so the counts are
    released once (a refit would spend the encoder's share again), and refuses a privacy
    config whose plan differs from the run's."""
    from safetensors.numpy import load as np_load
    from safetensors.numpy import save as np_save

    from synthrec import storage
    from synthrec.distributed.train_loop import runs_uri
    from synthrec.encoding import Encoder
    from synthrec.gan.dp import private_fit, steps_per_epoch
    from synthrec.privacy import Budget

    uri = storage.join(runs_uri(cfg), name, PRIVATE_ENCODER)
    epochs = cfg.epochs or cfg.gan.epochs  # a time budget alone: the budget buys gan.epochs
    if cfg.run.resume and storage.read_manifest(uri, cfg.storage) is not None:
        files = storage.read_files(uri, None, cfg.storage)
        state = json.loads(files["budget.json"])
        steps = epochs * steps_per_epoch(table.num_rows, cfg.gan.batch_size) * cfg.gan.critic_steps
        plan = Budget.plan(
            cfg.gan.privacy, table.num_rows, cfg.gan.batch_size, steps,
            state["encoder_noise"] > 0, threshold=state.get("threshold_delta", 1.0) > 0,
        )  # fmt: skip
        plan.load_state_dict({**state, "steps": 0})  # ConfigError when the plans differ
        plan.extra = state["extra"]
        meta = json.loads(files["encoder.json"])
        return Encoder.from_state(meta, np_load(files["encoder.safetensors"])), plan
    encoder, budget = private_fit(table, schema, cfg.gan, epochs, cfg.gan.batch_size)
    meta, arrays = encoder.state()
    files = {
        "encoder.json": json.dumps(meta).encode(),
        "encoder.safetensors": np_save({k: np.ascontiguousarray(v) for k, v in arrays.items()}),
        "budget.json": json.dumps({**budget.state_dict(), "extra": budget.extra}).encode(),
    }
    storage.publish_files(uri, files, cfg.storage, kind="dp-encoder")
    return encoder, budget


def shard_refs(matrix: np.ndarray, num_workers: int, seed: int) -> list:
    """Split rows (seeded shuffle) into one object-store ref per worker."""
    import ray

    order = np.random.default_rng(seed).permutation(len(matrix))
    return [
        ray.put(np.ascontiguousarray(matrix[idx])) for idx in np.array_split(order, num_workers)
    ]


def run_train_gan(
    cfg: TrainGanConfig,
    progress: Callable[[dict], None] | None = None,
    loaded: tuple | None = None,
) -> dict[str, Any]:
    """Train with Ray Train and publish the model at cfg.out_uri; returns a summary."""
    import ray

    from synthrec.artifacts import save_synthesizer
    from synthrec.distributed.common import ensure_ray
    from synthrec.gan.dp import dp_metadata
    from synthrec.gan.synthesizer import Synthesizer, table_fingerprint

    start = time.monotonic()
    name = start_run("gan", cfg)
    table, _, encoder, budget = prepare(cfg, loaded, name)
    ensure_ray(cfg.ray_address)
    matrix = encoder.transform(table, seed=cfg.gan.seed)
    rows = min(PROXY_ROWS, table.num_rows)
    proxy = table.take(
        np.random.default_rng(cfg.gan.seed).choice(table.num_rows, rows, replace=False)
    )
    if budget is not None:  # the proxy would score real rows outside the budget
        proxy = None
    task = GanWorkerConfig(
        gan=cfg.gan,
        encoder=ray.put(encoder),
        shards=shard_refs(matrix, cfg.scaling.num_workers, cfg.gan.seed),
        proxy=proxy,
        bf16=cfg.bf16,
        patience=cfg.early_stop_patience,
        budget=budget,
        init=ray.put(init) if (init := row_generator_init(cfg)) is not None else None,
    )
    del matrix
    deadline = time.time() + cfg.time_budget_min * 60 if cfg.time_budget_min else None
    loop = LoopConfig(cfg.epochs, deadline, cfg.run.checkpoint_every, cfg.gan.seed)
    run = run_training(task, loop, cfg, name, "GAN training", progress)

    metadata = {
        "run_name": name,
        "num_workers": cfg.scaling.num_workers,
        "history": run.history,
        "train_seconds": round(time.monotonic() - start, 2),
        "data_uri": cfg.data_uri,
        "metrics": run.history[-1] if run.history else {},
        **({"warm_start": {"from": cfg.init_model_uri}} if cfg.init_model_uri else {}),
    }
    if budget is not None:
        budget.load_state_dict(run.task_state["gan"]["privacy"]["budget"])
        metadata.update(dp_metadata(budget))
    else:  # a hash of the rows: it would confirm a guessed training table
        metadata["fingerprint"] = table_fingerprint(table)
    generator = run.task_state["gan"]["generator"]
    synth = Synthesizer.from_parts(encoder, cfg.gan, generator, metadata=metadata)
    synth.calibrate_ids()
    save_synthesizer(synth, cfg.out_uri, cfg.storage)
    return run_summary(run, "rows", cfg.out_uri, name, start)


# ------------------------------------------------------------------------------ worker side


@dataclass(frozen=True)
class GanWorkerConfig:
    """What every GAN worker gets: the typed config at the top of its loop."""

    gan: GanConfig
    encoder: Any  # ObjectRef of the fitted Encoder
    shards: list  # one ObjectRef per rank: that rank's encoded rows, (N_rank, D) float32
    proxy: pa.Table | None  # fixed real rows the fidelity proxy compares samples with (rank 0)
    bf16: bool  # bf16 autocast on GPU workers
    patience: int | None  # epochs without a fidelity gain before stopping; None: never
    budget: Any = None  # privacy.Budget of a DP run (its plan; the steps come from the state)
    init: Any = None  # ObjectRef of a parent generator's weights (warm start), or None

    def build(self, worker: WorkerContext, state: dict[str, Any] | None) -> GanTask:
        return GanTask(self, worker, state)


class GanTask:
    """One worker's GAN: weights start from gan.seed on every rank, noise from seed + rank."""

    def __init__(self, cfg: GanWorkerConfig, worker: WorkerContext, state: dict | None):
        import ray
        import torch
        from torch.nn.parallel import DistributedDataParallel as DDP

        from synthrec.gan.dp import build_dp
        from synthrec.gan.train import build_gan, build_sampler

        self.cfg, self.worker = cfg, worker
        self.encoder = ray.get(cfg.encoder)
        self.shard = torch.from_numpy(ray.get(cfg.shards[worker.rank])).to(worker.device)
        self.gan = build_gan(self.encoder, cfg.gan, worker.device, rank=worker.rank)
        if cfg.budget is not None:
            budget = copy.deepcopy(cfg.budget)
            self.gan.dp = build_dp(self.encoder, self.gan.layout, budget, worker.device)
        self.sampler = build_sampler(self.gan, self.encoder, self.shard)
        self.best, self.stale = 0.0, 0  # best fidelity proxy so far; epochs since it rose
        if state is not None:
            self.gan.load_state_dict(state["gan"])
            self.best, self.stale = state["best_fidelity"], state["stale"]
        elif cfg.init is not None:  # warm start: the same parent weights on every rank
            copy_matching(self.gan.generator.state_dict(), ray.get(cfg.init))
        self.generator, self.critic = self.gan.generator, self.gan.critic
        if worker.world > 1:
            ids = [worker.device.index] if worker.device.type == "cuda" else None
            self.generator = DDP(self.generator, device_ids=ids)
            if self.gan.dp is None:  # DP sums clipped gradients itself (sum_across_workers)
                self.critic = DDP(self.critic, device_ids=ids)
        on_gpu = cfg.bf16 and worker.device.type == "cuda"
        self.autocast = torch.bfloat16 if on_gpu else None

    @property
    def epoch(self) -> int:
        return self.gan.epoch

    def train_epoch(self, on_step: Callable[[int], None] | None) -> dict[str, float]:
        from synthrec.gan.dp import dp_train_epoch
        from synthrec.gan.train import train_epoch

        world, gan_cfg = self.worker.world, self.cfg.gan
        if self.gan.dp is not None:
            metrics = dp_train_epoch(
                self.gan,
                self.shard,
                gan_cfg.batch_size,
                generator=self.generator,
                rank=self.worker.rank,
                reduce=sum_across_workers if world > 1 else None,
                progress=(lambda step, steps: on_step(step)) if on_step else None,
            )
            metrics["rows_per_s"] *= world
            return metrics
        metrics = train_epoch(
            self.gan,
            self.shard,
            self.sampler,
            gan_cfg.batch_size // world,
            generator=self.generator,
            critic=self.critic,
            seed=gan_cfg.seed + self.worker.rank,
            autocast_dtype=self.autocast,
            progress=(lambda step, steps: on_step(step)) if on_step else None,
        )
        metrics["rows_per_s"] *= world
        if self.worker.rank == 0:
            metrics["fidelity"] = self._fidelity_proxy(gan_cfg.seed + self.gan.epoch)
            self.stale = 0 if metrics["fidelity"] > self.best else self.stale + 1
            self.best = max(self.best, metrics["fidelity"])
        return metrics

    def stop_vote(self) -> bool:
        if self.gan.dp is not None:  # the privacy budget is spent (the same on every rank)
            steps = self.gan.dp.budget.steps + self.cfg.gan.critic_steps
            return steps > self.gan.dp.budget.max_steps
        return bool(self.cfg.patience) and self.stale >= self.cfg.patience

    def state(self) -> dict[str, Any]:
        # the loop keeps the metric history; GanState's own copy stays out of the checkpoint
        gan = {k: v for k, v in self.gan.state_dict().items() if k != "history"}
        return {"gan": gan, "best_fidelity": self.best, "stale": self.stale}

    def _fidelity_proxy(self, seed: int) -> float:
        """Column-shape + pair-trend score of a small sample against the fixed real rows."""
        from synthrec.evaluate import fidelity_score
        from synthrec.gan.synthesizer import Synthesizer

        synth = Synthesizer.from_parts(
            self.encoder, self.gan.cfg, self.gan.generator.state_dict(), device=self.gan.device
        )
        proxy = self.cfg.proxy
        sample = synth.sample(proxy.num_rows, seed=seed)
        return float(fidelity_score(proxy, sample, self.encoder.schema))
