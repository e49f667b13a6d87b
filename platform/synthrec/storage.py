"""Tables and model directories at local paths and s3:// URIs, published atomically.

Layout of a published dataset or model directory at URI:

    URI/_manifest.json          written last; the only thing readers trust
    URI/<run_id>/part-00000.parquet ...   (or named model files)

A writer puts its files under a fresh `<run_id>/` prefix (the staging prefix), then writes
the manifest (files, row counts, sizes, sha256) in one PUT / one rename. Until then readers
see nothing (or the previous version); after it, run folders the manifest does not name are
deleted. A crash at any point leaves nothing that looks complete. No torch here.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from synthrec.config import StorageConfig
from synthrec.errors import DataError, ModelError, StorageError

MANIFEST = "_manifest.json"
FORMAT_VERSION = 1
T = TypeVar("T")


@dataclass
class FileEntry:
    path: str  # relative to the dataset URI
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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, uri: str) -> Manifest:
        try:
            data = json.loads(text)
            data["files"] = [FileEntry(**f) for f in data["files"]]
            return cls(**data)
        except (ValueError, KeyError, TypeError) as err:
            raise StorageError(
                f"{join(uri, MANIFEST)} is corrupt ({err}); re-run the job that wrote it"
            ) from None


# ---------------------------------------------------------------------------- filesystems


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def join(uri: str, *parts: str) -> str:
    if is_s3(uri):
        return "/".join([str(uri).rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(uri, *parts))


def filesystem(uri: str, storage: StorageConfig | None = None) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem for `uri` and the path inside it (`bucket/key` for S3)."""
    uri = str(uri)
    if is_s3(uri):
        path = uri[len("s3://") :].rstrip("/")
        if not path or path.startswith("/"):
            raise StorageError(f"{uri!r} is not a valid S3 URI; expected s3://bucket/prefix")
        return _s3_filesystem(**_s3_settings(storage)), path
    if "://" in uri:
        raise StorageError(f"{uri!r}: only local paths and s3:// URIs are supported")
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def _s3_settings(storage: StorageConfig | None) -> dict[str, Any]:
    cfg = (storage or StorageConfig()).resolved()
    return {
        "endpoint": cfg["endpoint_url"],
        "region": cfg["region"],
        "access_key": cfg["access_key_id"],
        "secret_key": cfg["secret_access_key"],
        "session_token": cfg["session_token"],
        "attempts": (storage or StorageConfig()).max_attempts,
    }


@lru_cache(maxsize=16)
def _s3_filesystem(
    endpoint, region, access_key, secret_key, session_token, attempts
) -> pafs.S3FileSystem:
    kwargs: dict[str, Any] = {
        "region": region,
        "connect_timeout": 3,
        "request_timeout": 30,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=attempts),
    }
    if endpoint:
        kwargs["endpoint_override"] = endpoint
        kwargs["scheme"] = "https" if endpoint.startswith("https") else "http"
    if access_key and secret_key:
        kwargs.update(access_key=access_key, secret_key=secret_key, session_token=session_token)
    return pafs.S3FileSystem(**kwargs)


def boto3_client(storage: StorageConfig | None = None, connect_timeout: float = 3):
    """A boto3 S3 client for what pyarrow lacks (buckets, probes). Few retries: callers retry."""
    import boto3
    from botocore.config import Config

    cfg = (storage or StorageConfig()).resolved()
    return boto3.client(
        "s3",
        endpoint_url=cfg["endpoint_url"],
        region_name=cfg["region"],
        aws_access_key_id=cfg["access_key_id"],
        aws_secret_access_key=cfg["secret_access_key"],
        aws_session_token=cfg["session_token"],
        config=Config(
            retries={"max_attempts": 2}, connect_timeout=connect_timeout, read_timeout=30
        ),
    )


def with_retries(
    fn: Callable[[], T], uri: str, storage: StorageConfig | None = None, what: str = "access"
) -> T:
    """Run `fn`, retrying transient I/O errors with exponential backoff; missing files are not retried."""
    cfg = storage or StorageConfig()
    for attempt in range(cfg.max_attempts):
        try:
            return fn()
        except (
            FileNotFoundError,
            IsADirectoryError,
            NotADirectoryError,
            PermissionError,
            StorageError,
            DataError,
        ):
            raise
        except OSError as err:
            if attempt + 1 == cfg.max_attempts:
                raise StorageError(
                    f"cannot {what} {uri} after {cfg.max_attempts} attempts: {_short(err)}"
                ) from None
            time.sleep(cfg.retry_base_delay_s * 2**attempt)
    raise AssertionError("unreachable")


