"""Tables and model directories at local paths and s3:// URIs, published atomically.

Layout of a published dataset or model directory at URI:

    URI/_manifest.json          written last; the only thing readers trust
    URI/<run_id>/part-00000.parquet ...   (or named model files)

A writer puts its files under a fresh `<run_id>/` folder, then publishes the manifest (files,
row counts, sizes, sha256) with a conditional write: S3 `If-None-Match`/`If-Match` on the
manifest's ETag, or on local disk a compare under an exclusive `flock` and a rename. A writer
that lost the race re-reads the manifest and tries again, so concurrent publishers serialize
(the last one wins, none is lost). Afterwards run folders are deleted only when the newest
manifest does not name them (neither current nor among the `keep_versions - 1` retained older
versions, which readers in flight may still be reading) and they have been idle for
`stale_after_s` (so another writer's folder in flight is never taken). A crash at any point
leaves nothing that looks complete.

Single files, retries and the conditional write live in `filestore` (re-exported here).
Reading follows one rule (see `plan_read`): a location with a manifest is read through it,
every file checked against the manifest's size and (by default) sha256; plain files are read
only where the user points at them: a .parquet/.csv/.tsv/.jsonl file (text maybe compressed),
a RecBole `.inter` file, or a folder with no manifest that holds no run folder and is not one.
No torch here.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from synthrec import atomic
from synthrec.config import StorageConfig
from synthrec.errors import DataError, ModelError, StorageError

# The file layer, re-exported: callers use `storage.join`, `storage.write_bytes`, ...
from synthrec.filestore import _short, file_infos, read_versioned, write_if
from synthrec.filestore import boto3_client as boto3_client
from synthrec.filestore import check_writable as check_writable
from synthrec.filestore import delete as delete
from synthrec.filestore import ensure_bucket as ensure_bucket
from synthrec.filestore import exists as exists
from synthrec.filestore import filesystem as filesystem
from synthrec.filestore import is_s3 as is_s3
from synthrec.filestore import join as join
from synthrec.filestore import list_files as list_files
from synthrec.filestore import read_bytes as read_bytes
from synthrec.filestore import with_retries as with_retries
from synthrec.filestore import write_bytes as write_bytes

MANIFEST = "_manifest.json"
FORMAT_VERSION = 1
RUN_PREFIXES = ("run-", "_staging")  # folders the storage layer owns inside a published URI
COMMIT_ATTEMPTS = 20

_RUN_ID = re.compile(r"run-[A-Za-z0-9_-][A-Za-z0-9._-]*")
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class FileEntry:
    path: str  # "<run_id>/<name>", relative to the dataset URI
    bytes: int
    sha256: str
    rows: int | None = None


@dataclass
class Manifest:
    kind: str  # "dataset" | "model"
    run_id: str
    files: list[FileEntry]
    num_rows: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    format_version: int = FORMAT_VERSION
    retained: list[str] = field(default_factory=list)  # older run folders kept, newest first

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, uri: str) -> Manifest:
        try:
            data = json.loads(text)
            data["files"] = [FileEntry(**f) for f in data["files"]]
            manifest = cls(**data)
        except (ValueError, KeyError, TypeError) as err:
            raise StorageError(
                f"{join(uri, MANIFEST)} is corrupt ({err}); re-run the job that wrote it"
            ) from None
        return manifest.check(uri)

    def check(self, uri: str) -> Manifest:
        """Every path must be `<run_id>/<name>` inside this manifest's run folder: nothing
        absolute, no `..`, no other folder, so a manifest can never point outside `uri`."""
        where = join(uri, MANIFEST)
        runs = [self.run_id, *self.retained]
        if not all(isinstance(r, str) and _RUN_ID.fullmatch(r) for r in runs):
            raise StorageError(
                f"{where}: run folder names {runs!r} must look like 'run-<id>' "
                "(letters, digits, '.', '_', '-'); re-publish it"
            )
        for entry in self.files:
            parts = entry.path.split("/") if isinstance(entry.path, str) else []
            if len(parts) != 2 or parts[0] != self.run_id or not _FILE_NAME.fullmatch(parts[1]):
                raise StorageError(
                    f"{where} names file {entry.path!r}; entries must be "
                    f"'{self.run_id}/<file name>' (inside the run folder, no '..', not "
                    "absolute); re-publish it"
                )
        return self


# ---------------------------------------------------------------------------- publishing


def new_run_id() -> str:
    return f"run-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


def read_manifest(uri: str, storage: StorageConfig | None = None) -> Manifest | None:
    """The published manifest at `uri`, or None when nothing is published there."""
    muri = join(uri, MANIFEST)
    fs, path = filesystem(muri, storage)
    try:
        text = with_retries(lambda: fs.open_input_stream(path).readall(), muri, storage, "read")
    except FileNotFoundError:
        return None
    return Manifest.from_json(text.decode(), uri)


def commit(uri: str, manifest: Manifest, storage: StorageConfig | None = None) -> Manifest:
    """Publish `manifest` (its run folder already written) with a conditional write, retrying
    when another writer published first; then delete run folders nobody needs any more.
    Returns the manifest as published (with the older versions it retains)."""
    cfg = storage or StorageConfig()
    manifest.check(uri)
    _check_run_written(uri, manifest, storage)
    sent = None
    for attempt in range(COMMIT_ATTEMPTS):
        current_bytes, token = read_versioned(join(uri, MANIFEST), storage)
        if sent is not None and current_bytes == sent:
            break  # our previous try landed; only its answer was lost
        current = _parse_or_none(current_bytes, uri)
        published = replace(
            manifest, retained=_retained(current, manifest.run_id, cfg.keep_versions)
        )
        sent = published.to_json().encode()
        if write_if(join(uri, MANIFEST), sent, token, storage):
            break
        time.sleep(random.uniform(0, 0.02 * (attempt + 1)))  # another writer won: re-read
    else:
        raise StorageError(
            f"cannot publish {uri}: other writers replaced {MANIFEST} {COMMIT_ATTEMPTS} times "
            "while this one tried; publish to separate URIs or retry later"
        )
    cleanup_stale(uri, storage)
    return published


def _retained(current: Manifest | None, run_id: str, keep_versions: int) -> list[str]:
    """Run folders of the versions before this one that stay readable, newest first."""
    if current is None:
        return []
    older = dict.fromkeys([current.run_id, *current.retained])
    return [r for r in older if r != run_id][: keep_versions - 1]


def _parse_or_none(data: bytes | None, uri: str) -> Manifest | None:
    if data is None:
        return None
    try:
        return Manifest.from_json(data.decode(), uri)
    except (StorageError, UnicodeDecodeError):
        return None  # a corrupt manifest is replaced, not kept


def _check_run_written(uri: str, manifest: Manifest, storage: StorageConfig | None) -> None:
    """Every file the manifest names exists with its size: never publish a dangling manifest."""
    infos = file_infos(join(uri, manifest.run_id), storage)
    bad = [
        e.path
        for e in manifest.files
        if (info := infos.get(e.path.split("/", 1)[1])) is None or info.size != e.bytes
    ]
    if bad:
        raise StorageError(
            f"cannot publish {uri}: {len(bad)} of its files are missing or changed "
            f"({', '.join(bad[:3])}); the write failed or another writer removed "
            f"{manifest.run_id}; re-run the job"
        )


def cleanup_stale(uri: str, storage: StorageConfig | None = None) -> list[str]:
    """Delete run folders under `uri` that the newest manifest does not keep (as its current
    or a retained version) and that nobody has written to for `stale_after_s`."""
    cfg = storage or StorageConfig()
    manifest = read_manifest(uri, storage)  # re-read: a later publish may have replaced ours
    keep = {manifest.run_id, *manifest.retained} if manifest else set()
    newest: dict[str, float] = {}
    for rel, info in file_infos(uri, storage).items():
        folder = rel.split("/", 1)[0]
        if "/" in rel and folder.startswith(RUN_PREFIXES):
            newest[folder] = max(newest.get(folder, 0.0), _mtime(info))
    now = time.time()
    removed = sorted(
        f for f, mtime in newest.items() if f not in keep and now - mtime >= cfg.stale_after_s
    )
    for folder in removed:
        delete(join(uri, folder), storage)
    return removed


def _mtime(info: pafs.FileInfo) -> float:
    mtime = info.mtime
    return mtime.timestamp() if mtime is not None else 0.0


def entry_for(
    uri: str, rel_path: str, storage: StorageConfig | None = None, rows: int | None = None
) -> FileEntry:
    """Size and sha256 of an already written file (streamed, bounded memory)."""
    fs, path = filesystem(join(uri, rel_path), storage)
    digest, size = hashlib.sha256(), 0
    with fs.open_input_stream(path) as stream:
        while chunk := stream.read(8 << 20):
            digest.update(chunk)
            size += len(chunk)
    return FileEntry(rel_path, size, digest.hexdigest(), rows)


def publish_files(
    uri: str,
    files: dict[str, bytes],
    storage: StorageConfig | None = None,
    metadata: dict[str, Any] | None = None,
    kind: str = "model",
) -> Manifest:
    """Publish a directory of named files (e.g. a model) atomically."""
    run_id = new_run_id()
    entries = []
    for name, data in files.items():
        rel = f"{run_id}/{name}"
        write_bytes(join(uri, rel), data, storage)
        entries.append(FileEntry(rel, len(data), hashlib.sha256(data).hexdigest()))
    return commit(uri, Manifest(kind, run_id, entries, metadata=dict(metadata or {})), storage)


def read_files(
    uri: str,
    names: Iterable[str] | None = None,
    storage: StorageConfig | None = None,
    manifest: Manifest | None = None,
) -> dict[str, bytes]:
    """Files of a published directory by name, checked against the manifest's sha256. Pass
    the `manifest` already read to get exactly that version (kept for `keep_versions`)."""
    manifest = manifest or read_manifest(uri, storage)
    if manifest is None:
        raise ModelError(
            f"nothing is published at {uri} (no {MANIFEST}); "
            "check the URI or re-run the job that writes it"
        )
    by_name = {e.path.split("/", 1)[1]: e for e in manifest.files}
    wanted = list(names) if names is not None else list(by_name)
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise ModelError(f"{uri} lacks {', '.join(missing)}; it holds {', '.join(sorted(by_name))}")
    out = {}
    for name in wanted:
        entry = by_name[name]
        data = read_bytes(join(uri, entry.path), storage)
        if len(data) != entry.bytes or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise ModelError(
                f"{join(uri, entry.path)} does not match its manifest checksum; re-publish it"
            )
        out[name] = data
    return out


# ---------------------------------------------------------------------------- tables


def parquet_bytes(table: pa.Table, compression: str = "zstd") -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=compression)
    return sink.getvalue()


def write_dataset(
    data: pa.Table | Iterable[pa.RecordBatch | pa.Table],
    uri: str,
    storage: StorageConfig | None = None,
    *,
    rows_per_file: int = 1_000_000,
    metadata: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Manifest:
    """Write a table (or a stream of batches) as Parquet parts and publish it atomically."""
    if rows_per_file < 1:
        raise DataError(f"rows_per_file must be >= 1, got {rows_per_file}")
    run_id = new_run_id()
    entries: list[FileEntry] = []
    total = 0
    for part in _chunks(data, rows_per_file):
        body = parquet_bytes(part)
        rel = f"{run_id}/part-{len(entries):05d}.parquet"
        write_bytes(join(uri, rel), body, storage)
        entries.append(FileEntry(rel, len(body), hashlib.sha256(body).hexdigest(), part.num_rows))
        total += part.num_rows
        if progress:
            progress(total)
    if not entries:
        raise DataError(f"nothing to write to {uri}: the data has no rows")
    return commit(
        uri,
        Manifest("dataset", run_id, entries, num_rows=total, metadata=dict(metadata or {})),
        storage,
    )


def _chunks(data, rows_per_file: int) -> Iterable[pa.Table]:
    """Regroup a table or a stream of batches into tables of exactly rows_per_file rows
    (the last may be short)."""
    batches = data.to_batches() if isinstance(data, pa.Table) else data
    pending: list[pa.Table] = []
    count = 0
    for batch in batches:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        while table.num_rows:
            take = min(rows_per_file - count, table.num_rows)
            pending.append(table.slice(0, take))
            table, count = table.slice(take), count + take
            if count == rows_per_file:
                yield pa.concat_tables(pending)
                pending, count = [], 0
    if count:
        yield pa.concat_tables(pending)


# ---------------------------------------------------------------------------- reading


FileFormat = Literal["parquet", "csv", "tsv", "json", "atomic"]
FILE_FORMATS: dict[str, FileFormat] = {
    "parquet": "parquet",
    "pq": "parquet",
    "csv": "csv",
    "tsv": "tsv",
    "jsonl": "json",  # JSON lines: one object per line
    "ndjson": "json",
    "inter": "atomic",
}
TEXT_SUFFIXES = ("csv", "tsv", "jsonl", "ndjson")  # the text formats that may be compressed
# Compression a text file may carry (suffix -> pyarrow codec), undone while reading.
COMPRESSED_SUFFIXES = {"gz": "gzip", "bz2": "bz2", "zst": "zstd", "lz4": "lz4"}


@dataclass(frozen=True)
class ReadPlan:
    """What the one reading rule says to read at `uri`, for readers that schedule the reads
    themselves (Ray Data). `paths` are inside `filesystem(uri)`. For a published dataset
    `manifest` is set and `paths[i]` holds `manifest.files[i]`: read each with `read_part`,
    which checks it against its entry."""

    uri: str
    format: FileFormat
    paths: list[str]
    num_bytes: int
    manifest: Manifest | None = None


def plan_read(uri: str, storage: StorageConfig | None = None) -> ReadPlan:
    """Decide what a reader may read at `uri`:

    - a folder with a manifest: exactly the files the manifest names (a dataset, not a model);
    - a .parquet/.pq/.csv/.tsv/.jsonl/.ndjson file (the text ones maybe compressed): that
      file, as the user
      pointed at it; a RecBole `.inter` file: it and the `.user`/`.item` files beside it;
    - a folder without a manifest: its Parquet files, unless it is a run folder (`run-*`,
      `_staging*`) or holds one at any depth: that is a crashed or unfinished write, refused;
      a folder with no Parquet file but one `.inter` file: that RecBole dataset.
    """
    fs, path = filesystem(uri, storage)
    info = with_retries(lambda: fs.get_file_info(path), uri, storage, "look up")
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"no file or dataset at {uri}; check the path")
    if info.type == pafs.FileType.Directory:
        manifest = read_manifest(uri, storage)
        if manifest is None:
            return _plain_folder_plan(uri, path, storage)
        if manifest.kind != "dataset":
            raise DataError(f"{uri} is a published {manifest.kind}, not a dataset")
        paths = [f"{path}/{e.path}" for e in manifest.files]
        return ReadPlan(uri, "parquet", paths, sum(e.bytes for e in manifest.files), manifest)
    return ReadPlan(uri, file_format(uri), [path], info.size or 0)


def file_format(uri: str) -> FileFormat:
    """The format a file's name says: `.parquet`/`.pq`, `.csv`/`.tsv`, JSON lines
    (`.jsonl`/`.ndjson`) (the text ones also compressed: `.gz`, `.bz2`, `.zst`, `.lz4`, undone
    while reading), or a RecBole `.inter` file."""
    name = uri.rstrip("/").rsplit("/", 1)[-1].lower()
    stem, _, suffix = name.rpartition(".")
    if suffix in COMPRESSED_SUFFIXES and stem.rpartition(".")[2] in TEXT_SUFFIXES:
        suffix = stem.rpartition(".")[2]
    if not stem or suffix not in FILE_FORMATS:
        shown = f"'.{suffix}'" if stem else "(no suffix)"
        raise DataError(
            f"{uri}: unknown format {shown}; use a .parquet, .csv, .tsv or JSON lines (.jsonl, "
            f".ndjson) file (the text ones optionally .gz, .bz2, .zst or .lz4 compressed), a "
            f"RecBole .inter file, or a dataset folder"
        )
    return FILE_FORMATS[suffix]


def _plain_folder_plan(uri: str, path: str, storage: StorageConfig | None) -> ReadPlan:
    if path.rstrip("/").rsplit("/", 1)[-1].startswith(RUN_PREFIXES):
        raise DataError(
            f"{uri} is a run folder of a publish, not a dataset: read the folder above it, "
            f"which holds {MANIFEST} once the write has finished"
        )
    infos = file_infos(uri, storage)
    if any(part.startswith(RUN_PREFIXES) for rel in infos for part in rel.split("/")[:-1]):
        raise DataError(
            f"{uri} holds an unfinished or crashed write (run folders, no {MANIFEST}); "
            "re-run the job that writes it"
        )
    files = sorted(
        rel
        for rel in infos
        if rel.lower().endswith((".parquet", ".pq"))
        and not any(part.startswith(("_", ".")) for part in rel.split("/"))
    )
    inter = [rel for rel in infos if "/" not in rel and rel.lower().endswith(".inter")]
    if not files and len(inter) == 1:  # a RecBole atomic dataset folder
        return ReadPlan(
            uri, "atomic", [f"{path.rstrip('/')}/{inter[0]}"], infos[inter[0]].size or 0
        )
    if not files:
        raise DataError(
            f"{uri} holds no Parquet files, no single RecBole .inter file and no {MANIFEST}; "
            "point at a dataset folder or a .parquet/.csv/.jsonl file"
        )
    paths = [f"{path.rstrip('/')}/{rel}" for rel in files]
    return ReadPlan(uri, "parquet", paths, sum(infos[rel].size or 0 for rel in files))


def read_table(
    uri: str, storage: StorageConfig | None = None, columns: list[str] | None = None
) -> pa.Table:
    """Read a published dataset (checked against its manifest), a .parquet/.csv/.jsonl file, or a
    plain folder of Parquet files; `plan_read` says which and refuses unfinished writes."""
    return read_plan(plan_read(uri, storage), storage, columns)


def read_dataset(
    uri: str, storage: StorageConfig | None = None, columns: list[str] | None = None
) -> pa.Table:
    """Read a published dataset; unpublished or incomplete folders are refused."""
    manifest = read_manifest(uri, storage)
    if manifest is None:
        raise DataError(
            f"{uri} holds no published dataset (no {MANIFEST}); it may be incomplete: "
            "re-run the job that writes it"
        )
    if manifest.kind != "dataset":
        raise DataError(f"{uri} is a published {manifest.kind}, not a dataset")
    base = filesystem(uri, storage)[1]
    paths = [f"{base}/{e.path}" for e in manifest.files]
    plan = ReadPlan(uri, "parquet", paths, sum(e.bytes for e in manifest.files), manifest)
    return read_plan(plan, storage, columns)


def check_row_count(uri: str, manifest: Manifest, table: pa.Table) -> pa.Table:
    """`table` if it holds the manifest's row count, else a DataError."""
    if table.num_rows != manifest.num_rows:
        raise DataError(
            f"{uri}: manifest says {manifest.num_rows} rows but the files hold "
            f"{table.num_rows}; re-publish it"
        )
    return table


