"""Synthetic data generation as a Ray Data pipeline: exact, deterministic, atomic.

One pipeline for every generator kind (synthrec.generators): a row model counts in rows
(`rows`, blocks of `rows_per_file`), a sequence model in users (`users`, blocks of
`users_per_file` whole users, written flat: one row per event, a user's events never split
across files). Block i is generated from (seed, i) alone (inside the model's `sample_block`)
and written by the actor that made it as `part-{i:05d}.parquet`, so the output bytes do not
depend on how many actors ran. Only a small row of file metadata per block flows back through
Ray, never the generated rows: that is what keeps the pipeline near the speed of one plain
process per core.

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
from typing import Any

import numpy as np
import pyarrow.compute as pc

from synthrec import storage
from synthrec.config import GenerateConfig
from synthrec.distributed.credentials import WorkerStorage, share
from synthrec.errors import ConfigError, ModelError
from synthrec.generators import Generator, load_generator
from synthrec.storage import FileEntry, Manifest

MAX_BLOCKS = 100_000  # part names have five digits: part-00000 .. part-99999
_PART = re.compile(r"part-(\d{5})\.parquet")


@dataclass
class GenerateSummary:
    uri: str
    rows: int  # rows written: events, for a sequence model
    files: int
    bytes: int
    seconds: float
    reused_blocks: int
    users: int | None = None  # users written (sequence models)
    # fixed cost: from the actor pool's launch until its last actor had loaded the model
    # (None when every block was reused and no actor started)
    startup_s: float | None = None

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
        cfg.unit: cfg.count,  # "rows": the key row runs always had, so their folders keep names
        "seed": cfg.seed,
        "block": cfg.per_file,
        "conditions": cfg.conditions,
        "rebalance": cfg.rebalance,
    }
    return "run-gen-" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def part_name(run_id: str, block: int) -> str:
    return f"{run_id}/part-{block:05d}.parquet"


def check_blocks(cfg: GenerateConfig) -> int:
    """Number of blocks, at most MAX_BLOCKS (so every part name has five digits)."""
    blocks = -(-cfg.count // cfg.per_file)
    if blocks > MAX_BLOCKS:
        unit = cfg.unit
        raise ConfigError(
            f"{unit} {cfg.count:,} in files of {unit}_per_file {cfg.per_file:,} make {blocks:,} "
            f"files; at most {MAX_BLOCKS:,} are allowed: set {unit}_per_file to at least "
            f"{-(-cfg.count // MAX_BLOCKS):,}"
        )
    return blocks


def check_unit(cfg: GenerateConfig, gen: Generator) -> None:
    """The count asked for must be the model's unit: rows of a row model, users of a
    sequence model."""
    if gen.unit == cfg.unit:
        return
    if gen.unit == "users":
        raise ConfigError(
            f"{cfg.model_uri} is a sequence model: it generates whole users with their events; "
            f"ask for users with --users N (config key users) instead of --rows (the files "
            "hold one row per event)"
        )
    raise ConfigError(
        f"{cfg.model_uri} is a row model ({gen.kind}): it generates rows, not users; ask for "
        "rows with --rows N (config key rows) instead of --users"
    )


@dataclass(frozen=True)
class SharedModel:
    """A model directory's files as the actors receive them: put in the object store once by
    the driver (read and checked against the manifest there), fetched by each actor from its
    node's shared memory instead of read from storage once per actor."""

    refs: tuple[Any, ...]  # (ObjectRef of dict[str, bytes],): in a tuple, Ray passes it as is

    def files(self) -> dict[str, bytes]:
        import ray

        return ray.get(self.refs[0])


class BlockWriter:
    """Actor: loads the model once, then generates and writes whole blocks."""

    def __init__(
        self,
        cfg_json: str,
        run_id: str,
        threads: int,
        storage_ref: WorkerStorage,
        model: SharedModel,
    ):
        import torch

        torch.set_num_threads(max(1, threads))
        self.cfg = GenerateConfig.model_validate_json(cfg_json)
        self.storage = storage_ref.resolve()
        self.run_id = run_id
        device = "cuda" if self.cfg.gpu else "cpu"
        files = model.files()
        self.gen = load_generator(self.cfg.model_uri, self.storage, device, files=files)
        self.ready = time.time()  # wall clock: compared with the driver's on the same node

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list] = {
            "block": [],
            "path": [],
            "count": [],
            "rows": [],
            "bytes": [],
            "sha256": [],
            "ready": [],
        }
        for block, count in zip(batch["block"].tolist(), batch["count"].tolist()):
            table = self.gen.sample_block(
                block,
                count,
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
                ("count", self.gen.units(table)),
                ("rows", table.num_rows),
                ("bytes", len(body)),
                ("sha256", hashlib.sha256(body).hexdigest()),
                ("ready", self.ready),
            ):
                out[key].append(value)
        return {k: np.asarray(v) for k, v in out.items()}


def preflight(cfg: GenerateConfig) -> tuple[Generator, Manifest, dict[str, bytes]]:
    """Everything that can fail fast, on the driver, before any actor starts. Returns the
    generator, the manifest of the model version it was loaded from and that version's files
    (checked against the manifest), which the actors get from the object store."""
    check_blocks(cfg)
    model = storage.read_manifest(cfg.model_uri, cfg.storage)
    if model is None:
        raise ModelError(
            f"no published model at {cfg.model_uri}; train one with `synthrec train-gan` first"
        )
    files = storage.read_files(cfg.model_uri, None, cfg.storage, manifest=model)
    gen = load_generator(cfg.model_uri, cfg.storage, device="cpu", files=files)
    check_unit(cfg, gen)
    # Raises for an unknown column or value (a 1-row / 1-user probe is cheap).
    gen.sample_block(
        0, 1, seed=cfg.seed, conditions=cfg.conditions or None, rebalance=cfg.rebalance or None
    )
    storage.check_writable(cfg.out_uri, cfg.storage)
    return gen, model, files


