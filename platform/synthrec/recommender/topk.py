"""Top-k item search over a catalog: the exact scan, an int8 two-stage scan, or an
inverted file (ivf) that reads a calibrated share of the catalog.

Exact: one (B, d) @ (d, N) float32 product and torch.topk per row. At 10^6 items of d=64 a
request reads 256 MB of vectors, which bounds it by memory bandwidth, not arithmetic.

Int8 (two stages):
1. coarse: each item vector is stored as int8 with one float scale per item
   (v ≈ scale · q, |q| <= 127; 64 MB at 10^6 × 64); on the CPU the scan is fbgemm's dynamic
   int8 linear (the request is quantized on the fly), on a GPU a float16 product over the int8
   codes. Masked items (padding, seen) get -inf, then the k + 100 best per row are kept
   (`best_columns`: block maxima first, not a sorted top over all N).
2. re-score: the candidates' float32 vectors give the exact scores; the top k of those are
   the answer, ties by the lower index as in the exact scan.
Quantization error per score is about |u|·|v|/254·sqrt(d/3); the candidates margin (k + 100
by default) absorbs it, so recall@10 against the exact scan stays ≥ 0.98 on random and
clustered vectors (tests/unit/test_recommender_topk.py). Still a full scan of 64 MB.

Ivf (sub-linear): seeded k-means (Lloyd, on a sample) splits the catalog into 4·sqrt(N) lists,
stored contiguously. Per row: score the centroids, read the `nprobe` best lists, score their
items exactly in float32, top k. `nprobe` is calibrated at build time: the smallest value
whose recall@10 against the exact scan is >= 0.99 on each of four seeded query sets (item
vectors plus noise at three scales, and unclustered Gaussian queries). Clustered catalogs
(the bench's and the tests' clustered vectors) need 1-2% of the lists (10^6 items: 62 of
4,000, about 1 ms a request on one thread); unclustered Gaussian vectors in 64 dimensions
need most of them (10^6: 60%), and when the calibrated lists hold more than
`IVF_MAX_SCAN_FRACTION` of the catalog the ivf answers by the exact scan instead (and "auto"
takes int8). Build: k-means, lists and calibration, about a minute at 10^6 on one thread.

`Literal` kinds: "exact", "int8", "ivf"; "auto" is exact below `AUTO_IVF_ITEMS` items, ivf
from there when its calibration makes it selective, else int8 (from `AUTO_INT8_ITEMS`) or
exact. No Ray and no HTTP here.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
import torch

from synthrec.config import TopKKind

AUTO_IVF_ITEMS = 200_000  # below this the exact scan takes ~1 ms (100,000 items: 1.07 ms p50)
AUTO_INT8_ITEMS = 200_000  # below this the exact scan is within ~2x of int8 and has no error
EXTRA_CANDIDATES = 100  # coarse candidates beyond k that the exact re-score reads
IVF_MIN_ITEMS = 4_096  # below this an ivf search is the exact scan
# 4·sqrt(N) lists. 2·sqrt(N) halves the build and searched 10^6 items as fast, but a
# 30,000-item catalog of 200 clusters then needed 22% of it read (4·sqrt(N): 1.3%)
LISTS_PER_SQRT_ITEMS = 4
KMEANS_ITERS, KMEANS_SAMPLE_PER_LIST = 10, 16
CALIBRATION_QUERIES = 256  # per query set (four sets)
TARGET_RECALL = 0.99  # recall@10 the calibrated nprobe reaches on each calibration set
IVF_MAX_SCAN_FRACTION = 0.25  # reading more than this is slower than the scans (measured)


def resolve_kind(kind: TopKKind, num_items: int) -> Literal["exact", "int8", "ivf"]:
    """The search a catalog of `num_items` gets under `kind` (for "auto" an ivf that its
    calibration finds unselective is replaced in `build_top_k`)."""
    if kind == "auto":
        return "ivf" if num_items >= AUTO_IVF_ITEMS else "exact"
    return kind


class ExactTopK:
    """Scores every item in float32: the reference the int8 search is measured against."""

    kind = "exact"

    def __init__(self, vectors: torch.Tensor) -> None:
        self.vectors = vectors.contiguous()  # (N, d) float32

    def scores(self, states: torch.Tensor) -> torch.Tensor:
        """(B, N) float32 scores of every item."""
        return states @ self.vectors.T

    def search(
        self, states: torch.Tensor, k: int, mask: list[tuple[int, np.ndarray]] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, k) best scores and item indices per row, best first; `mask` lists (row,
        indices) pairs never returned."""
        scores = self.scores(states)
        _apply_mask(scores, mask)
        return torch.topk(scores, k, dim=1)


