"""Catalog-scale ids (user / item / text roles, categoricals above the one-hot threshold).

A two-level code: each id gets a fixed profile vector (its log-frequency and the mean
encoding of the rows it appears in, shrunk to the global mean); ids are split into
~sqrt(C) balanced clusters by those vectors. A row is the cluster one-hot plus the id's
vector: spans [onehot(clusters), scalar(id_embedding_dim)]. Decoding (id_search.py) draws
an id with probability ~ frequency x a Gaussian kernel around the generated vector
(bandwidth = the typical spacing of ids) x P(row's label values | id), so near-identical
profiles share rows by frequency instead of one "hub" id taking them all, and ids keep
their label rates. Candidates are the ids of the chosen cluster, narrowed to the ids whose
dependent columns (found at fit: item -> genre, user -> age) match the row, so ids and the
columns they determine agree. Memory is C x id_embedding_dim; decoding costs about
sqrt(C) x dim per row.

What is stored and emitted (privacy.py): user ids under `id_policy: pseudonymize` are kept
and emitted as keyed pseudonyms only. Text values (queries) held by fewer than
`min_text_count` training rows are merged into one *withheld* id (the last, index C-1):
their strings are not stored, the id is never drawn (its search score is that of a pad),
and a row that can reach no other id (its cluster holds only that one) gets a null.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.config import EncoderConfig
from synthrec.encoding.arrow import categories, lookup, pack_values, to_float, unpack_values
from synthrec.encoding.codecs import Codec, CodecKind, DecodeRows, FitData, SpanSpec
from synthrec.encoding.id_search import IdTable, build_tables, group_keys, group_levels
from synthrec.encoding.privacy import new_vocabulary, pseudonymize
from synthrec.errors import DataError
from synthrec.schema import Role

PROFILE_PRIOR_ROWS = 5.0  # shrinkage of rare ids' profiles toward the global mean


class IdCodec:
    """Catalog-scale ids: spans [onehot(clusters), scalar(id_embedding_dim)]."""

    kind: ClassVar[CodecKind] = "id"

    def __init__(self, name: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]):
        self.name, self.meta = name, meta
        self.values = unpack_values(meta["values"], arrays, f"{name}.values")  # (C or C-1,)
        # pseudonym key (user ids under id_policy pseudonymize): `values` are pseudonyms
        self.key = arrays[f"{name}.key"].tobytes() if meta.get("pseudonymized") else None
        # the withheld id of rare text values (never drawn), or None
        self.withheld = len(self.values) if meta.get("withheld_values") else None
        self.vectors = arrays[f"{name}.vectors"].astype(np.float32)  # (C, d) in (-1, 1)
        self.cluster = arrays[f"{name}.cluster"].astype(np.int64)  # (C,)
        self.freq = arrays[f"{name}.counts"]  # (C,) rows per id
        self.log_freq = np.log(np.maximum(self.freq, 1)).astype(np.float32)
        self.inv_h2 = np.float32(1.0 / meta["bandwidth"] ** 2)
        # columns functionally determined by the id (e.g. item -> genre): value per id
        self.label_logp = {c: arrays[f"{name}.label.{c}"] for c in meta.get("labels", [])}
        deps = meta.get("dependents", {"discrete": {}, "numeric": []})
        self.dep_discrete: dict[str, np.ndarray] = {
            c: arrays[f"{name}.dep.{c}"].astype(np.int64) for c in deps["discrete"]
        }
        self.dep_sizes: dict[str, int] = dict(deps["discrete"])
        self.dep_numeric = {
            c: (
                arrays[f"{name}.dep.{c}"].astype(np.float64),
                arrays[f"{name}.depnull.{c}"].astype(bool),
            )
            for c in deps["numeric"]
        }
        self._build_groups()

    @classmethod
    def fit(cls, data: FitData, cfg: EncoderConfig, seed: int) -> IdCodec:
        """Vocabulary and counts from every row; profiles from `data.profile` (m, F), the
        other columns encoded on the sample rows `data.sample`."""
        name, dim = data.spec.name, cfg.id_embedding_dim
        values, freq = categories(data.column)
        meta: dict[str, Any] = {"codec": cls.kind}
        arrays: dict[str, np.ndarray] = {}
        if data.spec.role == Role.TEXT and cfg.min_text_count > 1:
            rare = freq < cfg.min_text_count
            values, freq = values.filter(pa.array(~rare)), np.append(freq[~rare], freq[rare].sum())
            meta |= {"min_count": cfg.min_text_count, "withheld_values": int(rare.sum())}
            meta["withheld_rows"] = int(freq[-1])
            if not rare.any():
                freq = freq[:-1]
        key = None
        if data.spec.role == Role.USER_ID and cfg.id_policy == "pseudonymize":
            key, values = new_vocabulary(values, name)
            meta["pseudonymized"] = True
            arrays[f"{name}.key"] = np.frombuffer(key, np.uint8).copy()
        withheld = len(values) if meta.get("withheld_values") else None
        codes = _index(data.sample, values, name, key, withheld)
        profile = data.profile if data.profile is not None else np.zeros((len(codes), 0))
        vectors = _profile_vectors(freq, profile, codes, len(freq), dim, seed)
        num_clusters, cluster = _balanced_clusters(vectors, freq)
        vmeta, packed = pack_values(values, f"{name}.values")
        meta |= {
            "values": vmeta,
            "num_clusters": int(num_clusters),
            "dim": dim,
            "bandwidth": _typical_spacing(vectors, cluster, seed),
        }
        arrays.update(
            {
                **packed,
                f"{name}.vectors": vectors,
                f"{name}.cluster": cluster.astype(np.int32),
                f"{name}.counts": freq.astype(np.int64),
            }
        )
        return cls(name, meta, arrays)

    def span_specs(self) -> list[SpanSpec]:
        return [
            SpanSpec("onehot", self.meta["num_clusters"], cond=True),
            SpanSpec("scalar", self.meta["dim"]),
        ]

    def counts(self) -> list[np.ndarray | None]:
        clusters = np.bincount(self.cluster, weights=self.freq, minlength=self.meta["num_clusters"])
        return [clusters.astype(np.int64), None]

    @property
    def num_ids(self) -> int:
        return len(self.freq)

    def codes(self, col: pa.ChunkedArray) -> np.ndarray:
        """(n,) id index per row of a real table with this column (real ids; rare text
        values get the withheld id)."""
        idx = _index(col, self.values, self.name, self.key, self.withheld)
        if (idx < 0).any():
            raise DataError(
                f"column '{self.name}': {int((idx < 0).sum())} null ids; every row needs an id"
            )
        return idx

    def output_codes(self, col: pa.ChunkedArray) -> np.ndarray:
        """(n,) id index per row of a table this codec decoded (pseudonyms as they are;
        nulls: the withheld id)."""
        idx = lookup(col, self.values, self.name)
        return np.where(idx < 0, len(self.values), idx)

    def transform(self, col: pa.ChunkedArray, rng: np.random.Generator) -> np.ndarray:
        idx = self.codes(col)
        block = np.zeros((len(idx), self.meta["num_clusters"] + self.meta["dim"]), np.float32)
        block[np.arange(len(idx)), self.cluster[idx]] = 1.0
        block[:, self.meta["num_clusters"] :] = self.vectors[idx]
        return block

    def resolve(self, rows: DecodeRows) -> None:
        """Id index per row, consistent with the row's dependent columns where possible.

        Rows whose dependent values were seen together choose an id among the ids with those
        values (inside the row's cluster when such ids exist there); other rows take an id of
        their cluster, and their dependents (except the columns in `rows.keep`, e.g.
        conditions) are overwritten with the id's values. Without `rows.rng` each id is the
        nearest to its vector; with it, a draw around it."""
        cluster, query = rows.parts[self.name]
        idx, todo = np.empty(len(cluster), np.int64), np.ones(len(cluster), bool)
        dep_codes = [rows.codes(c) for c in self.dep_sizes]
        labels = [rows.codes(c) for c in self.label_logp]  # (n,) each
        base, *tables = self._search_tables(rows.id_weights.get(self.name))
        for level, table in zip(self.levels, tables):
            key = group_keys(dep_codes + ([cluster] if level.with_cluster else []), level.sizes)
            pos = np.minimum(np.searchsorted(level.keys, key), len(level.keys) - 1)
            hit = todo & (level.keys[pos] == key)
            hit_labels = [v[hit] for v in labels]
            idx[hit] = table.pick(pos[hit], query[hit], hit_labels, rows.rng, rows.device)
            todo &= ~hit
        matched = ~todo
        rest_labels = [v[todo] for v in labels]
        idx[todo] = base.pick(cluster[todo], query[todo], rest_labels, rows.rng, rows.device)
        for col, per_id in self.dep_discrete.items():
            value = per_id[idx]
            fix = ~matched & (value >= 0)
            if col not in rows.keep and fix.any():
                rows.parts[col] = [np.where(fix, value, rows.codes(col))]
        for col, (per_id, nulls) in self.dep_numeric.items():
            value = per_id[idx]
            rows.overrides[col] = (~np.isnan(value) | nulls[idx], np.nan_to_num(value), nulls[idx])
        rows.ids[self.name] = idx

    def decode(self, rows: DecodeRows, dtype: pa.DataType) -> pa.Array:
        idx = rows.ids[self.name]
        if self.withheld is None:
            return self.values.take(pa.array(idx)).cast(dtype)
        if len(self.values) == 0:  # every text value was rare
            return pa.nulls(len(idx), dtype)
        out = self.values.take(pa.array(np.minimum(idx, len(self.values) - 1)))
        mask = pa.array(idx == self.withheld)
        return pc.if_else(mask, pa.nulls(len(out), out.type), out).cast(dtype)

    def _search_tables(self, log_weight: np.ndarray | None) -> list[IdTable]:
        """Search tables for these per-id log draw weights (C,) (None: all 0), built on
        first use and kept while the weights stay the same."""
        w = np.zeros(self.num_ids, np.float32) if log_weight is None else log_weight
        w = np.asarray(w, np.float32)
        if self._tables is None or not np.array_equal(self._tables[0], w):
            allowed = np.arange(self.num_ids) != self.withheld  # (C,)
            tables = build_tables(
                self.vectors,
                self.log_freq + w,
                self.inv_h2,
                self.cluster,
                self.meta["num_clusters"],
                self.levels,
                list(self.label_logp.values()),
                allowed,
            )
            self._tables = (w.copy(), tables)
        return self._tables[1]

    # -- functional dependents and labels (set at fit) ----------------------------------
    def set_dependents(
        self,
        discrete: dict[str, tuple[np.ndarray, int]],
        numeric: dict[str, tuple[np.ndarray, np.ndarray]],
    ) -> None:
        """discrete: column -> (code per id, -1 unknown; number of codes); numeric: column ->
        (value per id, NaN unknown; null flag per id)."""
        self.dep_discrete = {c: v for c, (v, _) in discrete.items()}
        self.dep_sizes = {c: int(k) for c, (_, k) in discrete.items()}
        self.dep_numeric = dict(numeric)
        self.meta["dependents"] = {"discrete": self.dep_sizes, "numeric": list(numeric)}
        self._build_groups()

    def set_labels(self, tables: dict[str, np.ndarray]) -> None:
        """log P(value | id) tables (C, K) of the label columns draws take into account."""
        self.label_logp = dict(tables)
        self.meta["labels"] = list(tables)
        self._tables = None

    def _build_groups(self) -> None:
        dep = list(self.dep_discrete.values())
        sizes = list(self.dep_sizes.values())
        self.levels = group_levels(dep, sizes, self.cluster, self.meta["num_clusters"])
        self._tables: tuple[np.ndarray, list[IdTable]] | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        _, arrays = pack_values(self.values, f"{self.name}.values")
        if self.key is not None:
            arrays[f"{self.name}.key"] = np.frombuffer(self.key, np.uint8).copy()
        deps = {f"{self.name}.dep.{c}": v.astype(np.int32) for c, v in self.dep_discrete.items()}
        deps.update({f"{self.name}.label.{c}": t for c, t in self.label_logp.items()})
        for c, (v, nulls) in self.dep_numeric.items():
            deps[f"{self.name}.dep.{c}"] = v
            deps[f"{self.name}.depnull.{c}"] = nulls.astype(np.uint8)
        return {
            **arrays,
            **deps,
            f"{self.name}.vectors": self.vectors,
            f"{self.name}.cluster": self.cluster.astype(np.int32),
            f"{self.name}.counts": self.freq,
        }


def _index(
    col: pa.ChunkedArray, values: pa.Array, name: str, key: bytes | None, withheld: int | None
) -> np.ndarray:
    """(n,) index of each real row's id in `values` (pseudonymized first when `key`)."""
    if key is not None:
        col = pseudonymize(col, key)
    return lookup(col, values, name, unseen_code=withheld)


# ------------------------------------------------------------------------------ profiles


def _profile_vectors(
    freq: np.ndarray, rows: np.ndarray, codes: np.ndarray, c: int, dim: int, seed: int
) -> np.ndarray:
    """(C, dim) float32 in (-1, 1): [log-frequency, profile principal components...], from
    counts (C,), encoded sample rows (m, F) and their id codes (m,)."""
    rng = np.random.default_rng(seed)
    num_pc = dim - 1
    w = freq / freq.sum()
    parts = [np.log1p(freq)[:, None]]
    if num_pc > 0 and rows.shape[1] > 0:
        # per-id mean of the encoded rows, shrunk toward the global mean: (C, F)
        gmean = rows.mean(axis=0)
        reduce = _pca_basis(rows - gmean, min(rows.shape[1], 4 * num_pc))  # (F, p), p small
        proj = (rows - gmean) @ reduce  # (m, p)
        cnt = np.bincount(codes, minlength=c).astype(np.float64)
        sums = np.stack(
            [np.bincount(codes, weights=proj[:, j], minlength=c) for j in range(proj.shape[1])], 1
        )
        means = sums / (cnt[:, None] + PROFILE_PRIOR_ROWS)  # (C, p)
        basis = _pca_basis(means * np.sqrt(w)[:, None], num_pc)  # frequency-weighted
        parts.append(means @ basis)
    feats = np.concatenate(parts, axis=1)
    feats = np.pad(feats, ((0, 0), (0, dim - feats.shape[1])))
    mean = (feats * w[:, None]).sum(0)
    std = np.sqrt(((feats - mean) ** 2 * w[:, None]).sum(0)) + 1e-9
    vectors = np.clip((feats - mean) / (3 * std), -0.94, 0.94)
    # breaks exact ties (e.g. ids absent from the sample)
    vectors[:, -1] += rng.uniform(-0.05, 0.05, c)
    return vectors.astype(np.float32)


def _typical_spacing(
    vectors: np.ndarray, cluster: np.ndarray, seed: int, sample: int = 2_000
) -> float:
    """Median distance from an id to the nearest other id of its cluster (on a sample of ids)."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(len(vectors), size=min(sample, len(vectors)), replace=False)
    order = np.argsort(cluster, kind="stable")
    start = np.searchsorted(cluster[order], np.arange(cluster.max() + 2))
    best = np.full(len(ids), np.inf)
    for j, i in enumerate(ids):  # bounded: `sample` ids x one cluster each, at fit time only
        others = order[start[cluster[i]] : start[cluster[i] + 1]]
        d2 = ((vectors[others] - vectors[i]) ** 2).sum(1)
        d2[others == i] = np.inf
        best[j] = d2.min()
    finite = best[np.isfinite(best)]
    return float(max(np.sqrt(np.median(finite)) if len(finite) else 0.1, 1e-3))


def _pca_basis(x: np.ndarray, k: int) -> np.ndarray:
    """Top-k right singular vectors of x (m, F), (F, k); padded with zeros when F < k."""
    _, _, vt = np.linalg.svd(x.T @ x, hermitian=True)
    basis = vt[:k].T
    return np.pad(basis, ((0, 0), (0, k - basis.shape[1])))


def _balanced_clusters(vectors: np.ndarray, freq: np.ndarray) -> tuple[int, np.ndarray]:
    """~sqrt(C) clusters of equal id count: slabs along vector dim 0, then dim 1 inside each
    slab. Returns the number of clusters and the cluster (C,) of each id."""
    c = len(vectors)
    slabs = max(1, math.ceil(math.sqrt(math.sqrt(c))))
    per_slab = max(1, math.ceil(math.sqrt(c) / slabs))
    rank0 = np.empty(c, np.int64)
    rank0[np.lexsort((np.arange(c), vectors[:, 0]))] = np.arange(c)
    slab = rank0 * slabs // c
    key1 = vectors[:, 1] if vectors.shape[1] > 1 else np.zeros(c)
    order = np.lexsort((np.arange(c), key1, slab))
    slab_sorted = slab[order]
    slab_start = np.searchsorted(slab_sorted, np.arange(slabs))
    slab_size = np.bincount(slab, minlength=slabs)
    pos = np.arange(c) - slab_start[slab_sorted]
    sub = pos * per_slab // np.maximum(slab_size[slab_sorted], 1)
    cluster = np.empty(c, np.int64)
    cluster[order] = slab_sorted * per_slab + sub
    # renumber so cluster ids are dense
    used, cluster = np.unique(cluster, return_inverse=True)
    return len(used), cluster


# --------------------------------------------------------------------- dependents, labels


def attach_dependents(
    ids: IdCodec, sample: pa.Table, small: list[Codec], claimed: set[str]
) -> set[str]:
    """Find the columns whose value is the same on every sample row of each id (item ->
    genre, user -> age) and store that value per id. Returns the names attached."""
    code = ids.codes(sample.column(ids.name))
    if ids.withheld is not None:  # rare text values share one id: it determines nothing
        sample = sample.filter(pa.array(code != ids.withheld))
        code = code[code != ids.withheld]
    c = ids.num_ids
    rows_per_id = np.bincount(code, minlength=c)
    if (rows_per_id > 1).sum() < 2:
        return set()  # no id repeats in the sample: nothing can be established
    discrete, numeric = {}, {}
    for codec in small:
        if codec.name in claimed:
            continue
        if codec.kind == "discrete":
            v = codec.codes(sample.column(codec.name))
            if _constant_per_id(code, v.astype(np.float64)):
                per_id = np.full(c, -1, np.int64)
                per_id[code] = v
                discrete[codec.name] = (per_id, codec.size)
        elif codec.kind == "numeric":
            v, nulls = to_float(sample.column(codec.name))
            v = np.where(nulls, np.nan, v)
            if _constant_per_id(code, v):
                per_id, per_null = np.full(c, np.nan), np.zeros(c, bool)
                per_id[code], per_null[code] = np.where(nulls, 0.0, v), nulls
                per_id[rows_per_id == 0] = np.nan
                numeric[codec.name] = (per_id, per_null)
    ids.set_dependents(discrete, numeric)
    return set(discrete) | set(numeric)


def _constant_per_id(code: np.ndarray, value: np.ndarray) -> bool:
    """True when every id has a single value (NaN counts as a value) in these rows."""
    order = np.lexsort((value, code))
    c, v = code[order], value[order]
    same_id = c[1:] == c[:-1]
    same_value = (v[1:] == v[:-1]) | (np.isnan(v[1:]) & np.isnan(v[:-1]))
    return bool(np.all(same_value[same_id]))


def attach_labels(ids: IdCodec, sample: pa.Table, labels: list[Codec]) -> None:
    """log P(label value | id) per label column, shrunk toward the label's overall rates, so ids
    can be drawn consistently with the labels a row already has (the targets downstream
    models learn from ids)."""
    code = ids.codes(sample.column(ids.name))
    c = ids.num_ids
    tables = {}
    for codec in labels:
        if codec.name in ids.dep_sizes:
            continue  # already exact through the dependent-column decoding
        v, k = codec.codes(sample.column(codec.name)), codec.size
        counts = np.bincount(code * k + v, minlength=c * k).reshape(c, k)
        prior = (np.bincount(v, minlength=k) + 1) / (len(v) + k)
        probs = (counts + PROFILE_PRIOR_ROWS * prior) / (
            counts.sum(1, keepdims=True) + PROFILE_PRIOR_ROWS
        )
        tables[codec.name] = np.log(probs).astype(np.float32)
    ids.set_labels(tables)
