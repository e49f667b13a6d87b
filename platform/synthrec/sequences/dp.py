"""User-level DP-SGD for the sequence generator: all of a user's events are one unit.

The budget (ε, δ) of `privacy` is split in two parts that compose by addition (basic
composition, each part accounted by Opacus's RDP accountant):
- USERS_SHARE of ε and half of δ for the users-table GAN (one row per user: the row GAN's
  per-row DP-SGD is per user), trained for USERS_EPOCHS expected passes;
- the rest for the sequence model: first one Gaussian release (CALIBRATION_SHARE of it, or
  privacy.encoder_share if larger) of two histograms over public bins, each user's number of
  events and first event time (one count each: L2 sensitivity √2), whose quantiles calibrate
  the users GAN's draws as the real quantiles do without DP; then its likelihood training,
  here. The release is cheap for DP-SGD (RDP composition: at ε = 1 and a few hundred users,
  0.3 of ε for it raises the DP-SGD noise by ~5%), and with few users a smaller share leaves
  noise of tens of users on every bin.

Each DP-SGD step (one step of the accountant):
- Poisson sampling of users: every training user joins the step with probability q
  (expected users per step / number of users), drawn from a secret generator;
- each sampled user's loss is the mean negative log-likelihood of its events, over all its
  training windows (a long user spans several): its windows run through the model in one
  backward (a very long user in chunks of CHUNK_WINDOWS windows, summed per user before
  clipping), and the user's whole gradient is clipped to norm C (`clip_and_sum_by_unit`), so
  every event of a user together moves a step by at most C. The model's likelihood gathers
  the valid steps of a batch with boolean masks (data-dependent shapes), which torch.func's
  vmap cannot batch: each user's gradient comes from an ordinary backward instead;
- the clipped sums of all ranks are summed, Gaussian noise of std σ·C is added once (by rank
  0), and the result is divided by the expected users per step before the optimizer step.
Training ends when the budget's steps are spent (or the epoch cap). Nothing else of the real
log is read outside the budget (synthrec.privacy.sequence_statistics lists what is declared
public instead); no users are held out for early stopping, and no adversarial phase runs
(its critic reads real windows outside the budget).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from synthrec.config import GanConfig, PrivacyConfig, SequenceConfig
from synthrec.errors import ConfigError
from synthrec.privacy import Budget, add_noise, clip_and_sum_by_unit, resolve_delta
from synthrec.privacy.statistics import EVENTS_BOUND
from synthrec.sequences import train as steps
from synthrec.sequences.encoding import LENGTH_COL, START_COL

USERS_SHARE = 0.25  # of ε, for the users-table GAN; the rest for the sequence model
USERS_EPOCHS = 5  # expected passes of the DP users GAN (its budget buys exactly these)
USERS_BATCH_SHARE = 0.1  # expected users per GAN step, as a share of the users
CHUNK_WINDOWS = 64  # most windows of one user in one backward
CALIBRATION_SHARE = 0.3  # least share of the sequence model's ε for the calibration release
CALIBRATION_BINS = (4, 200)  # fewest and most public bins of each calibration histogram
BIN_STDS = 4.0  # about one bin per BIN_STDS noise stds of users: signal above the noise
KEEP_STDS = 3.0  # bins whose noisy count is below KEEP_STDS noise stds count as empty


@dataclass
class SequencePlan:
    """The two parts of a DP sequence fit: the users GAN's privacy config and the sequence
    model's budget (its plan; steps are counted as training runs)."""

    users: PrivacyConfig
    budget: Budget
    delta: float  # the total δ (both parts)

    def spent(self, users_epsilon: float) -> float:
        """ε of the whole model: the users GAN's spent ε plus the sequence model's."""
        return users_epsilon + self.budget.spent()


