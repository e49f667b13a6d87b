"""One Ray Train skeleton for every trainer: Ray glue only, a trainer brings its math as a task.

Driver: `start_run` checks the destinations and picks the run name before any data is read
(a fresh name unless one is given; Ray resumes any run whose name it finds in the run storage,
so a named run that exists needs `resume`). `run_training` builds the TorchTrainer with the
ScalingConfig and RunConfig of distributed/common.py (S3 run storage included), runs it while
relaying rank 0's metrics to `progress`, and reads the final checkpoint back.

Worker: `worker_loop` is the one per-worker function. It decodes its typed `WorkerConfig`,
restores the run's last checkpoint if there is one, has the trainer's `TaskConfig.build` make
its `EpochTask`, then per epoch: seeds torch from (seed, rank, epoch) so a resumed epoch
replays exactly, trains, reports metrics (rank 0's go to the driver), lets all ranks agree on
stopping, and every `checkpoint_every` epochs (and at the last) attaches a checkpoint in the
one format of checkpoint.py.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol

import numpy as np

from synthrec.config import ScalingSection, StorageConfig
from synthrec.distributed import faults
from synthrec.distributed.checkpoint import load_state, save_state

# ------------------------------------------------------------------------------ typed config


@dataclass(frozen=True)
class LoopConfig:
    """The loop's own settings; the same on every worker."""

    epochs: int | None  # None: run until a stop vote (time budget or early stopping)
    deadline: float | None  # time.time() after which all ranks stop; None: no budget
    checkpoint_every: int
    seed: int  # torch's global RNG is seeded from (seed, rank, epoch) before every epoch
    events: Any = None  # ray.util.queue.Queue to the driver, set by run_training


@dataclass(frozen=True)
class WorkerContext:
    """Where a task runs: its rank among `world` workers and its torch device."""

    rank: int
    world: int
    device: Any  # torch.device


class EpochTask(Protocol):
    """A trainer's math on one worker, as the loop drives it."""

    @property
    def epoch(self) -> int:
        """Epochs completed (restored ones included)."""

    def train_epoch(self, on_step: Callable[[int], None] | None) -> dict[str, float]:
        """Train one epoch (calling `on_step(step)` after each step when given); return its
        metrics. Afterwards `epoch` is one higher."""

    def stop_vote(self) -> bool:
        """This rank's early-stopping vote after the epoch just trained."""

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs: a tree of tensors and JSON values."""


class TaskConfig(Protocol):
    """A trainer's worker settings (a frozen dataclass) that can build its task."""

    def build(self, worker: WorkerContext, state: dict[str, Any] | None) -> EpochTask:
        """The task, restored from `state` (what `EpochTask.state` returned) when given."""


@dataclass(frozen=True)
class WorkerConfig:
    """What Ray Train hands every worker, under the one key `worker` of train_loop_config."""

    task: TaskConfig
    loop: LoopConfig

    @staticmethod
    def decode(config: dict[str, Any]) -> WorkerConfig:
        worker = config.get("worker")
        if not isinstance(worker, WorkerConfig):
            raise TypeError(f"train_loop_config must be {{'worker': WorkerConfig}}, got {config!r}")
        return worker


# ------------------------------------------------------------------------------ driver side


class TrainRunConfig(Protocol):
    """The run and checkpoint fields every Train*Config has."""

    out: str
    checkpoint_uri: str | None
    run_name: str | None
    resume: bool
    checkpoint_every: int
    keep_checkpoints: int
    max_failures: int
    scaling: ScalingSection
    storage: StorageConfig


@dataclass
class RunResult:
    name: str
    checkpoints_uri: str  # the run's folder in the run storage
    task_state: dict[str, Any]  # the last checkpoint's task state, tensors on the CPU
    epochs: int
    history: list[dict[str, Any]]  # rank 0's metrics, one dict per epoch
    worker_starts: list[dict[str, Any]] = field(default_factory=list)  # rank, node, pid, epoch


def run_summary(
    run: RunResult, generator: str, model_uri: str, name: str, start: float
) -> dict[str, Any]:
    """What a training entry point returns (and the CLI prints) once the model is published."""
    return {
        "generator": generator,
        "model_uri": model_uri,
        "run_name": name,
        "checkpoints": run.checkpoints_uri,
        "epochs": run.epochs,
        "last": run.history[-1] if run.history else {},
        "seconds": time.monotonic() - start,
        "worker_starts": run.worker_starts,
        "history": run.history,
    }


def runs_uri(cfg: TrainRunConfig) -> str:
    """Where runs and their checkpoints go: `checkpoint_uri`, by default `<out>-runs`."""
    return cfg.run.checkpoint_uri or f"{cfg.out_uri.rstrip('/')}-runs"


def start_run(prefix: str, cfg: TrainRunConfig) -> str:
    """Check that the model and run storage are writable and return the run's name."""
    from synthrec import storage
    from synthrec.distributed.common import resolve_run_name

    storage.check_writable(cfg.out_uri, cfg.storage)
    storage.check_writable(runs_uri(cfg), cfg.storage)
    return resolve_run_name(prefix, cfg.run.run_name, cfg.run.resume, runs_uri(cfg), cfg.storage)