def read_plan(
    plan: ReadPlan, storage: StorageConfig | None = None, columns: list[str] | None = None
) -> pa.Table:
    """Read everything a `ReadPlan` names (published parts in parallel, each one checked)."""
    if plan.manifest is not None:
        entries = plan.manifest.files
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(entries)))) as pool:
            tables = list(pool.map(lambda e: read_part(plan.uri, e, storage, columns), entries))
        if not tables:
            raise DataError(f"{plan.uri}: the manifest names no files; re-publish it")
        return check_row_count(plan.uri, plan.manifest, pa.concat_tables(tables))
    fs, base = filesystem(plan.uri, storage)
    if plan.format == "atomic":
        table = atomic.load_inter_file(_atomic_uri(plan), storage)
        return table.select(columns) if columns is not None else table
    if plan.format in ("csv", "tsv", "json"):
        return _read_text(plan, fs, storage, columns)

    def read() -> pa.Table:
        if plan.paths == [base]:  # one file
            return pq.read_table(base, filesystem=fs, columns=columns)
        dataset = pads.dataset(
            plan.paths,
            filesystem=fs,
            format="parquet",
            partitioning="hive",
            partition_base_dir=base,
        )
        return dataset.to_table(columns=columns)

    try:
        return with_retries(read, plan.uri, storage, "read")
    except pa.ArrowInvalid as err:
        raise DataError(f"{plan.uri} is not readable as Parquet: {_short(err)}") from None


