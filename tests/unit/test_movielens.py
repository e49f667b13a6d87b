import pyarrow.parquet as pq
import pytest

from synthrec.data.movielens import load_atomic, load_movielens, read_atomic
from synthrec.errors import DataError


def test_movielens_table_equals_events_parquet(ml100k_dir):
    ours = load_movielens(str(ml100k_dir))
    reference = pq.read_table(ml100k_dir / "events.parquet").replace_schema_metadata(None)
    assert ours.column_names == reference.column_names
    assert ours.equals(reference.cast(ours.schema))


def test_movielens_read_atomic_types_columns(tmp_path):
    path = tmp_path / "toy.inter"
    path.write_text(
        "user_id:token\titem_id:token\trating:float\ttags:token_seq\n1\t10\t4\ta b\n2\t20\t2.5\t\n"
    )
    table = read_atomic(str(path))
    assert table.column_names == ["user_id", "item_id", "rating", "tags"]
    assert table["user_id"].to_pylist() == ["1", "2"]  # tokens stay strings
    assert table["rating"].to_pylist() == [4.0, 2.5]


def test_movielens_load_atomic_joins_side_files_keeping_order(tmp_path):
    (tmp_path / "toy.inter").write_text("user_id:token\titem_id:token\n2\tb\n1\ta\n2\ta\n")
    (tmp_path / "toy.user").write_text("user_id:token\tage:float\n1\t30\n2\t40\n")
    table = load_atomic(str(tmp_path), name="toy")  # no toy.item: inter + user only
    assert table.to_pydict() == {
        "user_id": ["2", "1", "2"],
        "item_id": ["b", "a", "a"],
        "age": [40.0, 30.0, 40.0],
    }


def test_movielens_missing_inter_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"toy\.inter does not exist"):
        load_atomic(str(tmp_path), name="toy")


def test_movielens_header_without_types_is_rejected(tmp_path):
    (tmp_path / "toy.inter").write_text("user_id,item_id\n1,2\n")
    with pytest.raises(DataError, match="type suffix"):
        read_atomic(str(tmp_path / "toy.inter"))


def test_movielens_needs_movielens_columns(tmp_path):
    (tmp_path / "toy.inter").write_text("user_id:token\titem_id:token\n1\ta\n")
    with pytest.raises(DataError, match="rating"):
        load_movielens(str(tmp_path), name="toy")
