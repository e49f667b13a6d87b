"""Arrow tables and recommendation lists to HTTP bodies (json | Arrow IPC stream | csv).

pydantic_core's Rust JSON encoder writes the bodies directly, so responses skip a second
validation pass through the response models (those document the shapes in OpenAPI).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
from pydantic_core import to_json

from synthrec.serving.schemas import OutputFormat

ARROW_STREAM = "application/vnd.apache.arrow.stream"
MEDIA_TYPES = {
    OutputFormat.json: "application/json",
    OutputFormat.arrow: ARROW_STREAM,
    OutputFormat.csv: "text/csv; charset=utf-8",
}


def encode_table(
    table: pa.Table, fmt: OutputFormat, model_version: str, key: str = "rows"
) -> bytes:
    """Body for /v1/synthetic in the asked format; JSON lists the table's rows under `key`
    ("users" for a nested users table)."""
    if fmt is OutputFormat.json:
        return to_json({key: table.to_pylist(), "model_version": model_version})
    sink = pa.BufferOutputStream()
    if fmt is OutputFormat.arrow:
        schema = table.schema.with_metadata(
            {**(table.schema.metadata or {}), b"model_version": model_version.encode()}
        )
        with pa.ipc.new_stream(sink, schema) as writer:
            writer.write_table(table.replace_schema_metadata(schema.metadata))
    else:
        pacsv.write_csv(table, sink)
    return sink.getvalue().to_pybytes()


COLD_START = b'"cold_start":true'  # as to_json writes it; never inside a JSON string


def is_cold_start(body: bytes) -> bool:
    """Whether a recommendation or ranking body answers a user the model does not know."""
    return COLD_START in body


def encode_recommendations(
    item_ids: Sequence[Any], scores: Sequence[float], cold_start: bool, model_version: str
) -> bytes:
    """Body for /v1/recommendations: items best first, with float scores."""
    items = [{"item_id": str(i), "score": float(s)} for i, s in zip(item_ids, scores)]
    return to_json({"items": items, "cold_start": bool(cold_start), "model_version": model_version})
