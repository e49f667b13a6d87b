"""Typed configuration: one pydantic object per job, from YAML plus CLI overrides.

No torch, no ray here. Every section forbids unknown keys; `load_config` turns pydantic's
errors into one `ConfigError` that names each bad key and what is allowed.

Renamed keys (synthrec 0.2: locations end in `_uri`; run and checkpoint settings moved into
one `run` section; the pipeline's `synthetic_weight` moved into `recommender`) are still
accepted, with a `FutureWarning`, until the next release; `RENAMED` in each section lists them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from synthrec.errors import ConfigError

T = TypeVar("T", bound="Section")
MASKED = "**********"  # what pydantic dumps for a SecretStr


# λ of the recommender loss L = mean(real rows) + λ · mean(synthetic rows). 0.3 is the value
# chosen on the validation item of the ML-100K benchmark among λ in {0.1, 0.3, 1} (README,
# "Recommender F on ML-100K"; bench/recommender.py); the former defaults (1.0 for
# train-recommender, 0.5 for the pipeline) were never measured.
SYNTHETIC_WEIGHT = 0.3
# GAN epochs when neither epochs nor a time budget is given: `synthrec train-gan` and
# `Synthesizer.fit` alike.
GAN_EPOCHS = 30


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated.

    `RENAMED` maps a deprecated key to its new dotted path (relative to the section); a
    deprecated key is moved there with a FutureWarning. `_fill_defaults` (a hook on the raw
    input, run after the renames) sets defaults that depend on other keys, so that they are
    validated like any value."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    RENAMED: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return cls._fill_defaults(_apply_renames(cls, data))

    @classmethod
    def _fill_defaults(cls, data: dict[str, Any]) -> dict[str, Any]:
        return data

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False):
        """pydantic's copy, refusing unknown keys in `update` (it would set them silently)."""
        unknown = sorted(set(update or {}) - set(type(self).model_fields))
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.model_copy: unknown field(s) {', '.join(unknown)}"
            )
        return super().model_copy(update=update, deep=deep)


def _apply_renames(cls: type[Section], data: dict[str, Any]) -> dict[str, Any]:
    old_keys = [k for k in cls.RENAMED if k in data]
    if not old_keys:
        return data
    data = dict(data)
    for old in old_keys:
        new = cls.RENAMED[old]
        *parents, leaf = new.split(".")
        target = data
        for part in parents:
            sub = target.get(part)
            sub = sub.model_dump(exclude_unset=True) if isinstance(sub, BaseModel) else sub
            target[part] = dict(sub or {})
            target = target[part]
        if leaf in target:
            raise ValueError(f"'{old}' is the old name of '{new}'; give only '{new}'")
        target[leaf] = data.pop(old)
        warnings.warn(
            f"config key '{old}' is deprecated, use '{new}' ({cls.__name__}); the old name "
            "stops working in the next synthrec release",
            FutureWarning,
            stacklevel=2,
        )
    return data


class StorageConfig(Section):
    """Where s3:// URIs go. Unset fields fall back to the standard AWS variables.

    Credentials are never serialized (SecretStr dumps as stars) and never logged; on a
    cluster they come from the environment or the instance profile.
    """

    endpoint_url: str | None = Field(
        None, description="e.g. http://127.0.0.1:8333; env AWS_ENDPOINT_URL"
    )
    region: str | None = Field(
        None, description="env AWS_REGION / AWS_DEFAULT_REGION; default us-east-1"
    )
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    max_attempts: int = Field(5, ge=1, le=20, description="attempts for transient S3 errors")
    retry_base_delay_s: float = Field(0.2, gt=0, le=10)
    keep_versions: int = Field(
        2,
        ge=1,
        le=100,
        description="published versions kept at a URI (the current one included), so readers "
        "that started on an older version can finish",
    )
    stale_after_s: float = Field(
        3600,
        ge=0,
        description="an unpublished run folder idle this long is a crashed write and may be "
        "deleted; a writer in flight keeps its folder younger. 0 only with a single writer",
    )
    verify_checksums: bool = Field(
        True,
        description="check every published file's sha256 on read; off for trusted stores "
        "(sizes are always checked)",
    )

    @model_validator(mode="after")
    def _no_masked_secrets(self) -> StorageConfig:
        for name in ("access_key_id", "secret_access_key"):
            value = getattr(self, name)
            if value is not None and value.get_secret_value() == MASKED:
                raise ValueError(
                    f"storage.{name} is the masked placeholder {MASKED!r}, not a credential: "
                    "secrets are never serialized; give the real value, or leave it unset and "
                    "use the environment (AWS_ACCESS_KEY_ID, ...) or the instance identity"
                )
        return self

    def secrets(self) -> dict[str, str]:
        """The credentials set in this config (not those from the environment)."""
        return {
            name: value.get_secret_value()
            for name in ("access_key_id", "secret_access_key")
            if (value := getattr(self, name)) is not None
        }

    def without_secrets(self) -> StorageConfig:
        """A copy safe to send to Ray workers: credentials left to their environment."""
        return self.model_copy(update={"access_key_id": None, "secret_access_key": None})

    def with_secrets(self, secrets: dict[str, str]) -> StorageConfig:
        """Put back what `secrets()` returned (on a worker)."""
        return self.model_copy(update={k: SecretStr(v) for k, v in secrets.items()})

    def resolved(self) -> dict[str, str | None]:
        """Endpoint, region and credentials with environment fallbacks applied."""
        env = os.environ
        key = (
            self.access_key_id.get_secret_value()
            if self.access_key_id
            else env.get("AWS_ACCESS_KEY_ID")
        )
        secret = (
            self.secret_access_key.get_secret_value()
            if self.secret_access_key
            else env.get("AWS_SECRET_ACCESS_KEY")
        )
        return {
            "endpoint_url": self.endpoint_url
            or env.get("AWS_ENDPOINT_URL_S3")
            or env.get("AWS_ENDPOINT_URL"),
            "region": self.region
            or env.get("AWS_REGION")
            or env.get("AWS_DEFAULT_REGION")
            or "us-east-1",
            "access_key_id": key,
            "secret_access_key": secret,
            "session_token": env.get("AWS_SESSION_TOKEN"),
        }


class ScalingSection(Section):
    """How many Ray workers or actors, and what each one gets."""

    num_workers: int = Field(1, ge=1, le=1024)
    use_gpu: bool = False
    cpus_per_worker: float = Field(0.5, gt=0, le=256, description="fractional on small machines")
    gpus_per_worker: float = Field(1.0, gt=0, le=8)