def _existing_blocks(
    cfg: GenerateConfig, run_id: str, sizes: np.ndarray, user_column: str | None = None
) -> dict[int, FileEntry]:
    """Blocks a killed run already wrote completely (files appear only when whole): a part
    counts when it holds its block's rows, or, with `user_column`, its block's users."""
    import pyarrow.parquet as pq

    found = {}
    for rel in storage.list_files(storage.join(cfg.out_uri, run_id), cfg.storage):
        match = _PART.fullmatch(rel)
        if match is None or int(match.group(1)) >= len(sizes):
            continue
        block = int(match.group(1))
        path = f"{run_id}/{rel}"
        fs, fpath = storage.filesystem(storage.join(cfg.out_uri, path), cfg.storage)
        part = pq.ParquetFile(fs.open_input_file(fpath))
        rows = part.metadata.num_rows
        if user_column is None:
            count = rows
        else:
            count = len(pc.unique(part.read(columns=[user_column]).column(0)))
        if count == sizes[block]:
            found[block] = storage.entry_for(cfg.out_uri, path, cfg.storage, rows)
    return found


def run_generate(
    cfg: GenerateConfig, progress: Callable[..., None] | None = None
) -> GenerateSummary:
    """Generate exactly cfg.rows rows (row model) or cfg.users users with their events
    (sequence model) to cfg.out_uri with Ray Data and publish them atomically. `progress`
    gets the rows or users done so far."""
    gen, model, files = preflight(cfg)
    version = gen.metadata.get("version", "unknown")
    run_id = content_key(cfg, model)
    sizes = block_sizes(cfg.count, cfg.per_file)
    start = time.monotonic()
    user_column = gen.user_column if cfg.unit == "users" else None
    done = _existing_blocks(cfg, run_id, sizes, user_column)
    todo = np.array([b for b in range(len(sizes)) if b not in done], dtype=np.int64)
    units_done = int(sum(sizes[b] for b in done))
    if progress:
        progress(units_done)
    startup_s = None
    if len(todo):
        launched = time.time()
        for block, entry, ready in _write_blocks(cfg, run_id, files, sizes, todo):
            startup_s = max(startup_s or 0.0, ready - launched)
            done[block] = entry
            units_done += int(sizes[block])
            if progress:
                progress(units_done)

    entries = [done[b] for b in range(len(sizes))]
    rows = sum(e.rows for e in entries)
    assert cfg.unit == "users" or rows == cfg.rows, "every block must be accounted for"
    metadata = {
        "model_uri": cfg.model_uri,
        "model_version": version,
        "model_run": model.run_id,
        "model_kind": gen.kind,
        "unit": cfg.unit,
        "seed": cfg.seed,
        f"{cfg.unit}_per_file": cfg.per_file,
        "conditions": cfg.conditions,
        "rebalance": cfg.rebalance,
        "generator": "synthrec",
        "schema": gen.schema,  # read back by evaluate and the recommender: no re-inference
        **{k: gen.metadata[k] for k in ("epsilon_spent", "delta") if k in gen.metadata},
    }
    if cfg.unit == "users":
        metadata["users"] = cfg.users
    storage.commit(
        cfg.out_uri,
        Manifest("dataset", run_id, entries, num_rows=rows, metadata=metadata),
        cfg.storage,
    )
    return GenerateSummary(
        cfg.out_uri,
        rows,
        len(entries),
        sum(e.bytes for e in entries),
        time.monotonic() - start,
        len(sizes) - len(todo),
        cfg.users,
        startup_s,
    )


def _write_blocks(cfg: GenerateConfig, run_id: str, files: dict[str, bytes], sizes, todo):
    """Generate and write the `todo` blocks on an actor pool; yields (block, FileEntry, the
    writing actor's ready time) as the actors finish them. The model's `files` go into the
    object store once, for all actors."""
    import ray
    from ray.data import ActorPoolStrategy

    from synthrec.distributed.common import ensure_ray

    ensure_ray(cfg.ray_address)
    workers = min(cfg.concurrency, len(todo))
    ds = ray.data.from_items(
        [{"block": int(b), "count": int(sizes[b])} for b in todo], override_num_blocks=len(todo)
    )
    actor_args = dict(num_gpus=1 if cfg.gpu else 0, num_cpus=cfg.cpus_per_actor)
    shared = share(cfg.storage)  # owns the secrets' object until the actors are done
    model = SharedModel((ray.put(files),))  # held here until the actors are done
    bare = cfg.model_copy(update={"storage": cfg.storage.without_secrets()})
    ds = ds.map_batches(
        BlockWriter,
        fn_constructor_args=(
            bare.model_dump_json(),
            run_id,
            max(1, int(cfg.cpus_per_actor)),
            shared,
            model,
        ),
        batch_size=1,
        compute=ActorPoolStrategy(size=workers),
        **actor_args,
    )
    for batch in ds.iter_batches(batch_size=1, batch_format="numpy"):
        for block, path, count, rows, nbytes, sha, ready in zip(
            batch["block"],
            batch["path"],
            batch["count"],
            batch["rows"],
            batch["bytes"],
            batch["sha256"],
            batch["ready"],
        ):
            if int(count) != sizes[int(block)]:  # the model broke its contract: publish nothing
                raise ModelError(
                    f"block {int(block)} holds {int(count)} {cfg.unit}, not {sizes[int(block)]}"
                )
            yield int(block), FileEntry(str(path), int(nbytes), str(sha), int(rows)), float(ready)
