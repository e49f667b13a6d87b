"""`Encoder`: a fitted, reversible Arrow table <-> float32 matrix transform for the GAN.

Each schema column gets a codec (codecs.py, ids.py) that owns one or more spans of the
matrix: an (n, output_dim) float32 array whose spans are one-hot blocks or scalar blocks.
The encoder only lays the spans side by side, fits the codecs in the right order (one-hot
and numeric columns first, then ids, whose profiles are built from the others) and runs
the two decoding passes of the `Codec` protocol. Settings come from `EncoderConfig`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.config import EncoderConfig
from synthrec.encoding.arrow import plain
from synthrec.encoding.codecs import (
    Codec,
    CodecKind,
    DecodeRows,
    DiscreteCodec,
    FitData,
    NumericCodec,
    Span,
)
from synthrec.encoding.ids import IdCodec, attach_dependents, attach_labels
from synthrec.encoding.rows import CompactRows
from synthrec.errors import DataError, ModelError
from synthrec.privacy.statistics import NoisyHistogram
from synthrec.schema import ID_ROLES, ColumnSpec, Kind, Role, Schema

ENCODER_FORMAT = 2  # 2: id draw weights live with the generator, not in the encoder
CODECS: dict[str, type[Codec]] = {c.kind: c for c in (NumericCodec, DiscreteCodec, IdCodec)}
COMPACT_CHUNK_ROWS = 65_536  # rows per codec block when encoding compactly (bounds memory)


@dataclass(frozen=True)
class PrivateFit:
    """What the DP fit of the encoder needs: the columns released as noisy histograms, the
    mechanism, and a secret random generator (never one seeded from the config)."""

    columns: frozenset[str]
    histogram: NoisyHistogram | None
    rng: np.random.Generator
    grid: dict[str, tuple[float, float]]  # numeric columns on a fixed grid over public bounds
    domains: dict[str, list[str]] = field(default_factory=dict)  # columns' public value lists


class Encoder:
    """A fitted, reversible table <-> matrix transform. Build with `Encoder.fit`."""

    def __init__(self, schema: Schema, codecs: list[Codec], out_schema: pa.Schema, num_rows: int):
        self.schema, self.codecs = schema, codecs
        self.out_schema, self.num_rows = out_schema, num_rows
        self.spans: list[Span] = []
        self.col_spans: list[list[int]] = []  # per codec, indices into self.spans
        start = 0
        for codec in codecs:
            idx = []
            for spec in codec.span_specs():
                idx.append(len(self.spans))
                self.spans.append(Span(codec.name, spec.kind, start, spec.size, spec.cond))
                start += spec.size
            self.col_spans.append(idx)
        self.output_dim = start
        self.span_counts = [c for codec in codecs for c in codec.counts()]

    # -- fit -----------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        table: pa.Table,
        schema: Schema,
        cfg: EncoderConfig,
        seed: int = 0,
        private: PrivateFit | None = None,
    ) -> Encoder:
        """Fit on `table` (category sets and counts from all rows; modes and id profiles on
        bounded samples of cfg.mode_fit_rows / cfg.id_profile_rows rows drawn from `seed`).

        `private`: the DP fit of a privacy run. Its columns are one-hot with noisy counts
        (DiscreteCodec.fit_private, whatever their cardinality), its grid columns numeric on
        a fixed grid over public bounds (NumericCodec.fit_grid); the others are fitted as
        usual, which synthrec.privacy's check allows only for columns declared public."""
        if table.num_rows == 0:
            raise DataError("cannot fit the encoder on an empty table (0 rows)")
        rng = np.random.default_rng(seed)
        mode_sample = table.take(_sample_rows(table.num_rows, cfg.mode_fit_rows, rng))
        codecs: dict[str, Codec] = {}
        for spec in schema.columns:
            col = table.column(spec.name)
            if private is not None and spec.name in private.grid:
                bounds = private.grid[spec.name]
                codecs[spec.name] = NumericCodec.fit_grid(spec, bounds, cfg.num_modes)
            elif private is not None and spec.name in private.columns:
                data = FitData(spec, col, col)
                domain = private.domains.get(spec.name)
                codecs[spec.name] = DiscreteCodec.fit_private(
                    data, private.histogram, private.rng, domain
                )
            elif not _is_id(spec, col, cfg):
                data = FitData(spec, col, mode_sample.column(spec.name))
                codecs[spec.name] = _small_codec(spec, col, cfg).fit(data, cfg, seed)
        id_specs = [s for s in schema.columns if s.name not in codecs]
        if id_specs:
            small = [codecs[n] for n in schema.names if n in codecs]
            profile_rows = table.take(_sample_rows(table.num_rows, cfg.id_profile_rows, rng))
            codecs |= _fit_ids(id_specs, table, profile_rows, small, schema, cfg, seed)
        out_schema = pa.schema(
            [pa.field(n, _output_type(codecs[n], table.schema.field(n).type)) for n in schema.names]
        )
        return cls(schema, [codecs[n] for n in schema.names], out_schema, table.num_rows)

    # -- transform -----------------------------------------------------------------------
    def transform(self, table: pa.Table, seed: int = 0) -> np.ndarray:
        """(n, output_dim) float32 matrix. `seed` drives the per-row mode draws."""
        self._check_columns(table)
        rng = np.random.default_rng(seed)
        out = np.empty((table.num_rows, self.output_dim), np.float32)
        for codec, idx in zip(self.codecs, self.col_spans):
            first, last = self.spans[idx[0]], self.spans[idx[-1]]
            out[:, first.start : last.stop] = codec.transform(table.column(codec.name), rng)
        return out

    def transform_compact(
        self, table: pa.Table, seed: int = 0, chunk_rows: int = COMPACT_CHUNK_ROWS
    ) -> CompactRows:
        """The rows of `transform` in compact form (encoding/rows.py), never holding more than
        `chunk_rows` dense rows of one codec: memory linear in rows and independent of the
        catalog size. Each codec draws its modes from `seed` over its chunks in row order."""
        self._check_columns(table)
        rng = np.random.default_rng(seed)
        n = table.num_rows
        onehot = [i for i, s in enumerate(self.spans) if s.kind == "onehot"]
        codes = np.empty((n, len(onehot)), np.int32)
        _, scalar_cols = CompactRows.layout(self.spans)
        scalars = np.empty((n, len(scalar_cols)), np.float32)
        code_at, scalar_at = 0, 0  # next free column of codes / scalars
        for codec, idx in zip(self.codecs, self.col_spans):
            spans = [self.spans[i] for i in idx]
            offset = spans[0].start
            col = table.column(codec.name)
            for lo in range(0, n, chunk_rows):
                block = codec.transform(col.slice(lo, chunk_rows), rng)  # (m, codec width)
                hi, c, k = lo + len(block), code_at, scalar_at
                for span in spans:
                    part = block[:, span.start - offset : span.stop - offset]
                    if span.kind == "onehot":
                        codes[lo:hi, c] = np.argmax(part, axis=1)
                        c += 1
                    else:
                        scalars[lo:hi, k : k + span.size] = part
                        k += span.size
            code_at += sum(s.kind == "onehot" for s in spans)
            scalar_at += sum(s.size for s in spans if s.kind != "onehot")
        return CompactRows(codes, scalars, self.output_dim)

    def _check_columns(self, table: pa.Table) -> None:
        missing = [n for n in self.schema.names if n not in table.column_names]
        if missing:
            raise DataError(
                f"table lacks column(s) {', '.join(missing)} that the encoder was fitted on"
            )

    def decode(
        self,
        parts: list[np.ndarray],
        keep: set[str] | frozenset[str] = frozenset(),
        rng: np.random.Generator | None = None,
        id_weights: dict[str, np.ndarray] | None = None,
        device: Any = None,
    ) -> pa.Table:
        """Table from per-span parts: (n, size) floats for scalar spans, (n,) ints for one-hot.

        Ids are decoded consistently with the columns they determine; columns in `keep`
        (conditions) are never changed. Without `rng` each id is the nearest to its vector;
        with it, a draw around it. `id_weights`: id column -> per-id log draw weights (C,)
        (the generator's calibration; none: all 0). `device`: a torch device to search ids
        on (the generator's GPU); None: numpy on the CPU."""
        own = {c.name: [parts[i] for i in idx] for c, idx in zip(self.codecs, self.col_spans)}
        rows = DecodeRows(own, frozenset(keep), rng, dict(id_weights or {}), device=device)
        for codec in self.codecs:
            codec.resolve(rows)
        arrays = [codec.decode(rows, f.type) for codec, f in zip(self.codecs, self.out_schema)]
        return pa.Table.from_arrays(arrays, schema=self.out_schema)

    def inverse_transform(self, matrix: np.ndarray) -> pa.Table:
        """Table from an encoded matrix (argmax for one-hot spans)."""
        parts = [
            matrix[:, s.start : s.stop]
            if s.kind == "scalar"
            else np.argmax(matrix[:, s.start : s.stop], axis=1)
            for s in self.spans
        ]
        return self.decode(parts)

    # -- columns and the conditional vector ----------------------------------------------
    @property
    def cond_spans(self) -> list[int]:
        """Indices (into self.spans) of the one-hot spans that make up the conditional vector."""
        return [i for i, s in enumerate(self.spans) if s.cond]

    @property
    def cond_dim(self) -> int:
        return sum(self.spans[i].size for i in self.cond_spans)

    def codec(self, name: str) -> Codec:
        for codec in self.codecs:
            if codec.name == name:
                return codec
        raise KeyError(name)

    def codecs_of(self, kind: CodecKind) -> list[Codec]:
        """The codecs of one kind, in column order."""
        return [c for c in self.codecs if c.kind == kind]

    def privacy(self) -> dict[str, Any]:
        """What the output withholds: the id policy of each user-id column and, per text
        column, the minimum count and how many values (and training rows) are withheld."""
        users = {
            c.name: "pseudonymize" if c.meta.get("pseudonymized") else "keep"
            for c in self.codecs
            if self.schema[c.name].role == Role.USER_ID
        }
        keys = ("min_count", "withheld_values", "withheld_rows")
        text = {
            c.name: {k: c.meta.get(k, 1 if k == "min_count" else 0) for k in keys}
            for c in self.codecs
            if self.schema[c.name].role == Role.TEXT
        }
        return {"user_id_policy": users, "text_min_count": text}

    # -- state ---------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-able metadata and named arrays; `Encoder.from_state` rebuilds it."""
        arrays: dict[str, np.ndarray] = {}
        for codec in self.codecs:
            arrays.update(codec.arrays())
        meta = {
            "format": ENCODER_FORMAT,
            "num_rows": self.num_rows,
            "schema": self.schema.to_dict(),
            "arrow_schema": base64.b64encode(self.out_schema.serialize().to_pybytes()).decode(),
            "columns": [{"name": c.name, **c.meta} for c in self.codecs],
        }
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Encoder:
        if meta.get("format") != ENCODER_FORMAT:
            raise ModelError(
                f"encoder format {meta.get('format')!r} is not supported (expected "
                f"{ENCODER_FORMAT}; format 1 kept id draw weights in the encoder); retrain "
                f"the model with this synthrec version"
            )
        try:
            out_schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(meta["arrow_schema"])))
            codecs = []
            for col in meta["columns"]:
                cmeta = {k: v for k, v in col.items() if k != "name"}
                codecs.append(CODECS[cmeta["codec"]](col["name"], cmeta, arrays))
        except (KeyError, ValueError) as err:
            raise ModelError(
                f"encoder state is incomplete or corrupt ({err!r}); re-save the model"
            ) from None
        return cls(Schema.from_dict(meta["schema"]), codecs, out_schema, int(meta["num_rows"]))


