"""Input files by their name: compressed CSV / TSV and RecBole atomic files (`.inter`)."""

import bz2
import gzip

import pyarrow as pa
import pytest

from synthrec import storage
from synthrec.cli import main
from synthrec.errors import DataError

CSV = "user_id,item_id,price\nu1,i1,1.5\nu2,i2,2.5\nu1,i3,3.0\n"


def _compress(name: str, data: bytes) -> bytes:
    if name.endswith(".gz"):
        return gzip.compress(data)
    if name.endswith(".bz2"):
        return bz2.compress(data)
    if name.endswith(".zst"):
        return pa.compress(data, codec="zstd", asbytes=True)
    return data


@pytest.mark.parametrize("name", ["log.csv.gz", "log.csv.bz2", "log.CSV.ZST", "log.tsv.gz"])
def test_storage_formats_compressed_csv_reads_like_plain_csv(tmp_path, name):
    text = CSV.replace(",", "\t") if ".tsv" in name else CSV
    (tmp_path / name).write_bytes(_compress(name.lower(), text.encode()))
    (tmp_path / "plain.csv").write_text(CSV)
    table = storage.read_table(str(tmp_path / name))
    assert table.equals(storage.read_table(str(tmp_path / "plain.csv")))
    assert table["price"].to_pylist() == [1.5, 2.5, 3.0]  # decompressed, then typed


@pytest.mark.parametrize("name", ["log.parquet.gz", "log.gz", "log", "log.json"])
def test_storage_formats_unknown_names_list_what_is_read(tmp_path, name):
    (tmp_path / name).write_bytes(b"x")
    with pytest.raises(DataError, match=r"unknown format.*\.csv.*\.jsonl, \.ndjson.*\.gz.*\.inter"):
        storage.read_table(str(tmp_path / name))


JSONL = (
    '{"user_id": "u1", "item_id": "i1", "price": 1.5}\n'
    '{"user_id": "u2", "item_id": "i2", "price": 2.5}\n'
    '{"user_id": "u1", "item_id": "i3", "price": 3.0}\n'
)


@pytest.mark.parametrize("name", ["log.jsonl", "log.ndjson", "log.jsonl.gz", "log.NDJSON.ZST"])
def test_storage_formats_json_lines_read_like_csv(tmp_path, name):
    (tmp_path / name).write_bytes(_compress(name.lower(), JSONL.encode()))
    (tmp_path / "plain.csv").write_text(CSV)
    table = storage.read_table(str(tmp_path / name))
    assert table.equals(storage.read_table(str(tmp_path / "plain.csv")))
    picked = storage.read_table(str(tmp_path / name), columns=["price"])
    assert picked.column_names == ["price"]
    with pytest.raises(DataError, match="not readable as JSON lines"):
        storage.read_table(str(tmp_path / name), columns=["nope"])


def _atomic_dataset(folder):
    folder.mkdir()
    (folder / "toy.inter").write_text(
        "user_id:token\titem_id:token\trating:float\n2\tb\t4\n1\ta\t3\n2\ta\t5\n"
    )
    (folder / "toy.user").write_text("user_id:token\tage:float\n1\t30\n2\t40\n")
    return folder


def test_storage_formats_inter_file_and_its_folder_read_with_the_side_files(tmp_path):
    folder = _atomic_dataset(tmp_path / "toy")
    expected = {
        "user_id": ["2", "1", "2"],
        "item_id": ["b", "a", "a"],
        "rating": [4.0, 3.0, 5.0],
        "age": [40.0, 30.0, 40.0],
    }
    assert storage.read_table(str(folder / "toy.inter")).to_pydict() == expected
    assert storage.read_table(str(folder)).to_pydict() == expected  # the folder, no Parquet
    subset = storage.read_table(str(folder / "toy.inter"), columns=["age", "user_id"])
    assert subset.column_names == ["age", "user_id"]


def test_storage_formats_cli_validate_and_describe_read_csv_gz_and_inter(tmp_path, capsys):
    (tmp_path / "log.csv.gz").write_bytes(gzip.compress(CSV.encode()))
    folder = _atomic_dataset(tmp_path / "toy")
    for uri, rows, cols in [
        (tmp_path / "log.csv.gz", 3, 3),
        (folder / "toy.inter", 3, 4),
        (folder, 3, 4),
    ]:
        assert main(["data", "validate", "--data-uri", str(uri)]) == 0
        out = capsys.readouterr().out
        assert f"valid: {rows} rows, {cols} columns" in out
        assert main(["data", "describe", str(uri)]) == 0
        assert f"{rows} rows, {cols} columns" in capsys.readouterr().out
