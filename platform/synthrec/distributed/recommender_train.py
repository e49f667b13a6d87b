"""Data-parallel training of model F on Ray Train: Ray glue only, the math is synthrec.recommender.

Driver: read the real (and synthetic) tables through the storage layer (a published dataset
only through its verified manifest), validate and encode them once (`prepare_training`:
mismatched schemas, unknown items and empty data fail here, in seconds), cut the logs into
sequence windows and hand them to the Train skeleton (train_loop.py) as a Ray Data dataset
(each worker streams its own shard), publish the model directory.
Worker (`RecommenderTask`): DDP over the shard with a per-worker batch of batch_size /
world_size, validation NDCG@10 on rank 0, which keeps the best weights and votes to stop
early.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from synthrec import storage
from synthrec.config import RecommenderConfig, StorageConfig, TrainRecommenderConfig
from synthrec.distributed.train_loop import (
    LoopConfig,
    WorkerContext,
    epoch_seed,
    run_training,
    start_run,
)
from synthrec.errors import ConfigError, DataError
from synthrec.schema import Schema, apply_schema

# ------------------------------------------------------------------------------ driver side


def read_interactions(uri: str, storage_cfg: StorageConfig | None = None) -> pa.Table:
    """A table through `storage.read_table` (the one reader of files and published datasets)."""
    table = storage.read_table(uri, storage_cfg)
    if table.num_rows == 0:
        raise DataError(f"{uri} is empty (0 rows); model F needs interactions")
    return table


def read_real(cfg: TrainRecommenderConfig) -> tuple[pa.Table, Schema | None]:
    """The real table and its schema: `cfg.schema_uri` or the dataset manifest's, applied
    (ignored columns dropped, behaviour mapped to labels); without either, (table, None) and
    model F infers the roles."""
    from synthrec.data.eventlog import load_event_log, manifest_schema

    if cfg.schema_uri is None and manifest_schema(cfg.real_uri, cfg.storage) is None:
        return read_interactions(cfg.real_uri, cfg.storage), None
    return load_event_log(cfg.real_uri, cfg.schema_uri, cfg.storage)


def windows_dataset(arrays: dict[str, np.ndarray], seed: int):
    """Training windows as a Ray Data dataset (tensor columns), rows pre-shuffled once."""
    import ray.data
    from ray.data.extensions import ArrowTensorArray

    order = np.random.default_rng(seed).permutation(len(arrays["tokens"]))
    columns = {
        k: ArrowTensorArray.from_numpy(np.ascontiguousarray(v[order]))
        if v.ndim > 1
        else pa.array(v[order])
        for k, v in arrays.items()
    }
    table = pa.table(columns)
    blocks = max(1, min(64, len(order) // 2048))
    return ray.data.from_arrow(
        [table.slice(i * len(order) // blocks, len(order) // blocks + 1) for i in range(blocks)]
    )


def run_train_recommender(
    cfg: TrainRecommenderConfig, progress: Callable[[dict], None] | None = None
) -> dict[str, Any]:
    """Train model F with Ray Train and publish it at cfg.out_uri; returns a summary."""
    import ray

    from synthrec.distributed.common import ensure_ray
    from synthrec.recommender.train import build_model, prepare_training, training_arrays

    start = time.monotonic()
    model_cfg = cfg.model
    if model_cfg.batch_size < cfg.scaling.num_workers:
        raise ConfigError(
            f"model.batch_size {model_cfg.batch_size} is smaller than num_workers "
            f"{cfg.scaling.num_workers}; raise the batch size or use fewer workers"
        )
    if "ray_data_min_mb" in cfg.model_fields_set:
        warnings.warn(
            "ray_data_min_mb is ignored: inputs are read on the driver through their verified "
            "manifest; remove it from the config",
            FutureWarning,
            stacklevel=2,
        )
    name = start_run("recommender", cfg)
    real, schema = read_real(cfg)
    synthetic = read_interactions(cfg.synthetic_uri, cfg.storage) if cfg.synthetic_uri else None
    if synthetic is not None and schema is not None:
        synthetic = apply_schema(synthetic, schema, cfg.synthetic_uri)
    from synthrec.recommender.ranking import wants_ranking_heads

    ranking = wants_ranking_heads(real, model_cfg, schema)
    if ranking and cfg.init_model_uri:
        raise ConfigError(
            "init_model_uri (warm start) covers F's next-item model, and this log trains F's "
            "ranking heads (a search log, or model.ranking_heads true); set model.ranking_heads "
            "false or drop init_model_uri"
        )
    if ranking:  # F with its heads: distributed/ranking_train.py
        from synthrec.distributed.ranking_train import run_train_ranking

        return run_train_ranking(cfg, real, synthetic, name, schema, progress)
    data = prepare_training(real, synthetic, model_cfg, schema)
    arrays = training_arrays(data.encoder, model_cfg, data.train, data.synthetic)
    ensure_ray(cfg.ray_address)
    warm = _warm_start(cfg, data.encoder)
    task = RecommenderWorkerConfig(
        model=model_cfg,
        encoder=ray.put(data.encoder),
        valid=ray.put(data.valid),
        threads=max(1, int(cfg.scaling.cpus_per_worker)),
        init=ray.put(warm.state) if warm else None,
    )
    datasets = {"train": windows_dataset(arrays, model_cfg.seed)}
    del arrays
    deadline = time.time() + model_cfg.time_budget_s if model_cfg.time_budget_s else None
    loop = LoopConfig(model_cfg.epochs, deadline, cfg.run.checkpoint_every, model_cfg.seed)
    run = run_training(task, loop, cfg, name, "recommender training", progress, datasets)

    model = build_model(data.encoder, model_cfg)
    facts = {
        **data.facts,
        **({"warm_start": _warm_facts(cfg, warm)} if warm else {}),
        "holdout": model_cfg.holdout,
        **({"schema": schema.to_dict()} if schema is not None else {}),
    }
    return publish_trained(cfg, name, run, model, data, start, facts, "best_valid_ndcg@10")


def _warm_start(cfg: TrainRecommenderConfig, encoder):
    """The first weights of a warm-started F (cfg.init_model_uri), or None."""
    if cfg.init_model_uri is None:
        return None
    from synthrec.recommender.artifacts import load_recommender
    from synthrec.recommender.train import build_model
    from synthrec.recommender.warm import warm_state

    model = build_model(encoder, cfg.model)
    return warm_state(model, encoder, load_recommender(cfg.init_model_uri, cfg.storage))


def _warm_facts(cfg: TrainRecommenderConfig, warm) -> dict[str, Any]:
    return {
        "from": cfg.init_model_uri,
        "copied_share": round(warm.copied_share, 4),
        "known_items": warm.known_items,
    }


def publish_trained(
    cfg: TrainRecommenderConfig,
    name: str,
    run,
    model,
    data,
    start: float,
    facts: dict,
    score_key: str,
) -> dict[str, Any]:
    """Load a Ray-trained F's best weights into `model`, record the run's training facts
    beside `facts` (the next-item and the ranking trainers' own), publish the recommender at
    cfg.out_uri; -> the run's summary."""
    from synthrec.recommender.artifacts import build_recommender, save_recommender

    state = run.task_state
    model.load_state_dict(state["best"] if state["best"] is not None else state["model"])
    model.eval()
    training = {
        **facts,
        "run_name": name,
        "num_workers": cfg.scaling.num_workers,
        "gpu": cfg.scaling.use_gpu,
        "synthetic_weight": cfg.model.synthetic_weight,
        "real_uri": cfg.real_uri,
        "synthetic_uri": cfg.synthetic_uri,
        "epochs": run.epochs,
        "best_epoch": state["best_epoch"],
        score_key: state["best_score"],
        "train_seconds": round(time.monotonic() - start, 2),
    }
    rec = build_recommender(model, data.encoder, cfg.model, data.known, data.popularity, training)
    save_recommender(rec, cfg.out_uri, cfg.storage)
    return {
        "model_uri": cfg.out_uri,
        "checkpoints": run.checkpoints_uri,
        **training,
        "history": run.history,
    }


# ------------------------------------------------------------------------------ worker side


@dataclass(frozen=True)
class RecommenderWorkerConfig:
    """What every model-F worker gets: the typed config at the top of its loop."""

    model: RecommenderConfig
    encoder: Any  # ObjectRef of the fitted recommender Encoder
    valid: Any  # ObjectRef of the validation Queries (None without a holdout)
    threads: int  # torch threads per worker
    init: Any = None  # ObjectRef of warm-start weights (a state dict), or None: from the seed

    def build(self, worker: WorkerContext, state: dict[str, Any] | None) -> RecommenderTask:
        return RecommenderTask(self, worker, state)


class RecommenderTask:
    """One worker's model F. Weights start from cfg.seed on every rank; sampling from
    (seed, rank, epoch); the shard comes from Ray Data."""

    def __init__(self, cfg: RecommenderWorkerConfig, worker: WorkerContext, state: dict | None):
        import ray
        import ray.train
        import ray.train.torch
        import torch

        from synthrec.recommender.train import EarlyStopping, build_model, make_optimizer

        torch.set_num_threads(cfg.threads)
        self.cfg, self.worker = cfg, worker
        self.encoder, self.valid = ray.get(cfg.encoder), ray.get(cfg.valid)
        self.model = build_model(self.encoder, cfg.model).to(worker.device)
        self.optimizer = make_optimizer(self.model, cfg.model)
        self.stopper = EarlyStopping(cfg.model.patience)
        self.epoch, self.stale = 0, False
        if state is not None:
            self._load(state)
        elif cfg.init is not None:  # warm start (a refresh): the same weights on every rank
            self.model.load_state_dict(ray.get(cfg.init))
        self.ddp = ray.train.torch.prepare_model(self.model) if worker.world > 1 else self.model
        self.shard = ray.train.get_dataset_shard("train")
        self.generator = torch.Generator()

    def train_epoch(self, on_step: Callable[[int], None] | None) -> dict[str, float]:
        from synthrec.recommender.train import train_epoch, validation_ndcg

        cfg, rank = self.cfg.model, self.worker.rank
        self.epoch += 1
        self.generator.manual_seed(epoch_seed(cfg.seed, rank, self.epoch, stream=1))
        local_batch = max(1, cfg.batch_size // self.worker.world)
        batches = self.shard.iter_torch_batches(
            batch_size=local_batch,
            local_shuffle_buffer_size=16 * local_batch,
            local_shuffle_seed=cfg.seed + 1000 * self.epoch + rank,
        )
        steps = _steps(_as_bool(batches), on_step)
        metrics = train_epoch(self.ddp, self.optimizer, steps, cfg, self.generator)
        self.stale = False
        if rank == 0 and self.valid is not None and self.epoch % cfg.eval_every == 0:
            metrics["valid_ndcg@10"] = validation_ndcg(
                self.model, self.encoder.user_token, self.valid
            )
            self.stale = self.stopper.update(self.model, self.epoch, metrics["valid_ndcg@10"])
        return metrics

    def stop_vote(self) -> bool:
        return self.stale

    def state(self) -> dict[str, Any]:
        kept = self.stopper.state is not None
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "best": self.stopper.state,  # weights of the best validated epoch, or None
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


def _as_bool(batches: Iterable[dict]) -> Iterator[dict]:
    """Ray Data hands the synthetic flag back as an integer tensor."""
    for batch in batches:
        batch["synthetic"] = batch["synthetic"].bool()
        yield batch


def _steps(batches: Iterator[dict], on_step: Callable[[int], None] | None) -> Iterator[dict]:
    """The batches, calling `on_step(step)` once the step that trained on one is done."""
    if on_step is None:
        yield from batches
        return
    for step, batch in enumerate(batches, 1):
        yield batch
        on_step(step)
