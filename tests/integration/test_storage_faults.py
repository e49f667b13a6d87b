"""Publishing under faults, with real parts: concurrent writers (threads, local disk and
SeaweedFS), the S3 server SIGKILLed mid-write and restarted, a full disk (a 2 MiB tmpfs).
Each checks that nothing half-written is published, nothing is lost or duplicated, and the
final data equals a clean run's."""

import subprocess
import threading
import time

import numpy as np
import pyarrow as pa
import pytest

from synthrec import storage
from synthrec.config import StorageConfig
from synthrec.errors import StorageError

pytestmark = pytest.mark.integration


def _table(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"user_id": np.arange(n) + seed * 1_000_000, "x": rng.random(n)})


def _noise(n: int, seed: int = 0) -> pa.Table:
    """~1 KiB of incompressible bytes per row."""
    rng = np.random.default_rng(seed)
    return pa.table(
        {"i": np.arange(n), "blob": [rng.bytes(1024) for _ in range(n)]},
    )


def _clean_hashes(table: pa.Table, uri: str, rows_per_file: int, cfg=None) -> list[str]:
    return [
        e.sha256 for e in storage.write_dataset(table, uri, cfg, rows_per_file=rows_per_file).files
    ]


def _assert_nothing_dangles(uri: str, cfg=None) -> storage.Manifest:
    manifest = storage.read_manifest(uri, cfg)
    listed = set(storage.list_files(uri, cfg))
    for run in [manifest.run_id, *manifest.retained]:
        assert any(p.startswith(run + "/") for p in listed), f"{run} is named but gone"
    assert {e.path for e in manifest.files} <= listed
    return manifest


# ---------------------------------------------------------------- two publishers at once


def _publish_together(uri: str, tables: list[pa.Table], cfg=None) -> list:
    """Each thread writes its parts, then all commit at the same moment (a barrier)."""
    barrier = threading.Barrier(len(tables))
    results: list = [None] * len(tables)

    def publish(i: int) -> None:
        def at_last_part(rows: int) -> None:
            if rows == tables[i].num_rows:
                barrier.wait(60)

        try:
            results[i] = storage.write_dataset(
                tables[i], uri, cfg, rows_per_file=100, progress=at_last_part
            )
        except Exception as err:  # noqa: BLE001 - asserted by the caller
            results[i] = err

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(len(tables))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


@pytest.mark.parametrize("where", ["local", "s3"])
def test_storage_two_publishers_at_once_serialize_without_loss(where, tmp_path, request):
    if where == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        root = f"s3://{bucket}"
    else:
        root = str(tmp_path)
    for attempt in range(3):  # three rounds: the race differs each time
        uri = f"{root}/race-{attempt}"
        tables = [_table(250, seed=10 * attempt + 1), _table(330, seed=10 * attempt + 2)]
        results = _publish_together(uri, tables)
        assert all(isinstance(r, storage.Manifest) for r in results), results
        final = _assert_nothing_dangles(uri)
        winner = [r.run_id for r in results].index(final.run_id)
        loser = 1 - winner
        assert final.retained == [results[loser].run_id], "the other publish is kept, not lost"
        got = storage.read_table(uri)
        assert got.equals(tables[winner])
        clean = _clean_hashes(tables[winner], f"{root}/clean-{attempt}", 100)
        assert [e.sha256 for e in final.files] == clean


def test_storage_s3_conditional_writes_are_honoured_by_seaweedfs(s3_bucket):
    """The publish protocol relies on If-None-Match/If-Match: check the server refuses a
    stale version (a server that ignored them would let two writers both 'win')."""
    from botocore.exceptions import ClientError

    client = storage.boto3_client()
    first = client.put_object(Bucket=s3_bucket, Key="m", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError, match="PreconditionFailed"):
        client.put_object(Bucket=s3_bucket, Key="m", Body=b"2", IfNoneMatch="*")
    client.put_object(Bucket=s3_bucket, Key="m", Body=b"3", IfMatch=first["ETag"])
    with pytest.raises(ClientError, match="PreconditionFailed"):
        client.put_object(Bucket=s3_bucket, Key="m", Body=b"4", IfMatch=first["ETag"])
    assert client.get_object(Bucket=s3_bucket, Key="m")["Body"].read() == b"3"