def run_training(
    task: TaskConfig,
    loop: LoopConfig,
    cfg: TrainRunConfig,
    name: str,
    what: str,
    progress: Callable[[dict], None] | None = None,
    datasets: dict[str, Any] | None = None,
) -> RunResult:
    """Run `task` on Ray Train as run `name` (Ray must be up); blocks until it ends.

    `datasets` (Ray Data) are split across the workers (`ray.train.get_dataset_shard`)."""
    from ray.train import DataConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue

    from synthrec.distributed.common import (
        build_run_config,
        build_scaling_config,
        fit_with_progress,
    )

    events = Queue(maxsize=10_000, actor_options={"num_cpus": 0})
    data = {}
    if datasets:
        data = {
            "datasets": datasets,
            "dataset_config": DataConfig(datasets_to_split=list(datasets)),
        }
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"worker": WorkerConfig(task, replace(loop, events=events))},
        scaling_config=build_scaling_config(cfg.scaling),
        run_config=build_run_config(
            name,
            runs_uri(cfg),
            cfg.storage,
            cfg.run.keep_checkpoints,
            cfg.run.max_failures,
            worker_env=faults.worker_env(),
        ),
        **data,
    )
    starts: list[dict] = []

    def relay(item: dict) -> None:
        if item.pop("event", None) == "start":
            starts.append(item)
        elif progress:
            progress(item)

    result = fit_with_progress(trainer, events, relay, f"{what} run {name}")
    with result.checkpoint.as_directory() as path:
        state = load_state(path)
    return RunResult(
        name=name,
        checkpoints_uri=f"{runs_uri(cfg)}/{name}",
        task_state=state["task"],
        epochs=state["epoch"],
        history=state["history"],
        worker_starts=starts,
    )


# ------------------------------------------------------------------------------ worker side


def worker_loop(config: dict[str, Any]) -> None:
    """The per-worker function of every Train run (see the module docstring)."""
    import os

    import ray
    import ray.train
    import ray.train.torch
    import torch

    job = WorkerConfig.decode(config)
    loop = job.loop
    ctx = ray.train.get_context()
    worker = WorkerContext(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device())
    restored = _restore()
    task = job.task.build(worker, restored["task"] if restored else None)
    history: list[dict] = restored["history"] if restored else []
    resumed_from = task.epoch
    loop.events.put(
        {
            "event": "start",
            "rank": worker.rank,
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "start_epoch": resumed_from,
        }
    )
    fault = faults.step_hook(worker.rank, worker.world)
    while loop.epochs is None or task.epoch < loop.epochs:
        epoch = task.epoch + 1
        torch.manual_seed(epoch_seed(loop.seed, worker.rank, epoch))
        on_step = partial(fault, epoch) if fault else None
        metrics = {**task.train_epoch(on_step), "epoch": task.epoch, "resumed_from": resumed_from}
        history.append(metrics)
        if worker.rank == 0:
            loop.events.put(dict(metrics))
        deadline_passed = loop.deadline is not None and time.time() >= loop.deadline
        stop = agree_stop(task.stop_vote() or deadline_passed, worker)
        if task.epoch % loop.checkpoint_every == 0 or stop or task.epoch == loop.epochs:
            _report_with_checkpoint(metrics, task, history, worker.rank)
        else:
            ray.train.report(metrics)
        if stop:
            break


def epoch_seed(seed: int, rank: int, epoch: int, stream: int = 0) -> int:
    """A seed for one epoch of one rank; `stream` tells apart the RNGs a task seeds (the loop
    seeds torch's global RNG with stream 0)."""
    return int(np.random.SeedSequence([seed, rank, epoch, stream]).generate_state(1)[0])


def agree_stop(stop: bool, worker: WorkerContext) -> bool:
    """All ranks stop together (report is a barrier): any rank's stop vote wins."""
    if worker.world == 1:
        return stop
    import torch
    import torch.distributed as dist

    flag = torch.tensor([float(stop)], device=worker.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _restore() -> dict[str, Any] | None:
    """The run's last checkpoint, tensors on the CPU (load_state_dict moves them where the
    parameters are; an optimizer keeps its step counters on the CPU)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as path:
        return load_state(path)


def _report_with_checkpoint(metrics: dict, task: EpochTask, history: list, rank: int) -> None:
    """Every rank reports; rank 0 attaches the checkpoint (the ranks' states are equal)."""
    import ray.train
    from ray.train import Checkpoint

    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        save_state(tmp, {"task": task.state(), "epoch": task.epoch, "history": history})
        ray.train.report(
            metrics,
            checkpoint=Checkpoint.from_directory(tmp),
            checkpoint_dir_name=f"epoch-{task.epoch:06d}",
        )


def sum_across_workers(summed: dict) -> dict:
    """DP-SGD's cross-worker sum of clipped gradients, name -> tensor (plus rank 0's noise):
    one all-reduce of the flattened gradients per step (row GAN critic, sequence model)."""
    import torch
    import torch.distributed as dist

    names = list(summed)
    flat = torch.cat([summed[k].reshape(-1) for k in names])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    out, at = {}, 0
    for k in names:
        n = summed[k].numel()
        out[k] = flat[at : at + n].view_as(summed[k])
        at += n
    return out