class SimulateConfig(Section):
    """The built-in e-commerce search-log simulator (documented as simulated data)."""

    rows: int = Field(100_000, ge=1, le=100_000_000)
    num_users: int = Field(5_000, ge=1)
    num_items: int = Field(20_000, ge=1)
    num_categories: int = Field(40, ge=1, le=10_000)
    num_brands: int = Field(300, ge=1)
    num_queries: int = Field(2_000, ge=1)
    seed: int = Field(0, ge=0, description="block b draws from the stream (seed, b)")
    out_uri: str = Field("out/simulated", description="dataset URI to publish")
    rows_per_file: int = Field(1_000_000, ge=1_000)

    RENAMED: ClassVar[dict[str, str]] = {"out": "out_uri"}


class EncoderConfig(Section):
    """How the encoder turns a table into the matrix the GAN learns from (encoding/)."""

    max_onehot_cardinality: int = Field(64, ge=2, description="above this, ids use embeddings")
    id_embedding_dim: int = Field(16, ge=2)
    num_modes: int = Field(10, ge=1, le=50, description="max Gaussian modes per numeric column")
    mode_fit_rows: int = Field(
        5_000,
        ge=100,
        description="bounded sample for each numeric column's mode fit (a 1-D mixture)",
    )
    max_discrete_int_levels: int = Field(
        32,
        ge=0,
        description="integer numeric columns with at most this many values are one-hot "
        "(exact marginals)",
    )
    id_profile_rows: int = Field(
        200_000, ge=100, description="bounded sample for id profile vectors"
    )
    id_policy: Literal["pseudonymize", "keep"] = Field(
        "pseudonymize",
        description="user-id columns in synthetic output: pseudonymize (keyed HMAC-SHA256 "
        "pseudonyms, a random key per model: stable within a model, never a real id, not "
        "reversible from the output; the model stores no real user ids) or keep (real ids)",
    )
    min_text_count: int = Field(
        5,
        ge=1,
        description="a free-text value (text role, e.g. search queries) is emitted only if at "
        "least this many training rows hold it; rarer values are neither stored nor emitted "
        "(1: keep every value)",
    )


# keys that lived at the top of `gan` before the `encoder` section (still accepted there)
ENCODER_KEYS = (
    "max_onehot_cardinality",
    "id_embedding_dim",
    "num_modes",
    "mode_fit_rows",
    "max_discrete_int_levels",
    "id_profile_rows",
)


class PrivacyConfig(Section):
    """Differential privacy for the row GAN (synthrec.privacy): DP-SGD on the critic plus DP
    (or declared public) encoder statistics, all composed in one RDP accountant."""

    epsilon: float = Field(..., gt=0, le=100, description="total budget ε of the model")
    delta: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="δ; default 1/n^1.1 for n training rows; must be below 1/n",
    )
    max_grad_norm: float = Field(
        1.0, gt=0, description="per-row clipping bound C of each critic gradient"
    )
    encoder_share: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="share of ε given to the encoder's noisy category counts (the rest to "
        "DP-SGD); the accountant composes both",
    )
    public_columns: list[str] = Field(
        default_factory=list,
        description="columns whose statistics (values, counts, modes, id profiles) are "
        "public, e.g. taken from the catalog; they are fitted without noise",
    )
    bounds: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="numeric column -> public [low, high]: the column is encoded on a fixed "
        "grid of modes over that range (no statistic of the rows); values outside are clipped",
    )

    domains: dict[str, list[str]] = Field(
        default_factory=dict,
        description="categorical column -> its public list of values, e.g. from the catalog or "
        "fixed bins: the counts are still noised, but no value is dropped and no threshold δ "
        "is spent for it; rows holding another value are refused",
    )

    @model_validator(mode="after")
    def _bounds_ordered(self) -> PrivacyConfig:
        bad = [f"{c} {lo:g}..{hi:g}" for c, (lo, hi) in self.bounds.items() if not lo < hi]
        if bad:
            raise ValueError(f"bounds need low < high: {', '.join(bad)}")
        return self

    @model_validator(mode="after")
    def _domains_valid(self) -> PrivacyConfig:
        both = sorted(set(self.domains) & set(self.public_columns))
        if both:
            raise ValueError(
                f"privacy.domains and public_columns both list {', '.join(both)}: a public "
                "column is fitted without noise, a public domain gets noisy counts; keep one"
            )
        empty = sorted(c for c, values in self.domains.items() if not values)
        twice = sorted(c for c, values in self.domains.items() if len(set(values)) < len(values))
        if empty or twice:
            raise ValueError(
                f"privacy.domains need distinct values, at least one: "
                f"{', '.join(f'{c} (empty)' for c in empty)}"
                f"{', ' if empty and twice else ''}"
                f"{', '.join(f'{c} (repeated values)' for c in twice)}"
            )
        return self