def _short(err: BaseException) -> str:
    return str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__


# ---------------------------------------------------------------------------- low-level I/O


def write_bytes(uri: str, data: bytes, storage: StorageConfig | None = None) -> None:
    """Write one object; on local disk through a temp file and rename, so it is all or nothing."""
    fs, path = filesystem(uri, storage)

    def put() -> None:
        if isinstance(fs, pafs.LocalFileSystem):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        else:
            with fs.open_output_stream(path) as out:
                out.write(data)

    with_retries(put, uri, storage, "write")


def read_bytes(uri: str, storage: StorageConfig | None = None) -> bytes:
    fs, path = filesystem(uri, storage)
    try:
        return with_retries(lambda: fs.open_input_stream(path).readall(), uri, storage, "read")
    except FileNotFoundError:
        raise StorageError(f"{uri} does not exist") from None


def exists(uri: str, storage: StorageConfig | None = None) -> bool:
    fs, path = filesystem(uri, storage)
    info = with_retries(lambda: fs.get_file_info(path), uri, storage, "look up")
    return info.type != pafs.FileType.NotFound


def delete(uri: str, storage: StorageConfig | None = None) -> None:
    """Delete a file or a whole folder; absent is fine."""
    fs, path = filesystem(uri, storage)
    info = with_retries(lambda: fs.get_file_info(path), uri, storage, "look up")
    if info.type == pafs.FileType.Directory:
        with_retries(lambda: fs.delete_dir(path), uri, storage, "delete")
    elif info.type == pafs.FileType.File:
        with_retries(lambda: fs.delete_file(path), uri, storage, "delete")


def list_files(uri: str, storage: StorageConfig | None = None) -> list[str]:
    """Relative paths of all files under a folder URI, sorted."""
    fs, path = filesystem(uri, storage)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    infos = with_retries(lambda: fs.get_file_info(selector), uri, storage, "list")
    prefix = path.rstrip("/") + "/"  # string prefix, not relpath: S3 keys are not filesystem paths
    return sorted(
        i.path[len(prefix) :]
        for i in infos
        if i.type == pafs.FileType.File and i.path.startswith(prefix)
    )


def ensure_bucket(uri: str, storage: StorageConfig | None = None) -> None:
    """Create the bucket of an s3:// URI if it is missing (no-op for local paths)."""
    if not is_s3(uri):
        return
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = uri[len("s3://") :].split("/", 1)[0]
    client = boto3_client(storage)
    try:
        client.head_bucket(Bucket=bucket)
        return
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise StorageError(f"cannot access the bucket of {uri}: {_short(err)}") from None
    except BotoCoreError as err:  # unreachable endpoint, missing credentials, ...
        raise StorageError(f"cannot reach S3 for {uri}: {_short(err)}") from None
    try:
        client.create_bucket(Bucket=bucket)
    except (ClientError, BotoCoreError) as err:
        raise StorageError(
            f"bucket of {uri} does not exist and cannot be created: {_short(err)}"
        ) from None


def check_writable(uri: str, storage: StorageConfig | None = None) -> None:
    """Fail fast (seconds) if `uri` cannot be written: write and delete a probe object."""
    probe = join(uri, f"_probe-{uuid.uuid4().hex[:8]}")
    try:
        if is_s3(uri):
            ensure_bucket(uri, storage)
        write_bytes(
            probe,
            b"ok",
            storage.model_copy(update={"max_attempts": 1})
            if storage
            else StorageConfig(max_attempts=1),
        )
        delete(probe, storage)
    except StorageError as err:
        raise StorageError(f"destination {uri} is not writable: {err}") from None
    except OSError as err:
        raise StorageError(f"destination {uri} is not writable: {_short(err)}") from None


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
    """Publish: write the manifest (one atomic write), then delete run folders it does not name."""
    write_bytes(join(uri, MANIFEST), manifest.to_json().encode(), storage)
    cleanup_stale(uri, manifest, storage)
    return manifest


