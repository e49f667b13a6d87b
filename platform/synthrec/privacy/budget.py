"""A model's privacy budget: the plan (noise for the steps it buys) and the spending, both kept
by Opacus's RDP accountant (a maintained accountant; synthrec composes, it does not account).

Every mechanism that reads the real rows is a Gaussian mechanism in the accountant's history:
- the encoder's noisy category counts: one release at sampling rate 1, noise multiplier
  `encoder_noise` (std / L2 sensitivity);
- each DP-SGD critic step: a Poisson-sampled Gaussian mechanism with rate `sample_rate`
  (expected batch / n) and noise multiplier `noise_multiplier` (std / clipping bound C).
`plan` picks the DP-SGD noise so that the encoder release plus `max_steps` critic steps spend
exactly the budget ε at δ (RDP composition), and training stops after `max_steps`.
When the release has a value threshold (some released column has no public domain),
THRESHOLD_DELTA_SHARE of δ goes to it (statistics.NoisyHistogram) and the accountant converts
at the rest; without one the accountant converts at the whole δ. The row count n is
treated as public, as DP-SGD's sampling rate always does.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from synthrec.config import PrivacyConfig
from synthrec.errors import ConfigError
from synthrec.privacy.statistics import THRESHOLD_DELTA_SHARE

MAX_NOISE = 20.0  # above this noise multiplier the critic's gradient is noise: refuse the plan
NOISE_SEARCH = (0.05, 500.0)  # bracket of the noise multiplier search
NOISE_PRECISION = 1e-3  # the search stops when the bracket is this tight (relative)
ENCODER_FLOOR = 0.3  # smallest encoder noise multiplier tried (opacus' own search start)


def default_delta(num_rows: int) -> float:
    """1/n^1.1: below 1/n, as a meaningful δ must be."""
    return 1.0 / num_rows**1.1


def resolve_delta(delta: float | None, n: int, units: str = "training rows") -> float:
    """`delta`, or 1/n^1.1 when unset; a ConfigError when it is not below 1/n for the n
    `units` (rows, or users where a user is the unit of privacy)."""
    delta = delta if delta is not None else default_delta(n)
    if delta >= 1.0 / n:
        raise ConfigError(
            f"privacy.delta {delta:g} must be below 1/n = {1 / n:g} for the {n} {units} "
            f"(δ ≥ 1/n allows publishing one outright); leave it unset for 1/n^1.1 = "
            f"{default_delta(n):.3g}"
        )
    return delta


def _accountant(history: list[tuple[float, float, int]]):
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(float(s), float(q), int(n)) for s, q, n in history if n > 0]
    return acc


def epsilon_of(history: list[tuple[float, float, int]], delta: float) -> float:
    """ε at δ of a composition of (noise multiplier, sampling rate, steps) Gaussian events."""
    if not any(n > 0 for _, _, n in history):
        return 0.0
    with warnings.catch_warnings():  # "optimal order is the largest alpha": loose, still valid
        warnings.simplefilter("ignore", UserWarning)
        return float(_accountant(history).get_epsilon(delta))


def _solve_noise(target: float, delta: float, history: list, rate: float, steps: int) -> float:
    """The smallest noise multiplier whose `steps` steps at `rate`, after `history`, stay
    within ε = target (bisection on the accountant's ε, which falls as the noise rises)."""
    lo, hi = NOISE_SEARCH
    if epsilon_of([*history, (hi, rate, steps)], delta) > target:
        return math.inf
    while hi / lo > 1 + NOISE_PRECISION:  # ~14 rounds; each is one accountant call
        mid = math.sqrt(lo * hi)
        if epsilon_of([*history, (mid, rate, steps)], delta) > target:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass
class Budget:
    """The plan of one DP training run and the steps it has taken (a checkpoint keeps it)."""

    epsilon: float  # the target
    delta: float  # the total: the accountant's plus threshold_delta
    max_grad_norm: float
    encoder_noise: float  # noise multiplier of the encoder's count release; 0: none released
    noise_multiplier: float  # DP-SGD
    sample_rate: float
    max_steps: int
    threshold_delta: float = 0.0  # δ of the noisy histogram's value threshold
    steps: int = 0  # DP-SGD steps taken
    extra: dict[str, Any] = field(default_factory=dict)  # what the metadata states beside

    @classmethod
    def plan(
        cls,
        cfg: PrivacyConfig,
        num_rows: int,
        batch_size: int,
        steps: int,
        encoder_release: bool,
        threshold: bool | None = None,
    ) -> Budget:
        """Noise for `steps` DP-SGD steps of expected batch `batch_size` over `num_rows` rows
        (after the encoder's release when `encoder_release`), within cfg's (ε, δ).
        `threshold`: the release drops values under a noisy-count threshold, which takes its
        share of δ (default: whenever there is a release; public domains and public bins
        need none)."""
        delta = resolve_delta(cfg.delta, num_rows)
        rate = min(1.0, batch_size / num_rows)
        history: list[tuple[float, float, int]] = []
        encoder_noise, threshold_delta = 0.0, 0.0
        if encoder_release:
            threshold_delta = THRESHOLD_DELTA_SHARE * delta if threshold in (None, True) else 0.0
            target = cfg.epsilon * cfg.encoder_share
            encoder_noise = _solve_noise(target, delta - threshold_delta, [], 1.0, 1)
            history.append((encoder_noise, 1.0, 1))
        noise = _solve_noise(cfg.epsilon, delta - threshold_delta, history, rate, steps)
        if noise > MAX_NOISE:
            epoch_steps = max(1, round(1 / rate))
            raise ConfigError(
                f"privacy.epsilon {cfg.epsilon:g} is too small for {steps} critic steps "
                f"({steps / epoch_steps:.3g} epochs) of batch {batch_size} over {num_rows} "
                f"rows: they need a noise multiplier above {MAX_NOISE:g} "
                f"(got {noise:.3g}); raise epsilon, train fewer epochs or raise batch_size"
            )
        return cls(
            cfg.epsilon,
            delta,
            cfg.max_grad_norm,
            encoder_noise,
            noise,
            rate,
            int(steps),
            threshold_delta,
        )

    # -- spending --------------------------------------------------------------------------
    def history(self) -> list[tuple[float, float, int]]:
        events = [(self.encoder_noise, 1.0, 1)] if self.encoder_noise else []
        return [*events, (self.noise_multiplier, self.sample_rate, self.steps)]

    def spent(self) -> float:
        """ε spent so far at δ (the encoder's release and the steps taken)."""
        return epsilon_of(self.history(), self.delta - self.threshold_delta)

    @property
    def exhausted(self) -> bool:
        return self.steps >= self.max_steps

    def take_step(self) -> None:
        if self.exhausted:
            raise RuntimeError("the privacy budget is spent; no further DP-SGD step may run")
        self.steps += 1

    @property
    def noise_std(self) -> float:
        """Std of the Gaussian noise added to the sum of clipped per-row gradients."""
        return self.noise_multiplier * self.max_grad_norm

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "max_grad_norm": self.max_grad_norm,
            "encoder_noise": self.encoder_noise,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "max_steps": self.max_steps,
            "threshold_delta": self.threshold_delta,
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take the steps of a checkpoint; its plan must be this one (same privacy config,
        rows and batch), or resuming would spend a different budget than either run states."""
        mine = self.state_dict()
        differ = [
            k
            for k in mine
            if k != "steps" and not math.isclose(float(state.get(k, math.nan)), float(mine[k]))
        ]
        if differ:
            was = ", ".join(f"{k} {state.get(k)} (now {mine[k]})" for k in differ)
            raise ConfigError(
                f"the run being resumed was planned under another privacy config: {was}; "
                "resume with the run's own privacy config, or start a new run under another "
                "--run-name"
            )
        self.steps = int(state["steps"])

    def summary(self) -> dict[str, Any]:
        """What the model's metadata records."""
        return {
            "epsilon_spent": round(self.spent(), 4),
            "delta": self.delta,
            "epsilon_target": self.epsilon,
            "accountant": "opacus RDP",
            "max_grad_norm": self.max_grad_norm,
            "noise_multiplier": round(self.noise_multiplier, 6),
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "max_steps": self.max_steps,
            "encoder_noise_multiplier": round(self.encoder_noise, 6),
            "encoder_epsilon": round(
                epsilon_of([(self.encoder_noise, 1.0, 1)], self.delta - self.threshold_delta), 4
            )
            if self.encoder_noise
            else 0.0,
            "threshold_delta": self.threshold_delta,
            **self.extra,
        }
