"""examples/own_log through the CLI: a log with its own column names (integer `uid`, `sku`,
`ts`), a `behavior_type` column (pv / fav / cart / buy) and a `note` to ignore, read through
one schema file: every stage's manifest and output keeps the declared roles, none re-infers
them."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from renamed_log import LABELS, OWN_LOG, write_renamed

from synthrec import storage
from synthrec.model_dir import HEADER
from synthrec.schema import Role, Schema

pytestmark = pytest.mark.integration


def _roles(schema: dict) -> dict[str, str]:
    return {name: spec["role"] for name, spec in schema["columns"].items()}


@pytest.mark.slow
def test_schema_pipeline_keeps_declared_roles_in_every_stage(ray_local, tmp_path, capsys):
    """The commands of examples/own_log/run.sh, in process."""
    from synthrec.cli import main
    from synthrec.recommender.artifacts import load_recommender

    data, schema_uri = write_renamed(tmp_path / "in", rows=3_000)
    assert main(["data", "validate", "--data-uri", data, "--schema-uri", schema_uri]) == 0
    root = tmp_path / "pipe"
    code = main(["pipeline", "--config", str(OWN_LOG / "pipeline.yaml"), "--data-uri", data,
                 "--schema-uri", schema_uri, "--out-uri", str(root)])  # fmt: skip
    assert code == 0, capsys.readouterr().err[-3000:]
    records = {
        name: json.loads((root / "_stages" / f"{name}.json").read_text())["outputs"]
        for name in ("train_gan", "generate", "evaluate_recommender")
    }
    head = {
        "train_gan.model": records["train_gan"]["model"],
        "generate.synthetic": records["generate"]["synthetic"],
        "evaluate_recommender.ndcg@10": records["evaluate_recommender"]["ndcg@10"],
    }

    # data: both splits carry the applied schema; the note and the behaviour column are gone
    for split in ("gan_train", "holdout"):
        uri = str(root / "data" / split)
        schema = storage.read_manifest(uri).metadata["schema"]
        assert _roles(schema)["uid"] == "user_id" and "note" not in _roles(schema)
        assert schema["behaviour"]["column"] == "behavior_type"
        table = storage.read_table(uri)
        assert table["uid"].type == pa.int64()
        assert {"note", "behavior_type"}.isdisjoint(table.column_names)
        assert set(LABELS) <= set(table.column_names)

    # the generator's model directory: the declared roles
    header = json.loads(storage.read_files(head["train_gan.model"], [HEADER])[HEADER])
    assert _roles(header["schema"])["uid"] == "user_id"
    assert _roles(header["schema"])["ts"] == "datetime"

    # the synthetic dataset: schema in its manifest, user ids still integers, labels 0/1
    synthetic_uri = head["generate.synthetic"]
    carried = Schema.from_dict(storage.read_manifest(synthetic_uri).metadata["schema"])
    assert carried["uid"].role == Role.USER_ID and carried["sku"].role == Role.ITEM_ID
    synthetic = storage.read_table(synthetic_uri)
    assert pa.types.is_integer(synthetic["uid"].type) and "note" not in synthetic.column_names
    assert set(synthetic["purchase"].to_pylist()) <= {0, 1}

    # the synthetic report judged the strongest behaviour label, with the declared roles
    metrics = json.loads(storage.read_bytes(str(root / "reports/synthetic/metrics.json")))
    assert _roles(metrics["meta"]["schema"])["uid"] == "user_id"
    assert metrics["utility"]["label"] == "purchase"

    # model F read uid as its user and keeps the schema it was trained with
    rec = load_recommender(head["train_gan.model"].replace("models/gan", "models/recommender"))
    c = rec.encoder.columns
    assert (c.user, c.item, c.time) == ("uid", "sku", "ts")
    assert _roles(rec.training["schema"])["uid"] == "user_id"
    assert head["evaluate_recommender.ndcg@10"] >= 0
