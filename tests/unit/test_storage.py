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


def test_storage_crash_mid_write_publishes_nothing_and_stale_folders_are_cleaned(tmp_path):
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

    crashed = {p.split("/")[0] for p in storage.list_files(uri)}
    storage.write_dataset(_table(1_200), uri, rows_per_file=1_000)
    run_dirs = {p.split("/")[0] for p in storage.list_files(uri) if "/" in p}
    published = storage.read_manifest(uri).run_id
    assert run_dirs == {published} | crashed, "a young unpublished folder may be a writer in flight"
    assert storage.read_dataset(uri).num_rows == 1_200

    assert storage.cleanup_stale(uri, StorageConfig(stale_after_s=0)) == sorted(crashed)
    assert {p.split("/")[0] for p in storage.list_files(uri) if "/" in p} == {published}


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


# ---------------------------------------------------------------- publishing with other writers


def _runs(uri: str) -> set[str]:
    return {p.split("/")[0] for p in storage.list_files(uri) if p.startswith("run-")}


def test_storage_publish_never_deletes_another_writers_folder_in_flight(tmp_path):
    """Writer B has written its files but not yet its manifest when A publishes: A's cleanup
    must leave B's folder, so B's publish afterwards is complete and readable."""
    uri = str(tmp_path / "ds")
    b_run = storage.new_run_id()
    body = storage.parquet_bytes(_table(7, 500))
    storage.write_bytes(storage.join(uri, f"{b_run}/part-00000.parquet"), body)

    storage.write_dataset(_table(3), uri)  # writer A publishes meanwhile

    entry = storage.entry_for(uri, f"{b_run}/part-00000.parquet", rows=7)
    storage.commit(uri, storage.Manifest("dataset", b_run, [entry], num_rows=7))
    assert storage.read_table(uri).equals(_table(7, 500))


def test_storage_concurrent_publishers_serialize_and_last_wins(tmp_path):
    import threading

    uri = str(tmp_path / "ds")
    tables = [_table(50 + i, 1_000 * i) for i in range(6)]
    barrier = threading.Barrier(len(tables))
    results: dict[int, object] = {}

    def publish(i: int) -> None:
        try:  # all writers finish their files, then commit together
            results[i] = storage.write_dataset(
                tables[i],
                uri,
                rows_per_file=20,
                progress=lambda n: n == len(tables[i]) and barrier.wait(),
            )
        except Exception as err:  # noqa: BLE001 - the assertion below names it
            results[i] = err

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(len(tables))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(r, storage.Manifest) for r in results.values()), results
    final = storage.read_manifest(uri)
    winner = next(i for i, m in results.items() if m.run_id == final.run_id)
    assert storage.read_table(uri).equals(tables[winner])
    assert len(final.retained) == 1, "keep_versions=2: the current version and one before it"
    previous = next(i for i, m in results.items() if m.run_id == final.retained[0])
    old = storage.Manifest(
        "dataset", final.retained[0], results[previous].files, len(tables[previous])
    )
    plan = storage.ReadPlan(uri, "parquet", [], 0, old)
    assert storage.read_plan(plan).equals(tables[previous])


def test_storage_keeps_previous_versions_for_readers_in_flight(tmp_path):
    uri = str(tmp_path / "ds")
    two = StorageConfig(stale_after_s=0)  # no grace: only keep_versions protects readers
    storage.write_dataset(_table(10), uri, two)
    plan = storage.plan_read(uri)  # a reader has read the manifest, not yet the files
    storage.write_dataset(_table(20), uri, two)
    assert storage.read_plan(plan).equals(_table(10)), "one newer publish: still readable"
    storage.write_dataset(_table(30), uri, two)
    with pytest.raises(StorageError, match="keep_versions"):
        storage.read_plan(plan)
    assert storage.read_table(uri).equals(_table(30))

    three = StorageConfig(keep_versions=3, stale_after_s=0)
    storage.write_dataset(_table(40), uri, three)
    plan = storage.plan_read(uri)
    storage.write_dataset(_table(50), uri, three)
    storage.write_dataset(_table(60), uri, three)
    assert storage.read_plan(plan).equals(_table(40))
    assert len(_runs(uri)) == 3