def cleanup_stale(
    uri: str, manifest: Manifest | None, storage: StorageConfig | None = None
) -> list[str]:
    """Delete staging/run folders under `uri` that the published manifest does not reference."""
    keep = {manifest.run_id} if manifest else set()
    stale = {p.split("/", 1)[0] for p in list_files(uri, storage) if "/" in p}
    removed = sorted(d for d in stale - keep if d.startswith(("run-", "_staging")))
    for folder in removed:
        delete(join(uri, folder), storage)
    return removed


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
    uri: str, names: Iterable[str] | None = None, storage: StorageConfig | None = None
) -> dict[str, bytes]:
    """Files of a published directory by name, checked against the manifest's sha256."""
    manifest = read_manifest(uri, storage)
    if manifest is None:
        raise ModelError(
            f"nothing is published at {uri} (no {MANIFEST}); check the URI or re-run the job that writes it"
        )
    by_name = {e.path.split("/", 1)[1]: e for e in manifest.files}
    wanted = list(names) if names is not None else list(by_name)
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise ModelError(f"{uri} lacks {', '.join(missing)}; it holds {', '.join(sorted(by_name))}")
    out = {}
    for name in wanted:
        data = read_bytes(join(uri, by_name[name].path), storage)
        if hashlib.sha256(data).hexdigest() != by_name[name].sha256:
            raise ModelError(
                f"{join(uri, by_name[name].path)} does not match its manifest checksum; re-publish it"
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
    """Regroup a table or a stream of batches into tables of exactly rows_per_file rows (last may be short)."""
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


def read_dataset(
    uri: str, storage: StorageConfig | None = None, columns: list[str] | None = None
) -> pa.Table:
    """Read a published dataset; unpublished or incomplete folders are refused."""
    manifest = read_manifest(uri, storage)
    if manifest is None:
        raise DataError(
            f"{uri} holds no published dataset (no {MANIFEST}); it may be incomplete — re-run the job that writes it"
        )
    if manifest.kind != "dataset":
        raise DataError(f"{uri} is a published {manifest.kind}, not a dataset")
    fs, base = filesystem(uri, storage)
    paths = [
        posixpath.join(base, e.path) if is_s3(uri) else os.path.join(base, e.path)
        for e in manifest.files
    ]
    table = with_retries(
        lambda: pq.ParquetDataset(paths, filesystem=fs).read(columns=columns), uri, storage, "read"
    )
    if table.num_rows != manifest.num_rows:
        raise DataError(
            f"{uri}: manifest says {manifest.num_rows} rows but the files hold {table.num_rows}; re-publish it"
        )
    return table


def read_table(
    uri: str, storage: StorageConfig | None = None, columns: list[str] | None = None
) -> pa.Table:
    """Read a .parquet or .csv file, a published dataset folder, or a folder of Parquet files."""
    fs, path = filesystem(uri, storage)
    info = with_retries(lambda: fs.get_file_info(path), uri, storage, "look up")
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"no file or dataset at {uri}; check the path")
    if info.type == pafs.FileType.Directory:
        if read_manifest(uri, storage) is not None:
            return read_dataset(uri, storage, columns)
        return _read_parquet(uri, fs, path, storage, columns)
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if suffix in ("parquet", "pq"):
        return _read_parquet(uri, fs, path, storage, columns)
    if suffix in ("csv", "tsv"):
        return _read_csv(
            uri, fs, path, storage, columns, delimiter="\t" if suffix == "tsv" else ","
        )
    raise DataError(
        f"{uri}: unknown format '.{suffix}'; use a .parquet or .csv file or a dataset folder"
    )


def _read_parquet(uri, fs, path, storage, columns) -> pa.Table:
    try:
        return with_retries(
            lambda: pq.read_table(path, filesystem=fs, columns=columns), uri, storage, "read"
        )
    except pa.ArrowInvalid as err:
        raise DataError(f"{uri} is not readable as Parquet: {_short(err)}") from None


def _read_csv(uri, fs, path, storage, columns, delimiter: str) -> pa.Table:
    def read() -> pa.Table:
        with fs.open_input_stream(path) as stream:
            return pacsv.read_csv(
                stream,
                parse_options=pacsv.ParseOptions(delimiter=delimiter),
                convert_options=pacsv.ConvertOptions(include_columns=columns),
            )

    try:
        return with_retries(read, uri, storage, "read")
    except pa.ArrowInvalid as err:
        raise DataError(f"{uri} is not readable as CSV: {_short(err)}") from None
