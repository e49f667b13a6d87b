"""Storage against a real S3 server (SeaweedFS on loopback)."""

import time

import pyarrow as pa
import pytest

from synthrec import storage
from synthrec.config import StorageConfig
from synthrec.errors import DataError, StorageError

pytestmark = pytest.mark.integration


def test_storage_s3_dataset_round_trip_and_atomic_publish(s3_bucket):
    uri = f"s3://{s3_bucket}/events"
    table = pa.table(
        {"item_id": [str(i) for i in range(30_000)], "price": [float(i) for i in range(30_000)]}
    )
    manifest = storage.write_dataset(table, uri, rows_per_file=10_000)
    assert manifest.num_rows == 30_000 and len(manifest.files) == 3
    assert storage.read_table(uri).equals(table)

    def crashing():
        yield table.slice(0, 100).to_batches()[0]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        storage.write_dataset(crashing(), uri, rows_per_file=50)
    assert storage.read_dataset(uri).num_rows == 30_000, (
        "a crashed rewrite must not replace the published version"
    )


def test_storage_s3_unpublished_prefix_is_refused(s3_bucket):
    uri = f"s3://{s3_bucket}/half"
    storage.write_bytes(
        f"{uri}/run-x/part-00000.parquet", storage.parquet_bytes(pa.table({"a": [1]}))
    )
    with pytest.raises(DataError, match="no published dataset"):
        storage.read_dataset(uri)


def test_storage_s3_model_files_round_trip(s3_bucket):
    uri = f"s3://{s3_bucket}/model"
    storage.publish_files(
        uri, {"config.json": b'{"a": 1}', "weights.safetensors": b"\x00" * 10_000}
    )
    assert storage.read_files(uri, ["config.json"]) == {"config.json": b'{"a": 1}'}


def test_storage_check_writable_creates_bucket(s3_server):
    storage.check_writable("s3://fresh-bucket-for-probe/out")
    assert "fresh-bucket-for-probe" in [
        b["Name"] for b in s3_server.client().list_buckets()["Buckets"]
    ]


def test_storage_unreachable_endpoint_fails_fast_naming_the_uri():
    from synthrec.local_s3 import free_port

    cfg = StorageConfig(
        endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=2, retry_base_delay_s=0.05
    )
    start = time.monotonic()
    with pytest.raises(StorageError, match="s3://nobucket/x"):
        storage.check_writable("s3://nobucket/x", cfg)
    assert time.monotonic() - start < 30


def test_storage_ray_read_checks_every_part_where_it_is_read(ray_local, s3_bucket):
    """The Ray read path follows the same rule: parts checked against the manifest in the
    tasks that read them; a crashed run folder is refused."""
    from synthrec.distributed.reading import read_table_ray

    uri = f"s3://{s3_bucket}/ray-read"
    table = pa.table({"i": list(range(3_000)), "x": [float(i) for i in range(3_000)]})
    manifest = storage.write_dataset(table, uri, rows_per_file=1_000)
    assert read_table_ray(uri).equals(table)

    part = f"{uri}/{manifest.files[2].path}"
    body = storage.read_bytes(part)
    storage.write_bytes(part, body.replace(b"parquet-cpp-arrow", b"parquet-cpp-ARROW"))
    with pytest.raises(StorageError, match="sha256"):
        read_table_ray(uri)

    crashed = f"s3://{s3_bucket}/crashed"
    storage.write_bytes(f"{crashed}/run-gen-00/part-00000.parquet", storage.parquet_bytes(table))
    with pytest.raises(DataError, match="unfinished or crashed write"):
        read_table_ray(crashed)