class Int8TopK:
    """Coarse int8 scan, then an exact float32 re-score of `k + extra` candidates per row."""

    kind = "int8"

    def __init__(self, vectors: torch.Tensor, extra: int = EXTRA_CANDIDATES) -> None:
        self.vectors = vectors.contiguous()  # (N, d) float32, read only for the re-score
        self.extra = extra
        scale = vectors.abs().amax(dim=1).clamp_min(1e-12) / 127.0  # (N,)
        codes = torch.round(vectors / scale[:, None]).to(torch.int8)  # (N, d)
        self.device = vectors.device
        if self.device.type == "cpu":
            self._linear = _fbgemm_linear(codes, scale)
        else:  # GPU: float16 product over the codes, scaled per item afterwards
            self._codes_t = codes.to(torch.float16).T.contiguous()  # (d, N)
            self._scale = scale.to(torch.float32)

    def coarse(self, states: torch.Tensor) -> torch.Tensor:
        """(B, N) approximate float32 scores from the int8 codes."""
        if self.device.type == "cpu":
            return self._linear(states.float())
        return (states.to(torch.float16) @ self._codes_t).float() * self._scale

    def search(
        self, states: torch.Tensor, k: int, mask: list[tuple[int, np.ndarray]] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As `ExactTopK.search`: the scores returned are exact (float32 re-score)."""
        coarse = self.coarse(states)
        _apply_mask(coarse, mask)
        cand = best_columns(coarse, min(k + self.extra, coarse.shape[1]))  # (B, n) unordered
        approx = torch.gather(coarse, 1, cand)
        exact = torch.einsum("bd,bnd->bn", states, self.vectors[cand])  # (B, n)
        exact[torch.isinf(approx)] = -torch.inf  # masked items stay out
        values, pos = torch.topk(exact, k, dim=1)
        return values, torch.gather(cand, 1, pos)


class IvfTopK:
    """Inverted file: k-means lists, the `nprobe` lists whose centroids score best per row,
    their items scored exactly in float32. `nprobe` is calibrated at build time (see
    `calibrate`); catalogs under `IVF_MIN_ITEMS` items, and catalogs whose calibrated lists
    hold more than `max_scan_fraction` of the items, are scanned exactly (`nprobe` 0).

    Attributes: `calibrated_nprobe`, `sample_recall` (its recall@10 on the calibration
    queries), `scan_fraction` (the share of the items it reads on average), `nprobe`."""

    kind = "ivf"

    def __init__(
        self,
        vectors: torch.Tensor,
        seed: int = 0,
        num_lists: int | None = None,
        target_recall: float = TARGET_RECALL,
        max_scan_fraction: float = IVF_MAX_SCAN_FRACTION,
    ) -> None:
        self.vectors = vectors.contiguous()  # (N, d) float32, for rows the lists cannot answer
        self.device = vectors.device
        self.exact = ExactTopK(self.vectors)
        n = vectors.shape[0]
        self.num_lists = min(n, num_lists or round(LISTS_PER_SQRT_ITEMS * n**0.5))
        self.nprobe, self.calibrated_nprobe = 0, 0  # nprobe 0: every search is the exact scan
        self.sample_recall, self.scan_fraction = 1.0, 1.0
        if n < IVF_MIN_ITEMS or self.num_lists < 2:
            return
        gen = torch.Generator().manual_seed(seed)
        self.centroids = kmeans(self.vectors, self.num_lists, gen)  # (L, d)
        self.list_of = nearest(self.vectors, self.centroids)  # (N,) list of each item
        self.ids = torch.argsort(self.list_of, stable=True)  # (N,) item at each stored slot
        self.stored = self.vectors[self.ids]  # (N, d): each list contiguous, items ascending
        self.sizes = torch.bincount(self.list_of, minlength=self.num_lists)  # (L,)
        self.starts = torch.cumsum(self.sizes, 0) - self.sizes  # (L,) first slot of each list
        self.calibrated_nprobe, self.sample_recall = self.calibrate(gen, target_recall)
        self.scan_fraction = self.calibrated_nprobe / self.num_lists  # items read, on average
        if self.scan_fraction <= max_scan_fraction:  # else: the lists do not pay, scan exactly
            self.nprobe = self.calibrated_nprobe

    def calibrate(self, gen: torch.Generator, target: float) -> tuple[int, float]:
        """Smallest nprobe whose recall@10 against the exact scan is >= `target` on each of
        four seeded query sets (items plus noise at 0.5x, 1x and 2x the items' spread, and
        Gaussian queries with the items' mean and spread), so that recall does not rest on
        the catalog being clustered. Returns it and its recall on all the sample."""
        q = calibration_queries(self.vectors, gen)  # (4, Q, d)
        need = []
        for group in q:  # truth: (Q, 10) each query's exact top 10, unordered
            truth = torch.cat([best_columns(self.exact.scores(c), 10) for c in group.split(64)])
            order = torch.argsort(group @ self.centroids.T, dim=1, descending=True, stable=True)
            rank = torch.empty_like(order)  # rank[r, l]: position of list l in row r's order
            rank.scatter_(
                1, order, torch.arange(self.num_lists, device=self.device).expand_as(order)
            )
            need.append(rank.gather(1, self.list_of[truth]).flatten() + 1)  # lists to read
        nprobe = max(
            int(torch.sort(n).values[max(0, math.ceil(target * len(n)) - 1)]) for n in need
        )
        return nprobe, float((torch.cat(need) <= nprobe).float().mean())

    def search(
        self, states: torch.Tensor, k: int, mask: list[tuple[int, np.ndarray]] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As `ExactTopK.search`, over the items of the probed lists; rows whose lists hold
        fewer than k unmasked items are answered by the exact scan."""
        if not self.nprobe or not len(states):
            return self.exact.search(states, k, mask)
        slots, row, col, row_len = self._probe(states)  # (T,) each: the candidates, row-major
        items = self.ids[slots]  # (T,)
        cand = self.stored.index_select(0, slots).split(row_len.tolist())  # per row (T_b, d)
        flat = torch.cat([c @ u for c, u in zip(cand, states)])  # (T,) one matvec per row
        flat[_masked(row, items, mask, self.vectors.shape[0])] = -torch.inf
        scores = flat[None] if len(states) == 1 else _padded(flat, row, col, len(states))
        short = (torch.isfinite(scores).sum(1) < k).nonzero().flatten()
        if scores.shape[1] < k:
            return self.exact.search(states, k, mask)
        values, cols = torch.topk(scores, k, dim=1)  # (B, k)
        first = torch.cumsum(row_len, 0) - row_len  # (B,) flat offset of each row
        index = items[(first[:, None] + cols).clamp_max(len(items) - 1)]
        if len(short):  # too few candidates: these rows scan every item
            rows = short.tolist()
            sub = [(rows.index(j), c) for j, c in (mask or []) if j in rows]
            values[short], index[short] = self.exact.search(states[short], k, sub)
        return values, index

    def _probe(
        self, states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The stored slots of each row's `nprobe` best lists, flat in row order: (T,) slots,
        (T,) row and (T,) column of each, and (B,) candidates per row."""
        probe = torch.topk(states @ self.centroids.T, self.nprobe, dim=1).indices  # (B, P)
        sizes = self.sizes[probe]  # (B, P)
        row_len, sizes = sizes.sum(1), sizes.flatten()  # (B,), (B·P,) in row order
        total, dev = int(row_len.sum()), self.device
        first = torch.repeat_interleave(
            self.starts[probe].flatten() - (torch.cumsum(sizes, 0) - sizes),
            sizes,
            output_size=total,
        )  # slot of a list's first item minus its place in the flat candidate order
        flat = torch.arange(total, device=dev)
        rows = torch.arange(len(row_len), device=dev)
        row = torch.repeat_interleave(rows, row_len, output_size=total)
        col = flat - (torch.cumsum(row_len, 0) - row_len)[row]
        return first + flat, row, col, row_len


def kmeans(
    vectors: torch.Tensor, num_lists: int, gen: torch.Generator, iters: int = KMEANS_ITERS
) -> torch.Tensor:
    """(L, d) centroids: Lloyd iterations from `num_lists` random items, on a seeded sample of
    `KMEANS_SAMPLE_PER_LIST` items per list; an emptied list restarts at a random item."""
    n, dev = vectors.shape[0], vectors.device
    pick = torch.randperm(n, generator=gen)[: min(n, num_lists * KMEANS_SAMPLE_PER_LIST)]
    sample = vectors[pick.to(dev)]  # (S, d)
    centroids = sample[:num_lists].clone()
    for _ in range(iters):
        assign = nearest(sample, centroids)  # (S,)
        counts = torch.bincount(assign, minlength=num_lists)
        sums = torch.zeros_like(centroids).scatter_add_(
            0, assign[:, None].expand_as(sample), sample
        )
        centroids = sums / counts.clamp_min(1)[:, None].to(sums.dtype)
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            refill = torch.randint(0, len(sample), (len(empty),), generator=gen).to(dev)
            centroids[empty] = sample[refill]
    return centroids


def nearest(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 16_384) -> torch.Tensor:
    """(N,) index of the nearest centroid (L2) of each row of x, in chunks of rows."""
    half_norm = -0.5 * (centroids * centroids).sum(1)  # argmin |x-c|² = argmax x·c - |c|²/2
    return torch.cat(
        [torch.addmm(half_norm, part, centroids.T).argmax(1) for part in x.split(chunk)]
    )


def calibration_queries(
    vectors: torch.Tensor, gen: torch.Generator, per_group: int = CALIBRATION_QUERIES
) -> torch.Tensor:
    """(4, Q, d) seeded queries: items plus Gaussian noise at 0.5x, 1x, 2x the items' spread
    per dimension, and Gaussian queries with the items' mean and spread (no cluster)."""
    n, d = vectors.shape
    mean, spread = vectors.mean(0).cpu(), vectors.std(0).cpu()  # (d,)
    base = vectors[torch.randint(0, n, (3, per_group), generator=gen).to(vectors.device)].cpu()
    noise = torch.randn(4, per_group, d, generator=gen) * spread
    scale = torch.tensor([0.5, 1.0, 2.0])[:, None, None]
    q = torch.cat([base + scale * noise[:3], mean + noise[3:]])
    return q.to(vectors.device)


def _masked(
    row: torch.Tensor, items: torch.Tensor, mask: list[tuple[int, np.ndarray]] | None, n: int
) -> torch.Tensor:
    """(T,) True where a candidate (row, item) is among the items `mask` hides from that row;
    n: the catalog size."""
    if not mask:
        return torch.zeros_like(items, dtype=torch.bool)
    keys = np.unique(np.concatenate([j * n + np.asarray(c, np.int64) for j, c in mask]))
    if not len(keys):
        return torch.zeros_like(items, dtype=torch.bool)
    hidden = torch.from_numpy(keys).to(items.device)  # sorted
    cand = row * n + items  # (T,)
    at = torch.searchsorted(hidden, cand).clamp_max(len(hidden) - 1)
    return hidden[at] == cand


def _padded(flat: torch.Tensor, row: torch.Tensor, col: torch.Tensor, rows: int) -> torch.Tensor:
    """(B, W) the flat per-row scores laid out by row, -inf past each row's candidates."""
    out = torch.full((rows, int(col.max()) + 1), -torch.inf, device=flat.device)
    out[row, col] = flat
    return out


def best_columns(scores: torch.Tensor, m: int) -> torch.Tensor:
    """(B, m) column indices of the m best scores per row, in no order; the same set as
    torch.topk up to ties. The m best lie in the m blocks whose maxima are highest, so one
    pass of block maxima and a top-m over m blocks replace a sorted top-m over N columns
    (10^6 columns, m=110: 0.7 ms against 6 ms)."""
    b, n = scores.shape
    block = max(16, math.isqrt(n // max(m, 1)))  # balances the blocks' count and m·block
    num_blocks = n // block
    if num_blocks <= m:
        return torch.topk(scores, m, dim=1, sorted=False).indices
    head = scores[:, : num_blocks * block].reshape(b, num_blocks, block)
    blocks = torch.topk(head.amax(2), m, dim=1, sorted=False).indices  # (B, m)
    offsets = torch.arange(block, device=scores.device)
    cols = (blocks[:, :, None] * block + offsets).flatten(1)  # (B, m·block)
    tail = torch.arange(num_blocks * block, n, device=scores.device).expand(b, -1)
    cols = torch.cat([cols, tail], 1)  # the columns past the last whole block always compete
    return torch.gather(cols, 1, torch.topk(torch.gather(scores, 1, cols), m, dim=1).indices)


def build_top_k(
    vectors: torch.Tensor, kind: TopKKind = "auto", seed: int = 0
) -> ExactTopK | Int8TopK | IvfTopK:
    """The search for a catalog's (N, d) vectors: exact, int8 two-stage or ivf (module doc)."""
    resolved = resolve_kind(kind, vectors.shape[0])
    if resolved == "ivf":
        ivf = IvfTopK(vectors, seed=seed)
        if ivf.nprobe or kind != "auto":
            return ivf
        resolved = "int8" if vectors.shape[0] >= AUTO_INT8_ITEMS else "exact"  # lists do not pay
    if resolved == "int8":
        return Int8TopK(vectors)
    return ExactTopK(vectors)


def _apply_mask(scores: torch.Tensor, mask: list[tuple[int, np.ndarray]] | None) -> None:
    if not mask:
        return
    rows = np.concatenate([np.full(len(cols), j) for j, cols in mask])
    cols = np.concatenate([cols for _, cols in mask])
    dev = scores.device
    scores[torch.from_numpy(rows).to(dev), torch.from_numpy(cols).to(dev)] = -torch.inf


def _fbgemm_linear(codes: torch.Tensor, scale: torch.Tensor) -> torch.nn.Module:
    """fbgemm's dynamic int8 linear with the codes as per-item (per-channel) weights: the
    request is quantized per call, the product runs in int8 with int32 accumulation."""
    n, d = codes.shape
    with warnings.catch_warnings():  # torch marks the quantized-tensor constructors deprecated
        warnings.simplefilter("ignore")
        linear = torch.ao.nn.quantized.dynamic.Linear(d, n, bias_=False, dtype=torch.qint8)
        weight = torch._make_per_channel_quantized_tensor(
            codes, scale.double(), torch.zeros(n, dtype=torch.long), 0
        )
        linear.set_weight_bias(weight, None)
    return linear
