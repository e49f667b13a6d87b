"""Ray Data generation from a sequence model: exact users with all their events, whole users
per file, the same bytes for any number of actors, resume, and flags that fit the model kind.

One tiny sequence model for the module (fitted in-process on a Taobao-shaped log in ~10 s).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import synthrec
from synthrec import storage
from synthrec.config import GenerateConfig, SequenceConfig
from synthrec.distributed.generate import GenerateSummary, content_key, part_name, run_generate
from synthrec.errors import ConfigError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seq_model_uri(tmp_path_factory) -> str:
    from logshapes import taobao_log

    from synthrec.sequences import SequenceSynthesizer
    from synthrec.sequences.artifacts import save_sequence_model

    cfg = SequenceConfig(
        d_model=16, n_heads=2, n_layers=1, window=8, epochs=2, users_epochs=2, adversarial_steps=0
    )
    synth = SequenceSynthesizer().fit(taobao_log(1500), cfg=cfg)
    uri = str(tmp_path_factory.mktemp("models") / "sequence")
    save_sequence_model(synth, uri)
    return uri


@pytest.fixture(scope="module")
def row_model_uri(tmp_path_factory) -> str:
    from logshapes import taobao_log

    from synthrec.artifacts import save_synthesizer
    from synthrec.config import GanConfig
    from synthrec.gan.synthesizer import Synthesizer

    cfg = GanConfig(embedding_dim=8, generator_dims=[16], critic_dims=[16], batch_size=100, pac=10)
    synth = Synthesizer().fit(taobao_log(500), cfg=cfg, epochs=1)
    uri = str(tmp_path_factory.mktemp("models") / "rows")
    save_synthesizer(synth, uri)
    return uri


def _gen(model_uri: str, out: str, **kw) -> GenerateConfig:
    return GenerateConfig(
        **{
            "model_uri": model_uri,
            "out_uri": out,
            "users": 250,
            "users_per_file": 60,
            "seed": 5,
            "concurrency": 1,
            "cpus_per_actor": 0.5,
            **kw,
        }
    )


@pytest.fixture(scope="module")
def local_run(ray_local, seq_model_uri, tmp_path_factory) -> tuple[str, GenerateSummary]:
    """250 users in files of 60 by one actor, to a local folder (the reference bytes)."""
    out = str(tmp_path_factory.mktemp("generated") / "one")
    return out, run_generate(_gen(seq_model_uri, out, concurrency=1))


def test_generate_users_exact_whole_users_and_same_bytes_for_one_and_two_actors(
    ray_local, seq_model_uri, s3_bucket, local_run
):
    s3_out = f"s3://{s3_bucket}/users"
    two = run_generate(_gen(seq_model_uri, s3_out, concurrency=2))
    one_out, one = local_run
    assert one.users == two.users == 250 and one.files == two.files == 5
    m1, m2 = storage.read_manifest(one_out), storage.read_manifest(s3_out)
    assert [e.sha256 for e in m1.files] == [e.sha256 for e in m2.files], (
        "bytes must not depend on parallelism"
    )
    assert m2.metadata["unit"] == "users" and m2.metadata["users"] == 250
    assert m2.num_rows == two.rows == sum(e.rows for e in m2.files) > 250

    per_file = []
    for entry in m2.files:
        data = storage.read_bytes(storage.join(s3_out, entry.path))
        per_file.append(set(pq.read_table(pa.BufferReader(data)).column("user_id").to_pylist()))
    assert [len(users) for users in per_file] == [60, 60, 60, 60, 10]
    assert len(set().union(*per_file)) == 250, "a user's events never straddle two files"

    table = synthrec.read_synthetic(s3_out)
    assert table.num_rows == m2.num_rows
    assert table.column_names == ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]
    assert str(table.schema.field("timestamp").type) == "int64"
    real_ids = set(range(100_000, 100_100))  # taobao_log(1500): ids 100000..100099
    assert not real_ids & set(table.column("user_id").to_pylist()), "fresh pseudonymous ids"
    # item -> category holds exactly: the catalog gives the attribute
    pairs = table.group_by("item_id").aggregate([("category_id", "count_distinct")])
    assert pc.max(pairs.column("category_id_count_distinct")).as_py() == 1


def test_generate_users_conditions_and_rebalance_pass_through(ray_local, seq_model_uri, tmp_path):
    out = str(tmp_path / "cond")
    run_generate(
        _gen(
            seq_model_uri,
            out,
            users=70,
            conditions={"behavior_type": "buy"},
            rebalance={"category_id": "uniform"},
        )
    )
    table = storage.read_table(out)
    assert len(pc.unique(table.column("user_id"))) == 70
    assert set(table.column("behavior_type").to_pylist()) == {"buy"}


def test_generate_users_resume_reuses_whole_blocks_only(
    ray_local, seq_model_uri, local_run, tmp_path
):
    """A run that died before publishing left parts 0-2, one of them short of users: the
    re-run keeps the whole ones, rewrites the rest, and publishes the clean run's bytes."""
    clean_out, clean = local_run
    out = str(tmp_path / "resumed")
    cfg = _gen(seq_model_uri, out)
    run_id = content_key(cfg, storage.read_manifest(seq_model_uri))
    for block in (0, 1):
        data = storage.read_bytes(storage.join(clean_out, part_name(run_id, block)))
        storage.write_bytes(storage.join(out, part_name(run_id, block)), data)
    short = storage.read_table(clean_out).slice(0, 5)  # a user or two, not the block's 60
    storage.write_bytes(storage.join(out, part_name(run_id, 2)), storage.parquet_bytes(short))
    assert storage.read_manifest(out) is None

    resumed = run_generate(cfg)
    assert resumed.reused_blocks == 2 and resumed.users == clean.users == 250
    got, want = storage.read_manifest(out), storage.read_manifest(clean_out)
    assert [e.sha256 for e in got.files] == [e.sha256 for e in want.files]


