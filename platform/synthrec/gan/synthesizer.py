"""`Synthesizer`: fit a conditional GAN on an Arrow table or a pandas DataFrame, sample rows
of the same kind from it.

Composes the encoder (encoding/), the training functions (train.py) and the networks;
knows nothing of files (artifacts.py saves and loads it) or Ray (distributed/ wraps it).

Sampling is block-deterministic: `sample_block(i, n, seed)` draws all randomness from a
generator seeded by (seed, i), so a Ray Data pipeline gives identical rows whatever its
parallelism, and `sample(n, seed=seed)` is the concatenation of its blocks. Without a seed,
`sample` draws a fresh one per call (as other synthesizers do); give one to repeat rows.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch

import synthrec
from synthrec.config import GanConfig
from synthrec.data.eventlog import with_schema
from synthrec.encoding import DiscreteCodec, Encoder
from synthrec.encoding.id_search import calibration_step, total_variation
from synthrec.errors import ConditionError, ConfigError, DataError, ModelError
from synthrec.gan.dp import build_dp, dp_metadata, dp_train_epoch, private_fit
from synthrec.gan.marginals import OVERSAMPLE, raking_weights, weighted_subset
from synthrec.gan.networks import GanLayout, Generator
from synthrec.gan.train import GanState, build_gan, build_sampler, train_epoch
from synthrec.schema import Schema, infer_schema, validate_table

Conditions = dict[str, Any]
ReturnType = Literal["arrow", "pandas"]
Rebalance = dict[str, "str | dict[Any, float]"]
CALIBRATION_ROWS = (
    10_000,
    100_000,
)  # rows sampled per id-calibration round: 2 x training rows, within these
CALIBRATION_SEED = 7_919_000


class Synthesizer:
    """A fitted encoder + generator. Build with `Synthesizer().fit(...)` or `from_parts`."""

    def __init__(self) -> None:
        self.encoder: Encoder | None = None
        self.generator: Generator | None = None
        self.cfg: GanConfig | None = None
        self.metadata: dict[str, Any] = {}
        self.device = torch.device("cpu")
        self.return_type: ReturnType = "arrow"  # what `sample` returns: what `fit` was given

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_parts(
        cls,
        encoder: Encoder,
        cfg: GanConfig,
        generator_state: dict[str, torch.Tensor],
        metadata: dict[str, Any] | None = None,
        device: str | torch.device = "cpu",
    ) -> Synthesizer:
        """A sampler from an encoder and generator weights (e.g. GanState.generator.state_dict()
        after distributed training). Metadata gains a `version` derived from the weights."""
        return cls()._attach(encoder, cfg, generator_state, metadata, device)

    def _attach(
        self,
        encoder: Encoder,
        cfg: GanConfig,
        generator_state: dict[str, torch.Tensor],
        metadata: dict[str, Any] | None,
        device: str | torch.device,
    ) -> Synthesizer:
        self.encoder, self.cfg, self.device = encoder, cfg, torch.device(device)
        layout = GanLayout.from_encoder(encoder)
        num_ids = [len(c.freq) for c in encoder.codecs_of("id")]
        gen = Generator(
            cfg.embedding_dim,
            layout.cond_dim,
            cfg.generator_dims,
            layout.data_dim,
            cfg.generator_norm,
            num_ids,
        )
        state = {k: v.float() if v.is_floating_point() else v for k, v in generator_state.items()}
        try:
            # weights straight from training have no id calibration yet (it stays 0)
            missing, unexpected = gen.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith("id_calibration.")]
            if missing or unexpected:
                raise RuntimeError(f"missing keys {missing}, unexpected keys {unexpected}")
        except RuntimeError as err:
            raise ModelError(
                f"generator weights do not match the config and encoder: {err}"
            ) from None
        self.generator = gen.to(self.device).eval()
        self._read_id_weights()
        self._layout = layout.to(self.device)
        self._prepare_sampling()
        self.metadata = dict(metadata or {})
        self.metadata.setdefault("version", _model_version(gen.state_dict(), encoder))
        self.metadata.setdefault("privacy", encoder.privacy())
        return self

    def fit(
        self,
        table: Any,
        schema: Schema | str | None = None,
        cfg: GanConfig | None = None,
        epochs: int | None = None,
        time_budget_s: float | None = None,
        progress: Callable[..., None] | None = None,
        device: str | torch.device = "cpu",
        verbose: bool = False,
    ) -> Synthesizer:
        """Train on `table`, a pyarrow Table or a pandas DataFrame (then `sample` returns
        DataFrames too). Stops after `epochs` (default cfg.epochs: 30, as `synthrec train-gan`)
        or `time_budget_s`, whichever comes first. `progress(epoch=..., **metrics)` is called
        after each epoch; `verbose=True` prints a line per epoch (number, seconds, losses) on
        stderr. `schema`: a Schema or a schema file's path (as --schema-uri); without one the
        roles are inferred."""
        progress = epoch_printer("Synthesizer", progress) if verbose else progress
        table, return_type = _as_arrow(table)
        cfg = cfg or GanConfig()
        if epochs is not None and epochs < 1:
            raise ConfigError(f"epochs must be >= 1 (got {epochs})")
        if time_budget_s is not None and time_budget_s <= 0:
            raise ConfigError(f"time_budget_s must be > 0 (got {time_budget_s})")
        start = time.monotonic()
        table, schema = with_schema(table, schema)  # a schema file's path works too
        schema = schema or infer_schema(table)
        validate_table(table, schema)
        max_epochs = (
            epochs if epochs is not None else (cfg.epochs if time_budget_s is None else 10**9)
        )
        batch = min(cfg.batch_size, max(cfg.pac, table.num_rows // cfg.pac * cfg.pac))
        if cfg.privacy is not None:  # the budget buys max_epochs, or cfg.epochs under a deadline
            plan = max_epochs if max_epochs < 10**9 else cfg.epochs
            encoder, budget = private_fit(table, schema, cfg, plan, batch)
        else:
            encoder = Encoder.fit(table, schema, cfg.encoder, seed=cfg.seed)
        data = encoder.transform_compact(table, seed=cfg.seed)  # memory independent of catalog
        encode_s = time.monotonic() - start
        state = build_gan(encoder, cfg, device)
        if cfg.privacy is not None:
            state.dp = build_dp(encoder, state.layout, budget, state.device)
        sampler = build_sampler(state, encoder, data)
        del data
        deadline = start + time_budget_s if time_budget_s is not None else None
        # at least one (possibly partial) epoch, even when encoding used up the budget
        while state.epoch < max_epochs and (
            state.epoch == 0 or deadline is None or time.monotonic() < deadline
        ):
            if state.dp is not None:
                metrics = dp_train_epoch(state, sampler.shard, batch, deadline=deadline)
            else:
                metrics = train_epoch(
                    state, sampler.shard, sampler, batch, seed=cfg.seed, deadline=deadline
                )
            if progress:
                progress(**metrics)
            if metrics.get("budget_spent"):
                break
        self._attach(encoder, cfg, state.generator.state_dict(), None, device)
        self.calibrate_ids()
        self.return_type = return_type
        if state.dp is not None:
            self.metadata.update(dp_metadata(state.dp.budget))
        else:  # a hash of the rows: it would confirm a guessed training table
            self.metadata["fingerprint"] = table_fingerprint(table)
        self.metadata.update(
            synthrec_version=synthrec.__version__,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            metrics={
                "epochs": state.epoch,
                "train_rows": table.num_rows,
                "encode_seconds": round(encode_s, 3),
                "fit_seconds": round(time.monotonic() - start, 3),
                **(_last(state)),
            },
        )
        return self

    # -- files -----------------------------------------------------------------------------
    def save(self, uri: str, storage: Any = None) -> str:
        """Write the model directory at `uri` (a local path or an s3:// URI: the directory
        `synthrec train-gan` writes and `synthrec generate --model-uri` reads); returns the
        model's version. `storage`: a StorageConfig (default: the standard AWS variables)."""
        from synthrec.artifacts import save_synthesizer  # artifacts builds Synthesizers

        save_synthesizer(self, uri, storage, metadata={"return_type": self.return_type})
        return self.metadata["version"]

    @classmethod
    def load(cls, uri: str, storage: Any = None, device: str | torch.device = "cpu") -> Synthesizer:
        """A synthesizer from a model directory (`save`, or `synthrec train-gan`); it samples
        DataFrames when it was fitted on one."""
        from synthrec.artifacts import load_synthesizer

        synth = load_synthesizer(uri, storage, device)
        synth.return_type = _saved_return_type(synth.metadata)
        return synth

    def calibrate_ids(self, rounds: int | None = None) -> dict[str, list[float]]:
        """Fit per-id draw weights so that unconditional samples keep each id column's training
        frequencies: the generator places rows near ids by their profile vectors, and the
        kernel draw around that place over- or under-draws ids in dense or sparse regions.
        Each round samples calibration rows (fixed seeds: deterministic) and moves every id's
        weight toward training / drawn frequency. Records the total variation distance of
        each round's sample (and a final one) in metadata["id_calibration"]; returns it."""
        self._check_fitted()
        rounds = self.cfg.id_calibration_rounds if rounds is None else rounds
        codecs = self.encoder.codecs_of("id")
        if not codecs or rounds <= 0:
            return {}
        rows = int(np.clip(2 * self.encoder.num_rows, CALIBRATION_ROWS[0], CALIBRATION_ROWS[1]))
        tv: dict[str, list[float]] = {c.name: [] for c in codecs}
        buffers = self.generator.id_calibration.weights()
        for r in range(rounds + 1):
            sample = self.sample(rows, seed=CALIBRATION_SEED + r, return_type="arrow")
            for codec, buffer in zip(codecs, buffers):
                drawn = np.bincount(
                    codec.output_codes(sample.column(codec.name)), minlength=codec.num_ids
                )
                tv[codec.name].append(round(total_variation(codec.freq, drawn), 4))
                if r < rounds:  # each round's sample moves the weights; the last one measures
                    step = calibration_step(codec.freq, drawn, self._id_weights[codec.name])
                    buffer.copy_(torch.from_numpy(step))
            self._read_id_weights()
        self.metadata["id_calibration"] = {"rows": rows, "total_variation": tv}
        self.metadata["version"] = _model_version(self.generator.state_dict(), self.encoder)
        return tv

    def _read_id_weights(self) -> None:
        """The generator's per-id draw weights as the encoder's decode takes them."""
        codecs = self.encoder.codecs_of("id")
        weights = self.generator.id_calibration.weights()
        self._id_weights = {c.name: w.cpu().numpy() for c, w in zip(codecs, weights)}

    # -- sampling --------------------------------------------------------------------------
    def sample(
        self,
        n: int,
        conditions: Conditions | None = None,
        rebalance: Rebalance | None = None,
        seed: int | None = None,
        return_type: ReturnType | None = None,
    ) -> Any:
        """`n` rows; blocks of cfg.sample_batch_rows, block i identical to sample_block(i, ...).

        `seed=None` draws a fresh seed, so two calls give different rows; the same seed gives
        the same rows. Returns a pyarrow Table, or a pandas DataFrame when `fit` was given one
        (`return_type` chooses: "arrow" or "pandas")."""
        self._check_fitted()
        if n < 0:
            raise ConfigError(f"number of rows must be >= 0 (got {n})")
        if return_type not in (None, "arrow", "pandas"):
            raise ConfigError(f"return_type must be 'arrow' or 'pandas' (got {return_type!r})")
        seed = secrets.randbits(32) if seed is None else seed  # _block_seed keeps 32 bits
        size = self.cfg.sample_batch_rows
        tables = [
            self.sample_block(i, min(size, n - i * size), seed, conditions, rebalance)
            for i in range(max(1, math.ceil(n / size)))
        ]
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        return table.to_pandas() if (return_type or self.return_type) == "pandas" else table

    def sample_block(
        self,
        block_index: int,
        num_rows: int,
        seed: int,
        conditions: Conditions | None = None,
        rebalance: Rebalance | None = None,
    ) -> pa.Table:
        """`num_rows` rows determined only by (seed, block_index, conditions, rebalance)."""
        self._check_fitted()
        fixed, balanced = self._resolve(conditions, rebalance)
        rng = torch.Generator(device=self.device).manual_seed(_block_seed(seed, block_index))
        draws = np.random.default_rng(
            _block_seed(seed, block_index)
        )  # categorical and id draws (on CPU)
        # marginal calibration (gan/marginals.py) of unconditioned draws: under a condition the
        # other columns must follow their conditional shares, not the table's
        calibrate = bool(self._calibrated and num_rows and not fixed and not balanced)
        candidates = num_rows * OVERSAMPLE if calibrate else num_rows
        parts: list[list[np.ndarray]] = []
        step = self.cfg.sample_batch_rows
        for lo in range(0, candidates, step):
            parts.append(self._generate(min(step, candidates - lo), fixed, balanced, rng, draws))
        if not parts:
            parts.append(self._generate(0, fixed, balanced, rng, draws))
        keep = set(conditions or {}) | set(rebalance or {})  # ids adapt to these, never the reverse
        parts = [np.concatenate(p) for p in zip(*parts)]
        if calibrate:
            weights = raking_weights(
                [parts[span] for span, _ in self._calibrated], [t for _, t in self._calibrated]
            )
            chosen = weighted_subset(weights, num_rows, draws)
            parts = [p[chosen] for p in parts]
        return self.encoder.decode(
            parts, keep=keep, rng=draws, id_weights=self._id_weights, device=self._decode_device
        )

    @property
    def _decode_device(self) -> torch.device | None:
        """Where decoding runs: the generator's device, or None (numpy) on the CPU, where
        numpy's float32 log and random numbers are 2-3x faster than torch's."""
        return None if self.device.type == "cpu" else self.device

    @torch.no_grad()
    def _generate(
        self,
        n: int,
        fixed: dict[int, int],
        balanced: dict[int, np.ndarray],
        rng: torch.Generator,
        draws: np.random.Generator,
    ) -> list[np.ndarray]:
        """Per-span parts for `n` rows (the encoder's decode input)."""
        lay, dev = self._layout, self.device
        codes: dict[int, torch.Tensor] = {}
        for k, code in fixed.items():
            codes[k] = torch.full((n,), code, dtype=torch.long, device=dev)
        for k, probs in balanced.items():
            codes[k] = _allocate(n, probs, rng, dev)
        hot = [
            self._cond_offset[k] + c for k, c in codes.items()
        ]  # entries of the conditional vector set to 1
        if not codes and lay.cond_dim:  # as in training: one discrete column, value by frequency
            span = torch.randint(len(lay.cond_spans), (n,), generator=rng, device=dev)
            u = torch.rand(n, generator=rng, device=dev, dtype=torch.float64)
            flat = torch.searchsorted(self._freq_cum, span + u, right=True)
            hot.append(torch.minimum(flat, self._cond_last[span]))
        noise = torch.randn(n, self.cfg.embedding_dim, generator=rng, device=dev)
        hot_cols = torch.stack(hot, 1) if hot else torch.zeros(n, 0, dtype=torch.long, device=dev)
        raw = self.generator.sample(
            noise, hot_cols, self._out_columns
        )  # [one-hot columns, scalar columns]
        num_onehot = len(self._layout.onehot_cols)
        if self._decode_device is None:
            raw_np = raw.cpu().numpy()
            scal_np = np.tanh(raw_np[:, num_onehot:])  # (n, scalar columns)
            choice_np = self._segment_argmax(raw_np[:, :num_onehot], draws)  # (n, one-hot spans)
        else:  # on the generator's device: only codes and scalars cross to the host
            scal_np = torch.tanh(raw[:, num_onehot:]).cpu().numpy()
            choice_np = self.segment_draw(raw[:, :num_onehot], rng).cpu().numpy()
        for k, c in codes.items():  # exact: conditioned spans
            choice_np[:, self._onehot_of_cond[k]] = c.cpu().numpy()
        return [
            choice_np[:, k] if kind == "onehot" else scal_np[:, k] for kind, k in self._part_index
        ]

    def _segment_argmax(self, raw: np.ndarray, draws: np.random.Generator) -> np.ndarray:
        """Draw from each one-hot span's softmax (Gumbel-max), (n, S) int64, given the logits of
        the one-hot columns (n, Do) in the generator's output order: spans of equal width side
        by side, so one argmax over a (n, spans, width) view draws all spans of a width (numpy:
        its float32 log and random numbers are 2-3x faster than torch's on CPU)."""
        n, d = raw.shape
        noisy = draws.random((n, d), dtype=np.float32)  # in place from here on (no temporaries)
        noisy += 1e-20
        np.log(noisy, out=noisy)
        np.negative(noisy, out=noisy)
        np.log(noisy, out=noisy)  # minus Gumbel noise
        np.subtract(raw, noisy, out=noisy)  # logits + Gumbel noise
        choice = np.empty((n, len(self._layout.onehot_spans)), np.int64)
        for spans, lo, width in self._width_groups:
            choice[:, spans] = (
                noisy[:, lo : lo + len(spans) * width].reshape(n, len(spans), width).argmax(2)
            )
        return choice

    def segment_draw(self, raw: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """`_segment_argmax` as torch ops on `raw`'s device (the generator's), (n, S) int64:
        the same Gumbel-max draw of each one-hot span, random numbers from `rng`."""
        n = raw.shape[0]
        u = torch.rand(raw.shape, generator=rng, device=raw.device) + 1e-20
        noisy = raw - torch.log(-torch.log(u))  # logits + Gumbel noise
        choice = torch.empty(n, len(self._layout.onehot_spans), dtype=torch.long, device=raw.device)
        for spans, lo, width in self._width_groups:
            block = noisy[:, lo : lo + len(spans) * width].reshape(n, len(spans), width)
            choice[:, spans] = block.argmax(2)
        return choice

    # -- conditions ------------------------------------------------------------------------
    def conditionable_columns(self) -> list[str]:
        return [c.name for c in self.encoder.codecs_of("discrete")]

    def _resolve(
        self, conditions: Conditions | None, rebalance: Rebalance | None
    ) -> tuple[dict[int, int], dict[int, np.ndarray]]:
        """Validate conditions -> {cond span number: code}, rebalance -> {cond span number:
        probs}."""
        fixed, balanced = {}, {}
        for what, given in (("condition", conditions), ("rebalance", rebalance)):
            for col in given or {}:
                _check_text(col, what)
        for col, value in (conditions or {}).items():
            codec, k = self._cond_codec(col, "condition")
            fixed[k] = self._code_of(codec, value, "condition")
        for col, dist in (rebalance or {}).items():
            codec, k = self._cond_codec(col, "rebalance")
            if k in fixed:
                raise ConditionError(
                    f"column '{col}' is both conditioned and rebalanced; use one of them"
                )
            balanced[k] = self._probs(codec, dist)
        return fixed, balanced

    def _cond_codec(self, col: str, what: str):
        allowed = ", ".join(self.conditionable_columns()) or "(none)"
        if col not in self.encoder.schema.names:
            raise ConditionError(
                f"{what} column '{col}' is not in the model's data; "
                f"conditionable columns: {allowed}"
            )
        codec = self.encoder.codec(col)
        if codec.meta.get("pseudonymized"):
            raise ConditionError(
                f"{what} column '{col}' holds pseudonymous user ids (id_policy pseudonymize): "
                f"the model keeps no real user ids to condition on; conditionable columns: "
                f"{allowed}"
            )
        if codec.kind != "discrete":
            raise ConditionError(
                f"{what} column '{col}' is not a categorical column of the model "
                f"(it is encoded as {codec.meta['codec']}); conditionable columns: {allowed}"
            )
        span_index = self.encoder.col_spans[self.encoder.codecs.index(codec)][0]
        return codec, self._layout.cond_spans.index(span_index)

    @staticmethod
    def _labels(codec: DiscreteCodec) -> list[str]:
        return [_label(v) for v in codec.values.to_pylist()]

    def _code_of(self, codec: DiscreteCodec, value: Any, what: str) -> int:
        labels = self._labels(codec)
        try:
            return labels.index(_label(value))
        except ValueError:
            # the training values are not listed: they are the real data
            raise ConditionError(
                f"{what} {codec.name}={value!r}: not a value of the model's data; the column has "
                f"{len(labels)} values the model can generate (draw rows without this "
                f"{what} to see them)"
            ) from None

    def _probs(self, codec: DiscreteCodec, dist: Any) -> np.ndarray:
        k = len(codec.values)
        probs = np.zeros(codec.size)
        if dist == "uniform":
            probs[:k] = 1.0 / k
            return probs
        if not isinstance(dist, dict) or not dist:
            raise ConditionError(
                f"rebalance {codec.name}: expected 'uniform' or a {{value: probability}} mapping, "
                f"got {dist!r}"
            )
        for value, p in dist.items():
            if not isinstance(p, (int, float)) or not math.isfinite(p) or p < 0:
                raise ConditionError(
                    f"rebalance {codec.name}={value!r}: probability must be a number >= 0, "
                    f"got {p!r}"
                )
            probs[self._code_of(codec, value, "rebalance")] += p
        if abs(probs.sum() - 1.0) > 1e-3:
            raise ConditionError(
                f"rebalance {codec.name}: probabilities sum to {probs.sum():.4f}; "
                f"they must sum to 1"
            )
        return probs / probs.sum()

    # -- internals -------------------------------------------------------------------------
    def _prepare_sampling(self) -> None:
        lay, enc, dev = self._layout, self.encoder, self.device
        offsets, probs, last, start = [], [], [], 0
        for j, si in enumerate(lay.cond_spans):
            span = enc.spans[si]
            counts = np.asarray(enc.span_counts[si], np.float64)
            probs.append(j + np.cumsum(counts / counts.sum()))
            offsets.append(start)
            start += span.size
            last.append(start - 1)
        self._cond_offset = offsets
        self._freq_cum = torch.tensor(np.concatenate(probs) if probs else np.zeros(0), device=dev)
        self._cond_last = torch.tensor(last, dtype=torch.long, device=dev)
        self._onehot_of_cond = [lay.onehot_spans.index(si) for si in lay.cond_spans]
        # the generator emits one-hot columns first, grouped by span width (spans of one width
        # side by side), then scalar ones (self._out_columns); _width_groups: (span numbers,
        # first output column, width) per width
        sizes = np.array([enc.spans[i].size for i in lay.onehot_spans], np.int64)
        first = np.cumsum(np.concatenate([[0], sizes]))
        self._width_groups, onehot_order, lo = [], [], 0
        for width in np.unique(sizes):
            spans = np.flatnonzero(sizes == width)
            self._width_groups.append((spans, lo, int(width)))
            onehot_order += [np.arange(first[j], first[j + 1]) for j in spans]
            lo += len(spans) * int(width)
        onehot_cols = lay.onehot_cols.cpu()[
            torch.from_numpy(np.concatenate(onehot_order or [np.zeros(0, np.int64)]))
        ]
        # where each encoder span's part comes from: a one-hot choice, or scalar columns
        scalar_spans = [s for s in enc.spans if s.kind == "scalar"]
        scalar_cols = torch.tensor(
            [c for s in scalar_spans for c in range(s.start, s.stop)], dtype=torch.long
        )
        self._out_columns = torch.cat([onehot_cols, scalar_cols]).to(dev)
        bounds = np.cumsum([0] + [s.size for s in scalar_spans])
        scalar_slice = {
            id(s): slice(int(a), int(b)) for s, a, b in zip(scalar_spans, bounds[:-1], bounds[1:])
        }
        onehot_num = {si: j for j, si in enumerate(lay.onehot_spans)}
        self._part_index = [
            ("onehot", onehot_num[i]) if s.kind == "onehot" else ("scalar", scalar_slice[id(s)])
            for i, s in enumerate(enc.spans)
        ]
        calibrate = self.cfg.marginal_calibration
        if calibrate is None:
            calibrate = self.cfg.privacy is not None
        # (encoder span, target counts) of each categorical column (gan/marginals.py)
        self._calibrated = (
            [
                (idx[0], codec.freq.astype(np.float64))
                for codec, idx in zip(enc.codecs, enc.col_spans)
                if codec.kind == "discrete"
            ]
            if calibrate
            else []
        )

    def _check_fitted(self) -> None:
        if self.generator is None:
            raise ModelError("the synthesizer is not fitted; call fit(table) or load a model first")


def _allocate(n: int, probs: np.ndarray, rng: torch.Generator, dev: torch.device) -> torch.Tensor:
    """Codes for n rows with counts exactly round(n * probs) (largest remainder), shuffled."""
    raw = n * probs
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    codes = torch.repeat_interleave(
        torch.arange(len(probs), device=dev), torch.as_tensor(counts, device=dev)
    )
    return codes[torch.randperm(n, generator=rng, device=dev)]


def _check_text(col: Any, what: str) -> None:
    """Column names must be text that UTF-8 can carry (JSON's lone-surrogate escapes can
    not), or no error message about them could be sent back."""
    try:
        str(col).encode("utf-8")
    except UnicodeEncodeError:
        raise ConditionError(
            f"{what} column name {ascii(col)} is not valid UTF-8 text (it holds a lone surrogate, "
            f"e.g. from a broken \\u escape); send the name of one of the model's columns"
        ) from None


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _as_arrow(table: Any) -> tuple[pa.Table, ReturnType]:
    """An Arrow table, and which kind `table` was. pandas is looked up, never imported: a
    DataFrame means pandas is loaded already."""
    if isinstance(table, pa.Table):
        return table, "arrow"
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(table, pandas.DataFrame):
        return pa.Table.from_pandas(table, preserve_index=False), "pandas"
    raise DataError(
        f"fit takes a pyarrow Table or a pandas DataFrame, got {type(table).__name__}; "
        "convert it first (pa.table(...) or pandas.DataFrame(...))"
    )


def epoch_printer(name: str, progress: Callable[..., None] | None) -> Callable[..., None]:
    """A progress callback that prints one line per epoch on stderr (`fit(verbose=True)`):
    the phase, the epoch, its seconds, the time since fitting began and the epoch's numbers;
    then calls `progress` (the user's own callback), if any."""
    start = time.monotonic()

    def report(**metrics: Any) -> None:
        phase = f"{metrics['phase']} " if "phase" in metrics else ""
        numbers = "  ".join(
            f"{k} {float(v):.4g}"
            for k, v in metrics.items()
            if k not in ("phase", "epoch", "seconds") and isinstance(v, (int, float, torch.Tensor))
        )
        print(
            f"{name}: {phase}epoch {metrics.get('epoch', '?')}  "
            f"{float(metrics.get('seconds', 0.0)):.1f} s (total {time.monotonic() - start:.0f} s)"
            f"  {numbers}",
            file=sys.stderr,
            flush=True,
        )
        if progress is not None:
            progress(**metrics)

    return report


def _saved_return_type(metadata: dict[str, Any]) -> ReturnType:
    """What `sample` returns for a loaded model: what `save` recorded (models the CLI wrote:
    arrow)."""
    return "pandas" if metadata.get("return_type") == "pandas" else "arrow"


def _block_seed(seed: int, block_index: int) -> int:
    """A 63-bit seed from (seed, block): independent streams per block."""
    return int(
        np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(block_index)]).generate_state(
            2, np.uint64
        )[0]
        >> np.uint64(1)
    )


