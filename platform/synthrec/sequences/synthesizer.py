"""SequenceSynthesizer: users, catalog and per-user event sequences.

    synth = SequenceSynthesizer().fit(log, time_budget_s=600)    # a flat table or RelationalLog
    out = synth.sample(users=1000, seed=1)                       # a RelationalLog
    flat = out.flatten()                                         # one row per event

Fitting: the log's relational view (synthrec.data.relational) gives the users table, the
catalog and the events. The users table, with each user's number of events and first event
time, is learnt by the row GAN (synthrec.gan.Synthesizer); the events by the sequence model
(synthrec.sequences.model) conditioned on the user's attributes: maximum likelihood with early
stopping on held-out users, then optionally an adversarial phase against a sequence critic.
The catalog is kept as given (a shop's catalog is public); item attributes are read from it,
so they always agree with the item. Derived columns (hour of the time...) are recomputed by
`RelationalLog.flatten`.

Sampling is in blocks of users: block i is determined by (seed, i) alone, so any split of the
blocks over workers gives the same bytes. Synthetic users get fresh pseudonymous ids.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

import synthrec
from synthrec.config import GanConfig, SequenceConfig
from synthrec.data.eventlog import with_schema
from synthrec.data.relational import RelationalLog, ViewOverrides, relational_view
from synthrec.errors import ConfigError, DataError, ModelError
from synthrec.gan.synthesizer import _as_arrow, _saved_return_type, epoch_printer
from synthrec.schema import Schema, infer_schema
from synthrec.sequences import fitting
from synthrec.sequences import train as steps
from synthrec.sequences.encoding import (
    LENGTH_COL,
    SESSION_FLAG,
    START_COL,
    SequenceEncoder,
    Sequences,
)
from synthrec.sequences.model import SequenceModel

Conditions = dict[str, Any]
Rebalance = dict[str, dict[Any, float] | str]  # column -> shares, or "uniform"
BLOCK_USERS = 4_096  # users per block of `sample`
FLAT_PROBE_ROWS = 1_000  # events flattened to read the flat log's schema
DP_ID_FLOOR = 10**9  # a DP fit's integer user ids start here (the real largest id is private)
NO_REPEAT_BELOW = 0.005  # a log repeating fewer of its items: samples never repeat an item


class SequenceSynthesizer:
    def __init__(self) -> None:
        self.encoder: SequenceEncoder | None = None
        self.model: SequenceModel | None = None
        self.users_model = None  # synthrec.gan.Synthesizer
        self.items: pa.Table | None = None
        self.item_counts: np.ndarray | None = None
        self.cfg = SequenceConfig()
        self.metadata: dict[str, Any] = {}
        self.id_prefix = "syn-"
        self.id_floor = 0  # integer user ids: synthetic ids start above every real id
        self.calibration: dict[str, dict[str, list[float]]] = {}
        self.flat_types: dict[str, str] = {}
        self.schema: dict[str, Any] = {}
        self.repeat_rate = 0.0  # share of events whose item the user already had
        self.return_type = "arrow"  # sample_table's default: the kind fit was given
        self.device = torch.device("cpu")
        self.plan = None  # sequences.dp.SequencePlan of a DP fit

    # -- fitting ----------------------------------------------------------------------------
    def fit(
        self,
        data: pa.Table | RelationalLog,
        schema: Schema | str | None = None,
        cfg: SequenceConfig | None = None,
        epochs: int | None = None,
        time_budget_s: float | None = None,
        progress: Callable[..., None] | None = None,
        overrides: ViewOverrides | dict | None = None,
        device: str | torch.device = "cpu",
        verbose: bool = False,
    ) -> SequenceSynthesizer:
        """Learn users, catalog and sequences. Stops after `epochs` (default cfg.epochs) or
        `time_budget_s` (the users GAN gets cfg.users_budget_share of it). `verbose=True`
        prints a line per epoch of each phase (users, likelihood, adversarial) on stderr."""
        progress = epoch_printer("SequenceSynthesizer", progress) if verbose else progress
        cfg = cfg or SequenceConfig()
        if cfg.privacy is not None:  # user-level DP (sequences/dp.py): no adversarial phase
            from synthrec.sequences.dp import private_config

            cfg = private_config(cfg)
        if epochs is not None and epochs < 1:
            raise ConfigError(f"epochs must be >= 1 (got {epochs})")
        if time_budget_s is not None and time_budget_s <= 0:
            raise ConfigError(f"time_budget_s must be > 0 (got {time_budget_s})")
        start = time.monotonic()
        self.device = torch.device(device)
        seqs, users_table = self.prepare(data, schema, cfg, overrides, epochs)
        report = progress or (lambda **_: None)
        budget = time_budget_s
        users_budget = budget * cfg.users_budget_share if budget else None
        self.fit_users(users_table, users_budget, device, report)
        seq_budget = budget - (time.monotonic() - start) if budget else None
        history = self._fit_sequences(seqs, cfg, epochs, seq_budget, report)
        return self.finish(self.model, seqs, time.monotonic() - start, history)

    # -- files ------------------------------------------------------------------------------
    def save(self, uri: str, storage: Any = None) -> str:
        """Write the model directory at `uri` (a local path or an s3:// URI: the directory
        `synthrec train-gan --generator sequences` writes); returns the model's version."""
        from synthrec.sequences.artifacts import save_sequence_model  # it builds these objects

        save_sequence_model(self, uri, storage, metadata={"return_type": self.return_type})
        return self.metadata["version"]

    @classmethod
    def load(
        cls, uri: str, storage: Any = None, device: str | torch.device = "cpu"
    ) -> SequenceSynthesizer:
        """A sequence synthesizer from a model directory; `sample_table` returns DataFrames
        when it was fitted on one."""
        from synthrec.sequences.artifacts import load_sequence_model

        synth = load_sequence_model(uri, storage, device)
        synth.return_type = _saved_return_type(synth.metadata)
        return synth

    def prepare(
        self,
        data: pa.Table | RelationalLog,
        schema: Schema | str | None,
        cfg: SequenceConfig,
        overrides: ViewOverrides | dict | None = None,
        epochs: int | None = None,
    ) -> tuple[Sequences, pa.Table]:
        """Fit the encoder, keep the catalog, set the id policy; -> the encoded sequences and
        the users table (attributes, event count, first time) the users GAN learns. With
        cfg.privacy, first refuse a log whose statistics the budget leaves uncovered and plan
        the budget for `epochs` (default cfg.epochs): errors before anything is fitted."""
        self.cfg = cfg
        if not isinstance(data, RelationalLog):
            data, self.return_type = _as_arrow(data)
            data, schema = with_schema(data, schema)  # a Schema or a schema file's path
            schema = schema or infer_schema(data)
        log = data if isinstance(data, RelationalLog) else relational_view(data, schema, overrides)
        self.schema = (schema or infer_schema(log.flatten())).to_dict()  # (a view given alone)
        # the flat log's column types from a few rows: flattening every event would copy each
        # event's user and item attributes only to read a schema
        head = dataclasses.replace(log, events=log.events.slice(0, FLAT_PROBE_ROWS)).flatten()
        public = self._plan_privacy(log, cfg, epochs) if cfg.privacy is not None else None
        enc, seqs, users_table = SequenceEncoder.fit(log, public)
        self.encoder, self.items = enc, log.require_items()
        if public is not None:  # nothing more read from the events (sequences.dp)
            self.item_counts = np.ones(self.items.num_rows, np.int64)
            self.repeat_rate = 1.0
            self.id_floor = DP_ID_FLOOR
        else:
            self.item_counts = np.bincount(seqs.item, minlength=self.items.num_rows)
            self.repeat_rate = _repeat_rate(seqs)
            self._set_id_policy(log.require_users().column(0))
        self.flat_types = {f.name: str(f.type) for f in head.schema}
        return seqs, users_table

    def _plan_privacy(self, log: RelationalLog, cfg: SequenceConfig, epochs: int | None):
        """The leak check and the budget's plan of a DP fit; -> the encoder's public bounds."""
        from synthrec.privacy import check_sequence_accounted
        from synthrec.privacy.statistics import EVENTS_BOUND
        from synthrec.sequences import dp
        from synthrec.sequences.encoding import PublicBounds

        session = log.event_cols.get("session")
        skip = (log.user_col, log.item_col, log.time_col, session)
        event_cols = [c for c in log.events.column_names if c not in skip]
        user_cols = log.require_users().column_names[1:]
        priv = cfg.privacy
        catalog = tuple(log.require_items().column_names[1:])
        check_sequence_accounted(
            log.user_col, log.item_col, log.time_col, event_cols, user_cols, priv, catalog
        )
        num_users = log.require_users().num_rows
        self.plan = dp.plan(cfg, num_users, epochs or cfg.epochs, user_cols, log.time_col)
        return PublicBounds(
            tuple(map(float, priv.bounds[log.time_col])),
            tuple(map(float, priv.bounds[EVENTS_BOUND])),
        )

    def fit_users(self, users_table: pa.Table, budget_s, device, report) -> None:
        """The users-table GAN and the calibration of its event counts and first times (a DP
        fit: the GAN under its share of the budget, the real quantiles from noisy histograms:
        sequences.dp.private_calibration)."""
        self.users_model = _fit_users(users_table, self.cfg, budget_s, device, report, self.plan)
        if self.plan is None:
            self.calibration = _calibration(self.users_model, users_table, self.cfg.seed)
        else:
            from synthrec.sequences.dp import private_calibration

            self.calibration = private_calibration(
                self.users_model, users_table, self.plan, self.cfg.seed
            )

    def finish(
        self, model: SequenceModel, seqs: Sequences, seconds: float, history: dict[str, Any]
    ) -> SequenceSynthesizer:
        """Attach the trained network and the training metrics."""
        self.model = model.to(self.device).eval()
        self.metadata = {
            "version": self._version(),
            "synthrec_version": synthrec.__version__,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "metrics": {
                "users": seqs.num_users,
                "events": int(len(seqs.item)),
                "items": int(self.items.num_rows),
                "fit_seconds": round(seconds, 1),
                **history,
            },
        }
        if self.plan is not None:
            from synthrec.sequences import dp

            self.metadata.update(dp.metadata(self.plan, self.users_model.metadata))
        return self

    def _fit_sequences(self, seqs: Sequences, cfg, epochs, budget_s, report) -> dict[str, Any]:
        """Likelihood epochs until the cap, early stopping or 70% of the budget (all of it
        without an adversarial phase), then the adversarial chunks until the budget ends."""
        start = time.monotonic()
        budget = self.plan.budget if self.plan is not None else None
        data = fitting.prepare_fit(
            seqs, self.encoder, self.item_counts, cfg, self.cluster_attribute(), budget
        )
        run = fitting.SequenceFit(data, cfg, self.device)
        max_epochs = epochs or cfg.epochs
        adv_share = fitting.ADVERSARIAL_SHARE if cfg.adversarial_steps else 0.0
        deadline = start + budget_s if budget_s else None
        mle_deadline = start + budget_s * (1 - adv_share) if budget_s else None
        history = []
        while run.phase == "likelihood":
            if run.dp is not None:
                metrics = run.dp_likelihood_epoch(mle_deadline)
            else:
                metrics = run.likelihood_epoch(
                    epoch_seed(cfg.seed, run.epoch + 1), None, mle_deadline
                )
            history.append(metrics)
            report(**metrics)
            if run.likelihood_done(max_epochs) or (
                mle_deadline and time.monotonic() > mle_deadline
            ):
                run.end_likelihood()
        while run.phase == "adversarial" and not (deadline and time.monotonic() > deadline):
            report(**run.adversarial_epoch(epoch_seed(cfg.seed, run.epoch + 1), deadline=deadline))
        self.model = run.model
        if run.dp is not None:
            self.plan.budget = run.dp.budget
        return {"epochs": len(history), **run.summary(), "history": history}

    def _set_id_policy(self, real_ids: pa.ChunkedArray) -> None:
        if pa.types.is_integer(real_ids.type):
            self.id_floor = int(pc.max(real_ids).as_py() or 0) + 1
            return
        text = real_ids.cast(pa.string())
        prefix, k = "syn-", 0
        while pc.any(pc.starts_with(text, prefix)).as_py():
            k += 1
            prefix = f"syn{k}-"
        self.id_prefix = prefix

    # -- sampling ---------------------------------------------------------------------------
    def sample(
        self,
        users: int | None = None,
        events: int | None = None,
        conditions: Conditions | None = None,
        rebalance: Rebalance | None = None,
        seed: int | None = None,
    ) -> RelationalLog:
        """Exactly `users` synthetic users with their events, or users until exactly `events`
        events (the last user's sequence cut). No seed: a fresh one each call."""
        self._check_fitted()
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        if (users is None) == (events is None):
            raise ConfigError("sample needs exactly one of users=N or events=N")
        count = users if users is not None else events
        if count < 0:
            raise ConfigError(
                f"number of {'users' if users is not None else 'events'} must be >= 0"
            )
        parts, got, block = [], 0, 0
        per_block = BLOCK_USERS if events is None else self._users_for(events)
        while True:
            n = per_block if events is not None else min(BLOCK_USERS, users - got)
            if n <= 0 and parts:
                break
            part = self.sample_block(block, max(n, 0), seed, conditions, rebalance)
            parts.append(part)
            got += part.users.num_rows if events is None else part.events.num_rows
            block += 1
            if (events is None and got >= users) or (events is not None and got >= events):
                break
        out = _concat(parts, self.encoder)
        if events is not None:
            out = _cut_events(out, events, self.encoder)
        return out

    def users_for_events(self, events: int) -> int:
        """About how many users make `events` events (the real log's mean user length)."""
        lengths = self.calibration.get(LENGTH_COL, {}).get("real")
        mean = max(1.0, float(np.mean(lengths))) if lengths else 1.0
        return max(1, round(events / mean))

    def _users_for(self, events: int) -> int:
        """Users per block when sampling `events` events: a quarter more than the mean user
        needs, so one block usually does, without drawing a full block of 4,096 users for a
        few thousand events. Fixed by `events`: same output."""
        return int(min(BLOCK_USERS, math.ceil(self.users_for_events(events) * 1.25)))

    def sample_block(
        self,
        block_index: int,
        num_users: int,
        seed: int,
        conditions: Conditions | None = None,
        rebalance: Rebalance | None = None,
    ) -> RelationalLog:
        """`num_users` users determined only by (seed, block_index, conditions, rebalance);
        their ids are numbered from block_index * BLOCK_USERS."""
        self._check_fitted()
        enc = self.encoder
        user_cond, sampling = self._resolve(conditions, rebalance)
        block_seed = _block_seed(seed, block_index)
        users = self.users_model.sample_block(block_index, num_users, seed, conditions=user_cond)
        users = _calibrate(users, self.calibration, np.random.default_rng(block_seed + 1))
        lengths = np.maximum(
            1,
            np.round(pc.fill_null(users.column(LENGTH_COL).cast(pa.float64()), 1.0).to_numpy()),
        ).astype(np.int64)
        codes = np.stack([f.encode(users.column(f.name)) for f in enc.users], 1)
        gen = torch.Generator(device=self.device).manual_seed(block_seed)
        # users per generator call: the config's, fewer for a large catalog (the no-repeat
        # mask holds one byte per user and item); fixed per model, so output stays the same
        chunk = max(1, min(self.cfg.sample_batch_users, 2**27 // (self.items.num_rows + 1)))
        parts = [
            steps.sample_sequences(
                self.model,
                torch.from_numpy(codes[lo : lo + chunk]).to(self.device),
                torch.from_numpy(lengths[lo : lo + chunk]).to(self.device),
                gen,
                sampling,
            )
            for lo in range(0, max(num_users, 1), chunk)
        ]
        out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        ids = self._user_ids(block_index * BLOCK_USERS, num_users)
        return enc.decode(
            users,
            lengths,
            out["gap"].cpu().numpy(),
            out["item"].cpu().numpy(),
            out["fields"].cpu().numpy(),
            self.items,
            ids,
            np.random.default_rng(block_seed),
            first_user=block_index * BLOCK_USERS,
        )

    def sample_table(
        self,
        users: int | None = None,
        events: int | None = None,
        return_type: str | None = None,
        **kw,
    ):
        """`sample` flattened to one row per event, in the training log's columns and types;
        a pandas DataFrame when fit was given one (or return_type="pandas")."""
        flat = cast_like(self.sample(users=users, events=events, **kw).flatten(), self.flat_types)
        kind = return_type or self.return_type
        if kind not in ("arrow", "pandas"):
            raise ConfigError(f"return_type must be 'arrow' or 'pandas' (got {kind!r})")
        return flat.to_pandas() if kind == "pandas" else flat

    def cluster_attribute(self) -> np.ndarray | None:
        """The item codes the catalog head groups by, when cfg.catalog_clusters asks for it."""
        return coarsest_attribute(self.items) if self.cfg.catalog_clusters == "attribute" else None

    def _user_ids(self, first: int, n: int) -> pa.Array:
        number = np.arange(first, first + n, dtype=np.int64)
        if self.encoder.user_type.startswith(("int", "uint")):
            return pa.array(self.id_floor + number).cast(pa.type_for_alias(self.encoder.user_type))
        return pc.binary_join_element_wise(self.id_prefix, pa.array(number).cast(pa.string()), "")

    def _resolve(self, conditions, rebalance) -> tuple[Conditions, steps.Sampling]:
        """Split conditions into the users model's, item masks and fixed event fields."""
        enc = self.encoder
        tables = enc.structure["tables"]
        user_cols, item_cols = tables.get("users", [])[1:], tables.get("items", [])[1:]
        s = steps.Sampling(
            temperature=self.cfg.temperature,
            top_p=self.cfg.top_p,
            no_repeat=self.repeat_rate < NO_REPEAT_BELOW,
        )
        s.field_mask = {
            j: torch.from_numpy(np.where(codec.drawable(), 0.0, -np.inf).astype(np.float32))
            for j, codec in enumerate(enc.fields)
            if not codec.drawable().all()
        }
        user_cond: Conditions = {}
        allowed = np.ones(self.items.num_rows, bool)
        fixed: dict[int, int] = {}
        for col, value in (conditions or {}).items():
            if col in user_cols:
                user_cond[col] = value
            elif col in item_cols or col == enc.item_col:
                hit = pc.equal(
                    self.items.column(col), pa.scalar(value).cast(self.items.column(col).type)
                )
                hit = pc.fill_null(hit, False).to_numpy(zero_copy_only=False)
                if not hit.any():
                    raise ConfigError(f"condition {col}={value!r}: no catalog item has that value")
                allowed &= hit
            elif col in enc.event_field_names:
                j = enc.event_field_names.index(col)
                codec = enc.fields[j]
                code = int(codec.encode(pa.array([value]).cast(_arrow(codec.arrow_type)))[0])
                if codec.kind != "category" or code >= len(codec.values):
                    raise ConfigError(
                        f"condition {col}={value!r}: not a value this model generates "
                        f"(known: {', '.join(map(str, codec.values[:20]))})"
                    )
                fixed[j] = code
            else:
                raise ConfigError(
                    f"cannot condition on '{col}': conditions take a user attribute "
                    f"({', '.join(user_cols) or 'none'}), an item attribute "
                    f"({', '.join(item_cols) or 'none'}) or an event column "
                    f"({', '.join(c for c in enc.event_field_names if c != SESSION_FLAG)})"
                )
        if not allowed.all():
            if not (allowed & (self.item_counts > 0)).any():
                raise ConfigError("the conditions leave no item that occurs in the training log")
            s.item_allowed = torch.from_numpy(allowed)
        if fixed:
            s.fixed_fields = fixed
        if rebalance:
            s.item_log_weight = torch.from_numpy(self._rebalance_weights(rebalance, item_cols))
        return user_cond, s

    def _rebalance_weights(self, rebalance: Rebalance, item_cols: list[str]) -> np.ndarray:
        """Per-item log weights that move the item attribute shares to the asked ones."""
        w = np.zeros(self.items.num_rows, np.float32)
        for col, target in rebalance.items():
            if col not in item_cols:
                raise ConfigError(
                    f"rebalance: '{col}' is not an item attribute ({', '.join(item_cols)})"
                )
            codes = pc.dictionary_encode(self.items.column(col)).combine_chunks()
            values = codes.dictionary.to_pylist()
            idx = pc.fill_null(codes.indices, len(values)).to_numpy(zero_copy_only=False)
            real = np.bincount(idx, weights=self.item_counts, minlength=len(values) + 1)
            real = real / max(real.sum(), 1)
            if target == "uniform":
                target = dict.fromkeys((v for v in values if v is not None), 1.0)
            unknown = [v for v in target if v not in values]
            if unknown:
                raise ConfigError(f"rebalance {col}: unknown value(s) {unknown[:5]}")
            share = np.array([float(target.get(v, 0.0)) for v in values] + [0.0])
            if share.sum() <= 0:
                raise ConfigError(f"rebalance {col}: shares must sum to more than 0")
            share = share / share.sum()
            with np.errstate(divide="ignore"):
                ratio = np.where(real > 0, np.log(share / np.maximum(real, 1e-12)), -np.inf)
            w += ratio[idx].astype(np.float32)
        return w

    def _version(self) -> str:
        h = hashlib.sha256()
        for k, v in sorted(self.model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    def _check_fitted(self) -> None:
        if self.model is None:
            raise ModelError("this SequenceSynthesizer is not fitted; call fit() or load one")


def coarsest_attribute(items: pa.Table) -> np.ndarray | None:
    """Codes of the catalog's coarsest grouping (the categorical attribute with the fewest
    values, at least 2 and at most half the catalog: a category), or None."""
    best = None
    for name in items.column_names[1:]:
        col = items.column(name)
        if not (
            pa.types.is_string(col.type)
            or pa.types.is_large_string(col.type)
            or pa.types.is_integer(col.type)
            or pa.types.is_dictionary(col.type)
        ):
            continue
        codes = pc.dictionary_encode(col).combine_chunks()
        n = len(codes.dictionary)
        if 2 <= n <= items.num_rows // 2 and (best is None or n < best[0]):
            best = (n, pc.fill_null(codes.indices, n).to_numpy(zero_copy_only=False))
    return None if best is None else best[1].astype(np.int64)


def _repeat_rate(seqs: Sequences) -> float:
    """Share of events whose item the same user had before (ratings logs: 0)."""
    user = np.repeat(np.arange(seqs.num_users), np.diff(seqs.offsets))
    distinct = len(np.unique(user * (int(seqs.item.max(initial=0)) + 1) + seqs.item))
    return 1.0 - distinct / max(len(seqs.item), 1)


def _fit_users(table: pa.Table, cfg: SequenceConfig, budget_s, device, report, plan=None):
    from synthrec.gan import Synthesizer

    if table.num_rows < 2:
        raise DataError(f"sequence generation needs at least 2 users (got {table.num_rows})")
    gan_cfg = GanConfig(seed=cfg.seed, batch_size=min(500, max(10, table.num_rows // 10 * 10)))
    epochs = cfg.users_epochs
    if plan is not None:
        from synthrec.sequences import dp

        gan_cfg, epochs = dp.users_gan_config(plan, table.num_rows, cfg.seed)
    return Synthesizer().fit(
        table,
        cfg=gan_cfg,
        epochs=epochs,
        time_budget_s=budget_s,
        device=device,
        progress=lambda **m: report(phase="users", **m),
    )


CALIBRATION_DRAWS = 20_000
QUANTILES = np.linspace(0, 1, 201)


def _calibration(users_model, table: pa.Table, seed: int) -> dict[str, dict[str, list[float]]]:
    """Quantiles of each user's event count and first time, in the real users table and in
    the users GAN's draws: sampling maps a drawn value through the GAN's distribution onto the
    real one, so the marginals match while the GAN keeps their joint with the attributes
    (rank-preserving). Heavy-tailed counts are what a GAN's numeric heads get most wrong."""
    drawn = users_model.sample(CALIBRATION_DRAWS, seed=seed + 7919)
    out = {}
    for col in (LENGTH_COL, START_COL):
        real = table.column(col).cast(pa.float64()).to_numpy()
        fake = pc.fill_null(drawn.column(col).cast(pa.float64()), 0.0).to_numpy()
        out[col] = {
            "drawn": np.quantile(fake, QUANTILES).tolist(),
            "real": np.quantile(real, QUANTILES).tolist(),
        }
    return out


def _calibrate(users: pa.Table, calibration: dict, rng: np.random.Generator) -> pa.Table:
    """Each drawn value to its quantile among the GAN's draws, then to the real value at that
    quantile. A value the GAN draws often (a collapsed mode) spans several quantiles: it gets
    a uniform one among them, so the real distribution is not piled onto one value."""
    for col, q in calibration.items():
        x = pc.fill_null(users.column(col).cast(pa.float64()), 0.0).to_numpy()
        drawn = np.maximum.accumulate(np.asarray(q["drawn"]))
        n = len(drawn) - 1
        lo, hi = np.searchsorted(drawn, x, "left"), np.searchsorted(drawn, x, "right")
        tie = hi - lo > 1
        p = np.interp(x, drawn + np.arange(len(drawn)) * 1e-9, QUANTILES)
        spread = (lo + rng.random(len(x)) * (hi - 1 - lo)) / n
        p = np.where(tie, spread, p)
        value = np.interp(p, QUANTILES, q["real"])
        if col == LENGTH_COL:
            value = np.maximum(1, np.round(value)).astype(np.int64)
        i = users.column_names.index(col)
        users = users.set_column(i, col, pa.array(value))
    return users


def cast_like(table: pa.Table, types: dict[str, str]) -> pa.Table:
    """Cast columns back to the training log's types (where Arrow names them)."""
    for i, name in enumerate(table.column_names):
        want = types.get(name)
        if want and str(table.schema.field(i).type) != want:
            try:
                target = pa.type_for_alias(want)
            except ValueError:
                continue
            table = table.set_column(i, name, table.column(i).cast(target))
    return table


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one in-process training epoch (shuffling, adversarial draws)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _block_seed(seed: int, block_index: int) -> int:
    return int.from_bytes(
        hashlib.sha256(f"sequences:{seed}:{block_index}".encode()).digest()[:8], "little"
    ) & ((1 << 63) - 1)


def _arrow(alias: str) -> pa.DataType:
    try:
        return pa.type_for_alias(alias)
    except ValueError:
        return pa.string()


def _concat(parts: list[RelationalLog], enc: SequenceEncoder) -> RelationalLog:
    if len(parts) == 1:
        return parts[0]
    return RelationalLog.from_dict(
        enc.structure,
        events=pa.concat_tables([p.events for p in parts]),
        users=pa.concat_tables([p.users for p in parts]),
        items=parts[0].items,
    )


def _cut_events(log: RelationalLog, n: int, enc: SequenceEncoder) -> RelationalLog:
    """The first n events (users in order); users left without events dropped."""
    events = log.events.slice(0, n)
    kept = pc.unique(events.column(enc.user_col))
    users = log.users.filter(pc.is_in(log.users.column(0), value_set=kept))
    return RelationalLog.from_dict(enc.structure, events=events, users=users, items=log.items)