def private_config(cfg: SequenceConfig, privacy: PrivacyConfig | None = None) -> SequenceConfig:
    """cfg for a DP fit under `privacy` (default cfg.privacy): no adversarial phase (its
    critic reads real windows outside the budget). Unchanged without privacy."""
    privacy = privacy or cfg.privacy
    if privacy is None:
        return cfg
    return cfg.model_copy(update={"privacy": privacy, "adversarial_steps": 0})


def steps_per_epoch(num_users: int, batch_users: int) -> int:
    """DP-SGD steps of one expected pass over the users: 1/q with q = batch / users."""
    return max(1, round(num_users / batch_users))


def plan(
    cfg: SequenceConfig, num_users: int, epochs: int, user_cols: list[str], time_col: str
) -> SequencePlan:
    """Split cfg.privacy between the users GAN and the sequence model and plan the sequence
    model's noise for `epochs` expected passes of cfg.batch_size users per step. Raises a
    ConfigError for δ ≥ 1/users or a budget too small for the epochs."""
    priv = cfg.privacy
    delta = resolve_delta(priv.delta, num_users, "training users (the sequence generator's unit)")
    if cfg.batch_size >= num_users:
        raise ConfigError(
            f"sequence.batch_size {cfg.batch_size} (expected users per DP-SGD step) must be "
            f"below the {num_users} training users; lower it"
        )
    seq_priv = priv.model_copy(
        update={
            "epsilon": priv.epsilon * (1 - USERS_SHARE),
            "delta": delta / 2,
            "encoder_share": max(priv.encoder_share, CALIBRATION_SHARE),
        }
    )
    total = epochs * steps_per_epoch(num_users, cfg.batch_size)
    try:
        budget = Budget.plan(  # the calibration's bins are public: no threshold, no δ for one
            seq_priv, num_users, cfg.batch_size, total, encoder_release=True, threshold=False
        )
    except ConfigError as e:
        raise ConfigError(
            f"privacy.epsilon {priv.epsilon:g} ({1 - USERS_SHARE:.0%} of it for the sequence "
            f"model) is too small for {epochs} epochs of {cfg.batch_size} users per step over "
            f"{num_users} users ({total} steps): {e}"
        ) from None
    users = priv.model_copy(
        update={
            "epsilon": priv.epsilon * USERS_SHARE,
            "delta": delta / 2,
            "public_columns": [c for c in priv.public_columns if c in user_cols],
            "domains": {c: v for c, v in priv.domains.items() if c in user_cols},
            "bounds": {
                **{c: b for c, b in priv.bounds.items() if c in user_cols},
                LENGTH_COL: priv.bounds[EVENTS_BOUND],
                START_COL: priv.bounds[time_col],
            },
        }
    )
    budget.extra["users_share"] = USERS_SHARE
    budget.extra["calibration_noise_std"] = round(budget.encoder_noise * math.sqrt(2), 3)
    return SequencePlan(users, budget, delta)


def private_calibration(
    users_model, users: pa.Table, plan_: SequencePlan, seed: int
) -> dict[str, dict[str, list[float]]]:
    """The calibration of the users GAN's event counts and first times (synthesizer's
    `_calibration`), the real quantiles read from noisy histograms over the public bounds
    (`noisy_quantiles`): the plan's one release."""
    from synthrec.sequences.synthesizer import CALIBRATION_DRAWS, QUANTILES

    rng = np.random.default_rng(secrets.randbits(128))
    real = noisy_quantiles(users, plan_, rng)
    drawn = users_model.sample(CALIBRATION_DRAWS, seed=seed + 7919)
    out = {}
    for col, quantiles in real.items():
        fake = pc.fill_null(drawn.column(col).cast(pa.float64()), 0.0).to_numpy()
        out[col] = {"drawn": np.quantile(fake, QUANTILES).tolist(), "real": quantiles.tolist()}
    return out