def _output_type(codec: Codec, dtype: pa.DataType) -> pa.DataType:
    """The column's type in decoded tables: its input type, but integer user ids under
    pseudonymization widen to int64 (pseudonyms are 63-bit)."""
    if codec.meta.get("pseudonymized") and pa.types.is_integer(dtype):
        return pa.int64()
    return dtype


def _sample_rows(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= k else np.sort(rng.choice(n, size=k, replace=False))


def _is_id(spec: ColumnSpec, col: pa.ChunkedArray, cfg: EncoderConfig) -> bool:
    if spec.role in ID_ROLES or spec.role == Role.TEXT:
        return True
    if spec.role in (Role.CATEGORICAL, Role.LABEL):
        return pc.count_distinct(plain(col)).as_py() > cfg.max_onehot_cardinality
    return False


def _small_codec(spec: ColumnSpec, col: pa.ChunkedArray, cfg: EncoderConfig) -> type[Codec]:
    """The codec class of a column that is not an id: one-hot or mode-normalized."""
    if spec.role in (Role.CATEGORICAL, Role.LABEL):
        return DiscreteCodec
    if spec.role == Role.NUMERIC and spec.kind in (Kind.INT, Kind.BOOL):
        if pc.count_distinct(col.drop_null()).as_py() <= cfg.max_discrete_int_levels:
            return DiscreteCodec
    if spec.role in (Role.NUMERIC, Role.DATETIME):
        return NumericCodec
    raise DataError(f"column '{spec.name}': role {spec.role.value} cannot be encoded")


def _fit_ids(
    specs: list[ColumnSpec],
    table: pa.Table,
    sample: pa.Table,
    small: list[Codec],
    schema: Schema,
    cfg: EncoderConfig,
    seed: int,
) -> dict[str, Codec]:
    """Id codecs, profiled on `sample` (the other columns encoded there), each with the
    columns it determines and the label tables its draws use."""
    prng = np.random.default_rng(seed + 1)
    profile = (
        np.concatenate([c.transform(sample.column(c.name), prng) for c in small], axis=1)
        if small
        else np.zeros((sample.num_rows, 0), np.float32)
    ).astype(np.float64)  # (m, F)
    labels = [c for c in small if schema[c.name].role == Role.LABEL]
    out, claimed = {}, set()
    for spec in specs:
        data = FitData(spec, table.column(spec.name), sample.column(spec.name), profile)
        codec = IdCodec.fit(data, cfg, seed)
        claimed |= attach_dependents(codec, sample, small, claimed)
        attach_labels(codec, sample, labels)
        out[spec.name] = codec
    return out