# ---------------------------------------------------------------- S3 server killed mid-write


@pytest.mark.slow
def test_storage_s3_server_killed_mid_write_publishes_nothing_and_rerun_is_clean(tmp_path):
    from synthrec.local_s3 import ACCESS_KEY, SECRET_KEY, LocalS3

    server = LocalS3(data_dir=str(tmp_path / "weed")).start()  # its own: this test kills it
    try:
        cfg = StorageConfig(
            endpoint_url=server.endpoint_url,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            max_attempts=2,
            retry_base_delay_s=0.05,
        )
        server.create_bucket("faults")
        uri = "s3://faults/events"
        before = _table(500, seed=1)
        storage.write_dataset(before, uri, cfg, rows_per_file=200)
        big = _table(40_000, seed=2)
        started = threading.Event()

        def kill_when_writing() -> None:
            started.wait(60)
            server.kill()  # SIGKILL to the weed process group, mid-stream

        killer = threading.Thread(target=kill_when_writing)
        killer.start()
        start = time.monotonic()
        with pytest.raises(StorageError, match=f"{uri}/run-"):
            storage.write_dataset(
                big, uri, cfg, rows_per_file=1_000, progress=lambda n: n >= 3_000 and started.set()
            )
        killer.join()
        assert time.monotonic() - start < 60, "a dead endpoint must fail in bounded time"

        server.start()  # same port, same data
        assert storage.read_table(uri, cfg).equals(before), "nothing half-published"
        assert storage.read_manifest(uri, cfg).num_rows == 500
        storage.write_dataset(big, uri, cfg, rows_per_file=1_000)
        final = _assert_nothing_dangles(uri, cfg)
        assert storage.read_table(uri, cfg).equals(big)
        assert [e.sha256 for e in final.files] == _clean_hashes(
            big, "s3://faults/clean", 1_000, cfg
        )
    finally:
        server.stop()


# ---------------------------------------------------------------- disk full


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs: a real full disk. Needs root (mount); skipped where not permitted."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a 2 MiB tmpfs here ({done.stderr.strip()}); needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_storage_disk_full_is_a_clear_error_and_publishes_nothing(small_disk):
    uri = str(small_disk / "ds")
    before = _noise(200, seed=1)  # ~200 KiB
    storage.write_dataset(before, uri, rows_per_file=100)

    with pytest.raises(StorageError, match="No space left on device.*free space"):
        storage.write_dataset(_noise(4_000, seed=2), uri, rows_per_file=500)  # ~4 MiB
    assert storage.read_table(uri).equals(before), "the previous version stays published"
    assert not list(small_disk.rglob("*.tmp-*")), "no half-written temp file is left"

    # The disk fills between the parts and the manifest: the publish fails, nothing changes.
    storage.cleanup_stale(uri, StorageConfig(stale_after_s=0))  # the crashed run's parts
    after = _noise(300, seed=3)
    run_id = storage.new_run_id()
    entries = []
    for i in range(3):
        body = storage.parquet_bytes(after.slice(100 * i, 100))
        rel = f"{run_id}/part-{i:05d}.parquet"
        storage.write_bytes(storage.join(uri, rel), body)
        entries.append(storage.entry_for(uri, rel, rows=100))
    filler = small_disk / "filler"
    with open(filler, "wb") as fh, pytest.raises(OSError):
        while True:
            fh.write(b"\0" * 65_536)
            fh.flush()
    manifest = storage.Manifest("dataset", run_id, entries, num_rows=300)
    with pytest.raises(StorageError, match="No space left on device"):
        storage.commit(uri, manifest)
    assert storage.read_table(uri).equals(before)

    filler.unlink()  # space again: the same publish now lands and reads back exactly
    storage.commit(uri, manifest)
    assert storage.read_table(uri).equals(after)
    clean = [
        e.sha256
        for e in storage.write_dataset(after, str(small_disk / "clean"), rows_per_file=100).files
    ]
    assert [e.sha256 for e in storage.read_manifest(uri).files] == clean
