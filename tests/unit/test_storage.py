"""Storage on local disk: round trips, atomic publish, retries, clear errors."""

import json

import pyarrow as pa
import pytest

from synthrec import storage
from synthrec.config import StorageConfig
from synthrec.errors import DataError, ModelError, StorageError


def _table(n: int, offset: int = 0) -> pa.Table:
    return pa.table(
        {
            "user_id": [f"u{i}" for i in range(offset, offset + n)],
            "x": list(range(offset, offset + n)),
        }
    )


def test_storage_dataset_round_trip_splits_files(tmp_path):
    uri = str(tmp_path / "ds")
    manifest = storage.write_dataset(_table(2_500), uri, rows_per_file=1_000, metadata={"seed": 3})
    assert manifest.num_rows == 2_500
    assert [e.rows for e in manifest.files] == [1_000, 1_000, 500]
    back = storage.read_dataset(uri)
    assert back.equals(_table(2_500))
    assert storage.read_table(uri).num_rows == 2_500
    assert storage.read_manifest(uri).metadata == {"seed": 3}


def test_storage_crash_mid_write_publishes_nothing_and_rerun_cleans_up(tmp_path):
    uri = str(tmp_path / "ds")

    def crashing_batches():
        yield from _table(1_500).to_batches(max_chunksize=500)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        storage.write_dataset(crashing_batches(), uri, rows_per_file=1_000)
    assert storage.read_manifest(uri) is None
    assert storage.list_files(uri), "the crashed run left its staging part behind"
    with pytest.raises(DataError, match="no published dataset"):
        storage.read_dataset(uri)

    storage.write_dataset(_table(1_200), uri, rows_per_file=1_000)
    run_dirs = {p.split("/")[0] for p in storage.list_files(uri) if "/" in p}
    assert run_dirs == {storage.read_manifest(uri).run_id}
    assert storage.read_dataset(uri).num_rows == 1_200


def test_storage_failed_republish_keeps_previous_version(tmp_path):
    uri = str(tmp_path / "ds")
    storage.write_dataset(_table(10), uri)

    def crashing():
        yield _table(5, 100).to_batches()[0]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        storage.write_dataset(crashing(), uri, rows_per_file=2)
    assert storage.read_dataset(uri).equals(_table(10))


def test_storage_model_files_round_trip_and_checksum(tmp_path):
    uri = str(tmp_path / "model")
    storage.publish_files(
        uri, {"config.json": b"{}", "weights.bin": b"\x00\x01"}, metadata={"version": "1"}
    )
    assert storage.read_files(uri) == {"config.json": b"{}", "weights.bin": b"\x00\x01"}
    manifest = storage.read_manifest(uri)
    (tmp_path / "model" / manifest.files[1].path).write_bytes(b"tampered")
    with pytest.raises(ModelError, match="checksum"):
        storage.read_files(uri, ["weights.bin"])
    with pytest.raises(ModelError, match="lacks missing.json"):
        storage.read_files(uri, ["missing.json"])


def test_storage_unpublished_model_dir_is_refused(tmp_path):
    with pytest.raises(ModelError, match="nothing is published"):
        storage.read_files(str(tmp_path / "nothing"))


def test_storage_reads_csv_and_parquet_files(tmp_path):
    (tmp_path / "a.csv").write_text("user_id,x\nu1,1\nu2,2\n")
    assert storage.read_table(str(tmp_path / "a.csv")).num_rows == 2
    storage.write_bytes(str(tmp_path / "b.parquet"), storage.parquet_bytes(_table(3)))
    assert storage.read_table(str(tmp_path / "b.parquet")).num_rows == 3


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.parquet", None, "no file or dataset"),
        ("data.json", b"{}", "unknown format"),
        ("bad.parquet", b"not parquet at all", "not readable as Parquet"),
    ],
)
def test_storage_bad_inputs_name_the_problem(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=message):
        storage.read_table(str(tmp_path / name))


def test_storage_corrupt_manifest_is_a_clear_error(tmp_path):
    uri = str(tmp_path / "ds")
    storage.write_dataset(_table(3), uri)
    (tmp_path / "ds" / "_manifest.json").write_text(json.dumps({"files": "oops"}))
    with pytest.raises(StorageError, match="corrupt"):
        storage.read_dataset(uri)


def test_storage_retries_transient_errors_then_gives_up():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OSError("Connection reset by peer")
        return "ok"

    cfg = StorageConfig(max_attempts=4, retry_base_delay_s=0.01)
    assert storage.with_retries(flaky, "s3://b/k", cfg) == "ok"
    assert len(calls) == 3

    def broken():
        raise OSError("Connection refused")

    with pytest.raises(StorageError, match=r"s3://b/k after 2 attempts"):
        storage.with_retries(
            broken, "s3://b/k", StorageConfig(max_attempts=2, retry_base_delay_s=0.01)
        )


def test_storage_missing_files_are_not_retried():
    calls = []

    def missing():
        calls.append(1)
        raise FileNotFoundError("gone")

    with pytest.raises(FileNotFoundError):
        storage.with_retries(missing, "x", StorageConfig(max_attempts=5, retry_base_delay_s=0.01))
    assert len(calls) == 1


def test_storage_rejects_other_schemes():
    with pytest.raises(StorageError, match="only local paths and s3://"):
        storage.filesystem("gs://bucket/x")
    with pytest.raises(StorageError, match="not a valid S3 URI"):
        storage.filesystem("s3://")
