"""Encoded rows kept compact: the hot index of each one-hot span, and the scalar spans.

The encoder's matrix (n, output_dim) is mostly one-hot blocks: an id column alone owns
~sqrt(C) cluster columns (1,000 at a million-item catalog), so 10^7 rows of it would be
~44 GB of float32 zeros. Every one-hot span holds exactly one 1 per row (a category, a
mode or the null slot, a cluster), so a row is fully given by S small integers and the
scalar columns: (n, S) int32 + (n, Ds) float32, about 60x smaller at that scale. Batches
are expanded back to the dense layout when they are used (`gan.sampler.EncodedShard`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthrec.encoding.codecs import Span


@dataclass
class CompactRows:
    """n encoded rows: `codes` (n, S) int32, the hot index inside each one-hot span (in
    span order); `scalars` (n, Ds) float32, the scalar spans' columns side by side."""

    codes: np.ndarray  # (n, S) int32
    scalars: np.ndarray  # (n, Ds) float32
    width: int  # output_dim of the dense layout

    @property
    def num_rows(self) -> int:
        return len(self.codes)

    @staticmethod
    def layout(spans: list[Span]) -> tuple[np.ndarray, np.ndarray]:
        """(S,) first dense column of each one-hot span and (Ds,) dense column of each scalar
        column, in span order."""
        onehot = [s.start for s in spans if s.kind == "onehot"]
        scalar = [c for s in spans if s.kind != "onehot" for c in range(s.start, s.stop)]
        return np.asarray(onehot, np.int64), np.asarray(scalar, np.int64)

    @classmethod
    def from_dense(cls, matrix: np.ndarray, spans: list[Span]) -> CompactRows:
        """The compact form of a dense (n, output_dim) block."""
        codes = [
            np.argmax(matrix[:, s.start : s.stop], axis=1).astype(np.int32)
            for s in spans
            if s.kind == "onehot"
        ]
        _, scalar_cols = cls.layout(spans)
        return cls(
            np.stack(codes, axis=1) if codes else np.zeros((len(matrix), 0), np.int32),
            np.ascontiguousarray(matrix[:, scalar_cols], dtype=np.float32),
            matrix.shape[1],
        )

    def dense(self, spans: list[Span]) -> np.ndarray:
        """(n, output_dim) float32: the matrix `Encoder.transform` gives."""
        starts, scalar_cols = self.layout(spans)
        out = np.zeros((self.num_rows, self.width), np.float32)
        out[:, scalar_cols] = self.scalars
        rows = np.arange(self.num_rows)[:, None]
        out[rows, self.codes.astype(np.int64) + starts] = 1.0
        return out
