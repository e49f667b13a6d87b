"""The `Codec` protocol, and the numeric and one-hot codecs behind it.

A codec turns one column into one or more *spans* of the encoded matrix and back:
- `NumericCodec` (numeric / datetime): mode-specific normalization. A variational Gaussian
  mixture, fitted on a bounded sample, gives each value a mode (one-hot span, plus a slot
  for null) and a scalar `(x - mean_mode) / (4 * std_mode)` in (-1, 1) (scalar span, tanh
  in the generator). Spans: [scalar (1), one-hot (modes (+1))].
- `DiscreteCodec` (categorical / label / integers with few levels): one one-hot span over
  the distinct values, nulls a slot. Its span is part of the conditional vector.
- `IdCodec` (ids.py) implements the same protocol for catalog-scale ids.

Decoding is two passes over every codec, so the encoder never asks which codec it holds:
`resolve(rows)` lets a codec rewrite other columns' parts (an id fixes the columns it
determines), then `decode(rows, dtype)` returns each column. State is JSON metadata plus
named numpy arrays (no pickle).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.config import EncoderConfig
from synthrec.encoding.arrow import (
    categories,
    from_float,
    lookup,
    pack_values,
    plain,
    to_float,
    unpack_values,
)
from synthrec.errors import DataError
from synthrec.schema import ColumnSpec, Kind, kind_of

if TYPE_CHECKING:
    from synthrec.privacy.statistics import NoisyHistogram

SpanKind = Literal["scalar", "onehot"]
CodecKind = Literal["numeric", "discrete", "id"]
WEIGHT_THRESHOLD = 0.005  # mixture components lighter than this are dropped
STD_FLOOR = 1e-3  # in standardized units; keeps constant columns finite


@dataclass(frozen=True)
class SpanSpec:
    """A span as a codec declares it: kind, width, part of the conditional vector or not."""

    kind: SpanKind
    size: int
    cond: bool = False


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


@dataclass(frozen=True)
class FitData:
    """What a codec is fitted on."""

    spec: ColumnSpec
    column: pa.ChunkedArray  # every row: category sets and counts
    sample: pa.ChunkedArray  # the column on a bounded sample of rows (modes, id profiles)
    profile: np.ndarray | None = None  # (m, F) other columns encoded on the sample (ids)


@dataclass
class DecodeRows:
    """The rows being decoded, shared by every codec of one `Encoder.decode` call.

    parts: column -> its spans' parts ((n, size) floats for scalar spans, (n,) ints for
    one-hot spans); `resolve` may rewrite a one-hot column's codes. keep: columns never
    changed (conditions). id_weights: id column -> per-id log draw weights (C,).
    overrides: numeric column -> (rows mask, values, nulls) replacing generated values there.
    ids: id column -> the chosen id index per row (n,), set by its codec's `resolve`.
    device: where id search scores and draws (None: numpy on the CPU).
    """

    parts: dict[str, list[np.ndarray]]
    keep: frozenset[str] = frozenset()
    rng: np.random.Generator | None = None
    id_weights: dict[str, np.ndarray] = field(default_factory=dict)
    overrides: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    ids: dict[str, np.ndarray] = field(default_factory=dict)
    device: Any = None  # torch.device to search ids on (the generator's); None: numpy, CPU

    def codes(self, column: str) -> np.ndarray:
        """(n,) codes of a one-hot column."""
        return self.parts[column][0]


class Codec(Protocol):
    """One column <-> spans of the encoded matrix. Built by `fit` or from saved state."""

    kind: ClassVar[CodecKind]
    name: str
    meta: dict[str, Any]  # JSON-able state (with `codec`: the kind)

    def __init__(self, name: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]): ...

    @classmethod
    def fit(cls, data: FitData, cfg: EncoderConfig, seed: int) -> Codec: ...

    def span_specs(self) -> list[SpanSpec]: ...

    def counts(self) -> list[np.ndarray | None]:
        """Per span: training rows per one-hot slot, or None (scalar spans, modes)."""
        ...

    def transform(self, col: pa.ChunkedArray, rng: np.random.Generator) -> np.ndarray:
        """(n, sum of span sizes) float32 block."""
        ...

    def resolve(self, rows: DecodeRows) -> None:
        """First decoding pass: adjust other columns' parts (ids); most codecs do nothing."""
        ...

    def decode(self, rows: DecodeRows, dtype: pa.DataType) -> pa.Array: ...

    def arrays(self) -> dict[str, np.ndarray]:
        """Named arrays of the state (names prefixed with the column name)."""
        ...


