"""Local paths and s3:// URIs as files: pyarrow filesystems, retries with clear errors,
all-or-nothing single-object writes, and conditional replaces (compare-and-swap) of one
object, which `storage` builds its publishing on. No torch, no manifests here.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.fs as pafs

from synthrec.config import StorageConfig
from synthrec.errors import DataError, StorageError

T = TypeVar("T")


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
    """A boto3 S3 client for what pyarrow lacks (buckets, conditional writes). Few retries:
    callers retry."""
    cfg = (storage or StorageConfig()).resolved()
    return _boto3_client(
        cfg["endpoint_url"],
        cfg["region"],
        cfg["access_key_id"],
        cfg["secret_access_key"],
        cfg["session_token"],
        connect_timeout,
    )


@lru_cache(maxsize=16)
def _boto3_client(endpoint, region, access_key, secret_key, session_token, connect_timeout):
    import boto3
    from botocore.config import Config

    return boto3.client(  # boto3 clients are thread-safe, so one per settings is shared
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=session_token,
        config=Config(
            retries={"max_attempts": 2}, connect_timeout=connect_timeout, read_timeout=30
        ),
    )


def with_retries(
    fn: Callable[[], T], uri: str, storage: StorageConfig | None = None, what: str = "access"
) -> T:
    """Run `fn`, retrying transient I/O errors with exponential backoff. Missing files are not
    retried; a full or read-only disk is a StorageError at once."""
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
            if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise StorageError(
                    f"cannot {what} {uri}: {os.strerror(err.errno)}; free space on that "
                    "device or choose another destination"
                ) from None
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
            _write_local_atomic(path, data)
        else:
            with fs.open_output_stream(path) as out:
                out.write(data)

    with_retries(put, uri, storage, "write")


def _write_local_atomic(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):  # a full disk must not keep the half file
            os.unlink(tmp)
        raise


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


def file_infos(uri: str, storage: StorageConfig | None) -> dict[str, pafs.FileInfo]:
    """Files under a folder URI by relative path."""
    fs, path = filesystem(uri, storage)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    infos = with_retries(lambda: fs.get_file_info(selector), uri, storage, "list")
    prefix = path.rstrip("/") + "/"  # string prefix, not relpath: S3 keys are not filesystem paths
    return {
        i.path[len(prefix) :]: i
        for i in infos
        if i.type == pafs.FileType.File and i.path.startswith(prefix)
    }


def list_files(uri: str, storage: StorageConfig | None = None) -> list[str]:
    """Relative paths of all files under a folder URI, sorted."""
    return sorted(file_infos(uri, storage))


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


# ---------------------------------------------------------------------------- conditional writes


def read_versioned(
    uri: str, storage: StorageConfig | None = None
) -> tuple[bytes | None, str | None]:
    """An object's bytes and a token naming that version for `write_if` (the S3 ETag; on
    local disk its sha256). (None, None) when it does not exist."""
    muri = uri
    if not is_s3(uri):
        try:
            data = Path(filesystem(muri)[1]).read_bytes()
        except FileNotFoundError:
            return None, None
        return data, hashlib.sha256(data).hexdigest()
    from botocore.exceptions import ClientError

    bucket, key = filesystem(muri, storage)[1].split("/", 1)
    client = boto3_client(storage)

    def get() -> tuple[bytes | None, str | None]:
        try:
            reply = client.get_object(Bucket=bucket, Key=key)
        except ClientError as err:
            if _status(err) == 404:
                return None, None
            raise
        return reply["Body"].read(), reply["ETag"]

    return _s3_call(get, muri, storage, "read")


def write_if(
    uri: str, data: bytes, token: str | None, storage: StorageConfig | None = None
) -> bool:
    """Write the object only if it is still the version `token` (from `read_versioned`)
    names, None meaning absent; False when another writer replaced it first. S3: a PUT with
    If-Match / If-None-Match; local disk: compare and rename under an exclusive flock on
    `<path>.lock`."""
    muri = uri
    if not is_s3(uri):
        path = filesystem(muri)[1]
        with _local_lock(f"{path}.lock"):
            try:
                current = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            except FileNotFoundError:
                current = None
            if current != token:
                return False
            with_retries(lambda: _write_local_atomic(path, data), muri, storage, "write")
        return True
    from botocore.exceptions import ClientError

    bucket, key = filesystem(muri, storage)[1].split("/", 1)
    condition = {"IfNoneMatch": "*"} if token is None else {"IfMatch": token}

    def put() -> bool:
        try:
            boto3_client(storage).put_object(Bucket=bucket, Key=key, Body=data, **condition)
        except ClientError as err:
            if _status(err) in (409, 412):  # 409: AWS's answer to a concurrent conditional PUT
                return False
            raise
        return True

    return _s3_call(put, muri, storage, "publish")


@contextmanager
def _local_lock(path: str, timeout_s: float = 60.0) -> Iterator[None]:
    """An exclusive flock: the kernel releases it when its holder dies, so no lease expires."""
    import fcntl

    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StorageError(
                        f"{path} stayed locked for {timeout_s:.0f} s by another publisher; "
                        "retry, or check for a hung process"
                    ) from None
                time.sleep(0.005)
        yield
    finally:
        os.close(fd)  # releases the lock


def _status(err) -> int | None:
    return err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _s3_call(fn: Callable[[], T], uri: str, storage: StorageConfig | None, what: str) -> T:
    """`with_retries` for boto3: transient errors retried, the rest a StorageError."""
    from botocore.exceptions import BotoCoreError, ClientError

    cfg = storage or StorageConfig()
    for attempt in range(cfg.max_attempts):
        try:
            return fn()
        except ClientError as err:
            if (_status(err) or 0) < 500 or attempt + 1 == cfg.max_attempts:
                raise StorageError(f"cannot {what} {uri}: {_short(err)}") from None
        except BotoCoreError as err:  # connection refused, timeouts
            if attempt + 1 == cfg.max_attempts:
                raise StorageError(
                    f"cannot {what} {uri} after {cfg.max_attempts} attempts: {_short(err)}"
                ) from None
        time.sleep(cfg.retry_base_delay_s * 2**attempt)
    raise AssertionError("unreachable")
