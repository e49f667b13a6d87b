"""Choosing a catalog id per generated row: lookup tables, grouped search, Gumbel draws.

The id codec (ids.py) gives every id a fixed vector; the generator emits a cluster and a
vector per row. Decoding picks, among the ids of the row's cluster (or of the row's group:
the ids whose dependent columns match the row), either the nearest id or a draw with
probability ~ frequency x draw weight x Gaussian kernel around the vector x P(the row's
labels | id). Each group's members are padded into one table whose augmented vectors turn
that score into one dot product with the row's augmented query, so a whole batch is scored
with a few matmuls or one gather, never a Python loop over rows.

Per-id draw weights (log, (C,)) come from calibration after GAN training; they belong to
the generator's state (gan/), and are passed in when decoding. `calibration_step` is the
update rule.

With a `device` (the generator's, e.g. cuda) the scoring and the draws run as torch ops
there, on device copies of the tables made once; only the group bookkeeping stays in numpy.
Without one the numpy path runs (faster than torch on the CPU). Both draw from the same
distribution (tests/unit/test_encoding_device_decode.py runs the torch path on the CPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

MAX_GROUP_IDS = 4096  # largest id group searched per row when decoding consistently
DRAW_CANDIDATES = 64  # an id is drawn among this many most likely ids of its cluster/group
NEAREST_CHUNK = 1 << 22  # member-vector floats gathered at once when decoding ids
GROUP_MATMUL_ROWS = 16  # rows per group from which a group's ids are scored by one matmul
PAD_SCORE = 1e30  # padded slots of id search tables score about -PAD_SCORE
CALIB_STEP = 1.0  # id draw-weight calibration: largest change of a log weight per step
CALIB_LIMIT = 4.0  # ... and in all (a weight moves a draw's odds by at most e^4)


@dataclass(frozen=True)
class GroupLevel:
    """Ids grouped by the values of their discrete dependents (and their cluster, if
    `with_cluster`): group keys (G,) sorted, the group (n_known,) of each id in `ids`."""

    with_cluster: bool
    sizes: list[int]  # number of codes of each key part
    keys: np.ndarray  # (G,)
    group: np.ndarray  # (n_known,)
    ids: np.ndarray  # (n_known,) ids whose dependents are all known


def group_keys(codes: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    """One int64 key per row from several code columns (n,) with `sizes` codes each."""
    key = np.zeros(len(codes[0]), np.int64)
    for c, size in zip(codes, sizes):
        key = key * (size + 1) + c
    return key


def group_levels(
    dep_codes: list[np.ndarray], dep_sizes: list[int], cluster: np.ndarray, num_clusters: int
) -> list[GroupLevel]:
    """Ids (C,) grouped by their dependent codes (each (C,), -1 unknown): first within each
    cluster (small groups, and the generator's cluster choice is kept), then across
    clusters. A level whose groups are too large to search per row is left out."""
    if not dep_codes:
        return []
    known = np.all(np.stack(dep_codes) >= 0, axis=0)
    ids = np.flatnonzero(known)
    levels = []
    for with_cluster in (True, False):
        sizes = list(dep_sizes) + ([num_clusters] if with_cluster else [])
        if math.prod(k + 1 for k in sizes) >= 2**62:
            continue
        codes = [c[known] for c in dep_codes] + ([cluster[known]] if with_cluster else [])
        keys, group = np.unique(group_keys(codes, sizes), return_inverse=True)
        if np.bincount(group).max() > MAX_GROUP_IDS:
            continue  # too large to search per row
        levels.append(GroupLevel(with_cluster, sizes, keys, group, ids))
    return levels


@dataclass
class IdTable:
    """Ids searched per row, grouped: padded members (G, S) (members first, `sizes` (G,) of
    them) and member vectors augmented so that one dot product with a row's augmented query
    is its score: `nearest` (G, S, d+1) = [v, -|v|^2/2] against [q, 1] (argmax = nearest id),
    `kernel` (G, S, d+1+sum K) = [v, log w - |v|^2/2h^2, log P(label value | id)...] against
    [q/h^2, 1, one-hot label values] (log of weight x Gaussian kernel x label likelihood, up
    to a per-row constant; w = frequency x draw weight). Pads score about -PAD_SCORE."""

    members: np.ndarray
    sizes: np.ndarray
    nearest: np.ndarray
    kernel: np.ndarray
    inv_h2: float  # 1 / bandwidth^2
    label_sizes: list[int]  # K of each label table
    # (table name, device) -> the table as a tensor there, made on first use
    on_device: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        group: np.ndarray,
        ids: np.ndarray,
        k: int,
        vectors: np.ndarray,
        log_weight: np.ndarray,
        inv_h2: float,
        labels: list[np.ndarray],
        allowed: np.ndarray,
    ) -> IdTable:
        """`group` (n,) of each id in `ids` (n,), `k` groups; vectors (C, d), log_weight (C,),
        labels: log P(value | id) tables (C, K); ids not `allowed` (C,) score as pads."""
        order = np.argsort(group, kind="stable")
        sizes = np.bincount(group, minlength=k)
        start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        slot = np.arange(len(group)) - start[group[order]]
        members = np.zeros((k, max(1, int(sizes.max(initial=0)))), np.int64)
        members[group[order], slot] = ids[order]
        valid = np.zeros(members.shape, bool)
        valid[group[order], slot] = True
        valid &= allowed[members]
        v = vectors[members]
        half = 0.5 * (v.astype(np.float64) ** 2).sum(-1)
        near = np.where(valid, -half, -PAD_SCORE)[..., None]
        kern = np.where(valid, log_weight[members] - half * inv_h2, -PAD_SCORE)[..., None]
        return cls(
            members,
            sizes,
            np.concatenate([v, near], -1).astype(np.float32),
            np.concatenate([v, kern] + [t[members] for t in labels], -1).astype(np.float32),
            inv_h2,
            [t.shape[1] for t in labels],
        )

    def pick(
        self,
        group: np.ndarray,
        query: np.ndarray,
        label_codes: list[np.ndarray],
        rng: np.random.Generator | None,
        device: torch.device | None = None,
    ) -> np.ndarray:
        """Id per row (n,) among the members of its group (n,), for query vectors (n, d) and
        the rows' label codes ((n,) per label table, used by draws): the nearest id, or with
        `rng` a draw ~ weight x kernel x label likelihood. `device`: score there (torch)."""
        ones = np.ones((len(query), 1), np.float32)
        if rng is None:
            aug = np.concatenate([query, ones], axis=1)
            table = self.nearest if device is None else self.tensor("nearest", device)
            return search(group, aug, self.members, table, self.sizes, None, device)
        parts = [query * self.inv_h2, ones]
        for codes, k in zip(label_codes, self.label_sizes):  # the row's label values, one-hot
            onehot = np.zeros((len(query), k), np.float32)
            onehot[np.arange(len(query)), codes] = 1.0
            parts.append(onehot)
        aug = np.concatenate(parts, axis=1)
        table = self.kernel if device is None else self.tensor("kernel", device)
        return search(group, aug, self.members, table, self.sizes, rng, device)

    def tensor(self, name: str, device: torch.device) -> torch.Tensor:
        """The `nearest` or `kernel` table on `device`, copied there once."""
        key = (name, str(device))
        if key not in self.on_device:
            self.on_device[key] = torch.from_numpy(getattr(self, name)).to(device)
        return self.on_device[key]


def build_tables(
    vectors: np.ndarray,
    log_weight: np.ndarray,
    inv_h2: float,
    cluster: np.ndarray,
    num_clusters: int,
    levels: list[GroupLevel],
    labels: list[np.ndarray],
    allowed: np.ndarray,
) -> list[IdTable]:
    """[cluster level, *group levels] tables of ids with vectors (C, d), log weights (C,),
    clusters (C,), label tables (C, K) and the ids that may be drawn (C,) bool."""

    def table(group: np.ndarray, ids: np.ndarray, k: int) -> IdTable:
        return IdTable.build(group, ids, k, vectors, log_weight, inv_h2, labels, allowed)

    tables = [table(cluster, np.arange(len(cluster)), num_clusters)]
    return tables + [table(lv.group, lv.ids, len(lv.keys)) for lv in levels]


def search(
    group: np.ndarray,
    query: np.ndarray,
    members: np.ndarray,
    vectors: np.ndarray | torch.Tensor,
    sizes: np.ndarray,
    rng: np.random.Generator | None = None,
    device: torch.device | None = None,
) -> np.ndarray:
    """For each row, the member of its group (padded tables: members (G, S), augmented vectors
    (G, S, d'), sizes (G,)) with the highest score query . vector, or with `rng` a draw with
    probability ~ exp(score) (Gumbel-max), (n,). With `device`, `vectors` is a tensor there
    and the scores and draws are torch ops on it (the draws seeded from `rng`).

    Whole-batch: rows are ordered by the size of their group and scored in chunks against
    their group's members (members come first in each padded row), padded to the chunk's
    largest group. Wide groups, and groups with many rows in the chunk, take one matmul per
    group; otherwise each row's members are gathered. The Python loops run over size classes
    and groups, never over rows."""
    out = np.empty(len(group), np.int64)
    if len(group) == 0:
        return out
    query = query.astype(np.float32, copy=False)
    dim = vectors.shape[2]
    gen = None
    if device is not None and rng is not None:
        gen = torch.Generator(device).manual_seed(int(rng.integers(2**62)))
    row_sizes = sizes[group]
    order = np.argsort(row_sizes, kind="stable")
    row_sizes = row_sizes[order]
    start = 0
    while start < len(order):  # chunks of rows whose group sizes are within 2x, bounded floats
        stop = start + int(
            np.searchsorted(row_sizes[start:], 2 * max(1, row_sizes[start]), side="right")
        )
        stop = min(stop, start + max(1, NEAREST_CHUNK // (max(1, int(row_sizes[stop - 1])) * dim)))
        width = max(1, int(row_sizes[stop - 1]))
        rows = order[start:stop]
        start = stop
        rows = rows[np.argsort(group[rows], kind="stable")]  # each group's rows side by side
        g, q = group[rows], query[rows]
        keys, first = np.unique(g, return_index=True)
        wide = width > DRAW_CANDIDATES or len(rows) >= GROUP_MATMUL_ROWS * len(keys)
        if device is not None:
            spans = zip(keys, first, np.append(first[1:], len(g)))
            pos = _pick_on_device(vectors, g, q, width, spans if wide else None, rng, gen)
            out[rows] = members[g, pos]
            continue
        if wide:
            # wide groups, or many rows per group: one matmul per group (a gather would
            # move r x S x d')
            score = np.empty((len(rows), width), np.float32)
            for k, lo, hi in zip(keys, first, np.append(first[1:], len(g))):
                np.matmul(q[lo:hi], vectors[k, :width].T, out=score[lo:hi])
        else:
            score = np.einsum("rsd,rd->rs", vectors[g, :width], q)
        pos = np.argmax(score, axis=1) if rng is None else gumbel_draw(score, rng)
        out[rows] = members[g, pos]
    return out


def _pick_on_device(
    vectors: torch.Tensor,
    g: np.ndarray,
    q: np.ndarray,
    width: int,
    spans: Any,
    rng: np.random.Generator | None,
    gen: torch.Generator | None,
) -> np.ndarray:
    """`search`'s scoring of one chunk as torch ops on the tables' device: (r,) positions in
    each row's group, the best (no `rng`) or a Gumbel-max draw from `gen`."""
    dev = vectors.device
    qt = torch.from_numpy(q).to(dev)
    if spans is not None:  # one matmul per group
        score = torch.empty(len(q), width, device=dev)
        for k, lo, hi in spans:
            score[lo:hi] = qt[lo:hi] @ vectors[int(k), :width].T
    else:
        gt = torch.from_numpy(g).to(dev)
        score = torch.einsum("rsd,rd->rs", vectors[gt, :width], qt)
    if rng is None:
        return score.argmax(1).cpu().numpy()
    return gumbel_draw_torch(score, gen).cpu().numpy()


def gumbel_draw_torch(score: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """`gumbel_draw` as torch ops on `score`'s device, (n,)."""
    pos = None
    if score.shape[1] > DRAW_CANDIDATES:
        score, pos = torch.topk(score, DRAW_CANDIDATES, dim=1)
    u = torch.rand(score.shape, generator=gen, device=score.device)
    best = (score - torch.log(-torch.log(u + 1e-20) + 1e-20)).argmax(1)
    return best if pos is None else pos.gather(1, best[:, None])[:, 0]


def gumbel_draw(score: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Column drawn per row of `score` (n, S) with probability ~ exp(score) among its
    DRAW_CANDIDATES highest (the rest is tail), by Gumbel-max, (n,)."""
    pos = None
    if score.shape[1] > DRAW_CANDIDATES:
        pos = np.argpartition(score, score.shape[1] - DRAW_CANDIDATES, axis=1)[:, -DRAW_CANDIDATES:]
        score = np.take_along_axis(score, pos, axis=1)
    noisy = score - np.log(-np.log(rng.random(score.shape, dtype=np.float32) + 1e-20) + 1e-20)
    best = np.argmax(noisy, axis=1)
    return best if pos is None else np.take_along_axis(pos, best[:, None], axis=1)[:, 0]


def calibration_step(freq: np.ndarray, drawn: np.ndarray, log_weight: np.ndarray) -> np.ndarray:
    """One step of draw-weight calibration: the log weights (C,) moved toward training
    frequency (C,) / drawn frequency (C,) (add-one smoothed, at most CALIB_STEP per step,
    CALIB_LIMIT in all)."""
    target = freq / max(1, freq.sum()) * drawn.sum()
    step = np.clip(np.log((target + 1.0) / (drawn + 1.0)), -CALIB_STEP, CALIB_STEP)
    return np.clip(log_weight + step, -CALIB_LIMIT, CALIB_LIMIT).astype(np.float32)


def total_variation(freq: np.ndarray, drawn: np.ndarray) -> float:
    """Total variation distance between draw counts per id (C,) and training frequencies (C,)."""
    return float(0.5 * np.abs(freq / max(1, freq.sum()) - drawn / max(1, drawn.sum())).sum())