class GanConfig(Section):
    """Conditional WGAN-GP hyperparameters (CTGAN-class defaults)."""

    embedding_dim: int = Field(128, ge=1, description="noise dimension")
    generator_dims: list[int] = Field(default_factory=lambda: [256, 256])
    critic_dims: list[int] = Field(default_factory=lambda: [256, 256])
    generator_lr: float = Field(2e-4, gt=0)
    critic_lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(1e-6, ge=0)
    batch_size: int = Field(500, ge=10, description="global batch; split across workers")
    pac: int = Field(10, ge=1, description="PacGAN: rows per critic sample")
    critic_steps: int = Field(1, ge=1)
    gp_weight: float = Field(10.0, ge=0)
    gumbel_tau: float = Field(0.2, gt=0)
    encoder: EncoderConfig = Field(
        default_factory=lambda: EncoderConfig(), description="how the table becomes a matrix"
    )
    seed: int = Field(0, description="weights, noise and the encoder's bounded samples")
    generator_norm: Literal["batch", "layer"] = Field(
        "batch", description="normalization in residual blocks"
    )
    critic_dropout: float = Field(0.5, ge=0, lt=1)
    adam_betas: tuple[float, float] = (0.5, 0.9)
    cond_extra_prob: float = Field(
        0.1,
        ge=0,
        le=1,
        description="chance each other discrete column is also revealed in the conditional vector",
    )
    epochs: int = Field(
        GAN_EPOCHS, ge=1, le=100_000, description="default when fit() gets no epochs or time budget"
    )
    sample_batch_rows: int = Field(
        16_384, ge=1, le=1_000_000, description="rows per generator call when sampling"
    )
    id_calibration_rounds: int = Field(
        3,
        ge=0,
        le=20,
        description="after training, rounds of per-id draw-weight calibration so that sampled "
        "id columns keep their training frequencies (0: off)",
    )

    privacy: PrivacyConfig | None = Field(
        None, description="differential privacy (DP-SGD); None: no privacy guarantee"
    )
    marginal_calibration: bool | None = Field(
        None,
        description="sample 4x the rows and keep a weighted subset whose categorical columns "
        "follow the encoder's counts (unconditioned draws only); None: on under privacy, "
        "where the counts are the released noisy ones (post-processing, no extra ε)",
    )

    @classmethod
    def _fill_defaults(cls, data: dict[str, Any]) -> dict[str, Any]:
        # DP-SGD clips each row's gradient: a packed critic input mixes rows, so pac is 1
        if data.get("privacy") is not None and "pac" not in data:
            return {**data, "pac": 1}
        return data

    @model_validator(mode="before")
    @classmethod
    def _flat_encoder_keys(cls, data: Any) -> Any:
        """Encoder settings written at the top of `gan` (before the `encoder` section) still
        load, with a deprecation warning; both places at once is an error."""
        if not isinstance(data, dict):
            return data
        flat = [k for k in ENCODER_KEYS if k in data]
        if not flat:
            return data
        section = data.get("encoder") or {}
        section = (
            section.model_dump(exclude_unset=True)
            if isinstance(section, BaseModel)
            else dict(section)
        )
        both = [k for k in flat if k in section]
        if both:
            raise ValueError(f"{', '.join(both)} given both in gan and in gan.encoder; keep one")
        warnings.warn(
            f"gan.{', gan.'.join(flat)}: write these under gan.encoder (the old place is "
            f"accepted for one release)",
            DeprecationWarning,
            stacklevel=2,
        )
        rest = {k: v for k, v in data.items() if k not in flat}
        return {**rest, "encoder": {**section, **{k: data[k] for k in flat}}}

    @model_validator(mode="after")
    def _private_pac(self) -> GanConfig:
        if self.privacy is not None and self.pac != 1:
            raise ValueError(
                f"privacy needs pac 1 (got {self.pac}): a packed critic input mixes rows, so "
                "one row's gradient cannot be clipped alone; drop pac or set it to 1"
            )
        return self

    @model_validator(mode="after")
    def _pac_divides_batch(self) -> GanConfig:
        if self.batch_size % self.pac:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of pac {self.pac}")
        return self


class SequenceConfig(Section):
    """The sequence generator (synthrec.sequences): a causal transformer over each user's
    events, maximum-likelihood training, then an optional adversarial phase against a critic."""

    d_model: int = Field(
        64,
        ge=8,
        le=2048,
        description="width of the transformer (64 matched 128 on ML-100K: F from synthetic "
        "users 0.0724 vs 0.0722 NDCG@10, 4x faster sampling)",
    )
    n_layers: int = Field(2, ge=1, le=24)
    n_heads: int = Field(4, ge=1, le=32)
    window: int = Field(
        64,
        ge=4,
        le=4096,
        description="events the model attends to; longer users are split into windows for "
        "training and generated with a sliding window",
    )
    dropout: float = Field(0.1, ge=0, lt=1)
    catalog_clusters: Literal["usage", "attribute"] = Field(
        "usage",
        description="how the catalog head groups items: 'usage' (items that share users) or "
        "'attribute' (by the catalog's coarsest category first)",
    )
    batch_size: int = Field(32, ge=1, le=65_536, description="windows per training step")
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    epochs: int = Field(30, ge=1, le=100_000, description="maximum-likelihood epochs (cap)")
    patience: int = Field(
        3, ge=1, description="epochs without a better validation likelihood before stopping"
    )
    valid_share: float = Field(
        0.1, ge=0, lt=0.5, description="users held out to early-stop on (0: no early stop)"
    )
    adversarial_steps: int = Field(
        300,
        ge=0,
        le=1_000_000,
        description="policy-gradient steps against the sequence critic after "
        "maximum-likelihood training (0: none). On by default: in bench/sequences.py F "
        "learnt more from users made with the phase (65% of real vs 60%, ML-100K); with a time "
        "budget the phase gets its last 30% and stops at the budget",
    )
    adversarial_lr: float = Field(1e-4, gt=0)
    adversarial_mle_weight: float = Field(
        1.0, ge=0, description="maximum-likelihood loss kept beside the critic's reward"
    )
    temperature: float = Field(1.0, gt=0, le=10, description="sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling of the item")
    sample_batch_users: int = Field(2_048, ge=1, le=1_000_000)
    users_epochs: int = Field(
        300, ge=1, description="epochs cap of the users-table GAN (it also gets a time share)"
    )
    users_budget_share: float = Field(
        0.2, gt=0, lt=1, description="share of a time budget given to the users-table GAN"
    )
    privacy: PrivacyConfig | None = Field(
        None,
        description="user-level differential privacy (DP-SGD over users, a DP users GAN); "
        "None: no privacy guarantee. `train-gan --generator sequences --epsilon` sets it",
    )
    seed: int = 0


class RunSection(Section):
    """How a Ray Train run checkpoints, restarts and resumes (the GAN and the recommender)."""

    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints")
    keep_checkpoints: int = Field(2, ge=1)
    max_failures: int = Field(2, ge=0, description="automatic restarts from the last checkpoint")
    checkpoint_uri: str | None = Field(None, description="run storage; default: <out_uri>-runs")
    run_name: str | None = Field(None, description="reuse a name with resume to continue a run")
    resume: bool = False

    @model_validator(mode="after")
    def _resume_needs_name(self) -> RunSection:
        if self.resume and not self.run_name:
            raise ValueError("resume needs run_name (the name printed by the run to continue)")
        return self


class RecommenderRunSection(RunSection):
    """RunSection for model F: its epochs are short, so it checkpoints every 5 by default."""

    checkpoint_every: int = Field(5, ge=1, description="epochs between checkpoints")


# Keys that moved from a training job's top level into its `run` section.
_RUN_KEYS = {
    k: f"run.{k}"
    for k in (
        "checkpoint_every",
        "keep_checkpoints",
        "max_failures",
        "checkpoint_uri",
        "run_name",
        "resume",
    )
}


Generator = Literal["auto", "rows", "sequences"]


