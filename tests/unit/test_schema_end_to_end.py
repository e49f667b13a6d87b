"""One schema from the file to every reader: an ignore role, a behaviour column mapped to
ordered labels at read time, and commands that honour a declared integer user id instead of
re-inferring it (the pipeline through Ray is in tests/integration/test_schema_pipeline.py)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from renamed_log import LABELS, renamed_log, write_renamed

from synthrec.cli import main
from synthrec.data.eventlog import load_event_log, read_schema_file, write_schema
from synthrec.errors import SchemaError
from synthrec.schema import Behaviour, Role, Schema, apply_schema, infer_schema


def _behaviour(**kw) -> Schema:
    labels = {"click": ("pv", "fav"), "cart": ("cart",), "purchase": ("buy",)}
    return Schema([], Behaviour("behavior_type", labels, **kw))


def test_schema_behaviour_sets_ordered_labels_in_place():
    table = pa.table({"u": [1, 2, 3, 4], "behavior_type": ["pv", "cart", "buy", "fav"]})
    out = apply_schema(table, _behaviour())
    assert out.column_names == ["u", *LABELS]  # the labels take the behaviour column's place
    assert out["click"].to_pylist() == [1, 1, 1, 1]  # a cart and a purchase are clicks too
    assert out["cart"].to_pylist() == [0, 1, 1, 0]
    assert out["purchase"].to_pylist() == [0, 0, 1, 0]
    assert apply_schema(out, _behaviour()).equals(out)  # applied twice: unchanged


def test_schema_behaviour_not_cumulative_sets_one_label_per_row():
    table = pa.table({"behavior_type": ["pv", "cart", "buy", "imp"]})
    out = apply_schema(table, _behaviour(cumulative=False, no_label=("imp",)))
    assert out["click"].to_pylist() == [1, 0, 0, 0]
    assert out["cart"].to_pylist() == [0, 1, 0, 0]
    assert out["purchase"].to_pylist() == [0, 0, 1, 0]


def test_schema_behaviour_integer_codes_match_their_text():
    table = pa.table({"behavior_type": pa.array([1, 2, 4], pa.int64())})
    b = Behaviour("behavior_type", {"click": ("1",), "cart": ("2", "3"), "purchase": ("4",)})
    out = apply_schema(table, Schema([], b))
    assert out["purchase"].to_pylist() == [0, 0, 1]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"behavior_type": ["pv", "like", "share"]}), "'like', 'share' are under no"),
        (pa.table({"behavior_type": ["pv", None]}), "1 null behaviour values"),
        (pa.table({"event": ["pv"]}), "neither the behaviour column 'behavior_type'"),
        (pa.table({"behavior_type": ["pv"], "cart": [1]}), "would replace existing column"),
    ],
)
def test_schema_behaviour_bad_log_names_the_problem(table, message):
    with pytest.raises(SchemaError, match=message):
        apply_schema(table, _behaviour())


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("behaviour: {labels: {click: [pv]}}", "behaviour needs a 'column'"),
        ("behaviour: {column: b, labels: {}}", "non-empty 'labels'"),
        ("behaviour: {column: b, labels: {click: [pv], buy: [pv]}}", "under both"),
        ("behaviour: {column: b, labels: {click: [pv]}, order: 1}", "unknown key"),
        ("behaviour: {column: b, labels: {b: [pv]}}\n", None),
    ],
)
def test_schema_file_behaviour_section_is_checked(tmp_path, section, message):
    path = tmp_path / "s.yaml"
    path.write_text(f"columns:\n  u: {{role: user_id}}\n{section}\n")
    if message is None:
        assert read_schema_file(str(path)).behaviour.names == ["b"]
        return
    with pytest.raises(SchemaError, match=message):
        read_schema_file(str(path))


def test_schema_file_rejects_the_behaviour_column_among_columns(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("columns:\n  b: categorical\nbehaviour: {column: b, labels: {click: [pv]}}\n")
    with pytest.raises(SchemaError, match="remove it from columns"):
        read_schema_file(str(path))


def test_schema_file_applied_at_read_time_and_round_trips(tmp_path):
    data, schema_uri = write_renamed(tmp_path, rows=500)
    table, schema = load_event_log(data, schema_uri)
    assert "note" not in table.column_names and "behavior_type" not in table.column_names
    assert schema["uid"].role == Role.USER_ID and table["uid"].type == pa.int64()
    assert [c.name for c in schema.by_role(Role.LABEL)] == list(LABELS)
    assert schema.ignore == ("note",) and schema.behaviour.names == list(LABELS)
    # the written schema (what --write-schema and manifests hold) reads back the same
    write_schema(schema, str(tmp_path / "again.yaml"), source=data)
    again = load_event_log(data, str(tmp_path / "again.yaml"))
    assert again[1] == schema and again[0].equals(table)
    assert Schema.from_dict(json.loads(json.dumps(schema.to_dict()))) == schema


def test_schema_without_a_file_the_integer_uid_is_not_a_user():
    """What the schema file fixes: inference alone takes `uid` for a number."""
    assert infer_schema(renamed_log(200))["uid"].role == Role.NUMERIC


def test_schema_ignore_role_in_overrides_drops_the_column():
    schema = infer_schema(renamed_log(200), {"note": "ignore", "uid": "user_id"})
    assert "note" not in schema.names and schema.ignore == ("note",)
    assert "note" not in apply_schema(renamed_log(200), schema).column_names


def test_schema_recommender_roles_come_from_the_schema():
    """Model F reads the declared roles; without them it finds no user column."""
    from synthrec.config import RecommenderConfig
    from synthrec.recommender.train import prepare_training

    table = renamed_log(1_500)
    schema = infer_schema(table, {"uid": "user_id", "note": "ignore", "behavior_type": "ignore"})
    table = apply_schema(table, schema)
    cfg = RecommenderConfig(epochs=1, dim=16)
    data = prepare_training(table, None, cfg, schema)
    columns = data.encoder.columns
    assert (columns.user, columns.item, columns.time) == ("uid", "sku", "ts")
    with pytest.raises(SchemaError, match="user id"):
        prepare_training(table, None, cfg)


def test_schema_evaluate_cli_takes_schema_uri(tmp_path, capsys):
    """`synthrec evaluate --schema-uri`: the raw logs (behaviour column, note) are read through
    the schema; the report's schema keeps uid a user id and predicts the strongest label."""
    real, schema_uri = write_renamed(tmp_path / "real", rows=600, seed=0)
    synthetic, _ = write_renamed(tmp_path / "syn", rows=600, seed=1)
    config = tmp_path / "fast.yaml"
    config.write_text("privacy_query_rows: 200\nutility_max_train_rows: 500\n")
    out = tmp_path / "report"
    argv = ["evaluate", "--real-uri", real, "--synthetic-uri", synthetic, "--schema-uri",
            schema_uri, "--config", str(config), "--out-uri", str(out)]  # fmt: skip
    code = main(argv)
    assert code == 0, capsys.readouterr().err[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    roles = {n: c["role"] for n, c in metrics["meta"]["schema"]["columns"].items()}
    assert roles["uid"] == "user_id" and roles["purchase"] == "label"
    assert "note" not in roles and "behavior_type" not in roles
    assert metrics["utility"]["label"] == "purchase"


def test_schema_write_schema_reports_the_behaviour_labels(tmp_path, capsys):
    data, schema_uri = write_renamed(tmp_path, rows=300)
    code = main(["data", "validate", "--data-uri", data, "--schema-uri", schema_uri,
                 "--write-schema", str(tmp_path / "out.yaml")])  # fmt: skip
    assert code == 0
    written = read_schema_file(str(tmp_path / "out.yaml"))
    assert written.ignore == ("note",) and written.behaviour.names == list(LABELS)
    assert "purchase" in capsys.readouterr().out


@pytest.mark.slow
def test_schema_python_api_applies_the_schema_and_model_dirs_keep_it(tmp_path):
    """Both generators, fitted from the raw log and a schema file (its Schema, its path),
    drop the ignored column, learn the labels, keep uid an integer user id, and store the
    whole schema (behaviour and ignore included) in their model directories."""
    from synthrec.artifacts import load_synthesizer, save_synthesizer
    from synthrec.config import GanConfig, SequenceConfig
    from synthrec.gan.synthesizer import Synthesizer
    from synthrec.sequences.artifacts import load_sequence_model, save_sequence_model
    from synthrec.sequences.synthesizer import SequenceSynthesizer

    data, schema_uri = write_renamed(tmp_path, rows=800)
    schema = load_event_log(data, schema_uri)[1]
    raw = renamed_log(800)
    rows = Synthesizer().fit(raw, schema, GanConfig(batch_size=200), epochs=1)
    save_synthesizer(rows, str(tmp_path / "gan"))
    tiny = SequenceConfig(d_model=16, n_heads=2, n_layers=1, window=8, batch_size=32,
                          users_epochs=1, adversarial_steps=0, seed=5)  # fmt: skip
    seq = SequenceSynthesizer().fit(raw, schema_uri, tiny, epochs=1)  # the file's path
    save_sequence_model(seq, str(tmp_path / "seq"))
    gan_schema = load_synthesizer(str(tmp_path / "gan")).encoder.schema
    seq_schema = Schema.from_dict(load_sequence_model(str(tmp_path / "seq")).schema)
    for kept in (gan_schema, seq_schema):
        assert kept["uid"].role == Role.USER_ID and "note" not in kept.names
        assert [c.name for c in kept.by_role(Role.LABEL)] == list(LABELS)
    assert seq_schema == schema
    for sample in (rows.sample(50, seed=1), seq.sample_table(users=5, seed=1)):
        assert pa.types.is_integer(sample["uid"].type)
        assert {"note", "behavior_type"}.isdisjoint(sample.column_names)


def test_schema_readme_example_is_the_one_the_tests_run():
    """README's schema file is examples/own_log/schema.yaml, which the tests run end to end."""
    import re
    from pathlib import Path

    import yaml
    from renamed_log import SCHEMA_YAML

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Your own log: the schema file", 1)[1]
    (block,) = re.findall(r"```yaml\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)
    assert yaml.safe_load(block) == yaml.safe_load(SCHEMA_YAML)


def test_schema_evaluate_recommender_reads_the_raw_log_through_the_model_schema(tmp_path, capsys):
    """A model F trained through the schema keeps it; `evaluate-recommender` on the raw log
    (behaviour column, note, integer uid) applies it without being told again."""
    from synthrec.config import RecommenderConfig
    from synthrec.recommender.artifacts import build_recommender, save_recommender
    from synthrec.recommender.train import fit, prepare_training

    data, schema_uri = write_renamed(tmp_path, rows=1_500)
    table, schema = load_event_log(data, schema_uri)
    cfg = RecommenderConfig(epochs=1, dim=16)
    prepared = prepare_training(table, None, cfg, schema)
    model = fit(prepared.encoder, cfg, prepared.train).model
    facts = {"schema": schema.to_dict()}  # what run_train_recommender records
    rec = build_recommender(
        model, prepared.encoder, cfg, prepared.known, prepared.popularity, facts
    )
    save_recommender(rec, str(tmp_path / "f"))
    out = tmp_path / "report"
    argv = ["evaluate-recommender", "--model-uri", str(tmp_path / "f"), "--real-uri", data,
            "--out-dir", str(out), "--no-baselines"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err[-2000:]
    report = json.loads((out / "metrics.json").read_text())
    assert report["ranking"]["F"]["overall"]["ndcg@10"] >= 0
