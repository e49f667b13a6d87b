"""Which statistics of the real rows an encoder fit computes, and how a DP run covers each.

A DP run protects the rows only if *everything* derived from them is covered: the critic's
gradients (DP-SGD) and the encoder's statistics. Per column, by role:

- categorical / label: the value list and its counts. Covered by the noisy histogram below
  (Gaussian noise on every count, values kept only if their noisy count passes a threshold),
  or public.
- numeric / datetime: the mode fit (a 1-D mixture), centre, scale, min and max; and, for
  integers, whether few enough levels make it one-hot. Covered by public bounds
  (privacy.bounds: the column is encoded on a fixed grid of modes over them, nothing fitted),
  or public.
- user_id / item_id: the id list, per-id frequencies, profile vectors, the columns an id
  determines (dependents) and its labels, and the per-id calibration of draws. Public only.
- text: the values seen at least min_text_count times. Public only.

`check_accounted` refuses a DP run whose schema leaves any of these uncovered, naming each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

from synthrec.config import PrivacyConfig
from synthrec.errors import ConfigError
from synthrec.schema import ID_ROLES, Role, Schema

Coverage = Literal["noisy counts", "public bounds", "public", "none"]
THRESHOLD_DELTA_SHARE = 0.1  # of δ, spent on noisy counts passing the value threshold

STATISTICS: dict[str, str] = {
    "counts": "value list and counts",
    "numeric": "mode fit, centre, scale, min, max and the one-hot-or-modes choice",
    "grid": "nothing: modes on a fixed grid over the declared bounds",
    "ids": "id list, frequencies, profile vectors, dependents, labels and draw calibration",
    "text": "frequent values (min_text_count)",
}


class PrivacyError(ConfigError):
    """A DP run whose schema leaves a real-data statistic outside the budget."""


@dataclass(frozen=True)
class Statistic:
    column: str
    role: str
    what: str  # STATISTICS value
    coverage: Coverage


def encoder_statistics(schema: Schema, cfg: PrivacyConfig) -> list[Statistic]:
    """Every statistic the encoder would fit on the real rows, with how `cfg` covers it."""
    public = set(cfg.public_columns)
    out = []
    for spec in schema.columns:
        if spec.role in (Role.CATEGORICAL, Role.LABEL):
            kind, dp = "counts", True
        elif spec.role in ID_ROLES:
            kind, dp = "ids", False
        elif spec.role == Role.TEXT:
            kind, dp = "text", False
        elif spec.name in cfg.bounds:
            kind, dp = "grid", True
        else:
            kind, dp = "numeric", False
        coverage: Coverage = (
            "public"
            if spec.name in public
            else ("public bounds" if kind == "grid" else "noisy counts")
            if dp
            else "none"
        )
        out.append(Statistic(spec.name, spec.role.value, STATISTICS[kind], coverage))
    return out


def check_accounted(schema: Schema, cfg: PrivacyConfig) -> list[Statistic]:
    """The encoder's statistics under `cfg`; a PrivacyError naming every uncovered one."""
    unknown = sorted((set(cfg.public_columns) | set(cfg.bounds)) - set(schema.names))
    if unknown:
        raise PrivacyError(
            f"privacy.public_columns or bounds name {', '.join(unknown)}, not columns of the data "
            f"({', '.join(schema.names)}); fix the names"
        )
    stats = encoder_statistics(schema, cfg)
    bare = [s for s in stats if s.coverage == "none"]
    if bare:
        named = "; ".join(f"column '{s.column}' ({s.role}): {s.what}" for s in bare)
        raise PrivacyError(
            f"a DP run would fit these statistics on the real rows outside the privacy "
            f"budget: {named}. Categorical and label columns get noisy counts and numeric ones "
            f"a fixed grid given public privacy.bounds {{column: [low, high]}}; list the others "
            f"in privacy.public_columns if their statistics are public (e.g. from the "
            f"catalog), or drop them from the schema"
        )
    return stats


EVENTS_BOUND = "__events"  # privacy.bounds key of the events per user (sequence generator)
SEQUENCE_STATISTICS: dict[str, str] = {
    "catalog": "the catalog: item ids and their attributes",
    "time": "time gap bins, the log's time range and each user's first event time",
    "events": "events per user (the users model's lengths and their bins)",
    "values": "value list (or bins) and frequencies",
}