# ---------------------------------------------------------------- one reading rule


def test_storage_crashed_run_folder_is_never_read(tmp_path):
    uri = tmp_path / "synthetic"
    crashed = storage.join(str(uri), "run-gen-0123456789abcdef", "part-00000.parquet")
    storage.write_bytes(crashed, storage.parquet_bytes(_table(5)))
    with pytest.raises(DataError, match="unfinished or crashed write"):
        storage.read_table(str(uri))
    with pytest.raises(DataError, match="run folder of a publish"):
        storage.read_table(str(uri / "run-gen-0123456789abcdef"))
    with pytest.raises(DataError, match="unfinished or crashed write"):
        storage.plan_read(str(uri))


def test_storage_published_folder_reads_only_its_manifest_files(tmp_path):
    uri = str(tmp_path / "ds")
    storage.write_dataset(_table(10), uri)
    storage.write_bytes(storage.join(uri, "stray.parquet"), storage.parquet_bytes(_table(99)))
    assert storage.read_table(uri).equals(_table(10))


def test_storage_plain_folder_and_files_are_read_when_pointed_at(tmp_path):
    folder = tmp_path / "plain"
    storage.write_bytes(str(folder / "a.parquet"), storage.parquet_bytes(_table(3)))
    storage.write_bytes(str(folder / "b.parquet"), storage.parquet_bytes(_table(4, 3)))
    storage.write_bytes(str(folder / "_SUCCESS"), b"")
    assert storage.read_table(str(folder)).sort_by("x").equals(_table(7))
    assert storage.read_table(str(folder / "b.parquet")).equals(_table(4, 3))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Parquet files"):
        storage.read_table(str(tmp_path / "empty"))


# ---------------------------------------------------------------- integrity


def test_storage_changed_part_file_is_refused(tmp_path):
    uri = str(tmp_path / "ds")
    manifest = storage.write_dataset(_table(100), uri, rows_per_file=50)
    part = tmp_path / "ds" / manifest.files[1].path
    body = part.read_bytes()  # same size, still valid Parquet: edit the writer's name
    part.write_bytes(body.replace(b"parquet-cpp-arrow", b"parquet-cpp-ARROW"))
    with pytest.raises(StorageError, match="sha256"):
        storage.read_table(uri)
    with pytest.raises(StorageError, match="sha256"):
        storage.read_dataset(uri, columns=["x"])
    trusted = StorageConfig(verify_checksums=False)
    assert storage.read_table(uri, trusted).num_rows == 100, "a trusted store skips the hash"

    part.write_bytes(storage.parquet_bytes(_table(50, 100_000)))  # another size
    with pytest.raises(StorageError, match="bytes but its manifest entry says"):
        storage.read_table(uri, trusted)


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "../outside/part.parquet", "part-00000.parquet", "RUN/../../x", "RUN/a/b"],
)
def test_storage_manifest_paths_outside_the_run_folder_are_refused(tmp_path, path):
    uri = str(tmp_path / "ds")
    manifest = storage.write_dataset(_table(3), uri)
    data = json.loads((tmp_path / "ds" / "_manifest.json").read_text())
    data["files"][0]["path"] = path.replace("RUN", manifest.run_id)
    (tmp_path / "ds" / "_manifest.json").write_text(json.dumps(data))
    with pytest.raises(StorageError, match="entries must be"):
        storage.read_table(uri)
    with pytest.raises(StorageError, match="entries must be"):
        storage.read_files(uri)


def test_storage_config_secrets_travel_apart_and_masked_values_are_refused():
    from synthrec.config import MASKED

    cfg = StorageConfig(access_key_id="AKIA-TEST", secret_access_key="s3cr3t")
    bare = cfg.without_secrets()
    assert "s3cr3t" not in bare.model_dump_json() and bare.access_key_id is None
    back = StorageConfig.model_validate_json(bare.model_dump_json()).with_secrets(cfg.secrets())
    assert back.resolved()["secret_access_key"] == "s3cr3t"
    with pytest.raises(ValueError, match="masked placeholder"):
        StorageConfig.model_validate_json(cfg.model_dump_json())
    assert MASKED in cfg.model_dump_json()
