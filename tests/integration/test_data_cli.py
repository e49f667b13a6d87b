"""Done-when of the foundation issue: `synthrec data simulate --rows 1000000` publishes a
manifest with the exact row count, to SeaweedFS S3 and to a local folder."""

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from synthrec import storage
from synthrec.data.eventlog import describe

pytestmark = pytest.mark.integration
SYNTHREC = str(Path(sys.executable).parent / "synthrec")
ROWS = 1_000_000


def _simulate(out: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [
            SYNTHREC,
            "data",
            "simulate",
            "--rows",
            str(ROWS),
            "--out-uri",
            out,
            "--rows-per-file",
            "400000",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"published {ROWS:,} rows" in proc.stdout
    return proc


def _parquet_rows(uri: str, manifest) -> int:
    fs, base = storage.filesystem(uri)
    return sum(
        pq.ParquetFile(fs.open_input_file(f"{base}/{f.path}")).metadata.num_rows
        for f in manifest.files
    )


def test_data_cli_simulate_million_rows_to_s3(s3_bucket):
    uri = f"s3://{s3_bucket}/sim"
    _simulate(uri)
    manifest = storage.read_manifest(uri)
    assert manifest.num_rows == ROWS and [f.rows for f in manifest.files] == [
        400_000,
        400_000,
        200_000,
    ]
    assert _parquet_rows(uri, manifest) == ROWS  # the files hold what the manifest says
    info = describe(uri)  # read back over S3, column by column
    assert info.num_rows == ROWS and {c.name: c.role for c in info.columns}["purchase"] == "label"


def test_data_cli_simulate_million_rows_to_local_folder(tmp_path):
    uri = str(tmp_path / "sim")
    _simulate(uri)
    manifest = storage.read_manifest(uri)
    assert manifest.num_rows == ROWS and sum(f.rows for f in manifest.files) == ROWS
    assert _parquet_rows(uri, manifest) == ROWS
    assert manifest.metadata["description"].startswith("SIMULATED")


def test_data_cli_validate_csv_and_schema_on_s3(s3_bucket):
    base = f"s3://{s3_bucket}/raw"
    storage.write_bytes(f"{base}/log.csv", b"customer,sku,bought\nc1,s1,1\nc2,s2,0\n")
    storage.write_bytes(
        f"{base}/schema.yaml", b"columns: {customer: user_id, sku: item_id, bought: label}\n"
    )
    proc = subprocess.run(
        [
            SYNTHREC,
            "data",
            "validate",
            "--data-uri",
            f"{base}/log.csv",
            "--schema-uri",
            f"{base}/schema.yaml",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "valid: 2 rows, 3 columns" in proc.stdout and "user_id" in proc.stdout
    proc = subprocess.run(
        [SYNTHREC, "data", "validate", "--data-uri", f"{base}/nothing.csv"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        proc.returncode == 2
        and "no file or dataset" in proc.stderr
        and "Traceback" not in proc.stderr
    )