class TrainGanConfig(Section):
    """`synthrec train-gan` / jobs/train_gan.py: Ray Train data-parallel GAN training."""

    data_uri: str = Field(
        ..., description="table URI: .parquet/.csv/.jsonl file or dataset folder, local or s3://"
    )
    out_uri: str = Field(..., description="model directory URI to publish")
    schema_uri: str | None = Field(None, description="schema YAML overriding inferred roles")
    init_model_uri: str | None = Field(
        None,
        description="warm start: first weights copied from this generator of the same kind "
        "where names and shapes match (a refresh's production generator)",
    )
    generator: Generator = Field(
        "auto",
        description="rows: the row GAN; sequences: users, catalog and each user's events "
        "(needs user, item and time columns); auto: sequences when the log has them",
    )
    gan: GanConfig = Field(default_factory=GanConfig)
    sequence: SequenceConfig = Field(
        default_factory=SequenceConfig,
        description="the sequence generator; `epochs` (the run's) caps its likelihood epochs, "
        "sequence.epochs only when a time budget is set without epochs",
    )
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    run: RunSection = Field(default_factory=RunSection)
    epochs: int | None = Field(
        None, ge=1, le=100_000, description=f"default {GAN_EPOCHS} when time_budget_min is not set"
    )
    time_budget_min: float | None = Field(None, gt=0, description="stop after this many minutes")
    bf16: bool = Field(
        False,
        description="bf16 autocast on GPU (ignored on CPU); pays only with large "
        "batches (~20,000 rows per GPU step; README, GPU section)",
    )
    early_stop_patience: int | None = Field(None, ge=1, description="epochs without fidelity gain")
    ray_address: str | None = None

    RENAMED: ClassVar[dict[str, str]] = {
        "data": "data_uri",
        "out": "out_uri",
        "schema": "schema_uri",
        **_RUN_KEYS,
    }

    @classmethod
    def _fill_defaults(cls, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("epochs") is None and data.get("time_budget_min") is None:
            return {**data, "epochs": GAN_EPOCHS}
        return data

    @model_validator(mode="after")
    def _private_stopping(self) -> TrainGanConfig:
        if self.gan.privacy is not None and self.early_stop_patience is not None:
            raise ValueError(
                "early_stop_patience scores samples against real rows after every epoch, a "
                "decision no privacy budget covers; drop it when gan.privacy is set"
            )
        return self


USERS_PER_BLOCK_MAX = 4_096  # = synthrec.sequences.synthesizer.BLOCK_USERS (ids per block)
# Automatic block sizes: a block is the unit of the seeded output and of an actor's work, so
# its size comes from the count alone (the same seed gives the same files whatever the actor
# count), aiming at AUTO_BLOCKS blocks: enough to keep dozens of actors busy to the end, each
# block still large against its fixed cost (the floor: on 2 cores, 10,000-row blocks kept 0.70
# of a core's rate per actor after start, 50,000-row ones 0.91; bench/generate.py) and a file
# of reasonable size (the cap).
AUTO_BLOCKS = 256
AUTO_BLOCK_BOUNDS = {"rows": (50_000, 250_000), "users": (256, 1_024)}


def auto_block_size(unit: Literal["rows", "users"], count: int) -> int:
    """Rows or users per block for a run of `count` of them (see AUTO_BLOCKS)."""
    low, high = AUTO_BLOCK_BOUNDS[unit]
    return int(min(high, max(low, -(-count // AUTO_BLOCKS))))


class GenerateConfig(Section):
    """`synthrec generate` / jobs/generate.py: Ray Data generation to Parquet.

    A row model makes exactly `rows` rows; a sequence model exactly `users` users with all
    their events (one row per event). Which one a model takes is read from the model."""

    model_uri: str = Field(..., description="model directory URI")
    rows: int | None = Field(
        None, ge=1, le=10_000_000_000, description="exact number of rows (row models)"
    )
    users: int | None = Field(
        None,
        ge=1,
        le=1_000_000_000,
        description="exact number of users, each with all their events (sequence models)",
    )
    out_uri: str = Field(..., description="dataset URI to publish")
    conditions: dict[str, str] = Field(
        default_factory=dict, description="exact column=value conditions"
    )
    rebalance: dict[str, str | dict[str, float]] = Field(
        default_factory=dict, description="column -> 'uniform' or {value: probability}"
    )
    seed: int = 0
    rows_per_file: int | None = Field(
        None,
        ge=1_000,
        le=50_000_000,
        description="block size; one file per block; default from the row count "
        "(auto_block_size): enough blocks for many actors, whatever the actor count",
    )
    users_per_file: int | None = Field(
        None,
        ge=1,
        le=USERS_PER_BLOCK_MAX,
        description="block size of a sequence model, in users; one file per block; default "
        "from the user count (auto_block_size)",
    )
    concurrency: int = Field(2, ge=1, le=4096, description="generator actors")
    cpus_per_actor: float = Field(0.5, gt=0, le=256)
    gpu: bool = False
    storage: StorageConfig = Field(default_factory=StorageConfig)
    ray_address: str | None = None

    RENAMED: ClassVar[dict[str, str]] = {"model": "model_uri", "out": "out_uri"}

    @model_validator(mode="after")
    def _one_count(self) -> GenerateConfig:
        if (self.rows is None) == (self.users is None):
            given = "both were" if self.rows is not None else "neither was"
            raise ValueError(
                f"give exactly one of rows (row models: --rows N) and users (sequence models: "
                f"--users N); {given} given"
            )
        return self

    @property
    def unit(self) -> Literal["rows", "users"]:
        return "rows" if self.rows is not None else "users"

    @property
    def count(self) -> int:
        """Rows or users, whichever this config asks for."""
        return self.rows if self.rows is not None else self.users

    @property
    def per_file(self) -> int:
        """Rows or users per block (and file): the one given, else `auto_block_size`."""
        given = self.rows_per_file if self.rows is not None else self.users_per_file
        return given if given is not None else auto_block_size(self.unit, self.count)


class RecommenderConfig(Section):
    """Model F (causal-transformer user tower, attribute item tower) and how it is trained."""

    dim: int = Field(64, ge=8, le=1024, description="embedding and transformer width")
    num_layers: int = Field(2, ge=1, le=12)
    num_heads: int = Field(1, ge=1, le=16)
    max_len: int = Field(50, ge=2, le=1024, description="sequence window, including the user token")
    dropout: float = Field(0.2, ge=0, lt=1)
    loss: Literal["softmax", "bce"] = Field(
        "softmax", description="softmax: cross-entropy over items; bce: sampled negatives"
    )
    num_negatives: int = Field(
        0, ge=0, description="shared sampled negatives per step; 0 = all items (exact softmax)"
    )
    synthetic_weight: float = Field(
        SYNTHETIC_WEIGHT,
        ge=0,
        description="λ in L = mean(real rows) + λ · mean(synthetic rows); 0.3 was chosen on "
        "validation data (ML-100K benchmark, README)",
    )
    batch_size: int = Field(64, ge=1, description="windows per step, global (split across workers)")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="upper bound; early stopping may end sooner; default 200 when "
        "time_budget_s is not set",
    )
    time_budget_s: float | None = Field(None, gt=0, description="stop after this many seconds")
    patience: int = Field(10, ge=1, description="validations without NDCG@10 gain before stopping")
    eval_every: int = Field(1, ge=1, description="epochs between validations")
    holdout: Literal["leave_last_out", "none"] = Field(
        "leave_last_out",
        description="leave_last_out: train without each user's last two rows (validation, test)",
    )
    time_column: str | None = Field(
        None, description="default: the datetime column, or one named timestamp/time/ts"
    )
    user_features: list[str] | None = Field(None, description="default: columns constant per user")
    item_features: list[str] | None = Field(None, description="default: columns constant per item")
    query_column: str | None = Field(
        None, description="default: a text column named query/search/search_query"
    )
    query_buckets: int = Field(
        1 << 14, ge=16, le=1 << 24, description="hash buckets for query tokens"
    )
    query_max_tokens: int = Field(8, ge=1, le=64)
    # Ranking heads (synthrec.recommender.ranking): P(click), P(cart | click), P(purchase | cart)
    labels: list[str] | None = Field(
        None,
        description="label columns in funnel order, weakest first (click, cart, purchase); "
        "default: the schema's label columns in table order",
    )
    positive_label: str | None = Field(
        None,
        description="weakest label that makes a row a positive interaction for the next-item "
        "head (default: the first label: click or stronger)",
    )
    next_item_rows: Literal["positive", "all"] = Field(
        "positive", description="rows the next-item head learns from when the log has labels"
    )
    position_column: str | None = Field(
        None, description="display position (training-only bias); default: a column 'position'"
    )
    max_positions: int = Field(50, ge=1, le=10_000, description="positions past this share a bias")
    ranking_batch_size: int = Field(512, ge=1, description="impressions per step and per source")
    ranking_heads: bool | None = Field(
        None,
        description="train-recommender: also train the ranking heads on impressions (early "
        "stopping then on validation click GAUC). Default (null): on for a search log, one with "
        "label columns and a query or display-position column; off for other logs (e.g. ratings "
        "turned into a click label), which keep the next-item trainer's leave-last-out holdout",
    )
    seed: int = 0

    @classmethod
    def _fill_defaults(cls, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("epochs") is None and data.get("time_budget_s") is None:
            return {**data, "epochs": 200}
        return data

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> RecommenderConfig:
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} must be a multiple of num_heads {self.num_heads}")
        return self


class TrainRecommenderConfig(Section):
    """`synthrec train-recommender` / jobs/train_recommender.py: Ray Train data-parallel model F."""

    real_uri: str = Field(
        ...,
        description="real interactions: .parquet/.csv/.jsonl file or dataset folder, local or s3://",
    )
    synthetic_uri: str | None = Field(
        None, description="synthetic interactions with the real table's columns"
    )
    schema_uri: str | None = Field(
        None,
        description="schema YAML of the real table (default: its manifest's schema, else "
        "inferred); it fixes the user, item and time columns",
    )
    out_uri: str = Field(..., description="model directory URI to publish")
    init_model_uri: str | None = Field(
        None,
        description="warm start: first weights copied from this model F where names and "
        "shapes (item embeddings: raw item ids) match (a refresh's production model)",
    )
    model: RecommenderConfig = Field(default_factory=RecommenderConfig)
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    run: RecommenderRunSection = Field(default_factory=RecommenderRunSection)
    ray_data_min_mb: float = Field(
        64,
        ge=0,
        description="inputs at least this large are read with Ray Data; smaller ones on the driver",
    )
    ray_address: str | None = None

    RENAMED: ClassVar[dict[str, str]] = {
        "real": "real_uri",
        "synthetic": "synthetic_uri",
        "schema": "schema_uri",
        "out": "out_uri",
        **_RUN_KEYS,
    }


class TuneSearchSection(Section):
    """The bounded search of `synthrec tune`: the values each trial draws from, and its budget."""

    synthetic_weight: list[float] = Field(
        [0.0, 0.3, 1.0, 3.0], min_length=1, description="λ values (1 is the seed's)"
    )
    synthetic_share: list[float] = Field(
        [0.25, 0.5, 1.0],
        min_length=1,
        description="share of the synthetic rows a trial trains on (whole requests, seeded)",
    )
    temperature: list[float] = Field(
        [1.0],
        min_length=1,
        description="sampling temperatures of generator_uri (a sequence model), one synthetic "
        "log sampled per value; one value when the synthetic rows are given",
    )
    dim: list[int] = Field([32, 64], min_length=1, description="F's width")
    lr: tuple[float, float] = Field((3e-4, 3e-3), description="log-uniform learning-rate bounds")
    num_samples: int = Field(8, ge=1, le=1000, description="trials")
    max_epochs: int = Field(10, ge=1, le=10_000, description="epochs of a trial ASHA lets finish")
    cpus_per_trial: float = Field(1.0, gt=0, le=64)

    @model_validator(mode="after")
    def _ranges(self) -> TuneSearchSection:
        checks = [
            ("synthetic_weight", self.synthetic_weight, lambda v: v >= 0, ">= 0"),
            ("synthetic_share", self.synthetic_share, lambda v: 0 < v <= 1, "in (0, 1]"),
            ("temperature", self.temperature, lambda v: 0 < v <= 10, "in (0, 10]"),
            ("dim", self.dim, lambda v: 8 <= v <= 1024, "in [8, 1024]"),
        ]
        for name, values, ok, allowed in checks:
            bad = [v for v in values if not ok(v)]
            if bad:
                raise ValueError(f"search.{name}: {bad} not allowed; values must be {allowed}")
        low, high = self.lr
        if not 0 < low <= high:
            raise ValueError(f"search.lr: ({low}, {high}) must be two bounds with 0 < low <= high")
        return self


class TuneConfig(Section):
    """`synthrec tune` / jobs/tune.py: a Ray Tune search over F's λ, synthetic share, sampling
    temperature and size, scored on the real validation split; F trained with the chosen
    values is published at out_uri and the search's record at <out_uri>-tuning."""

    real_uri: str = Field(
        ..., description="real impressions with label columns (click...), local or s3://"
    )
    synthetic_uri: str | None = Field(
        None, description="synthetic rows with the real table's columns (or give generator_uri)"
    )
    generator_uri: str | None = Field(
        None, description="a generator model directory sampled once per searched temperature"
    )
    synthetic_rows: int | None = Field(
        None, ge=1, description="rows sampled from generator_uri per temperature (default: real)"
    )
    schema_uri: str | None = Field(None, description="schema YAML of the real table")
    out_uri: str = Field(..., description="model directory of F trained with the chosen values")
    model: RecommenderConfig = Field(default_factory=RecommenderConfig)
    search: TuneSearchSection = Field(default_factory=TuneSearchSection)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    ray_address: str | None = None

    @model_validator(mode="after")
    def _one_synthetic_source(self) -> TuneConfig:
        if self.synthetic_uri and self.generator_uri:
            raise ValueError("give synthetic_uri or generator_uri, not both")
        if len(self.search.temperature) > 1 and not self.generator_uri:
            raise ValueError(
                f"search.temperature has {len(self.search.temperature)} values but there is no "
                "generator_uri to sample at them; give --generator-uri or one temperature"
            )
        if self.synthetic_rows is not None and not self.generator_uri:
            raise ValueError("synthetic_rows needs generator_uri (rows to sample from it)")
        return self


class VerdictConfig(Section):
    """Pass/fail thresholds of `synthrec evaluate`; null skips a check."""

    max_exact_copy_rate: float | None = Field(
        0.01,
        ge=0,
        le=1,
        description="synthetic rows identical to a train row; the holdout's own rate, if "
        "higher, is used",
    )
    max_dcr_share: float | None = Field(
        0.10,
        ge=0,
        le=1,
        description="synthetic rows closer to train than the holdout's 5th percentile "
        "(0.05 expected)",
    )
    max_mia_auc: float | None = Field(
        0.60, ge=0.5, le=1, description="distance-based membership attack AUC"
    )
    min_fidelity: float | None = Field(
        0.70, ge=0, le=1, description="fidelity.overall (sdmetrics definition)"
    )
    min_utility_ratio: float | None = Field(0.80, ge=0, description="TSTR AUC / TRTR AUC")
    max_user_mia_auc: float | None = Field(
        0.60,
        ge=0.5,
        le=1,
        description="user-level membership attack AUC (event logs with user, item and time)",
    )
    max_shared_run_excess: float | None = Field(
        0.01,
        ge=0,
        le=1,
        description="share of synthetic users sharing a run of >= 5 consecutive items with a "
        "training user, above the share of held-out real users who do",
    )


class EvaluateConfig(Section):
    """`synthrec evaluate` / run_evaluate: fidelity, utility and privacy of a synthetic table."""

    real_uri: str | None = Field(
        None, description="real rows the generator was trained on: file or dataset URI"
    )
    synthetic_uri: str | None = Field(
        None, description="synthetic rows with the real table's columns"
    )
    holdout_uri: str | None = Field(
        None, description="real rows the generator never saw (privacy baseline, utility test)"
    )
    out_uri: str = Field("out/evaluate", description="folder URI for report.html and metrics.json")
    label: str | None = Field(
        None, description="binary label for TSTR/TRTR; default: the schema's first label"
    )
    utility_exclude: list[str] = Field(
        default_factory=list, description="columns that leak the label"
    )
    schema_uri: str | None = Field(
        None,
        description="schema YAML of the real table (default: its manifest's schema, else "
        "inferred); applied to all three tables",
    )
    roles: dict[str, str] = Field(
        default_factory=dict, description="column -> role, overriding the schema"
    )
    segments: dict[str, Any] | None = Field(
        None,
        description="column -> [values] or null (top values); default: the synthetic "
        "manifest's conditions/rebalance",
    )
    seed: int = Field(0, ge=0)
    num_bins: int = Field(
        10, ge=2, le=1000, description="contingency bins for numerics (sdmetrics: 10)"
    )
    correlation_threshold: float = Field(
        0.5, ge=0, le=1, description="sdmetrics' default real |r| for a pair to count"
    )
    association_threshold: float = Field(
        0.3, ge=0, le=1, description="sdmetrics' default real Cramér's V"
    )
    utility_max_train_rows: int = Field(
        100_000, ge=100, description="seeded sample bound per training side"
    )
    utility_test_fraction: float = Field(
        0.2, gt=0, lt=1, description="real rows held out for testing without a holdout"
    )
    privacy_query_rows: int = Field(
        5_000, ge=10, description="synthetic/holdout/train rows whose nearest record is found"
    )
    privacy_reference_rows: int = Field(
        100_000, ge=10, description="train (DCR) or synthetic (MIA) rows searched"
    )
    max_segments: int = Field(
        12, ge=1, le=200, description="segments per column when values are not listed"
    )
    report_max_categories: int = Field(
        20, ge=2, le=200, description="bars per categorical in the report"
    )
    sequences: bool = Field(
        True, description="per-user sequence metrics when there are user, item and time columns"
    )
    sequence_session_column: str | None = Field(
        None, description="session id column; default: one named session_id or session"
    )
    sequence_category_column: str | None = Field(
        None, description="item category column; default: one named category or genre"
    )
    verdict: VerdictConfig = Field(default_factory=VerdictConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)

    RENAMED: ClassVar[dict[str, str]] = {
        "real": "real_uri",
        "synthetic": "synthetic_uri",
        "holdout": "holdout_uri",
        "schema": "schema_uri",
        "out": "out_uri",
    }


class AutoscalingSection(Section):
    """Serve `autoscaling_config` for one deployment (replicas follow ongoing requests)."""

    min_replicas: int = Field(1, ge=0, le=1024)
    max_replicas: int = Field(4, ge=1, le=1024)
    target_ongoing_requests: float = Field(
        8, gt=0, description="per replica; above it Serve adds replicas"
    )
    upscale_delay_s: float = Field(10, ge=0)
    downscale_delay_s: float = Field(300, ge=0)

    @model_validator(mode="after")
    def _min_below_max(self) -> AutoscalingSection:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}"
            )
        return self


class ReplicaSection(Section):
    """One Serve deployment: how many replicas, what each gets, how requests are batched."""

    num_replicas: int = Field(
        1, ge=1, le=1024, description="fixed count; ignored when autoscaling is set"
    )
    autoscaling: AutoscalingSection | None = Field(
        None, description="set to let Serve scale between min and max"
    )
    num_cpus: float = Field(0.5, gt=0, le=256, description="fractional on small machines")
    num_gpus: float = Field(
        0.0, ge=0, le=8, description="> 0: GPU replicas (the model is loaded on cuda)"
    )
    max_ongoing_requests: int = Field(
        64, ge=1, le=100_000, description="per replica, before the proxy queues"
    )
    max_batch_size: int = Field(
        32, ge=1, le=4096, description="@serve.batch: requests scored together"
    )
    batch_wait_timeout_s: float = Field(
        0.0, ge=0, le=1, description="0: batch only what is already queued"
    )
    max_surge_percent: int = Field(
        100,
        ge=0,
        le=100,
        description="extra replicas while rolling: old ones serve until new ones are ready "
        "(needs spare CPUs/GPUs; 0 stops old replicas first)",
    )
    max_queued_requests: int = Field(
        64,
        ge=1,
        le=100_000,
        description="requests waiting per caller (proxy/handle) or per replica (direct ingress) "
        "beyond max_ongoing_requests; more answer 503 with Retry-After",
    )
    retry_after_s: int = Field(
        2, ge=0, le=3_600, description="Retry-After of the 503 answered when the queue is full"
    )
    memory_gb: float = Field(
        1.0,
        gt=0,
        le=2_048,
        description="memory Ray reserves per replica (scheduling: replicas go where it fits)",
    )


class ServeLimits(Section):
    """Per-request bounds; requests above them get a 422 naming the field."""

    max_rows: int = Field(100_000, ge=1, le=1_000_000, description="rows per /v1/synthetic request")
    max_users: int = Field(
        1_000,
        ge=1,
        le=100_000,
        description="users per /v1/synthetic request (sequence models; each with all events)",
    )
    max_k: int = Field(1_000, ge=1, le=100_000, description="k per /v1/recommendations request")
    max_history: int = Field(1_000, ge=1, le=100_000, description="items in a request's history")
    max_candidates: int = Field(1_000, ge=1, le=100_000, description="items per /v1/rank request")
    max_conditions: int = Field(32, ge=1, le=1_000, description="condition and rebalance entries")
    max_body_bytes: int = Field(
        1 << 20, ge=1_024, le=1 << 30, description="request body size (413 above)"
    )
    max_response_bytes: int = Field(
        256 << 20,
        ge=1 << 16,
        le=4 << 30,
        description="encoded /v1/synthetic body size (413 naming rows above)",
    )


TopKKind = Literal["auto", "exact", "int8", "ivf"]  # catalog search (synthrec.recommender.topk)


class ServeConfig(Section):
    """`synthrec serve` and the args of each Serve application in serve/config.yaml."""

    generator_uri: str | None = Field(
        None, description="generator model directory URI; None: no /v1/synthetic"
    )
    recommender_uri: str | None = Field(
        None, description="recommender model directory URI; None: no /v1/recommendations"
    )
    host: str = Field(
        "127.0.0.1", description="HTTP bind address; 0.0.0.0 exposes it to the network"
    )
    port: int = Field(8000, ge=1, le=65_535)
    generator: ReplicaSection = Field(default_factory=ReplicaSection)
    recommender: ReplicaSection = Field(default_factory=ReplicaSection)
    gateway: ReplicaSection = Field(
        default_factory=lambda: ReplicaSection(
            num_cpus=0.1, max_ongoing_requests=256, memory_gb=0.25
        ),
        description="the app serving /v1/models, /healthz and /docs",
    )
    limits: ServeLimits = Field(default_factory=ServeLimits)
    top_k: TopKKind = Field(
        "auto",
        description="/v1/recommendations catalog search: exact (float32 scan of every item), "
        "int8 (int8 scan, then the best k+100 re-scored in float32; recall@10 >= 0.98 of "
        "exact), ivf (k-means lists, the lists read calibrated at load to recall@10 >= 0.99 "
        "of exact on sample queries; exact scan where the lists do not pay), or auto (ivf "
        "from 200,000 items on, or int8 where the ivf does not pay)",
    )
    api_key_env: str | None = Field(
        "SYNTHREC_API_KEY", description="env var holding the bearer API key"
    )
    api_key_file: str | None = Field(
        None, description="file holding the API key (wins over the env var)"
    )
    api_key_required: bool | None = Field(
        None,
        description="true or unset: replicas refuse to start without a key (fail closed); "
        "`synthrec serve` sets false only on a loopback host without a key, or with --insecure",
    )
    insecure: bool = Field(
        False, description="allow a non-loopback host without an API key (not for production)"
    )
    access_log: bool = Field(True, description="Serve's structured (JSON) per-request logs")
    ingress: Literal["haproxy", "proxy"] = Field(
        "haproxy",
        description="HTTP front of a Ray that `synthrec serve` starts: haproxy (Serve's HAProxy "
        "with direct ingress: each request goes straight to a replica's HTTP server) or proxy "
        "(Serve's Python proxy). A cluster's own setting wins when joining one.",
    )
    request_timeout_s: float = Field(
        60, gt=0, le=3_600, description="end-to-end HTTP timeout at the proxy"
    )
    storage: StorageConfig = Field(default_factory=StorageConfig)
    ray_address: str | None = None


PIPELINE_RECOMMENDER_BUDGET_S = 150.0  # model F's default time budget inside the pipeline
PipelineStage = Literal[
    "data", "train_gan", "generate", "evaluate", "train_recommender", "evaluate_recommender"
]
PIPELINE_STAGES: tuple[str, ...] = PipelineStage.__args__  # type: ignore[attr-defined]


class PipelineConfig(Section):
    """`synthrec pipeline` / jobs/pipeline.py: GAN -> synthetic data -> report -> recommender.

    Every output lives under `out_uri` (local folder or s3:// prefix): data/, models/gan,
    synthetic/, reports/synthetic, models/recommender, reports/recommender. A stage whose
    published output matches its inputs and settings is reused, not recomputed.
    """

    out_uri: str = Field("pipeline-output", description="root URI of every output")
    data_uri: str | None = Field(
        None, description="real event log URI; default: the built-in simulator"
    )
    schema_uri: str | None = Field(None, description="schema YAML for `data_uri`")
    simulate: SimulateConfig = Field(
        default_factory=lambda: SimulateConfig(
            rows=60_000,
            num_users=1_500,
            num_items=2_000,
            num_categories=20,
            num_brands=100,
            num_queries=300,
        )
    )
    generator: Generator = Field(
        "auto",
        description="train_gan's generator (as `synthrec train-gan --generator`): auto picks "
        "sequences for a log with user, item and time columns; with sequences the generate "
        "stage writes whole synthetic users, one row per event",
    )
    gan: GanConfig = Field(default_factory=GanConfig)
    sequence: SequenceConfig = Field(default_factory=SequenceConfig)
    gan_epochs: int | None = Field(None, ge=1)
    gan_time_budget_min: float | None = Field(3.0, gt=0)
    gan_init_uri: str | None = Field(
        None, description="warm start: the generator's first weights from this model (refresh)"
    )
    privacy_holdout_share: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="random share of the generator's training rows (of its users, with all "
        "their rows, for the sequence generator) held out as the privacy and utility "
        "reference; 0 uses each user's last two rows instead (later in time, so the privacy "
        "checks run pessimistic)",
    )
    synthetic_rows: int = Field(
        100_000,
        ge=1,
        description="rows a row model generates; a sequence model generates whole users, as "
        "many as make about this many events (unless synthetic_users is set)",
    )
    synthetic_users: int | None = Field(
        None, ge=1, description="users a sequence model generates, each with all their events"
    )
    conditions: dict[str, str] = Field(default_factory=dict)
    rebalance: dict[str, str | dict[str, float]] = Field(default_factory=dict)
    recommender: RecommenderConfig = Field(
        default_factory=lambda: RecommenderConfig(time_budget_s=PIPELINE_RECOMMENDER_BUDGET_S),
        description="model F and its training, synthetic_weight (λ) included; time_budget_s "
        f"defaults to {PIPELINE_RECOMMENDER_BUDGET_S} s here unless epochs or time_budget_s is set",
    )
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    generate_concurrency: int = Field(2, ge=1)
    stages: list[PipelineStage] | None = Field(
        None, description="run only these stages (their inputs must exist)"
    )
    storage: StorageConfig = Field(default_factory=StorageConfig)
    ray_address: str | None = None

    RENAMED: ClassVar[dict[str, str]] = {
        "out": "out_uri",
        "data": "data_uri",
        "schema": "schema_uri",
        "synthetic_weight": "recommender.synthetic_weight",
    }

    @classmethod
    def _fill_defaults(cls, data: dict[str, Any]) -> dict[str, Any]:
        rec = data.get("recommender")
        if isinstance(rec, dict) and rec.get("epochs") is None and rec.get("time_budget_s") is None:
            return {**data, "recommender": {**rec, "time_budget_s": PIPELINE_RECOMMENDER_BUDGET_S}}
        return data


class RegistryConfig(Section):
    """The MLflow Model Registry and tracking store a refresh loop records its models in."""

    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking and registry server (http://host:5000, sqlite:///path); "
        "default: a SQLite file at <out_uri>/registry/mlflow.db (copied to and from S3 "
        "when out_uri is s3://, so one refresh writes it at a time)",
    )
    model_name: str = Field(
        "synthrec-recommender",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$",
        description="registered model name of F",
    )
    experiment: str = Field("synthrec", description="MLflow experiment of the training runs")


class RefreshConfig(Section):
    """`synthrec refresh` / jobs/refresh.py: one turn of the continuous loop on a new partition
    of real events: warm-started generator -> fresh synthetic set -> warm-started F ->
    candidate vs production on the newest real held-out slice -> promote or keep."""

    out_uri: str = Field(..., description="root of the loop (local folder or s3:// prefix)")
    partition_uri: str = Field(..., description="the new partition of real events")
    schema_uri: str | None = Field(None, description="schema YAML of the event log")
    generator: Generator = Field("auto", description="as `synthrec pipeline --generator`")
    gan: GanConfig = Field(default_factory=GanConfig)
    sequence: SequenceConfig = Field(default_factory=SequenceConfig)
    recommender: RecommenderConfig = Field(
        default_factory=lambda: RecommenderConfig(epochs=20, patience=3)
    )
    gan_epochs: int = Field(
        5, ge=1, description="generator epochs of a refresh (warm-started from production)"
    )
    recommender_epochs: int = Field(
        5, ge=1, description="F epochs of a refresh (warm-started from production)"
    )
    scratch_gan_epochs: int = Field(
        30, ge=1, description="generator epochs when there is no production model to start from"
    )
    synthetic_rows: int = Field(20_000, ge=1)
    privacy_holdout_share: float = Field(0.1, ge=0, lt=1)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    margin: float = Field(
        0.0,
        ge=0,
        description="NDCG@10 the candidate must gain over production on the newest held-out "
        "slice to be promoted",
    )
    allow_schema_change: bool = Field(
        False,
        description="a partition whose columns differ from production's trains from scratch "
        "instead of failing",
    )
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    generate_concurrency: int = Field(1, ge=1)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    ray_address: str | None = None


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    flags: Mapping[str, str] | None = None,
) -> T:
    """Validate YAML at `path` (optional) plus dotted-key `overrides` into `cls`.

    Overrides with value None are ignored, so CLI flags left unset keep YAML values. `flags`
    names the CLI flag that sets an override key: an error about a value a flag gave, or about
    a required key that nothing gave, names the flag the user types, not the config key.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(Path(path))
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
    given = {k: f for k, f in (flags or {}).items() if (overrides or {}).get(k) is not None}
    names = FlagNames(given=given, settable=dict(flags or {}), config_file=path is not None)
    return validate_config(cls, data, source=str(path) if path else "flags", flags=names)


@dataclass(frozen=True)
class FlagNames:
    """Which config keys a command line set (`given`) or could set (`settable`), by flag."""

    given: dict[str, str]
    settable: dict[str, str]
    config_file: bool  # a --config YAML could have given the key too


def validate_config(
    cls: type[T], data: Any, source: str = "config", flags: FlagNames | None = None
) -> T:
    """Validate a plain dict (e.g. JSON shipped with a Ray job) into `cls`."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of keys to values, got {type(data).__name__}"
        )
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        by_flag, by_key = [], []
        for e in err.errors():
            flag_message = _describe_flag(e, flags, source) if flags else None
            if flag_message:
                by_flag.append(flag_message)
            else:
                by_key.append(_describe(cls, e))
        parts = by_flag + ([f"{source}: " + "; ".join(by_key)] if by_key else [])
        raise ConfigError("; ".join(parts)) from None


