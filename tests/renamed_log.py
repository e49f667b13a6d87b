"""A Taobao-shaped log whose columns do not carry synthrec's names: an integer `uid`, an
integer `sku`, epoch seconds in `ts`, a `behavior_type` column (pv / fav / cart / buy) and a
free-text `note` to ignore, with the schema file that declares them. Shared by the unit and
integration tests of the schema carried end to end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from logshapes import taobao_log

SCHEMA_YAML = """\
columns:
  uid: {role: user_id}
  sku: {role: item_id}
  category_id: {role: categorical}
  ts: {role: datetime}
  note: {role: ignore}
behaviour:
  column: behavior_type
  labels:            # weakest first; a purchase is also a cart and a click
    click: [pv, fav]
    cart: [cart]
    purchase: [buy]
"""
LABELS = ("click", "cart", "purchase")


def renamed_log(rows: int = 3_000, seed: int = 0) -> pa.Table:
    log = taobao_log(rows, seed)
    notes = np.array(["gift", "sale", "repeat", "new"])[np.arange(rows) % 4]
    return pa.table(
        {
            "uid": log["user_id"],
            "sku": log["item_id"],
            "category_id": log["category_id"],
            "behavior_type": log["behavior_type"],
            "ts": log["timestamp"],
            "note": pa.array(notes),
        }
    )


def write_renamed(folder: Path, rows: int = 3_000, seed: int = 0) -> tuple[str, str]:
    """(log CSV path, schema YAML path) written under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    data, schema = folder / "log.csv", folder / "schema.yaml"
    pacsv.write_csv(renamed_log(rows, seed), data)
    schema.write_text(SCHEMA_YAML)
    return str(data), str(schema)