def read_part(
    uri: str,
    entry: FileEntry,
    storage: StorageConfig | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    """One file of the published dataset at `uri`, checked against its manifest entry: size
    always, sha256 unless `storage.verify_checksums` is off. Safe to call in a Ray task."""
    cfg = storage or StorageConfig()
    furi = join(uri, entry.path)
    fs, path = filesystem(furi, storage)
    try:
        if cfg.verify_checksums:
            data = with_retries(lambda: fs.open_input_stream(path).readall(), furi, cfg, "read")
            _check_entry(furi, entry, len(data), hashlib.sha256(data).hexdigest())
            table = pq.read_table(pa.py_buffer(data), columns=columns)
        else:
            info = with_retries(lambda: fs.get_file_info(path), furi, cfg, "look up")
            if info.type == pafs.FileType.NotFound:
                raise FileNotFoundError(path)
            _check_entry(furi, entry, info.size, None)
            table = with_retries(
                lambda: pq.read_table(path, filesystem=fs, columns=columns), furi, cfg, "read"
            )
    except FileNotFoundError:
        raise StorageError(
            f"{furi} is missing although the manifest names it: the version being read was "
            f"replaced more than keep_versions ({cfg.keep_versions}) times since (read again) "
            "or the folder was damaged (re-publish it)"
        ) from None
    except pa.ArrowInvalid as err:
        raise DataError(f"{furi} is not readable as Parquet: {_short(err)}") from None
    if entry.rows is not None and table.num_rows != entry.rows:
        raise StorageError(
            f"{furi} holds {table.num_rows} rows but its manifest entry says {entry.rows}; "
            "re-publish it"
        )
    return table


def verify_dataset(uri: str, manifest: Manifest, storage: StorageConfig | None = None) -> None:
    """Check every file of a published dataset against its entry, streaming (bounded memory),
    so later reads of single columns may skip the check."""
    for entry in manifest.files:
        try:
            found = entry_for(uri, entry.path, storage)
        except FileNotFoundError:
            raise StorageError(f"{join(uri, entry.path)} is missing; re-publish {uri}") from None
        _check_entry(join(uri, entry.path), entry, found.bytes, found.sha256)


def _check_entry(furi: str, entry: FileEntry, size: int | None, sha256: str | None) -> None:
    if size != entry.bytes:
        raise StorageError(
            f"{furi} holds {size} bytes but its manifest entry says {entry.bytes}: the file "
            "changed after it was published; re-publish the dataset"
        )
    if sha256 is not None and sha256 != entry.sha256:
        raise StorageError(
            f"{furi} does not match its manifest's sha256: the file changed after it was "
            "published; re-publish the dataset"
        )


def _atomic_uri(plan: ReadPlan) -> str:
    """The `.inter` file's URI: the one the user named, or the one found in their folder."""
    if plan.uri.rstrip("/").lower().endswith(".inter"):
        return plan.uri
    return join(plan.uri, plan.paths[0].rsplit("/", 1)[-1])


def _read_text(plan: ReadPlan, fs, storage, columns) -> pa.Table:
    """A CSV, TSV or JSON lines file, decompressed by its suffix."""

    def read() -> pa.Table:
        suffix = plan.paths[0].rsplit(".", 1)[-1].lower()
        compression = COMPRESSED_SUFFIXES.get(suffix)  # by our suffix rule, any letter case
        with fs.open_input_stream(plan.paths[0], compression=compression) as stream:
            if plan.format == "json":
                table = pajson.read_json(stream)
                return table.select(columns) if columns is not None else table
            return pacsv.read_csv(
                stream,
                parse_options=pacsv.ParseOptions(delimiter="\t" if plan.format == "tsv" else ","),
                convert_options=pacsv.ConvertOptions(include_columns=columns),
            )

    try:
        return with_retries(read, plan.uri, storage, "read")
    except (pa.ArrowInvalid, KeyError) as err:  # KeyError: a JSON file lacks a column asked for
        kind = {"csv": "CSV", "tsv": "TSV", "json": "JSON lines"}[plan.format]
        raise DataError(f"{plan.uri} is not readable as {kind}: {_short(err)}") from None