class NumericCodec:
    """Mode-specific normalization: spans [scalar(1), onehot(modes (+ null))]."""

    kind: ClassVar[CodecKind] = "numeric"

    def __init__(self, name: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]):
        self.name, self.meta = name, meta
        self.means = arrays[f"{name}.means"]  # (K,) standardized
        self.stds = arrays[f"{name}.stds"]  # (K,)
        self.weights = arrays[f"{name}.weights"]  # (K,)

    @classmethod
    def fit(cls, data: FitData, cfg: EncoderConfig, seed: int) -> NumericCodec:
        name, col = data.spec.name, data.column
        values, nulls = to_float(data.sample)
        full_values, full_nulls = to_float(col)
        x = values[~nulls] if (~nulls).any() else full_values[~full_nulls]
        center, scale = float(x.mean()), float(x.std()) or 1.0
        means, stds, weights = _fit_modes((x - center) / scale, cfg.num_modes, seed)
        finite = full_values[~full_nulls]
        meta = {
            "codec": cls.kind,
            "center": center,
            "scale": scale,
            "nullable": bool(data.spec.nullable or full_nulls.any()),
            "integral": bool(kind_of(col.type) in (Kind.INT, Kind.DATETIME)),
            "min": float(finite.min()),
            "max": float(finite.max()),
        }
        arrays = {f"{name}.means": means, f"{name}.stds": stds, f"{name}.weights": weights}
        return cls(name, meta, arrays)

    @classmethod
    def fit_grid(cls, spec: ColumnSpec, bounds: tuple[float, float], num_modes: int):
        """The DP fit: nothing read from the rows. Modes sit on a fixed grid over the public
        `bounds` (K evenly spaced means, each std half a cell, equal weights); nulls only if
        the schema declares them; values outside the bounds decode clipped to them."""
        lo, hi = float(bounds[0]), float(bounds[1])
        k = max(1, num_modes)
        means = np.linspace(-1 + 1 / k, 1 - 1 / k, k)  # cell centres of [-1, 1]
        meta = {
            "codec": cls.kind,
            "center": (lo + hi) / 2,
            "scale": (hi - lo) / 2,
            "nullable": bool(spec.nullable),
            "integral": spec.kind in (Kind.INT, Kind.DATETIME),
            "min": lo,
            "max": hi,
            "grid": True,
        }
        arrays = {
            f"{spec.name}.means": means,
            f"{spec.name}.stds": np.full(k, 1 / k),
            f"{spec.name}.weights": np.full(k, 1 / k),
        }
        return cls(spec.name, meta, arrays)

    @property
    def num_modes(self) -> int:
        return len(self.means)

    def span_specs(self) -> list[SpanSpec]:
        return [SpanSpec("scalar", 1), SpanSpec("onehot", self.num_modes + self.meta["nullable"])]

    def counts(self) -> list[np.ndarray | None]:
        return [None, None]

    def transform(self, col: pa.ChunkedArray, rng: np.random.Generator) -> np.ndarray:
        values, nulls = to_float(col)
        if nulls.any() and not self.meta["nullable"]:
            raise DataError(
                f"column '{self.name}': {int(nulls.sum())} nulls, but the encoder has no null "
                f"slot; declare the column nullable in the schema"
            )
        if self.meta.get("grid"):  # public bounds: values outside them are clipped
            values = np.clip(values, self.meta["min"], self.meta["max"])
        z = (values - self.meta["center"]) / self.meta["scale"]
        # log posterior of each mode, (n, K); a mode is drawn from it as CTGAN does
        logp = (
            np.log(self.weights + 1e-12)
            - np.log(self.stds)
            - 0.5 * ((z[:, None] - self.means) / self.stds) ** 2
        )
        mode = gumbel_argmax(logp, rng)
        alpha = np.clip((z - self.means[mode]) / (4 * self.stds[mode]), -0.99, 0.99)
        block = np.zeros((len(z), 1 + self.span_specs()[1].size), np.float32)
        block[:, 0] = np.where(nulls, 0.0, alpha)
        mode = np.where(nulls, self.num_modes, mode)
        block[np.arange(len(z)), 1 + mode] = 1.0
        return block

    def resolve(self, rows: DecodeRows) -> None:
        pass

    def decode(self, rows: DecodeRows, dtype: pa.DataType) -> pa.Array:
        """Values from (alpha (n, 1), mode (n,)); an id's override (see DecodeRows) wins."""
        alpha, mode = rows.parts[self.name][0][:, 0], rows.parts[self.name][1]
        nulls = mode >= self.num_modes
        mode = np.minimum(mode, self.num_modes - 1)
        z = np.clip(alpha, -1, 1) * 4 * self.stds[mode] + self.means[mode]
        x = np.clip(
            z * self.meta["scale"] + self.meta["center"], self.meta["min"], self.meta["max"]
        )
        if self.name in rows.overrides:
            where, values, value_nulls = rows.overrides[self.name]
            x, nulls = np.where(where, values, x), np.where(where, value_nulls, nulls)
        if self.meta["integral"]:
            x = np.rint(x).astype(np.int64)
        return from_float(x, nulls, dtype)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            f"{self.name}.means": self.means,
            f"{self.name}.stds": self.stds,
            f"{self.name}.weights": self.weights,
        }


