"""Synthetic data generation as a Ray Data pipeline: exact, deterministic, atomic.

The dataset is cut into fixed blocks of `rows_per_file` rows. Block i is generated from
seed `seed + i` (inside `Synthesizer.sample_block`) and written by the actor that made it as
`part-{i:05d}.parquet`, so the output bytes do not depend on how many actors ran. Only a
small row of file metadata per block flows back through Ray, never the generated rows: that
is what keeps the pipeline near the speed of one plain process per core.

Files go under a run folder named by a hash of everything that determines the content; a
re-run after a crash finds the blocks already written, skips them, and publishes the manifest
(storage.commit), which also removes stale run folders.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from synthrec import storage
from synthrec.config import GenerateConfig
from synthrec.errors import ModelError
from synthrec.storage import FileEntry, Manifest


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


def content_key(cfg: GenerateConfig, model_version: str) -> str:
    """Run-folder name: equal for runs that must produce identical bytes."""
    spec = {
        "model": model_version,
        "rows": cfg.rows,
        "seed": cfg.seed,
        "block": cfg.rows_per_file,
        "conditions": cfg.conditions,
        "rebalance": cfg.rebalance,
    }
    return "run-gen-" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def part_name(run_id: str, block: int) -> str:
    return f"{run_id}/part-{block:05d}.parquet"


class BlockWriter:
    """Actor: loads the model once, then generates and writes whole blocks."""

    def __init__(self, cfg_json: str, run_id: str, threads: int):
        import torch

        from synthrec.artifacts import load_synthesizer

        torch.set_num_threads(max(1, threads))
        self.cfg = GenerateConfig.model_validate_json(cfg_json)
        self.run_id = run_id
        device = "cuda" if self.cfg.gpu else "cpu"
        self.synth = load_synthesizer(self.cfg.model_uri, self.cfg.storage, device=device)

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
            storage.write_bytes(storage.join(self.cfg.out_uri, rel), body, self.cfg.storage)
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
    """Everything that can fail fast, on the driver, before any actor starts."""
    from synthrec.artifacts import load_synthesizer

    if storage.read_manifest(cfg.model_uri, cfg.storage) is None:
        raise ModelError(
            f"no published model at {cfg.model_uri}; train one with `synthrec train-gan` first"
        )
    synth = load_synthesizer(cfg.model_uri, cfg.storage, device="cpu")
    # Raises ConditionError for an unknown column or value (a 1-row probe is cheap).
    synth.sample_block(
        0, 1, seed=cfg.seed, conditions=cfg.conditions or None, rebalance=cfg.rebalance or None
    )
    storage.check_writable(cfg.out_uri, cfg.storage)
    return synth


def _existing_blocks(cfg: GenerateConfig, run_id: str, sizes: np.ndarray) -> dict[int, FileEntry]:
    """Blocks a killed run already wrote completely (files appear only when whole)."""
    import pyarrow.parquet as pq

    found = {}
    for rel in storage.list_files(storage.join(cfg.out_uri, run_id), cfg.storage):
        if not (rel.startswith("part-") and rel.endswith(".parquet")):
            continue
        block = int(rel[5:10])
        path = f"{run_id}/{rel}"
        fs, fpath = storage.filesystem(storage.join(cfg.out_uri, path), cfg.storage)
        rows = pq.ParquetFile(fs.open_input_file(fpath)).metadata.num_rows
        if block < len(sizes) and rows == sizes[block]:
            found[block] = storage.entry_for(cfg.out_uri, path, cfg.storage, rows)
    return found


def run_generate(
    cfg: GenerateConfig, progress: Callable[..., None] | None = None
) -> GenerateSummary:
    """Generate exactly cfg.rows rows to cfg.out_uri with Ray Data and publish them atomically."""
    import ray
    from ray.data import ActorPoolStrategy

    from synthrec.distributed.common import ensure_ray

    synth = preflight(cfg)
    version = synth.metadata.get("version", "unknown")
    run_id = content_key(cfg, version)
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
        ds = ds.map_batches(
            BlockWriter,
            fn_constructor_args=(cfg.model_dump_json(), run_id, max(1, int(cfg.cpus_per_actor))),
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
