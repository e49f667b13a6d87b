"""The generator interface without Ray: users nested with their events, the model kind read
from a directory's header, and the count a generation config asks for."""

import pyarrow as pa
import pytest

from synthrec.config import (
    AUTO_BLOCKS,
    USERS_PER_BLOCK_MAX,
    GanConfig,
    GenerateConfig,
    validate_config,
)
from synthrec.errors import ConfigError, ModelError
from synthrec.generators import load_generator, nest_users
from synthrec.model_dir import model_files, publish_model_dir, read_kind


def test_generators_nest_users_keeps_each_users_events_in_order():
    flat = pa.table(
        {
            "user_id": [7, 7, 3, 7, 3],
            "age": [30, 30, 41, 30, 41],
            "item_id": [1, 2, 3, 4, 5],
            "t": [10, 11, 12, 13, 14],
        }
    )
    nested = nest_users(flat, ["user_id", "age"])
    assert nested.to_pylist() == [
        {
            "user_id": 7,
            "age": 30,
            "events": [{"item_id": 1, "t": 10}, {"item_id": 2, "t": 11}, {"item_id": 4, "t": 13}],
        },
        {"user_id": 3, "age": 41, "events": [{"item_id": 3, "t": 12}, {"item_id": 5, "t": 14}]},
    ]
    assert nest_users(flat.slice(0, 0), ["user_id", "age"]).num_rows == 0


def test_generators_read_kind_and_refuse_a_model_that_is_not_a_generator(tmp_path):
    files = model_files("recommender", {}, GanConfig(), {}, {}, {"x.bin": b"1"})
    publish_model_dir(str(tmp_path / "rec"), files)
    assert read_kind(str(tmp_path / "rec")) == "recommender"
    with pytest.raises(ModelError, match="'recommender' model, not a generator"):
        load_generator(str(tmp_path / "rec"))


def test_generators_config_asks_for_rows_or_users_never_both():
    users = GenerateConfig(model_uri="m", out_uri="o", users=10_000, users_per_file=4_000)
    assert (users.unit, users.count, users.per_file) == ("users", 10_000, 4_000)
    rows = GenerateConfig(model_uri="m", out_uri="o", rows=5_000)
    assert (rows.unit, rows.count, rows.per_file) == ("rows", 5_000, 50_000)
    for counts in ({}, {"rows": 5, "users": 5}):
        with pytest.raises(ConfigError, match="exactly one of rows .* and users"):
            validate_config(GenerateConfig, {"model_uri": "m", "out_uri": "o", **counts})
    with pytest.raises(ConfigError, match="users_per_file"):
        validate_config(
            GenerateConfig, {"model_uri": "m", "out_uri": "o", "users": 5, "users_per_file": 5_000}
        )


def test_generators_block_size_comes_from_the_count_not_the_actors():
    """Enough blocks to keep many actors busy (a 10^6-row run was 4 blocks of 250,000, so 12
    actors had 4 blocks between them), never dependent on the actor count (blocks are the unit
    of the seeded output), within the floor (a block's fixed cost) and the cap."""

    def per_file(concurrency: int, **count) -> int:
        return GenerateConfig(model_uri="m", out_uri="o", concurrency=concurrency, **count).per_file

    assert per_file(1, rows=10**6) == per_file(12, rows=10**6) == 50_000  # 20 blocks
    assert per_file(2, rows=10**8) == 250_000  # 400 blocks: the cap
    assert per_file(2, rows=3_000) == 50_000  # one block: the floor
    assert per_file(4, rows=3 * 10**7) == -(-3 * 10**7 // AUTO_BLOCKS)
    assert per_file(1, users=1_000_000) == per_file(8, users=1_000_000) == 1_024
    assert per_file(8, users=200_000) == -(-200_000 // AUTO_BLOCKS)
    assert per_file(8, users=3_000) == 256  # the floor: a batch the sequence model samples well
    explicit = GenerateConfig(model_uri="m", out_uri="o", rows=10**6, rows_per_file=1_000)
    assert explicit.per_file == 1_000


def test_generators_users_per_block_bound_is_the_sequence_models_id_block():
    """Ids are numbered block_index * BLOCK_USERS + j: a larger block would reuse ids."""
    from synthrec.sequences.synthesizer import BLOCK_USERS

    assert USERS_PER_BLOCK_MAX == BLOCK_USERS