@pytest.mark.parametrize(
    "model, change, match",
    [
        ("sequence", {"users": None, "rows": 5_000}, "sequence model.*--users N"),
        ("rows", {}, "row model.*--rows N"),
        ("sequence", {"conditions": {"colour": "red"}}, "cannot condition on 'colour'"),
        ("sequence", {"rebalance": {"category_id": {"7": 1.0}}}, r"unknown value\(s\) \[7\]"),
    ],
)
def test_generate_users_bad_input_fails_before_work_and_publishes_nothing(
    seq_model_uri, row_model_uri, tmp_path, model, change, match
):
    uri = seq_model_uri if model == "sequence" else row_model_uri
    cfg = _gen(uri, str(tmp_path / "out")).model_copy(update=change)
    with pytest.raises(ConfigError, match=match):
        run_generate(cfg)
    assert storage.read_manifest(cfg.out_uri) is None
    assert not (tmp_path / "out").exists()


def test_generate_cli_users_and_the_flag_that_does_not_fit_the_model(
    ray_local, seq_model_uri, row_model_uri, tmp_path, capsys
):
    from synthrec.cli import main

    out = str(tmp_path / "cli")
    argv = ["generate", "--model-uri", seq_model_uri, "--out-uri", out, "--users", "30"]
    main([*argv, "--users-per-file", "20", "--seed", "2", "--concurrency", "1"])
    assert "users" in capsys.readouterr().out
    assert len(pc.unique(storage.read_table(out).column("user_id"))) == 30

    def error(*args: str) -> str:
        with pytest.raises(SystemExit) as exc:
            main(["generate", "--out-uri", str(tmp_path / "o"), *args])
        assert exc.value.code != 0
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert "Traceback" not in "\n".join(lines), lines
        return " ".join(lines)

    users_on_rows = error("--model-uri", row_model_uri, "--users", "10")
    assert "row model" in users_on_rows and "--rows N" in users_on_rows
    rows_on_users = error("--model-uri", seq_model_uri, "--rows", "1000")
    assert "sequence model" in rows_on_users and "--users N" in rows_on_users