def _describe_flag(error: dict[str, Any], flags: FlagNames, source: str) -> str | None:
    """The error in the words of the command line, where a flag gave (or could give) the key."""
    key = ".".join(str(p) for p in error["loc"])
    if error["type"] == "missing" and key in flags.settable:
        also = f" (or '{key}' in {source})" if flags.config_file else ""
        return f"{flags.settable[key]} is required{also}"
    if key not in flags.given:
        return None
    if error["type"] == "value_error":
        return f"{flags.given[key]}: {error['msg'].removeprefix('Value error, ')}"
    return f"{flags.given[key]}: {error['msg']} (got {error.get('input')!r})"


def _describe(cls: type[BaseModel], error: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in error["loc"]) or "(root)"
    if error["type"] == "value_error":  # a validator's own message names the keys
        message = error["msg"].removeprefix("Value error, ")
        return message if key == "(root)" else f"key '{key}': {message}"
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(_fields_at(cls, error["loc"][:-1])))
        return f"unknown key '{key}' (allowed here: {allowed})"
    if error["type"] == "missing":  # its input is the enclosing mapping: noise
        return f"key '{key}' is required"
    return f"key '{key}': {error['msg']} (got {error.get('input')!r})"


def _fields_at(cls: type[BaseModel], loc: tuple) -> list[str]:
    model: Any = cls
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None or not isinstance(field.annotation, type):
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path}: top level must be a mapping, got {type(data).__name__}"
        )
    return data


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[leaf] = value
