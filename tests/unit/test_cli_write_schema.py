"""`synthrec data validate --write-schema`: the schema in effect, as the file --schema-uri reads."""

import re

import yaml

from synthrec.cli import main
from synthrec.data.eventlog import load_event_log
from synthrec.schema import Role

LOG = (
    "cust,sku,colour,price,bought,when\n"
    "c1,10,red,1.5,0,2024-01-01T00:00:00\n"
    "c2,11,blue,,1,2024-01-02T00:00:00\n"
    "c1,12,red,3.0,1,2024-01-03T00:00:00\n"
)


def test_cli_write_schema_round_trips_through_schema_uri(tmp_path, capsys):
    data, written = tmp_path / "log.csv", tmp_path / "schema.yaml"
    data.write_text(LOG)
    argv = ["data", "validate", "--data-uri", str(data), "--write-schema", str(written)]
    assert main(argv) == 0
    assert f"wrote the schema to {written}" in capsys.readouterr().out
    _, inferred = load_event_log(str(data))
    _, read_back = load_event_log(str(data), str(written))
    assert read_back == inferred  # every column's role, kind and nullability
    assert yaml.safe_load(written.read_text())["columns"]["price"]["nullable"] is True

    # the file is a starting point: an edited role is what the next command uses
    written.write_text(
        written.read_text().replace("cust: {role: categorical", "cust: {role: user_id")
    )
    _, edited = load_event_log(str(data), str(written))
    assert edited["cust"].role == Role.USER_ID
    assert main(["data", "validate", "--data-uri", str(data), "--schema-uri", str(written)]) == 0
    out = capsys.readouterr().out
    assert "schema (from" in out and re.search(r"cust\s+│\s+user_id", out)
