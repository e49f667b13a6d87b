"""Vectorized reversible encoder: an Arrow table <-> a float32 matrix the GAN learns from.

Every column becomes one or more *spans* of the matrix:
- numeric / datetime: mode-specific normalization. A variational Gaussian mixture, fitted on a
  bounded sample, gives each value a mode (one-hot span, plus a slot for null) and a scalar
  `(x - mean_mode) / (4 * std_mode)` in (-1, 1) (scalar span, tanh in the generator).
  Integer columns with few distinct values are one-hot instead, so their marginals are exact.
- categorical / label (cardinality <= max_onehot_cardinality): one one-hot span, nulls a slot.
- catalog-scale ids (user/item/text roles and categoricals above the threshold): a two-level
  code. Each id gets a fixed profile vector (its log-frequency and the mean encoding of the
  rows it appears in, shrunk to the global mean); ids are split into ~sqrt(C) balanced
  clusters by those vectors. A row is the cluster one-hot plus the id's vector. Decoding
  draws an id with probability ~ frequency x a Gaussian kernel around the generated vector
  (bandwidth = the typical spacing of ids) x P(row's label values | id), so near-identical
  profiles share rows by frequency instead of one "hub" id taking them all, and ids keep
  their label rates. Candidates are the ids of the chosen cluster, narrowed to the ids whose
  dependent columns (found at fit: item -> genre, user -> age) match the row, so ids and
  the columns they determine agree. Memory is C x id_embedding_dim; decoding costs about
  sqrt(C) x dim per row.

No nn.Module and no Ray here. State is JSON metadata plus named numpy arrays (no pickle).
"""

from __future__ import annotations

import base64
import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.config import GanConfig
from synthrec.errors import DataError, ModelError
from synthrec.schema import ID_ROLES, Kind, Role, Schema, kind_of, null_mask

SpanKind = Literal["scalar", "onehot"]
WEIGHT_THRESHOLD = 0.005  # mixture components lighter than this are dropped
STD_FLOOR = 1e-3  # in standardized units; keeps constant columns finite
PROFILE_PRIOR_ROWS = 5.0  # shrinkage of rare ids' profiles toward the global mean
ENCODER_FORMAT = 1
MAX_GROUP_IDS = 4096  # largest id group searched per row when decoding consistently
DRAW_CANDIDATES = 64  # an id is drawn among this many most likely ids of its cluster/group
NEAREST_CHUNK = 1 << 22  # member-vector floats gathered at once when decoding ids
GROUP_MATMUL_ROWS = (
    16  # rows per group from which a group's ids are scored by one matmul, not gathered
)
PAD_SCORE = 1e30  # padded slots of id search tables score about -PAD_SCORE
CALIB_STEP = 1.0  # id draw-weight calibration: largest change of a log weight per step
CALIB_LIMIT = 4.0  # ... and in all (a weight moves a draw's odds by at most e^4)


@dataclass(frozen=True)
class Span:
    """A slice [start, start+size) of the encoded matrix."""

    column: str
    kind: SpanKind
    start: int
    size: int
    cond: bool = False  # part of the conditional vector (training-by-sampling)

    @property
    def stop(self) -> int:
        return self.start + self.size


# ---------------------------------------------------------------------------------- values


