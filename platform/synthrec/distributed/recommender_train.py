"""Data-parallel training of model F on Ray Train: Ray glue only, the math is synthrec.recommender.

Driver: read the real (and synthetic) Parquet through Ray Data, validate and encode them once
(`prepare_training`: mismatched schemas, unknown items and empty data fail here, in seconds),
cut the logs into sequence windows and hand them to Ray Train as a Ray Data dataset (each
worker streams its own shard), run a TorchTrainer, publish the model directory.
Worker: DDP over the shard with a per-worker batch of batch_size / world_size, validation
NDCG@10 on rank 0, one stop decision for all ranks, checkpoints every K epochs.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from synthrec import storage
from synthrec.config import RecommenderConfig, StorageConfig, TrainRecommenderConfig
from synthrec.errors import ConfigError, DataError

WEIGHTS = "model.safetensors"
BEST = "best.safetensors"


# ------------------------------------------------------------------------------ driver side


def read_table_ray(
    uri: str, storage_cfg: StorageConfig | None = None, min_mb: float = 0.0
) -> pa.Table:
    """A .parquet file, a folder of Parquet files or a published dataset. Inputs of `min_mb`
    or more are read with Ray Data (parallel tasks); smaller ones on the driver, where a read
    takes milliseconds instead of the seconds Ray Data needs to start its read tasks."""
    import ray
    import ray.data

    fs, path = storage.filesystem(uri, storage_cfg)
    info = fs.get_file_info(path)
    if info.type.name == "NotFound":
        raise DataError(f"no file or dataset at {uri}; check the path")
    paths: str | list[str] = path
    size = info.size or 0
    if info.type.name == "Directory":
        manifest = storage.read_manifest(uri, storage_cfg)
        if manifest is not None and manifest.kind != "dataset":
            raise DataError(f"{uri} is a published {manifest.kind}, not a dataset")
        if manifest is not None:
            join = posixpath.join if storage.is_s3(uri) else os.path.join
            paths = [join(path, e.path) for e in manifest.files]
            size = sum(e.bytes for e in manifest.files)
        else:
            size = sum(
                f.size or 0 for f in fs.get_file_info(pafs.FileSelector(path, recursive=True))
            )
    if path.lower().endswith((".csv", ".tsv")) or size < min_mb * 2**20:
        table = storage.read_table(uri, storage_cfg)
    else:
        try:
            tables = [
                t
                for t in ray.get(ray.data.read_parquet(paths, filesystem=fs).to_arrow_refs())
                if t.num_rows
            ]
        except (ValueError, OSError) as err:
            raise DataError(
                f"{uri} is not readable as Parquet: {str(err).splitlines()[0]}"
            ) from None
        table = pa.concat_tables(tables, promote_options="default") if tables else pa.table({})
    if table.num_rows == 0:
        raise DataError(f"{uri} is empty (0 rows); model F needs interactions")
    return table


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


def checkpoint_uri(cfg: TrainRecommenderConfig) -> str:
    return cfg.run.checkpoint_uri or f"{cfg.out_uri.rstrip('/')}-runs"


def run_train_recommender(
    cfg: TrainRecommenderConfig, progress: Callable[[dict], None] | None = None
) -> dict[str, Any]:
    """Train model F with Ray Train and publish it at cfg.out_uri; returns a summary."""
    import ray
    from ray.train import DataConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue

    from synthrec.distributed.common import (
        build_run_config,
        build_scaling_config,
        ensure_ray,
        fit_with_progress,
        resolve_run_name,
    )
    from synthrec.recommender.artifacts import build_recommender, save_recommender
    from synthrec.recommender.train import prepare_training, training_arrays

    start = time.monotonic()
    model_cfg = cfg.model
    if model_cfg.batch_size < cfg.scaling.num_workers:
        raise ConfigError(
            f"model.batch_size {model_cfg.batch_size} is smaller than num_workers "
            f"{cfg.scaling.num_workers}; raise the batch size or use fewer workers"
        )
    storage.check_writable(cfg.out_uri, cfg.storage)
    storage.check_writable(checkpoint_uri(cfg), cfg.storage)
    ensure_ray(cfg.ray_address)
    real = read_table_ray(cfg.real_uri, cfg.storage, cfg.ray_data_min_mb)
    synthetic = (
        read_table_ray(cfg.synthetic_uri, cfg.storage, cfg.ray_data_min_mb)
        if cfg.synthetic_uri
        else None
    )
    data = prepare_training(real, synthetic, model_cfg)
    arrays = training_arrays(data.encoder, model_cfg, data.train, data.synthetic)
    events = Queue(maxsize=10_000, actor_options={"num_cpus": 0})
    loop_cfg = {
        "model": model_cfg.model_dump_json(),
        "payload": ray.put({"encoder": data.encoder, "valid": data.valid}),
        "deadline": time.time() + model_cfg.time_budget_s if model_cfg.time_budget_s else None,
        "checkpoint_every": cfg.run.checkpoint_every,
        "events": events,
        "threads": max(1, int(cfg.scaling.cpus_per_worker)),
    }
    name = resolve_run_name(
        "recommender", cfg.run.run_name, cfg.run.resume, checkpoint_uri(cfg), cfg.storage
    )
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_cfg,
        scaling_config=build_scaling_config(cfg.scaling),
        run_config=build_run_config(
            name, checkpoint_uri(cfg), cfg.storage, cfg.run.keep_checkpoints, cfg.run.max_failures
        ),
        datasets={"train": windows_dataset(arrays, model_cfg.seed)},
        dataset_config=DataConfig(datasets_to_split=["train"]),
    )
    del arrays
    result = fit_with_progress(trainer, events, progress, f"recommender training run {name}")
    model, state = _model_from_checkpoint(result.checkpoint, data.encoder, model_cfg)
    training = {
        **data.facts,
        "run_name": name,
        "num_workers": cfg.scaling.num_workers,
        "gpu": cfg.scaling.use_gpu,
        "holdout": model_cfg.holdout,
        "synthetic_weight": model_cfg.synthetic_weight,
        "real_uri": cfg.real_uri,
        "synthetic_uri": cfg.synthetic_uri,
        "epochs": state["epoch"],
        "best_epoch": state["best_epoch"],
        "best_valid_ndcg@10": state["best"],
        "train_seconds": round(time.monotonic() - start, 2),
    }
    rec = build_recommender(model, data.encoder, model_cfg, data.known, data.popularity, training)
    save_recommender(rec, cfg.out_uri, cfg.storage)
    return {
        "model_uri": cfg.out_uri,
        "checkpoints": f"{checkpoint_uri(cfg)}/{name}",
        **training,
        "history": state["history"],
    }


def _model_from_checkpoint(checkpoint, encoder, cfg: RecommenderConfig):
    from safetensors.torch import load_file

    from synthrec.recommender.train import build_model

    model = build_model(encoder, cfg)
    with checkpoint.as_directory() as path:
        state = json.loads(Path(path, "state.json").read_text())
        weights = Path(path, BEST) if Path(path, BEST).exists() else Path(path, WEIGHTS)
        model.load_state_dict(load_file(str(weights)))
    model.eval()
    return model, state


# ------------------------------------------------------------------------------ worker side


def train_loop(config: dict[str, Any]) -> None:
    """Per-worker loop. Weights start from cfg.seed on every rank; sampling uses seed + rank."""
    import ray
    import ray.train
    import ray.train.torch
    import torch

    from synthrec.recommender.train import (
        EarlyStopping,
        build_model,
        make_optimizer,
        train_epoch,
        validation_ndcg,
    )

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = RecommenderConfig.model_validate_json(config["model"])
    torch.set_num_threads(config["threads"])
    payload = ray.get(config["payload"])
    encoder, valid = payload["encoder"], payload["valid"]
    device = ray.train.torch.get_device()
    model = build_model(encoder, cfg).to(device)
    optimizer = make_optimizer(model, cfg)
    stopper = EarlyStopping(cfg.patience)
    epoch, history = _restore(model, optimizer, stopper, device)
    ddp = ray.train.torch.prepare_model(model) if world > 1 else model
    generator = torch.Generator().manual_seed(cfg.seed + rank)
    shard = ray.train.get_dataset_shard("train")
    local_batch = max(1, cfg.batch_size // world)
    while epoch < (cfg.epochs or 10**9):
        epoch += 1
        batches = shard.iter_torch_batches(
            batch_size=local_batch,
            local_shuffle_buffer_size=16 * local_batch,
            local_shuffle_seed=cfg.seed + 1000 * epoch + rank,
        )
        metrics = {"epoch": epoch, **train_epoch(ddp, optimizer, _as_bool(batches), cfg, generator)}
        stale = False
        if rank == 0 and valid is not None and epoch % cfg.eval_every == 0:
            metrics["valid_ndcg@10"] = validation_ndcg(model, encoder.user_token, valid)
            stale = stopper.update(model, epoch, metrics["valid_ndcg@10"])
        if rank == 0:
            history.append(metrics)
            config["events"].put(dict(metrics))
        stop = _agree_stop(
            stale or (config["deadline"] is not None and time.time() >= config["deadline"]),
            world,
            device,
        )
        last = stop or epoch == cfg.epochs
        if epoch % config["checkpoint_every"] == 0 or last:
            _report_with_checkpoint(metrics, model, optimizer, stopper, epoch, history, rank)
        else:
            ray.train.report(metrics)
        if stop:
            break


def _as_bool(batches):
    """Ray Data hands the synthetic flag back as an integer tensor."""
    for batch in batches:
        batch["synthetic"] = batch["synthetic"].bool()
        yield batch


def _agree_stop(stop: bool, world: int, device) -> bool:
    """All ranks stop together (report is a barrier): any rank's stop vote wins."""
    if world == 1:
        return stop
    import torch
    import torch.distributed as dist

    flag = torch.tensor([float(stop)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _restore(model, optimizer, stopper, device) -> tuple[int, list[dict]]:
    import ray.train
    import torch
    from safetensors.torch import load_file

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0, []
    with checkpoint.as_directory() as path:
        model.load_state_dict(load_file(str(Path(path, WEIGHTS)), device=str(device)))
        optimizer.load_state_dict(
            torch.load(Path(path, "optimizer.pt"), map_location=device, weights_only=True)
        )
        state = json.loads(Path(path, "state.json").read_text())
        if Path(path, BEST).exists():
            stopper.state = load_file(str(Path(path, BEST)), device=str(device))
    stopper.best = state["best"] if state["best"] is not None else -1.0
    stopper.best_epoch, stopper.bad = state["best_epoch"], state["bad"]
    return state["epoch"], state["history"]


def _report_with_checkpoint(metrics, model, optimizer, stopper, epoch, history, rank) -> None:
    import ray.train
    import torch
    from ray.train import Checkpoint
    from safetensors.torch import save_file

    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
            str(Path(tmp, WEIGHTS)),
        )
        if stopper.state is not None:
            save_file(
                {k: v.cpu().contiguous() for k, v in stopper.state.items()}, str(Path(tmp, BEST))
            )
        torch.save(
            optimizer.state_dict(), Path(tmp, "optimizer.pt")
        )  # read back with weights_only=True
        state = {
            "epoch": epoch,
            "best": stopper.best if stopper.state is not None else None,
            "best_epoch": stopper.best_epoch,
            "bad": stopper.bad,
            "history": history,
        }
        Path(tmp, "state.json").write_text(json.dumps(state))
        ray.train.report(
            metrics,
            checkpoint=Checkpoint.from_directory(tmp),
            checkpoint_dir_name=f"epoch-{epoch:06d}",
        )