def _fit_modes(
    z: np.ndarray, num_modes: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Variational (Dirichlet-process) Gaussian mixture on standardized values (n,); light
    modes dropped. Returns means, stds, weights, each (K,)."""
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

    kind: ClassVar[CodecKind] = "discrete"

    def __init__(self, name: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]):
        self.name, self.meta = name, meta
        self.values = unpack_values(meta["values"], arrays, f"{name}.values")  # (K,)
        self.freq = arrays[f"{name}.counts"]  # (K (+1),) rows per value (and null)

    @classmethod
    def fit(cls, data: FitData, cfg: EncoderConfig, seed: int) -> DiscreteCodec:
        name, col = data.spec.name, data.column
        values, freq = categories(col)
        nulls = int(col.null_count)
        vmeta, arrays = pack_values(values, f"{name}.values")
        nullable = bool(data.spec.nullable or nulls)
        counts = np.concatenate([freq, [nulls]]) if nullable else freq
        meta = {"codec": cls.kind, "values": vmeta, "nullable": nullable}
        return cls(name, meta, {**arrays, f"{name}.counts": counts.astype(np.int64)})

    @classmethod
    def fit_private(
        cls,
        data: FitData,
        histogram: NoisyHistogram,
        rng: np.random.Generator,
        domain: list[str] | None = None,
    ) -> DiscreteCodec:
        """The DP fit: noisy counts, and only the values whose noisy count passes the
        histogram's threshold (the null slot too, unless the schema declares nulls). Rows
        holding a dropped value (or an undeclared null) encode as the most frequent value.
        With a public `domain`: exactly its values, each with a noisy count (see
        `fit_domain`)."""
        if domain is not None:
            return cls.fit_domain(data, histogram, rng, domain)
        name, col = data.spec.name, data.column
        values, freq = categories(col)
        counts = np.concatenate([freq, [int(col.null_count)]]).astype(np.float64)
        kept, noisy = histogram.release(counts, rng)
        nullable = bool(data.spec.nullable or kept[-1])
        if not kept[:-1].any():
            raise DataError(
                f"column '{name}': no value's noisy count passed the DP threshold "
                f"{histogram.threshold:.0f} rows; declare its public value list in "
                f"privacy.domains (noisy counts, no threshold), raise privacy.epsilon or "
                f"encoder_share, list the column in privacy.public_columns if its values and "
                f"counts are public, or drop it"
            )
        vmeta, arrays = pack_values(values.filter(pa.array(kept[:-1])), f"{name}.values")
        released = np.concatenate([noisy[:-1][kept[:-1]], noisy[-1:] if nullable else []])
        meta = {"codec": cls.kind, "values": vmeta, "nullable": nullable, "private": True}
        return cls(name, meta, {**arrays, f"{name}.counts": np.rint(released).astype(np.int64)})

    @classmethod
    def fit_domain(
        cls,
        data: FitData,
        histogram: NoisyHistogram,
        rng: np.random.Generator,
        domain: list[str],
    ) -> DiscreteCodec:
        """The DP fit over a public domain: the declared values, in their declared order,
        each with a noisy count (zero counts too), none dropped, no threshold; a null slot
        only if the schema declares nulls. Rows holding an undeclared value (or an undeclared
        null) are a DataError: the domain would not be the column's."""
        name, col = data.spec.name, data.column
        try:
            values = pa.array(domain, pa.string()).cast(plain(col).type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise DataError(
                f"column '{name}': privacy.domains values do not read as the column's type "
                f"{col.type} ({e}); list values of that type"
            ) from None
        nullable = bool(data.spec.nullable)
        idx = lookup(col, values, name, unseen_code=-2)
        outside = int((idx == -2).sum()) + (0 if nullable else int((idx == -1).sum()))
        if outside:
            raise DataError(
                f"column '{name}': {outside} rows hold a value outside its public domain "
                f"(privacy.domains, {len(domain)} values"
                f"{'' if nullable else '; nulls are outside unless the schema declares them'}); "
                f"add the missing values to the domain, or drop the column from privacy.domains "
                f"so its values are released through the noisy-count threshold"
            )
        counts = np.bincount(np.where(idx < 0, len(values), idx), minlength=len(values) + 1)
        noisy = histogram.noisy(counts[: len(values) + nullable].astype(np.float64), rng)
        vmeta, arrays = pack_values(values, f"{name}.values")
        meta = {"codec": cls.kind, "values": vmeta, "nullable": nullable, "private": True}
        return cls(name, meta, {**arrays, f"{name}.counts": np.rint(noisy).astype(np.int64)})

    @property
    def size(self) -> int:
        return len(self.values) + int(self.meta["nullable"])

    def span_specs(self) -> list[SpanSpec]:
        return [SpanSpec("onehot", self.size, cond=True)]

    def counts(self) -> list[np.ndarray | None]:
        return [self.freq]

    def codes(self, col: pa.ChunkedArray) -> np.ndarray:
        """(n,) code per row; nulls get the last slot."""
        if self.meta.get("private"):  # values the DP fit dropped read as the top value
            top = int(np.argmax(self.freq[: len(self.values)]))
            idx = lookup(col, self.values, self.name, unseen_code=top)
            if not self.meta["nullable"]:
                idx = np.where(idx < 0, top, idx)
        else:
            idx = lookup(col, self.values, self.name)
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

    def resolve(self, rows: DecodeRows) -> None:
        pass

    def decode(self, rows: DecodeRows, dtype: pa.DataType) -> pa.Array:
        code = rows.codes(self.name)
        nulls = code >= len(self.values)
        out = self.values.take(pa.array(np.minimum(code, len(self.values) - 1)))
        if nulls.any():
            out = pc.if_else(pa.array(nulls), pa.nulls(len(out), out.type), out)
        return out.cast(dtype)

    def arrays(self) -> dict[str, np.ndarray]:
        _, arrays = pack_values(self.values, f"{self.name}.values")
        return {**arrays, f"{self.name}.counts": self.freq}


def gumbel_argmax(logp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row from softmax(logp) (n, K) (Gumbel-max trick), (n,)."""
    return np.argmax(logp - np.log(-np.log(rng.random(logp.shape) + 1e-20) + 1e-20), axis=1)