def pack_values(values: pa.Array, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Category values as numeric arrays (strings as Arrow's utf-8 bytes + offsets)."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        arr = values.cast(pa.large_string())
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[
            arr.offset : arr.offset + len(arr) + 1
        ]
        data = (
            np.frombuffer(arr.buffers()[2], dtype=np.uint8)
            if arr.buffers()[2]
            else np.zeros(0, np.uint8)
        )
        data = data[offsets[0] : offsets[-1]].copy()
        return {"kind": "string"}, {
            f"{prefix}.offsets": offsets - offsets[0],
            f"{prefix}.data": data,
        }
    if pa.types.is_boolean(values.type):
        return {"kind": "bool"}, {
            f"{prefix}.values": np.asarray(values.to_numpy(zero_copy_only=False), np.uint8)
        }
    if pa.types.is_integer(values.type):
        return {"kind": "int"}, {
            f"{prefix}.values": np.asarray(values.cast(pa.int64()).to_numpy(), np.int64)
        }
    raise ModelError(f"cannot store category values of type {values.type}")


def unpack_values(meta: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str) -> pa.Array:
    if meta["kind"] == "string":
        offsets, data = arrays[f"{prefix}.offsets"], arrays[f"{prefix}.data"]
        return pa.LargeStringArray.from_buffers(
            len(offsets) - 1,
            pa.py_buffer(offsets.astype(np.int64)),
            pa.py_buffer(data.astype(np.uint8)),
        )
    if meta["kind"] == "bool":
        return pa.array(arrays[f"{prefix}.values"].astype(bool))
    return pa.array(arrays[f"{prefix}.values"].astype(np.int64))


def _plain(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dictionary columns decoded, so lookups compare values."""
    return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col


def _categories(col: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Distinct non-null values (sorted) and their row counts."""
    counts = pc.value_counts(_plain(col).drop_null())
    values, freq = counts.field("values"), counts.field("counts")
    order = pc.sort_indices(values)
    return values.take(order), np.asarray(freq.take(order).to_numpy(), np.int64)


def _lookup(col: pa.ChunkedArray, values: pa.Array, name: str) -> np.ndarray:
    """Index of each row's value in `values`; -1 for null. Unseen values are a DataError."""
    plain = _plain(col)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        plain = plain.cast(pa.large_string())
        values = values.cast(pa.large_string())
    elif pa.types.is_integer(values.type):
        plain = plain.cast(pa.int64())
    idx = pc.index_in(plain, value_set=values)
    nulls = null_mask(col)
    out = np.asarray(
        idx.to_numpy(zero_copy_only=False) if idx.null_count == 0 else idx.fill_null(-1).to_numpy(),
        dtype=np.int64,
    )
    unseen = (out < 0) & ~nulls
    if unseen.any():
        example = plain.filter(pa.array(unseen))[0].as_py()
        raise DataError(
            f"column '{name}': {int(unseen.sum())} rows have values the encoder never saw "
            f"(e.g. {example!r}); fit the encoder on a table that contains them"
        )
    out[nulls] = -1
    return out


def _to_float(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Values as float64 (datetimes as their integer ticks) and the null mask."""
    nulls = null_mask(col)
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        col = col.cast(
            pa.int64()
            if pa.types.is_timestamp(col.type) or pa.types.is_date64(col.type)
            else pa.int32()
        )
    col = (
        col.cast(pa.float64())
        if not pa.types.is_boolean(col.type)
        else col.cast(pa.int8()).cast(pa.float64())
    )
    values = (
        np.asarray(col.fill_null(0).to_numpy(), dtype=np.float64)
        if col.null_count
        else np.asarray(col.to_numpy(), dtype=np.float64)
    )
    values = np.where(nulls, 0.0, values)
    return values, nulls


def _gumbel_argmax(logp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row from softmax(logp) (Gumbel-max trick), vectorized."""
    return np.argmax(logp - np.log(-np.log(rng.random(logp.shape) + 1e-20) + 1e-20), axis=1)


# ---------------------------------------------------------------------------------- codecs


class NumericCodec:
    """Mode-specific normalization: spans [scalar(1), onehot(modes (+ null))]."""

    role_kinds = ("numeric",)

    def __init__(self, name: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]):
        self.name, self.meta = name, meta
        self.means = arrays[f"{name}.means"]  # (K,) standardized
        self.stds = arrays[f"{name}.stds"]  # (K,)
        self.weights = arrays[f"{name}.weights"]

    @classmethod
    def fit(
        cls,
        name: str,
        col: pa.ChunkedArray,
        sample: pa.ChunkedArray,
        cfg: GanConfig,
        nullable: bool,
    ) -> NumericCodec:
        values, nulls = _to_float(sample)
        full_values, full_nulls = _to_float(col)
        x = values[~nulls] if (~nulls).any() else full_values[~full_nulls]
        center, scale = float(x.mean()), float(x.std()) or 1.0
        z = (x - center) / scale
        means, stds, weights = _fit_modes(z, cfg.num_modes, cfg.seed)
        finite = full_values[~full_nulls]
        meta = {
            "codec": "numeric",
            "center": center,
            "scale": scale,
            "nullable": bool(nullable or full_nulls.any()),
            "integral": bool(kind_of(col.type) in (Kind.INT, Kind.DATETIME)),
            "min": float(finite.min()),
            "max": float(finite.max()),
        }
        return cls(
            name, meta, {f"{name}.means": means, f"{name}.stds": stds, f"{name}.weights": weights}
        )

    @property
    def num_modes(self) -> int:
        return len(self.means)

    def span_specs(self) -> list[tuple[SpanKind, int, bool]]:
        return [
            ("scalar", 1, False),
            ("onehot", self.num_modes + int(self.meta["nullable"]), False),
        ]

    def counts(self) -> list[np.ndarray | None]:
        return [None, None]

    def transform(self, col: pa.ChunkedArray, rng: np.random.Generator) -> np.ndarray:
        values, nulls = _to_float(col)
        z = (values - self.meta["center"]) / self.meta["scale"]
        # log posterior of each mode, (n, K); a mode is drawn from it as CTGAN does
        logp = (
            np.log(self.weights + 1e-12)
            - np.log(self.stds)
            - 0.5 * ((z[:, None] - self.means) / self.stds) ** 2
        )
        mode = _gumbel_argmax(logp, rng)
        alpha = np.clip((z - self.means[mode]) / (4 * self.stds[mode]), -0.99, 0.99)
        block = np.zeros((len(z), 1 + self.span_specs()[1][1]), np.float32)
        block[:, 0] = np.where(nulls, 0.0, alpha)
        mode = np.where(nulls, self.num_modes, mode)
        block[np.arange(len(z)), 1 + mode] = 1.0
        return block

    def decode(self, parts: list[np.ndarray], dtype: pa.DataType, override=None) -> pa.Array:
        """`override`: (rows mask, values, nulls) that replace the generated values there."""
        alpha, mode = parts[0][:, 0], parts[1]
        nulls = mode >= self.num_modes
        mode = np.minimum(mode, self.num_modes - 1)
        z = np.clip(alpha, -1, 1) * 4 * self.stds[mode] + self.means[mode]
        x = np.clip(
            z * self.meta["scale"] + self.meta["center"], self.meta["min"], self.meta["max"]
        )
        if override is not None:
            rows, values, value_nulls = override
            x, nulls = np.where(rows, values, x), np.where(rows, value_nulls, nulls)
        if self.meta["integral"]:
            x = np.rint(x).astype(np.int64)
        return _cast_out(x, nulls, dtype)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            f"{self.name}.means": self.means,
            f"{self.name}.stds": self.stds,
            f"{self.name}.weights": self.weights,
        }


def _fit_modes(
    z: np.ndarray, num_modes: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Variational (Dirichlet-process) Gaussian mixture on standardized values; light modes dropped."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import BayesianGaussianMixture

    k = int(min(num_modes, len(np.unique(z[:10_000]))))
    if k <= 1 or len(z) < 2 * num_modes:
        return np.array([z.mean()]), np.array([max(z.std(), STD_FLOOR)]), np.array([1.0])
    bgm = BayesianGaussianMixture(
        n_components=k,
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=1e-3,
        max_iter=100,
        n_init=1,
        random_state=seed,
        covariance_type="spherical",
    )  # 1-D: same model, far cheaper than "full"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        bgm.fit(z.reshape(-1, 1))
    keep = bgm.weights_ > WEIGHT_THRESHOLD
    means = bgm.means_[keep, 0]
    stds = np.maximum(np.sqrt(bgm.covariances_[keep]), STD_FLOOR)
    weights = bgm.weights_[keep] / bgm.weights_[keep].sum()
    return means.astype(np.float64), stds.astype(np.float64), weights.astype(np.float64)


class DiscreteCodec:
    """One-hot over the distinct values (+ a null slot): spans [onehot(K (+1))]."""

    def __init__(self, name: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]):
        self.name, self.meta = name, meta
        self.values = unpack_values(meta["values"], arrays, f"{name}.values")
        self.freq = arrays[f"{name}.counts"]

    @classmethod
    def fit(
        cls, name: str, col: pa.ChunkedArray, nullable: bool, conditionable: bool
    ) -> DiscreteCodec:
        values, freq = _categories(col)
        nulls = int(col.null_count)
        vmeta, arrays = pack_values(values, f"{name}.values")
        nullable = bool(nullable or nulls)
        counts = np.concatenate([freq, [nulls]]) if nullable else freq
        meta = {
            "codec": "discrete",
            "values": vmeta,
            "nullable": nullable,
            "conditionable": conditionable,
        }
        return cls(name, meta, {**arrays, f"{name}.counts": counts.astype(np.int64)})

    @property
    def size(self) -> int:
        return len(self.values) + int(self.meta["nullable"])

    def span_specs(self) -> list[tuple[SpanKind, int, bool]]:
        return [("onehot", self.size, True)]

    def counts(self) -> list[np.ndarray | None]:
        return [self.freq]

    def codes(self, col: pa.ChunkedArray) -> np.ndarray:
        idx = _lookup(col, self.values, self.name)
        if (idx < 0).any() and not self.meta["nullable"]:
            raise DataError(
                f"column '{self.name}': {int((idx < 0).sum())} nulls, but the encoder saw none; "
                f"fit the encoder on a table that contains them"
            )
        return np.where(idx < 0, len(self.values), idx)

    def transform(self, col: pa.ChunkedArray, rng: np.random.Generator) -> np.ndarray:
        block = np.zeros((len(col), self.size), np.float32)
        block[np.arange(len(col)), self.codes(col)] = 1.0
        return block

    def decode(self, parts: list[np.ndarray], dtype: pa.DataType) -> pa.Array:
        code = parts[0]
        nulls = code >= len(self.values)
        out = self.values.take(pa.array(np.minimum(code, len(self.values) - 1)))
        if nulls.any():
            out = pc.if_else(pa.array(nulls), pa.nulls(len(out), out.type), out)
        return out.cast(dtype)

    def arrays(self) -> dict[str, np.ndarray]:
        _, arrays = pack_values(self.values, f"{self.name}.values")
        return {**arrays, f"{self.name}.counts": self.freq}


class IdCodec:
    """Catalog-scale ids: spans [onehot(clusters), scalar(id_embedding_dim)]."""

    def __init__(self, name: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]):
        self.name, self.meta = name, meta
        self.values = unpack_values(meta["values"], arrays, f"{name}.values")
        self.vectors = arrays[f"{name}.vectors"].astype(np.float32)  # (C, d) in (-1, 1)
        self.cluster = arrays[f"{name}.cluster"].astype(np.int64)  # (C,)
        self.freq = arrays[f"{name}.counts"]  # (C,) rows per id
        self.log_freq = np.log(np.maximum(self.freq, 1)).astype(np.float32)
        # per-id log draw weights fitted after training (`calibrate`), so draws keep the ids' frequencies
        self.calib = arrays.get(f"{name}.calib", np.zeros(len(self.freq), np.float32)).astype(
            np.float32
        )
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

    def set_labels(self, tables: dict[str, np.ndarray]) -> None:
        """log P(value | id) tables (C, K) of the label columns draws take into account."""
        self.label_logp = dict(tables)
        self.meta["labels"] = list(tables)
        self._tables = None

    @classmethod
    def fit(
        cls,
        name: str,
        col: pa.ChunkedArray,
        sample: pa.ChunkedArray,
        profile_rows: np.ndarray,
        cfg: GanConfig,
    ) -> IdCodec:
        """`sample`: this column on a bounded sample; `profile_rows`: (m, F) other columns encoded."""
        values, freq = _categories(col)
        c = len(values)
        codes = _lookup(sample, values, name)
        vectors = _profile_vectors(freq, profile_rows, codes, c, cfg.id_embedding_dim, cfg.seed)
        num_clusters, cluster = _balanced_clusters(vectors, freq)
        vmeta, arrays = pack_values(values, f"{name}.values")
        meta = {
            "codec": "id",
            "values": vmeta,
            "num_clusters": int(num_clusters),
            "dim": cfg.id_embedding_dim,
            "bandwidth": _typical_spacing(vectors, cluster, cfg.seed),
        }
        arrays.update(
            {
                f"{name}.vectors": vectors,
                f"{name}.cluster": cluster.astype(np.int32),
                f"{name}.counts": freq.astype(np.int64),
            }
        )
        return cls(name, meta, arrays)

    def span_specs(self) -> list[tuple[SpanKind, int, bool]]:
        return [("onehot", self.meta["num_clusters"], True), ("scalar", self.meta["dim"], False)]

    def calibrate(self, drawn: np.ndarray) -> float:
        """One step of draw-weight calibration from `drawn` (C,), how often a sample drew each
        id: weights move toward training frequency / drawn frequency (add-one smoothed, at
        most CALIB_STEP per step, CALIB_LIMIT in all). Returns the sample's total variation
        distance to the training frequencies (before this step)."""
        target = self.freq / max(1, self.freq.sum()) * drawn.sum()
        step = np.clip(np.log((target + 1.0) / (drawn + 1.0)), -CALIB_STEP, CALIB_STEP)
        self.calib = np.clip(self.calib + step, -CALIB_LIMIT, CALIB_LIMIT).astype(np.float32)
        self._tables = None
        return self.total_variation(drawn)

    def total_variation(self, drawn: np.ndarray) -> float:
        """Total variation distance between draw counts per id (C,) and the training frequencies."""
        return float(
            0.5 * np.abs(self.freq / max(1, self.freq.sum()) - drawn / max(1, drawn.sum())).sum()
        )

    def counts(self) -> list[np.ndarray | None]:
        return [
            np.bincount(
                self.cluster, weights=self.freq, minlength=self.meta["num_clusters"]
            ).astype(np.int64),
            None,
        ]

    def codes(self, col: pa.ChunkedArray) -> np.ndarray:
        idx = _lookup(col, self.values, self.name)
        if (idx < 0).any():
            raise DataError(
                f"column '{self.name}': {int((idx < 0).sum())} null ids; every row needs an id"
            )
        return idx

    def transform(self, col: pa.ChunkedArray, rng: np.random.Generator) -> np.ndarray:
        idx = self.codes(col)
        block = np.zeros((len(idx), self.meta["num_clusters"] + self.meta["dim"]), np.float32)
        block[np.arange(len(idx)), self.cluster[idx]] = 1.0
        block[:, self.meta["num_clusters"] :] = self.vectors[idx]
        return block

    def decode(self, parts: list[np.ndarray], dtype: pa.DataType) -> pa.Array:
        return self.values.take(pa.array(self.nearest(parts[0], parts[1]))).cast(dtype)

    def nearest(
        self, cluster: np.ndarray, query: np.ndarray, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Id index per row among the members of its cluster: the nearest to the query vector,
        or with `rng` a draw ~ frequency x kernel(query), (n,)."""
        return self._pick(self._search_tables()[0], cluster, query, {}, rng)

    def _pick(
        self,
        table: _IdTable,
        group: np.ndarray,
        query: np.ndarray,
        codes: dict[str, np.ndarray],
        rng: np.random.Generator | None,
    ) -> np.ndarray:
        """Id per row among its group's members; `codes`: the rows' label codes (used with rng)."""
        ones = np.ones((len(query), 1), np.float32)
        if rng is None:
            return _nearest(
                group,
                np.concatenate([query, ones], axis=1),
                table.members,
                table.nearest,
                table.sizes,
            )
        parts = [query * self.inv_h2, ones]
        for (
            col,
            logp,
        ) in self.label_logp.items():  # label values the row already has: log P(value | id)
            onehot = np.zeros((len(query), logp.shape[1]), np.float32)
            onehot[np.arange(len(query)), codes[col]] = 1.0
            parts.append(onehot)
        return _nearest(
            group, np.concatenate(parts, axis=1), table.members, table.kernel, table.sizes, rng
        )

    def _search_tables(self) -> list[_IdTable]:
        """[cluster level, *group levels] search tables, built on first use."""
        if self._tables is None:
            labels = list(self.label_logp.values())
            log_weight = self.log_freq + self.calib
            table = lambda group, ids, k: _IdTable.build(
                group,
                ids,
                k,
                self.vectors,
                log_weight,  # noqa: E731
                self.inv_h2,
                labels,
            )
            self._tables = [
                table(self.cluster, np.arange(len(self.cluster)), self.meta["num_clusters"])
            ]
            self._tables += [
                table(group, ids, len(keys)) for _, _, keys, group, ids in self.group_levels
            ]
        return self._tables

    # -- functional dependents -------------------------------------------------------------
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

    def _group_keys(self, codes: list[np.ndarray], sizes: list[int]) -> np.ndarray:
        key = np.zeros(len(codes[0]), np.int64)
        for c, size in zip(codes, sizes):
            key = key * (size + 1) + c
        return key

    def _build_groups(self) -> None:
        """Ids grouped by the values of their discrete dependents, first within each cluster
        (small groups, and the generator's cluster choice is kept), then across clusters."""
        self.group_levels, self._tables = [], None
        if not self.dep_discrete:
            return
        codes = list(self.dep_discrete.values())
        known = np.all(np.stack(codes) >= 0, axis=0)
        ids = np.flatnonzero(known)
        for with_cluster in (True, False):
            sizes = list(self.dep_sizes.values()) + (
                [self.meta["num_clusters"]] if with_cluster else []
            )
            if math.prod(k + 1 for k in sizes) >= 2**62:
                continue
            level_codes = [c[known] for c in codes] + (
                [self.cluster[known]] if with_cluster else []
            )
            keys, group = np.unique(self._group_keys(level_codes, sizes), return_inverse=True)
            if np.bincount(group).max() > MAX_GROUP_IDS:
                continue  # too large to search per row
            self.group_levels.append((with_cluster, sizes, keys, group, ids))

    def decode_index(
        self,
        parts: list[np.ndarray],
        codes: dict[str, np.ndarray],
        keep: set[str],
        rng: np.random.Generator | None = None,
    ):
        """Id index per row, consistent with the row's dependent columns where possible.

        Rows whose dependent values were seen together choose an id among the ids with those
        values (inside the row's cluster when such ids exist there); other rows take an id of
        their cluster, and their dependents (except the columns in `keep`, e.g. conditions)
        are overwritten with the id's values. Returns (index, {discrete column: codes},
        {numeric column: override})."""
        cluster, query = parts[0], parts[1]
        idx = np.empty(len(cluster), np.int64)
        todo = np.ones(len(idx), bool)
        dep_codes = [codes[c] for c in self.dep_sizes]
        base, *levels = self._search_tables()
        for (with_cluster, sizes, keys, _, _), table in zip(self.group_levels, levels):
            key = self._group_keys(dep_codes + ([cluster] if with_cluster else []), sizes)
            pos = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
            hit = todo & (keys[pos] == key)
            idx[hit] = self._pick(
                table, pos[hit], query[hit], {c: codes[c][hit] for c in self.label_logp}, rng
            )
            todo &= ~hit
        matched = ~todo
        idx[todo] = self._pick(
            base, cluster[todo], query[todo], {c: codes[c][todo] for c in self.label_logp}, rng
        )
        new_codes = {}
        for col, per_id in self.dep_discrete.items():
            value = per_id[idx]
            rows = ~matched & (value >= 0)
            if col not in keep and rows.any():
                new_codes[col] = np.where(rows, value, codes[col])
        overrides = {}
        for col, (per_id, nulls) in self.dep_numeric.items():
            value = per_id[idx]
            overrides[col] = (~np.isnan(value) | nulls[idx], np.nan_to_num(value), nulls[idx])
        return idx, new_codes, overrides

    def arrays(self) -> dict[str, np.ndarray]:
        _, arrays = pack_values(self.values, f"{self.name}.values")
        deps = {f"{self.name}.dep.{c}": v.astype(np.int32) for c, v in self.dep_discrete.items()}
        deps.update({f"{self.name}.label.{c}": t for c, t in self.label_logp.items()})
        for c, (v, nulls) in self.dep_numeric.items():
            deps[f"{self.name}.dep.{c}"], deps[f"{self.name}.depnull.{c}"] = (
                v,
                nulls.astype(np.uint8),
            )
        if self.calib.any():
            deps[f"{self.name}.calib"] = self.calib
        return {
            **arrays,
            **deps,
            f"{self.name}.vectors": self.vectors,
            f"{self.name}.cluster": self.cluster.astype(np.int32),
            f"{self.name}.counts": self.freq,
        }


@dataclass
class _IdTable:
    """Ids searched per row, grouped: padded members (G, S) (members first, `sizes` (G,) of
    them) and member vectors augmented so that one dot product with a row's augmented query
    is its score: `nearest` (G, S, d+1) = [v, -|v|^2/2] against [q, 1] (argmax = nearest id),
    `kernel` (G, S, d+1+sum K) = [v, log f - |v|^2/2h^2, log P(label value | id)...] against
    [q/h^2, 1, one-hot label values] (log of frequency x Gaussian kernel x label likelihood,
    up to a per-row constant). Pads score about -PAD_SCORE."""

    members: np.ndarray
    sizes: np.ndarray
    nearest: np.ndarray
    kernel: np.ndarray

    @classmethod
    def build(
        cls,
        group: np.ndarray,
        ids: np.ndarray,
        k: int,
        vectors: np.ndarray,
        log_freq: np.ndarray,
        inv_h2: float,
        labels: list[np.ndarray],
    ) -> _IdTable:
        order = np.argsort(group, kind="stable")
        sizes = np.bincount(group, minlength=k)
        start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        slot = np.arange(len(group)) - start[group[order]]
        members = np.zeros((k, max(1, int(sizes.max(initial=0)))), np.int64)
        members[group[order], slot] = ids[order]
        valid = np.zeros(members.shape, bool)
        valid[group[order], slot] = True
        v = vectors[members]
        half = 0.5 * (v.astype(np.float64) ** 2).sum(-1)
        near = np.where(valid, -half, -PAD_SCORE)[..., None]
        kern = np.where(valid, log_freq[members] - half * inv_h2, -PAD_SCORE)[..., None]
        return cls(
            members,
            sizes,
            np.concatenate([v, near], -1).astype(np.float32),
            np.concatenate([v, kern] + [t[members] for t in labels], -1).astype(np.float32),
        )


def _nearest(
    group: np.ndarray,
    query: np.ndarray,
    members: np.ndarray,
    vectors: np.ndarray,
    sizes: np.ndarray,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """For each row, the member of its group (padded tables: members (G, S), augmented vectors
    (G, S, d'), sizes (G,)) with the highest score query . vector, or with `rng` a draw with
    probability ~ exp(score) (Gumbel-max), (n,).

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
    row_sizes = sizes[group]
    order = np.argsort(row_sizes, kind="stable")
    row_sizes = row_sizes[order]
    start = 0
    while start < len(
        order
    ):  # chunks of rows whose group sizes are within 2x, <= NEAREST_CHUNK floats
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
        if width > DRAW_CANDIDATES or len(rows) >= GROUP_MATMUL_ROWS * len(keys):
            # wide groups, or many rows per group: one matmul per group (a gather would move r x S x d')
            score = np.empty((len(rows), width), np.float32)
            for k, lo, hi in zip(keys, first, np.append(first[1:], len(g))):
                np.matmul(q[lo:hi], vectors[k, :width].T, out=score[lo:hi])
        else:
            score = np.einsum("rsd,rd->rs", vectors[g, :width], q)
        pos = np.argmax(score, axis=1) if rng is None else _gumbel_draw(score, rng)
        out[rows] = members[g, pos]
    return out


def _gumbel_draw(score: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Column drawn per row with probability ~ exp(score) among its DRAW_CANDIDATES highest
    (the rest is tail), by Gumbel-max."""
    pos = None
    if score.shape[1] > DRAW_CANDIDATES:
        pos = np.argpartition(score, score.shape[1] - DRAW_CANDIDATES, axis=1)[:, -DRAW_CANDIDATES:]
        score = np.take_along_axis(score, pos, axis=1)
    noisy = score - np.log(-np.log(rng.random(score.shape, dtype=np.float32) + 1e-20) + 1e-20)
    best = np.argmax(noisy, axis=1)
    return best if pos is None else np.take_along_axis(pos, best[:, None], axis=1)[:, 0]


def _profile_vectors(
    freq: np.ndarray, rows: np.ndarray, codes: np.ndarray, c: int, dim: int, seed: int
) -> np.ndarray:
    """(C, dim) float32 in (-1, 1): [log-frequency, profile principal components...]."""
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
    vectors[:, -1] += rng.uniform(
        -0.05, 0.05, c
    )  # breaks exact ties (e.g. ids absent from the sample)
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
    """Top-k right singular vectors of x, (F, k); padded with zeros when F < k."""
    _, _, vt = np.linalg.svd(x.T @ x, hermitian=True)
    basis = vt[:k].T
    return np.pad(basis, ((0, 0), (0, k - basis.shape[1])))


def _balanced_clusters(vectors: np.ndarray, freq: np.ndarray) -> tuple[int, np.ndarray]:
    """~sqrt(C) clusters of equal id count: slabs along vector dim 0, then dim 1 inside each slab."""
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


def _cast_out(x: np.ndarray, nulls: np.ndarray, dtype: pa.DataType) -> pa.Array:
    mask = nulls if nulls.any() else None
    if pa.types.is_timestamp(dtype) or pa.types.is_date64(dtype):
        return pa.array(x.astype(np.int64), pa.int64(), mask=mask).cast(dtype)
    if pa.types.is_date32(dtype):
        return pa.array(x.astype(np.int32), pa.int32(), mask=mask).cast(dtype)
    if pa.types.is_integer(dtype):
        return pa.array(x.astype(np.int64), pa.int64(), mask=mask).cast(dtype)
    return pa.array(x.astype(np.float64), pa.float64(), mask=mask).cast(dtype)


CODECS = {"numeric": NumericCodec, "discrete": DiscreteCodec, "id": IdCodec}


# ---------------------------------------------------------------------------------- encoder


class Encoder:
    """A fitted, reversible table <-> matrix transform. Build with `Encoder.fit`."""

    def __init__(self, schema: Schema, codecs: list, out_schema: pa.Schema, num_rows: int):
        self.schema, self.codecs, self.out_schema, self.num_rows = (
            schema,
            codecs,
            out_schema,
            num_rows,
        )
        self.spans: list[Span] = []
        self.col_spans: list[list[int]] = []  # per codec, indices into self.spans
        start = 0
        for codec in codecs:
            idx = []
            for kind, size, cond in codec.span_specs():
                idx.append(len(self.spans))
                self.spans.append(Span(codec.name, kind, start, size, cond))
                start += size
            self.col_spans.append(idx)
        self.output_dim = start
        self.span_counts = [c for codec in codecs for c in codec.counts()]

    # -- fit -----------------------------------------------------------------------------
    @classmethod
    def fit(cls, table: pa.Table, schema: Schema, cfg: GanConfig) -> Encoder:
        """Fit on `table` (category sets and counts from all rows; modes and id profiles on
        bounded samples of cfg.mode_fit_rows / cfg.id_profile_rows rows)."""
        if table.num_rows == 0:
            raise DataError("cannot fit the encoder on an empty table (0 rows)")
        rng = np.random.default_rng(cfg.seed)
        mode_sample = table.take(_sample_rows(table.num_rows, cfg.mode_fit_rows, rng))
        codecs: dict[str, Any] = {}
        for spec in schema.columns:
            if not _is_id(spec, table.column(spec.name), cfg):
                codecs[spec.name] = _fit_small(
                    spec, table.column(spec.name), mode_sample.column(spec.name), cfg
                )
        small = [codecs[n] for n in schema.names if n in codecs]
        id_specs = [s for s in schema.columns if s.name not in codecs]
        if id_specs:
            prof = table.take(_sample_rows(table.num_rows, cfg.id_profile_rows, rng))
            prng = np.random.default_rng(cfg.seed + 1)
            rows = (
                np.concatenate([c.transform(prof.column(c.name), prng) for c in small], axis=1)
                if small
                else (np.zeros((prof.num_rows, 0), np.float32))
            )
            claimed: set[str] = set()
            for spec in id_specs:
                codec = IdCodec.fit(
                    spec.name,
                    table.column(spec.name),
                    prof.column(spec.name),
                    rows.astype(np.float64),
                    cfg,
                )
                claimed |= _attach_dependents(codec, prof, small, claimed)
                _attach_labels(codec, prof, [c for c in small if schema[c.name].role == Role.LABEL])
                codecs[spec.name] = codec
        out_schema = pa.schema([pa.field(n, table.schema.field(n).type) for n in schema.names])
        return cls(schema, [codecs[n] for n in schema.names], out_schema, table.num_rows)

    # -- transform -----------------------------------------------------------------------
    def transform(self, table: pa.Table, seed: int = 0) -> np.ndarray:
        """(n, output_dim) float32 matrix. `seed` drives the per-row mode draws."""
        missing = [n for n in self.schema.names if n not in table.column_names]
        if missing:
            raise DataError(
                f"table lacks column(s) {', '.join(missing)} that the encoder was fitted on"
            )
        rng = np.random.default_rng(seed)
        out = np.empty((table.num_rows, self.output_dim), np.float32)
        for codec, idx in zip(self.codecs, self.col_spans):
            first, last = self.spans[idx[0]], self.spans[idx[-1]]
            out[:, first.start : last.stop] = codec.transform(table.column(codec.name), rng)
        return out

    def decode(
        self,
        parts: list[np.ndarray],
        keep: set[str] | frozenset[str] = frozenset(),
        rng: np.random.Generator | None = None,
    ) -> pa.Table:
        """Table from per-span parts: (n, size) floats for scalar spans, (n,) ints for one-hot.

        Ids are decoded consistently with the columns they determine; columns in `keep`
        (conditions) are never changed. Without `rng` each id is the nearest to its vector;
        with it, a draw around it (see IdCodec.nearest)."""
        own = {c.name: [parts[i] for i in idx] for c, idx in zip(self.codecs, self.col_spans)}
        codes = {c.name: own[c.name][0] for c in self.codecs if isinstance(c, DiscreteCodec)}
        ids, numeric_over = {}, {}
        for codec in self.codecs:
            if isinstance(codec, IdCodec):
                ids[codec.name], new_codes, over = codec.decode_index(
                    own[codec.name], codes, set(keep), rng
                )
                codes.update(new_codes)
                numeric_over.update(over)
        arrays = []
        for codec, field in zip(self.codecs, self.out_schema):
            if isinstance(codec, DiscreteCodec):
                arrays.append(codec.decode([codes[codec.name]], field.type))
            elif isinstance(codec, IdCodec):
                arrays.append(codec.values.take(pa.array(ids[codec.name])).cast(field.type))
            else:
                arrays.append(
                    codec.decode(own[codec.name], field.type, numeric_over.get(codec.name))
                )
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

    # -- conditional vector --------------------------------------------------------------
    @property
    def cond_spans(self) -> list[int]:
        """Indices (into self.spans) of the one-hot spans that make up the conditional vector."""
        return [i for i, s in enumerate(self.spans) if s.cond]

    @property
    def cond_dim(self) -> int:
        return sum(self.spans[i].size for i in self.cond_spans)

    def codec(self, name: str):
        for codec in self.codecs:
            if codec.name == name:
                return codec
        raise KeyError(name)

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
                f"encoder format {meta.get('format')!r} is not supported (expected {ENCODER_FORMAT}); "
                f"retrain the model with this synthrec version"
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


def _sample_rows(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= k else np.sort(rng.choice(n, size=k, replace=False))


def _is_id(spec, col: pa.ChunkedArray, cfg: GanConfig) -> bool:
    if spec.role in ID_ROLES or spec.role == Role.TEXT:
        return True
    if spec.role in (Role.CATEGORICAL, Role.LABEL):
        return pc.count_distinct(_plain(col)).as_py() > cfg.max_onehot_cardinality
    return False


def _fit_small(spec, col: pa.ChunkedArray, sample: pa.ChunkedArray, cfg: GanConfig):
    if spec.role in (Role.CATEGORICAL, Role.LABEL):
        return DiscreteCodec.fit(spec.name, col, spec.nullable, conditionable=True)
    if spec.role == Role.NUMERIC and spec.kind in (Kind.INT, Kind.BOOL):
        if pc.count_distinct(col.drop_null()).as_py() <= cfg.max_discrete_int_levels:
            return DiscreteCodec.fit(spec.name, col, spec.nullable, conditionable=True)
    if spec.role in (Role.NUMERIC, Role.DATETIME):
        return NumericCodec.fit(spec.name, col, sample, cfg, spec.nullable)
    raise DataError(f"column '{spec.name}': role {spec.role.value} cannot be encoded")


def _attach_dependents(ids: IdCodec, sample: pa.Table, small: list, claimed: set[str]) -> set[str]:
    """Find the columns whose value is the same on every sample row of each id (item ->
    genre, user -> age) and store that value per id. Returns the names attached."""
    code = _lookup(sample.column(ids.name), ids.values, ids.name)
    c = len(ids.values)
    seen = np.bincount(code, minlength=c) > 0
    if (np.bincount(code, minlength=c) > 1).sum() < 2:
        return set()  # no id repeats in the sample: nothing can be established
    discrete, numeric = {}, {}
    for codec in small:
        if codec.name in claimed:
            continue
        if isinstance(codec, DiscreteCodec):
            v = codec.codes(sample.column(codec.name))
            if _constant_per_id(code, v.astype(np.float64)):
                per_id = np.full(c, -1, np.int64)
                per_id[code] = v
                discrete[codec.name] = (per_id, codec.size)
        elif isinstance(codec, NumericCodec):
            v, nulls = _to_float(sample.column(codec.name))
            v = np.where(nulls, np.nan, v)
            if _constant_per_id(code, v):
                per_id, per_null = np.full(c, np.nan), np.zeros(c, bool)
                per_id[code], per_null[code] = np.where(nulls, 0.0, v), nulls
                per_id[~seen] = np.nan
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


def _attach_labels(ids: IdCodec, sample: pa.Table, labels: list) -> None:
    """log P(label value | id) per label column, shrunk toward the label's overall rates, so ids
    can be drawn consistently with the labels a row already has (the targets downstream
    models learn from ids)."""
    code = _lookup(sample.column(ids.name), ids.values, ids.name)
    c = len(ids.values)
    tables = {}
    for codec in labels:
        if codec.name in ids.dep_sizes:
            continue  # already exact through the dependent-column decoding
        v = codec.codes(sample.column(codec.name))
        counts = np.bincount(code * codec.size + v, minlength=c * codec.size).reshape(c, codec.size)
        prior = (np.bincount(v, minlength=codec.size) + 1) / (len(v) + codec.size)
        probs = (counts + PROFILE_PRIOR_ROWS * prior) / (
            counts.sum(1, keepdims=True) + PROFILE_PRIOR_ROWS
        )
        tables[codec.name] = np.log(probs).astype(np.float32)
    ids.set_labels(tables)
