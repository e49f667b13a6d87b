"""Which statistics of the real rows an encoder fit computes, and how a DP run covers each.

A DP run protects the rows only if *everything* derived from them is covered: the critic's
gradients (DP-SGD) and the encoder's statistics. Per column, by role:

- categorical / label: the value list and its counts. Covered by the noisy histogram below
  (Gaussian noise on every count, values kept only if their noisy count passes a threshold),
  by a public domain (privacy.domains: the declared values are the list, each with a noisy
  count, none dropped, no threshold), or public.
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

Coverage = Literal[
    "noisy counts", "noisy counts over a public domain", "public bounds", "public", "none"
]
NOISY: tuple[Coverage, ...] = ("noisy counts", "noisy counts over a public domain")
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
        coverage: Coverage
        if spec.name in public:
            coverage = "public"
        elif not dp:
            coverage = "none"
        elif kind == "grid":
            coverage = "public bounds"
        elif spec.name in cfg.domains:
            coverage = "noisy counts over a public domain"
        else:
            coverage = "noisy counts"
        out.append(Statistic(spec.name, spec.role.value, STATISTICS[kind], coverage))
    return out


def check_accounted(schema: Schema, cfg: PrivacyConfig) -> list[Statistic]:
    """The encoder's statistics under `cfg`; a PrivacyError naming every uncovered one."""
    _refuse_unknown_names(cfg, schema.names, "of the data")
    not_categorical = [
        f"'{s.name}' ({s.role.value})"
        for s in schema.columns
        if s.name in cfg.domains and s.role not in (Role.CATEGORICAL, Role.LABEL)
    ]
    if not_categorical:
        raise PrivacyError(
            f"privacy.domains lists {', '.join(not_categorical)}: a public domain is for "
            f"categorical and label columns; give a numeric column public privacy.bounds, "
            f"an id or text column privacy.public_columns"
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
    under its own share of the budget (a user attribute with a public domain gets noisy counts
    over it there); the events per user and first times are calibrated on noisy histograms
    over the public bounds, inside the budget (synthrec.sequences.dp)."""
    public, bounds, domains = set(cfg.public_columns), set(cfg.bounds), set(cfg.domains)
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
            if role == "user attribute" and c in domains:
                coverage = "noisy counts over a public domain"
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
    _refuse_unknown_names(cfg, sorted(names), f"of the log nor {EVENTS_BOUND}", {EVENTS_BOUND})
    elsewhere = sorted(set(cfg.domains) - set(user_cols))
    if elsewhere:
        attributes = ", ".join(user_cols) or "none"
        raise PrivacyError(
            f"privacy.domains lists {', '.join(elsewhere)}: the sequence generator gives noisy "
            f"counts over a public domain to user attribute columns only ({attributes}); list "
            f"event and catalog columns whose values are public in privacy.public_columns"
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


def _refuse_unknown_names(
    cfg: PrivacyConfig, names: list[str], where: str, extra: frozenset[str] | set[str] = frozenset()
) -> None:
    """A PrivacyError for public_columns, bounds or domains that name no column in `names`
    (nor one of `extra`)."""
    declared = set(cfg.public_columns) | set(cfg.bounds) | set(cfg.domains)
    unknown = sorted(declared - set(names) - set(extra))
    if unknown:
        raise PrivacyError(
            f"privacy.public_columns, bounds or domains name {', '.join(unknown)}, not columns "
            f"{where} ({', '.join(names)}); fix the names"
        )


def private_columns(stats: list[Statistic]) -> list[str]:
    """Columns whose counts the noisy histogram releases (public domains included)."""
    return [s.column for s in stats if s.coverage in NOISY]


def domain_columns(stats: list[Statistic]) -> list[str]:
    """Columns whose noisy counts run over a declared public domain (no threshold)."""
    return [s.column for s in stats if s.coverage == "noisy counts over a public domain"]


def grid_columns(stats: list[Statistic]) -> list[str]:
    """Numeric columns encoded on a fixed grid over public bounds."""
    return [s.column for s in stats if s.coverage == "public bounds"]


@dataclass(frozen=True)
class NoisyHistogram:
    """Gaussian noise of std `std` on every count of every private column (L2 sensitivity
    sqrt(columns): a row adds 1 to one count per column, public domains included). A column
    without a public domain keeps only the values whose noisy count reaches `threshold`, so a
    value held by few rows is released with probability at most `threshold_delta` / (such
    columns) (the δ a value that exists in only one of two neighbouring tables costs). A
    column with a public domain releases a noisy count for each declared value, zero counts
    included: its value list is not data, so it needs no threshold and spends no δ; with
    public domains only, `threshold_delta` is 0 and `threshold` is inf (unused)."""

    std: float
    threshold: float
    threshold_delta: float

    @classmethod
    def build(
        cls,
        noise_multiplier: float,
        num_columns: int,
        threshold_delta: float,
        thresholded: int | None = None,
    ) -> NoisyHistogram:
        """`num_columns` private columns, `thresholded` of them (default all) without a public
        domain, sharing `threshold_delta` (the budget's)."""
        std = noise_multiplier * math.sqrt(num_columns)
        thresholded = num_columns if thresholded is None else thresholded
        if thresholded == 0:
            return cls(std, math.inf, 0.0)
        per_column = threshold_delta / thresholded
        threshold = 1.0 + std * NormalDist().inv_cdf(1.0 - per_column)
        return cls(std, threshold, threshold_delta)

    def release(
        self, counts: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """(kept mask (K,), noisy counts (K,) floored at 1) for one column's true counts."""
        noisy = self.noisy(counts, rng)
        return noisy >= self.threshold, noisy

    def noisy(self, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy counts (K,) floored at 1, every value kept (a public domain's release)."""
        return np.maximum(counts + rng.normal(0.0, self.std, counts.shape), 1.0)