def _last(state: GanState) -> dict[str, float]:
    """Last epoch's losses and the training throughput over all epochs."""
    last = state.history[-1] if state.history else {}
    keys = ("critic_loss", "wasserstein", "generator_loss", "cond_loss")
    out = {k: round(float(last[k]), 5) for k in keys if k in last}
    seconds = sum(h["seconds"] for h in state.history)
    rows = sum(h["rows_per_s"] * h["seconds"] for h in state.history)
    out["train_rows_per_s"] = round(rows / max(seconds, 1e-9), 1)
    out["train_seconds"] = round(seconds, 3)
    return out


def _model_version(gen_state: dict[str, torch.Tensor], encoder: Encoder) -> str:
    h = hashlib.sha256()
    for name in sorted(gen_state):
        h.update(name.encode())
        h.update(gen_state[name].detach().cpu().contiguous().numpy().tobytes())
    h.update(str(encoder.output_dim).encode())
    return h.hexdigest()[:16]


def table_fingerprint(table: pa.Table, max_rows: int = 100_000) -> str:
    """sha256 of the schema, row count and up to `max_rows` evenly spaced rows (bounded cost)."""
    h = hashlib.sha256(str(table.schema.remove_metadata()).encode())
    h.update(str(table.num_rows).encode())
    idx = np.linspace(0, table.num_rows - 1, num=min(max_rows, table.num_rows)).astype(np.int64)
    sample = table.take(pa.array(idx)).combine_chunks().replace_schema_metadata(None)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, sample.schema) as writer:
        writer.write_table(sample)
    h.update(sink.getvalue().to_pybytes())
    return h.hexdigest()
