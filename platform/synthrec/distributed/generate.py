"""Synthetic data generation as a Ray Data pipeline: exact, deterministic, atomic.

The dataset is cut into fixed blocks of `rows_per_file` rows. Block i is generated from
seed `seed + i` (inside `Synthesizer.sample_block`) and written by the actor that made it as
`part-{i:05d}.parquet`, so the output bytes do not depend on how many actors ran. Only a
small row of file metadata per block flows back through Ray, never the generated rows: that
is what keeps the pipeline near the speed of one plain process per core.

Files go under a run folder named by a hash of everything that determines the content (the
model's file checksums, not its editable version label); a re-run after a crash finds the
blocks already written, skips them, and publishes the manifest (storage.commit). Actors load
the model version the driver read (its manifest travels with them) and get S3 credentials
from a config through the object store (distributed.credentials), never as task arguments.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from synthrec import storage
from synthrec.config import GenerateConfig
from synthrec.distributed.credentials import WorkerStorage, share
from synthrec.errors import ConfigError, ModelError
from synthrec.storage import FileEntry, Manifest

MAX_BLOCKS = 100_000  # part names have five digits: part-00000 .. part-99999
_PART = re.compile(r"part-(\d{5})\.parquet")


@dataclass
class GenerateSummary:
    uri: str
    rows: int
    files: int
    bytes: int
    seconds: float
    reused_blocks: int

    @property
    def rows_per_s(self) -> float:
        return self.rows / max(self.seconds, 1e-9)


def block_sizes(num_rows: int, rows_per_block: int) -> np.ndarray:
    """Rows per block: all full except possibly the last, summing to exactly num_rows."""
    full, rest = divmod(num_rows, rows_per_block)
    return np.array([rows_per_block] * full + ([rest] if rest else []), dtype=np.int64)


def content_key(cfg: GenerateConfig, model: Manifest) -> str:
    """Run-folder name: equal for runs that must produce identical bytes. The model is named
    by its files' sha256 (weights, encoder, config), so two models that share a version
    label never share blocks."""
    spec = {
        "model": sorted(e.sha256 for e in model.files),
        "rows": cfg.rows,
        "seed": cfg.seed,
        "block": cfg.rows_per_file,
        "conditions": cfg.conditions,
        "rebalance": cfg.rebalance,
    }
    return "run-gen-" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def part_name(run_id: str, block: int) -> str:
    return f"{run_id}/part-{block:05d}.parquet"


def check_blocks(cfg: GenerateConfig) -> int:
    """Number of blocks, at most MAX_BLOCKS (so every part name has five digits)."""
    blocks = -(-cfg.rows // cfg.rows_per_file)
    if blocks > MAX_BLOCKS:
        raise ConfigError(
            f"rows {cfg.rows:,} in files of rows_per_file {cfg.rows_per_file:,} make {blocks:,} "
            f"files; at most {MAX_BLOCKS:,} are allowed: set rows_per_file to at least "
            f"{-(-cfg.rows // MAX_BLOCKS):,}"
        )
    return blocks


class BlockWriter:
    """Actor: loads the model once, then generates and writes whole blocks."""

    def __init__(
        self,
        cfg_json: str,
        run_id: str,
        threads: int,
        storage_ref: WorkerStorage,
        model_manifest_json: str,
    ):
        import torch

        from synthrec.artifacts import load_synthesizer

        torch.set_num_threads(max(1, threads))
        self.cfg = GenerateConfig.model_validate_json(cfg_json)
        self.storage = storage_ref.resolve()
        self.run_id = run_id
        device = "cuda" if self.cfg.gpu else "cpu"
        model = Manifest.from_json(model_manifest_json, self.cfg.model_uri)
        self.synth = load_synthesizer(self.cfg.model_uri, self.storage, device, manifest=model)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list] = {"block": [], "path": [], "rows": [], "bytes": [], "sha256": []}
        for block, rows in zip(batch["block"].tolist(), batch["rows"].tolist()):
            table = self.synth.sample_block(
                block,
                rows,
                seed=self.cfg.seed,
                conditions=self.cfg.conditions or None,
                rebalance=self.cfg.rebalance or None,
            )
            body = storage.parquet_bytes(table)
            rel = part_name(self.run_id, block)
            storage.write_bytes(storage.join(self.cfg.out_uri, rel), body, self.storage)
            for key, value in (
                ("block", block),
                ("path", rel),
                ("rows", table.num_rows),
                ("bytes", len(body)),
                ("sha256", hashlib.sha256(body).hexdigest()),
            ):
                out[key].append(value)
        return {k: np.asarray(v) for k, v in out.items()}


def preflight(cfg: GenerateConfig):
    """Everything that can fail fast, on the driver, before any actor starts. Returns the
    synthesizer and the manifest of the model version it was loaded from."""
    from synthrec.artifacts import load_synthesizer

    check_blocks(cfg)
    model = storage.read_manifest(cfg.model_uri, cfg.storage)
    if model is None:
        raise ModelError(
            f"no published model at {cfg.model_uri}; train one with `synthrec train-gan` first"
        )
    synth = load_synthesizer(cfg.model_uri, cfg.storage, device="cpu", manifest=model)
    # Raises ConditionError for an unknown column or value (a 1-row probe is cheap).
    synth.sample_block(
        0, 1, seed=cfg.seed, conditions=cfg.conditions or None, rebalance=cfg.rebalance or None
    )
    storage.check_writable(cfg.out_uri, cfg.storage)
    return synth, model


def _existing_blocks(cfg: GenerateConfig, run_id: str, sizes: np.ndarray) -> dict[int, FileEntry]:
    """Blocks a killed run already wrote completely (files appear only when whole)."""
    import pyarrow.parquet as pq

    found = {}
    for rel in storage.list_files(storage.join(cfg.out_uri, run_id), cfg.storage):
        match = _PART.fullmatch(rel)
        if match is None or int(match.group(1)) >= len(sizes):
            continue
        block = int(match.group(1))
        path = f"{run_id}/{rel}"
        fs, fpath = storage.filesystem(storage.join(cfg.out_uri, path), cfg.storage)
        rows = pq.ParquetFile(fs.open_input_file(fpath)).metadata.num_rows
        if rows == sizes[block]:
            found[block] = storage.entry_for(cfg.out_uri, path, cfg.storage, rows)
    return found


def run_generate(
    cfg: GenerateConfig, progress: Callable[..., None] | None = None
) -> GenerateSummary:
    """Generate exactly cfg.rows rows to cfg.out_uri with Ray Data and publish them atomically."""
    import ray
    from ray.data import ActorPoolStrategy

    from synthrec.distributed.common import ensure_ray

    synth, model = preflight(cfg)
    version = synth.metadata.get("version", "unknown")
    run_id = content_key(cfg, model)
    sizes = block_sizes(cfg.rows, cfg.rows_per_file)
    start = time.monotonic()
    done = _existing_blocks(cfg, run_id, sizes)
    todo = np.array([b for b in range(len(sizes)) if b not in done], dtype=np.int64)
    rows_done = int(sum(e.rows for e in done.values()))
    if progress:
        progress(rows_done)

    if len(todo):
        ensure_ray(cfg.ray_address)
        workers = min(cfg.concurrency, len(todo))
        ds = ray.data.from_items(
            [{"block": int(b), "rows": int(sizes[b])} for b in todo], override_num_blocks=len(todo)
        )
        actor_args = dict(num_gpus=1 if cfg.gpu else 0, num_cpus=cfg.cpus_per_actor)
        shared = share(cfg.storage)  # owns the secrets' object until the actors are done
        bare = cfg.model_copy(update={"storage": cfg.storage.without_secrets()})
        ds = ds.map_batches(
            BlockWriter,
            fn_constructor_args=(
                bare.model_dump_json(),
                run_id,
                max(1, int(cfg.cpus_per_actor)),
                shared,
                model.to_json(),
            ),
            batch_size=1,
            compute=ActorPoolStrategy(size=workers),
            **actor_args,
        )
        for batch in ds.iter_batches(batch_size=1, batch_format="numpy"):
            for block, path, rows, nbytes, sha in zip(
                batch["block"], batch["path"], batch["rows"], batch["bytes"], batch["sha256"]
            ):
                done[int(block)] = FileEntry(str(path), int(nbytes), str(sha), int(rows))
                rows_done += int(rows)
            if progress:
                progress(rows_done)

    entries = [done[b] for b in range(len(sizes))]
    assert sum(e.rows for e in entries) == cfg.rows, "every block must be accounted for"
    metadata = {
        "model_uri": cfg.model_uri,
        "model_version": version,
        "model_run": model.run_id,
        "seed": cfg.seed,
        "rows_per_file": cfg.rows_per_file,
        "conditions": cfg.conditions,
        "rebalance": cfg.rebalance,
        "generator": "synthrec",
    }
    storage.commit(
        cfg.out_uri,
        Manifest("dataset", run_id, entries, num_rows=cfg.rows, metadata=metadata),
        cfg.storage,
    )
    return GenerateSummary(
        cfg.out_uri,
        cfg.rows,
        len(entries),
        sum(e.bytes for e in entries),
        time.monotonic() - start,
        len(sizes) - len(todo),
    )
