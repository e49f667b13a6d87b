"""Data-parallel training of F with its ranking heads on Ray Train: Ray glue only, the math is
synthrec.recommender.ranking (the seed's loss, one real and one synthetic batch per step).

Driver: `prepare_ranking` validates and encodes the real and synthetic tables once (bad
labels, unknown items and empty data fail here, in seconds); the prepared data goes to the
object store once and every worker takes its shard of requests (a request's impressions stay
together, so its history is encoded once per batch). No Ray Data: impressions with their
request histories are not flat rows.
Worker (`RankingTask`): each rank trains on its shard with 1/world of every batch and the
gradients are averaged across ranks after each backward (an explicit all-reduce: the step
reads the user tower and the heads through several methods, not one DDP forward); rank 0
validates (click GAUC per user), keeps the best weights and votes to stop early.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from synthrec.config import RecommenderConfig, TrainRecommenderConfig
from synthrec.distributed.train_loop import (
    LoopConfig,
    WorkerContext,
    epoch_seed,
    run_training,
)


def run_train_ranking(
    cfg: TrainRecommenderConfig,
    real: pa.Table,
    synthetic: pa.Table | None,
    name: str,
    schema=None,
    progress: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Train F with ranking heads on Ray Train and publish it at cfg.out_uri (with `schema`,
    the log's, in its training facts)."""
    import ray

    from synthrec.distributed.common import ensure_ray
    from synthrec.distributed.recommender_train import publish_trained
    from synthrec.recommender.ranking import build_ranking_model, prepare_ranking

    start = time.monotonic()
    model_cfg = cfg.model
    data = prepare_ranking(real, synthetic, model_cfg)
    ensure_ray(cfg.ray_address)
    task = RankingWorkerConfig(
        model=model_cfg, data=ray.put(data), threads=max(1, int(cfg.scaling.cpus_per_worker))
    )
    deadline = time.time() + model_cfg.time_budget_s if model_cfg.time_budget_s else None
    loop = LoopConfig(model_cfg.epochs, deadline, cfg.run.checkpoint_every, model_cfg.seed)
    run = run_training(task, loop, cfg, name, "ranking training", progress)
    imp = data.real.impressions
    facts = {
        "real_impressions": len(imp) if imp is not None else 0,
        "synthetic_impressions": len(data.synthetic.impressions)
        if data.synthetic is not None and data.synthetic.impressions is not None
        else 0,
        "num_items": data.encoder.num_items,
        "labels": list(data.encoder.columns.labels),
        "notes": data.notes,
        "holdout": "last 10% of the real rows in time (validation click GAUC)",
        **({"schema": schema.to_dict()} if schema is not None else {}),
    }
    model = build_ranking_model(data, model_cfg)
    return publish_trained(cfg, name, run, model, data, start, facts, "best_valid_gauc")


@dataclass(frozen=True)
class RankingWorkerConfig:
    model: RecommenderConfig
    data: Any  # ObjectRef of the prepared RankingData
    threads: int  # torch threads per worker

    def build(self, worker: WorkerContext, state: dict[str, Any] | None) -> RankingTask:
        return RankingTask(self, worker, state)


class RankingTask:
    """One worker's F. Weights start from cfg.seed on every rank; batches from (seed, rank)."""

    def __init__(self, cfg: RankingWorkerConfig, worker: WorkerContext, state: dict | None):
        import ray
        import torch

        from synthrec.recommender.ranking import (
            build_ranking_model,
            steps_per_epoch,
            streams,
        )
        from synthrec.recommender.train import EarlyStopping, make_optimizer

        torch.set_num_threads(cfg.threads)
        self.cfg, self.worker = cfg, worker
        data = ray.get(cfg.data)
        self.valid = data.valid if worker.rank == 0 else None
        self.steps = steps_per_epoch(data, cfg.model)
        mine = data.shard(worker.rank, worker.world)
        seed, world = cfg.model.seed + 1000 * worker.rank, worker.world
        self.real = streams(mine.real, cfg.model, seed, world)
        self.synthetic = streams(mine.synthetic, cfg.model, seed + 10_000, world)
        self.model = build_ranking_model(data, cfg.model).to(worker.device)
        self.optimizer = make_optimizer(self.model, cfg.model)
        self.stopper = EarlyStopping(cfg.model.patience)
        self.generator = torch.Generator()
        self.epoch, self.stale = 0, False
        if state is not None:
            self._load(state)

    def train_epoch(self, on_step: Callable[[int], None] | None) -> dict[str, float]:
        from synthrec.recommender.ranking import train_steps, validation_gauc

        cfg = self.cfg.model
        self.epoch += 1
        self.generator.manual_seed(epoch_seed(cfg.seed, self.worker.rank, self.epoch, stream=1))
        sync = self._average_gradients if self.worker.world > 1 else None
        metrics = train_steps(
            self.model,
            self.optimizer,
            self.real,
            self.synthetic,
            cfg,
            self.generator,
            self.steps,
            sync,
            on_step,
        )
        self.stale = False
        if self.valid is not None and self.model.ranker is not None:
            if self.epoch % cfg.eval_every == 0:
                metrics["valid_gauc"] = validation_gauc(self.model, self.valid)
                self.stale = self.stopper.update(self.model, self.epoch, metrics["valid_gauc"])
        return metrics

    def _average_gradients(self) -> None:
        import torch
        import torch.distributed as dist

        params = list(self.model.parameters())
        for p in params:  # a part no batch reached this step still takes part in the sum
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.flatten() for p in params])
        dist.all_reduce(flat)
        flat /= self.worker.world
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()

    def stop_vote(self) -> bool:
        return self.stale

    def state(self) -> dict[str, Any]:
        kept = self.stopper.state is not None
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "best": self.stopper.state,
            "best_score": self.stopper.best if kept else None,
            "best_epoch": self.stopper.best_epoch,
            "bad": self.stopper.bad,
        }

    def _load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = state["epoch"]
        self.stopper.state = state["best"]
        self.stopper.best = state["best_score"] if state["best_score"] is not None else -1.0
        self.stopper.best_epoch, self.stopper.bad = state["best_epoch"], state["bad"]