def calibration_edges(col: str, bounds: tuple[float, float], num_users: int, std: float):
    """Public bin edges of one calibration histogram: events per user on log-spaced integer
    edges, first times on even ones over the bounds; about one bin per BIN_STDS noise stds
    of users (the number of users is public, as the sampling rate makes it), so an occupied
    bin's count stands above its noise and few empty bins carry noise at all."""
    lo, hi = bounds
    bins = int(np.clip(round(num_users / (BIN_STDS * max(std, 1e-9))), *CALIBRATION_BINS))
    if col == LENGTH_COL:
        return np.unique(np.round(np.geomspace(max(lo, 1.0), hi + 1, bins + 1)))
    return np.linspace(lo, hi, bins + 1)


def noisy_quantiles(
    users: pa.Table, plan_: SequencePlan, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Column -> the real quantiles (QUANTILES) of the events per user and first times, from
    one Gaussian release of their histograms (std: the plan's, sensitivity √2) over
    `calibration_edges`. Post-processing: bins whose noisy count is under KEEP_STDS stds are
    taken as empty (Gaussian noise on the many empty bins above the data would otherwise
    add up to more than all the users and drag the upper quantiles to the bound); within a
    bin, values spread evenly (in log for events per user)."""
    from synthrec.sequences.synthesizer import QUANTILES

    std = plan_.budget.encoder_noise * math.sqrt(2)
    out = {}
    for col, bounds in plan_.users.bounds.items():
        if col not in (LENGTH_COL, START_COL):
            continue
        edges = calibration_edges(col, bounds, users.num_rows, std)
        real = np.clip(users.column(col).cast(pa.float64()).to_numpy(), edges[0], edges[-1])
        counts = np.histogram(real, edges)[0] + rng.normal(0.0, std, len(edges) - 1)
        kept = np.where(counts >= KEEP_STDS * std, counts, 0.0)
        if not kept.any():  # nothing stands out: the fullest bin
            kept[np.argmax(counts)] = 1.0
        cdf = np.r_[0.0, np.cumsum(kept) / kept.sum()]
        if col == LENGTH_COL:
            logs = np.interp(QUANTILES, cdf, np.log(edges))
            out[col] = np.clip(np.exp(logs), edges[0], edges[-1])  # exp(log(x)) may pass x
        else:
            out[col] = np.interp(QUANTILES, cdf, edges)
    return out


def users_gan_config(plan_: SequencePlan, num_users: int, seed: int) -> tuple[GanConfig, int]:
    """(GanConfig, epochs) of the DP users GAN."""
    batch = max(10, int(num_users * USERS_BATCH_SHARE))
    return GanConfig(seed=seed, batch_size=batch, privacy=plan_.users), USERS_EPOCHS


def metadata(plan_: SequencePlan, users_meta: dict[str, Any]) -> dict[str, Any]:
    """`epsilon_spent` and `delta` of the whole model (the two parts added), each part's
    plan under `differential_privacy`."""
    users = users_meta.get("differential_privacy", {})
    users_eps = float(users_meta.get("epsilon_spent", 0.0))
    seq = plan_.budget.summary()
    return {
        "epsilon_spent": round(users_eps + seq["epsilon_spent"], 4),
        "delta": plan_.delta,
        "differential_privacy": {
            "unit": "user (all of a user's events)",
            "composition": "sum of the parts' ε (basic composition), δ the sum of theirs",
            "epsilon_spent": round(users_eps + seq["epsilon_spent"], 4),
            "epsilon_target": plan_.users.epsilon + plan_.budget.epsilon,
            "delta": plan_.delta,
            "users_gan": users,
            "sequence_model": seq,
        },
    }


# ------------------------------------------------------------------------------ training


@dataclass
class SequenceDp:
    """One worker's DP state: the budget, a secret generator, this rank's users and the
    training windows of each (rows into the training windows)."""

    budget: Budget
    rng: torch.Generator
    users: np.ndarray  # (U_rank,) user rows (Sequences order) of this rank
    starts: np.ndarray  # (U_rank + 1,) offsets into `rows`
    rows: np.ndarray  # training window rows grouped by user

    @classmethod
    def build(
        cls, budget: Budget, win: steps.Windows, rank: int, world: int, seed: int, device
    ) -> SequenceDp:
        """This rank's share of the users (a seeded split; the secret draws come later)."""
        users = np.unique(win.user)
        mine = np.sort(np.array_split(np.random.default_rng(seed).permutation(users), world)[rank])
        rows = np.flatnonzero(np.isin(win.user, mine))
        rows = rows[np.argsort(win.user[rows], kind="stable")]
        counts = np.bincount(np.searchsorted(mine, win.user[rows]), minlength=len(mine))
        rng = torch.Generator(device=device).manual_seed(secrets.randbits(63))
        return cls(budget, rng, mine, np.r_[0, np.cumsum(counts)], rows)

    def sample(self) -> np.ndarray:
        """Poisson sample: indices into `users`, each kept with probability q."""
        u = torch.rand(len(self.users), generator=self.rng, device=self.rng.device).cpu().numpy()
        return np.flatnonzero(u < self.budget.sample_rate)


def user_gradients(
    model: torch.nn.Module,
    win: steps.Windows,
    groups: list[np.ndarray],
    user_codes: np.ndarray,
    device: torch.device,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-unit gradients of `groups` (each: the training window rows of one user): the
    gradient of the mean NLL of the user's events, in chunks of at most CHUNK_WINDOWS windows
    (name -> (C, *shape)) and the user (0..len(groups)-1) of each chunk (C,). The model's
    mode (train: dropout) is the caller's."""
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    out: dict[str, list[torch.Tensor]] = {k: [] for k in params}
    units = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one small backward per user: threads only contend (17x)
    try:
        for u, rows in enumerate(groups):
            events = max(int(win.valid[rows].sum()), 1)
            for lo in range(0, len(rows), CHUNK_WINDOWS):
                b = steps.batch_of(win, rows[lo : lo + CHUNK_WINDOWS], user_codes, device)
                loss = -sum(v.sum() for v in model(b).values()) / events
                grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
                for (k, p), g in zip(params.items(), grads, strict=True):
                    out[k].append(torch.zeros_like(p) if g is None else g.detach())
                units.append(u)
    finally:
        torch.set_num_threads(threads)
    if not units:
        return {k: p.new_zeros(0, *p.shape) for k, p in params.items()}, torch.zeros(
            0, dtype=torch.long
        )
    stacked = {k: torch.stack(v) for k, v in out.items()}
    return stacked, torch.tensor(units, dtype=torch.long, device=device)


def dp_step(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    dp: SequenceDp,
    win: steps.Windows,
    user_codes: np.ndarray,
    expected_users: float,
    device: torch.device,
    add_step_noise: bool = True,
    reduce=None,
) -> int:
    """One DP-SGD step on a Poisson sample of this rank's users; returns the events seen.
    `reduce` sums the clipped gradients across ranks (name -> tensor); exactly one rank adds
    the step's noise."""
    dp.budget.take_step()
    picked = dp.sample()
    groups = [dp.rows[dp.starts[i] : dp.starts[i + 1]] for i in picked]
    grads, units = user_gradients(model, win, groups, user_codes, device)
    if len(units):
        summed, _ = clip_and_sum_by_unit(grads, units, dp.budget.max_grad_norm)
    else:  # an empty sample still costs its step and its noise
        summed = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    if add_step_noise:
        summed = add_noise(summed, dp.budget.noise_std, dp.rng)
    if reduce is not None:
        summed = reduce(summed)
    opt.zero_grad(set_to_none=True)
    for name, p in model.named_parameters():
        if name in summed:
            p.grad = summed[name].to(p.device) / expected_users
    opt.step()
    return int(sum(int(win.valid[g].sum()) for g in groups))
