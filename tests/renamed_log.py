"""The example log of examples/own_log: an integer `uid`, an integer `sku`, epoch seconds in
`ts`, a `behavior_type` column (pv / fav / cart / buy) and a free-text `note` to ignore, with
the schema file that declares them. Shared by the unit and integration tests of the schema
carried end to end, so the tests run exactly what the example ships.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

OWN_LOG = Path(__file__).resolve().parents[1] / "examples" / "own_log"
SCHEMA_YAML = (OWN_LOG / "schema.yaml").read_text()
LABELS = ("click", "cart", "purchase")

_spec = importlib.util.spec_from_file_location("own_log_make_log", OWN_LOG / "make_log.py")
_make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_make)


def renamed_log(rows: int = 3_000, seed: int = 0) -> pa.Table:
    return _make.make_log(rows, seed)


def write_renamed(folder: Path, rows: int = 3_000, seed: int = 0) -> tuple[str, str]:
    """(log CSV path, schema YAML path) written under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    data, schema = folder / "log.csv", folder / "schema.yaml"
    pacsv.write_csv(renamed_log(rows, seed), data)
    schema.write_text(SCHEMA_YAML)
    return str(data), str(schema)