def sequence_statistics(
    user_col: str,
    item_col: str,
    time_col: str,
    event_cols: list[str],
    user_cols: list[str],
    cfg: PrivacyConfig,
) -> list[Statistic]:
    """Every statistic the sequence generator's fit reads from the real log besides DP-SGD's
    gradients, with how `cfg` covers it. A DP fit computes none of the others: no item
    popularity (uniform start), no usage clustering of the catalog (attribute or catalog
    order), no repeat rate (repeats allowed), no session-level fields, no held-out users (no
    early stopping on real users' likelihood), and synthetic user ids numbered from a fixed
    floor. The users table (attributes, events per user, first time) is learnt by the row GAN
    under its own share of the budget; the events per user and first times are calibrated on
    noisy histograms over the public bounds, inside the budget (synthrec.sequences.dp)."""
    public, bounds = set(cfg.public_columns), set(cfg.bounds)
    out = [
        Statistic(
            item_col,
            "item_id",
            SEQUENCE_STATISTICS["catalog"],
            "public" if item_col in public else "none",
        ),
        Statistic(
            time_col,
            "timestamp",
            SEQUENCE_STATISTICS["time"],
            "public bounds" if time_col in bounds else "none",
        ),
        Statistic(
            EVENTS_BOUND,
            "events per user",
            SEQUENCE_STATISTICS["events"],
            "public bounds" if EVENTS_BOUND in bounds else "none",
        ),
    ]
    for role, cols in (("event", event_cols), ("user attribute", user_cols)):
        for c in cols:
            coverage: Coverage = "public" if c in public else "none"
            out.append(Statistic(c, role, SEQUENCE_STATISTICS["values"], coverage))
    return out


def check_sequence_accounted(
    user_col: str,
    item_col: str,
    time_col: str,
    event_cols: list[str],
    user_cols: list[str],
    cfg: PrivacyConfig,
    catalog_cols: tuple[str, ...] = (),
) -> list[Statistic]:
    """The sequence fit's statistics under `cfg`; a PrivacyError naming every uncovered one
    and how to cover it. `catalog_cols`: the item attributes (covered with the catalog)."""
    names = {user_col, item_col, time_col, *event_cols, *user_cols, *catalog_cols}
    unknown = sorted((set(cfg.public_columns) | set(cfg.bounds)) - names - {EVENTS_BOUND})
    if unknown:
        raise PrivacyError(
            f"privacy.public_columns or bounds name {', '.join(unknown)}, not columns of the "
            f"log ({', '.join(sorted(names))}) nor {EVENTS_BOUND}; fix the names"
        )
    stats = sequence_statistics(user_col, item_col, time_col, event_cols, user_cols, cfg)
    bare = [s for s in stats if s.coverage == "none"]
    if bare:
        named = "; ".join(f"'{s.column}' ({s.role}): {s.what}" for s in bare)
        raise PrivacyError(
            f"a DP run of the sequence generator would fit these statistics on the real log "
            f"outside the privacy budget: {named}. Declare the catalog ('{item_col}') and the "
            f"event and user attribute columns whose values are public in "
            f"privacy.public_columns; give privacy.bounds {{{time_col}: [first, last] (epoch "
            f"seconds), {EVENTS_BOUND}: [1, most events per user]}} as public ranges; or drop "
            f"the columns from the schema"
        )
    return stats


def private_columns(stats: list[Statistic]) -> list[str]:
    """Columns whose counts the noisy histogram releases."""
    return [s.column for s in stats if s.coverage == "noisy counts"]


def grid_columns(stats: list[Statistic]) -> list[str]:
    """Numeric columns encoded on a fixed grid over public bounds."""
    return [s.column for s in stats if s.coverage == "public bounds"]


@dataclass(frozen=True)
class NoisyHistogram:
    """Gaussian noise of std `std` on every count of every private column (L2 sensitivity
    sqrt(columns): a row adds 1 to one count per column); values whose noisy count is below
    `threshold` are dropped, so a value held by few rows is released with probability at most
    `threshold_delta` / columns (the δ a value that exists in only one of two neighbouring
    tables costs)."""

    std: float
    threshold: float
    threshold_delta: float

    @classmethod
    def build(cls, noise_multiplier: float, num_columns: int, delta: float) -> NoisyHistogram:
        std = noise_multiplier * math.sqrt(num_columns)
        per_column = THRESHOLD_DELTA_SHARE * delta / num_columns
        threshold = 1.0 + std * NormalDist().inv_cdf(1.0 - per_column)
        return cls(std, threshold, THRESHOLD_DELTA_SHARE * delta)

    def release(
        self, counts: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """(kept mask (K,), noisy counts (K,) floored at 1) for one column's true counts."""
        noisy = counts + rng.normal(0.0, self.std, counts.shape)
        return noisy >= self.threshold, np.maximum(noisy, 1.0)
