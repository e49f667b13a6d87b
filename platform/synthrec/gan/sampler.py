"""Conditional vectors: training-by-sampling over a shard, and generation-time conditions.

Training (CTGAN's training-by-sampling): for each row of a batch pick one conditional span
(a discrete column) uniformly, a value with probability ~ log(1 + global count), and a real
row of the shard holding that value. The conditional vector is that row's one-hot for the
chosen span, plus each other discrete span with probability `extra_prob`, so the generator
also learns to honour several conditions at once. Category frequencies come from the
encoder (global), so every worker samples the same distribution from its own shard.

The shard is kept compact (`EncodedShard`: one-hot spans as hot indices, encoding/rows.py)
and batches are expanded to the dense (B, D) layout when drawn, so its memory does not grow
with the catalog (a dense 10^7-row shard over a 10^6-item catalog would be ~44 GB).
"""

from __future__ import annotations

import numpy as np
import torch

from synthrec.encoding import Encoder
from synthrec.encoding.rows import CompactRows
from synthrec.gan.networks import GanLayout


class EncodedShard:
    """Encoded rows (N, D) held compactly on `device`; indexing (an index or boolean tensor)
    gives the dense float32 rows, as indexing the dense matrix would."""

    def __init__(self, rows: CompactRows, encoder: Encoder, device: torch.device | str = "cpu"):
        starts, scalar_cols = CompactRows.layout(encoder.spans)
        dev = torch.device(device)
        self.codes = torch.from_numpy(rows.codes).to(dev)  # (N, S) int32
        self.scalars = torch.from_numpy(rows.scalars).to(dev)  # (N, Ds) float32
        self.starts = torch.from_numpy(starts).to(dev)  # (S,)
        self.scalar_cols = torch.from_numpy(scalar_cols).to(dev)  # (Ds,)
        self.onehot_of = {
            s: j
            for j, s in enumerate(i for i, sp in enumerate(encoder.spans) if sp.kind == "onehot")
        }
        self.shape = (rows.num_rows, rows.width)
        self.device = dev

    @classmethod
    def of(
        cls,
        data: torch.Tensor | np.ndarray | CompactRows | EncodedShard,
        encoder: Encoder,
        device: torch.device | str,
    ) -> EncodedShard:
        """A shard from a dense matrix (N, D), compact rows, or a shard (moved to `device`)."""
        if isinstance(data, EncodedShard):
            data = CompactRows(data.codes.cpu().numpy(), data.scalars.cpu().numpy(), data.shape[1])
        elif not isinstance(data, CompactRows):
            dense = data.cpu().numpy() if isinstance(data, torch.Tensor) else data
            data = CompactRows.from_dense(dense, encoder.spans)
        return cls(data, encoder, device)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: torch.Tensor) -> torch.Tensor:
        """(B, D) dense float32 rows."""
        codes, scalars = self.codes[rows], self.scalars[rows]
        out = torch.zeros(len(codes), self.shape[1], device=self.device)
        out[:, self.scalar_cols] = scalars
        out.scatter_(1, codes.long() + self.starts, 1.0)
        return out

    def span_codes(self, span: int) -> torch.Tensor:
        """(N,) hot index of one-hot span number `span` (an index into encoder.spans)."""
        return self.codes[:, self.onehot_of[span]].long()


class CondSampler:
    """Samples (real rows, conditional vectors) from one encoded shard (N, D)."""

    def __init__(
        self, shard: EncodedShard, encoder: Encoder, layout: GanLayout, extra_prob: float = 0.0
    ):
        self.shard, self.layout, self.extra_prob = shard, layout, extra_prob
        dev = shard.device
        self.num_spans = len(layout.cond_spans)
        self.span_start = []  # first flat category id of each conditional span
        rows_by_cat, counts, weights = [], [], []
        flat = 0
        for si in layout.cond_spans:
            span = encoder.spans[si]
            cat = shard.span_codes(si)  # (N,)
            order = torch.argsort(cat, stable=True)
            local = torch.bincount(cat, minlength=span.size)  # rows per value here
            glob = torch.as_tensor(encoder.span_counts[si], dtype=torch.float64, device=dev)
            w = torch.log1p(glob) * (local > 0)  # log-frequency, present only
            if w.sum() == 0:
                w = (local > 0).double()
            weights.append(w / w.sum())
            rows_by_cat.append(order.to(torch.int64))
            counts.append(local)
            self.span_start.append(flat)
            flat += span.size
        n = shard.shape[0]
        self.rows_flat = (
            torch.cat(rows_by_cat) if rows_by_cat else torch.zeros(0, dtype=torch.long, device=dev)
        )
        counts_t = torch.cat(counts) if counts else torch.zeros(0, dtype=torch.long, device=dev)
        # start of each flat category inside rows_flat: span j's block begins at j * N
        span_of = (
            torch.cat([torch.full((c.numel(),), j, device=dev) for j, c in enumerate(counts)])
            if counts
            else counts_t
        )
        within = torch.cat([torch.cumsum(c, 0) - c for c in counts]) if counts else counts_t
        self.cat_start = span_of * n + within
        self.cat_count = counts_t
        # cumulative probabilities offset by span number: span j's values live in (j, j+1]
        self.cum = (
            torch.cat([j + torch.cumsum(w, 0) for j, w in enumerate(weights)])
            if weights
            else counts_t.double()
        )
        self.span_end = torch.tensor(self.span_start[1:] + [flat], device=dev) - 1
        self.span_first = torch.tensor(self.span_start, device=dev)

    def sample(self, batch: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(real rows (B, D), conditional vectors (B, Dc)) with matching values."""
        dev, lay = self.shard.device, self.layout
        if self.num_spans == 0:
            rows = torch.randint(self.shard.shape[0], (batch,), generator=rng, device=dev)
            return self.shard[rows], torch.zeros(batch, 0, device=dev)
        span = torch.randint(self.num_spans, (batch,), generator=rng, device=dev)
        u = torch.rand(batch, generator=rng, device=dev, dtype=torch.float64)
        cat = torch.searchsorted(self.cum, span + u, right=True)
        cat = torch.minimum(torch.maximum(cat, self.span_first[span]), self.span_end[span])
        pick = (torch.rand(batch, generator=rng, device=dev) * self.cat_count[cat]).long()
        rows = self.rows_flat[self.cat_start[cat] + torch.minimum(pick, self.cat_count[cat] - 1)]
        real = self.shard[rows]
        reveal = torch.rand(batch, self.num_spans, generator=rng, device=dev) < self.extra_prob
        reveal[torch.arange(batch, device=dev), span] = True
        cond = real[:, lay.cond_src] * reveal[:, lay.cond_seg]
        return real, cond
