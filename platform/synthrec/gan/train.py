"""WGAN-GP training as plain functions: build_gan, critic_step, generator_step, train_epoch.

Built for data-parallel use (Ray Train / DDP) as well as in-process:
- every step takes the modules to run (`generator=`, `critic=`), so a caller can pass them
  wrapped in DistributedDataParallel; by default the unwrapped ones in `GanState` are used;
- the critic step does ONE critic forward per backward: real, fake and interpolated rows are
  concatenated, and the gradient penalty comes from autograd.grad(create_graph=True) on the
  interpolated part, so DDP all-reduces the critic's gradients exactly once per step;
- the generator step back-propagates only into the generator's parameters
  (`inputs=`), so a critic wrapped in DDP (or its `.module`) triggers no all-reduce there;
- `autocast_dtype` (e.g. torch.bfloat16 on GPU) wraps the forwards; None leaves fp32.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from synthrec.config import GanConfig
from synthrec.encoding import Encoder
from synthrec.encoding.rows import CompactRows
from synthrec.errors import ConfigError
from synthrec.gan.networks import Critic, GanLayout, Generator, activate, cond_cross_entropy
from synthrec.gan.sampler import CondSampler, EncodedShard


@dataclass
class GanState:
    """Everything training needs and a checkpoint keeps."""

    cfg: GanConfig
    layout: GanLayout
    generator: Generator
    critic: Critic
    opt_g: torch.optim.Optimizer
    opt_c: torch.optim.Optimizer
    device: torch.device
    rng: torch.Generator
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    dp: Any = None  # gan.dp.DpState of a DP run (budget, secret generator); None otherwise

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimizer states, epoch and RNG state (tensors and plain values only)."""
        return {
            "generator": self.generator.state_dict(),
            "critic": self.critic.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_c": self.opt_c.state_dict(),
            "epoch": self.epoch,
            "rng": self.rng.get_state(),
            "history": list(self.history),
            **({"privacy": self.dp.state_dict()} if self.dp is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.critic.load_state_dict(state["critic"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_c.load_state_dict(state["opt_c"])
        self.epoch = int(state["epoch"])
        if "rng" in state:
            self.rng.set_state(state["rng"].cpu())
        self.history = list(state.get("history", []))
        if (self.dp is None) != ("privacy" not in state):
            raise ConfigError(
                "the checkpoint was trained "
                + ("with" if "privacy" in state else "without")
                + " differential privacy and this run is configured the other way; resume "
                "with the run's own privacy config, or start a new run under another --run-name"
            )
        if self.dp is not None:
            self.dp.load_state_dict(state["privacy"])


def build_gan(
    encoder: Encoder, cfg: GanConfig, device: torch.device | str = "cpu", rank: int = 0
) -> GanState:
    """Fresh generator, critic and Adam optimizers for `encoder`'s layout.

    Weights are initialised from cfg.seed (identical on every rank, as DDP expects); the
    noise/sampling RNG from cfg.seed + rank.
    """
    device = torch.device(device)
    layout = GanLayout.from_encoder(encoder, device)
    torch.manual_seed(cfg.seed)
    gen = Generator(
        cfg.embedding_dim, layout.cond_dim, cfg.generator_dims, layout.data_dim, cfg.generator_norm
    )
    critic = Critic(layout.data_dim + layout.cond_dim, cfg.critic_dims, cfg.pac, cfg.critic_dropout)
    gen, critic = gen.to(device), critic.to(device)
    betas = tuple(cfg.adam_betas)
    opt_g = torch.optim.Adam(
        gen.parameters(), lr=cfg.generator_lr, betas=betas, weight_decay=cfg.weight_decay
    )
    opt_c = torch.optim.Adam(
        critic.parameters(), lr=cfg.critic_lr, betas=betas, weight_decay=cfg.weight_decay
    )
    rng = torch.Generator(device=device).manual_seed(cfg.seed + rank)
    return GanState(cfg, layout, gen, critic, opt_g, opt_c, device, rng)


def build_sampler(
    state: GanState, encoder: Encoder, shard: torch.Tensor | CompactRows
) -> CondSampler:
    """Training-by-sampling over this worker's encoded shard, dense (N, D) or compact
    (kept compact on the device either way; global frequencies from `encoder`)."""
    rows = EncodedShard.of(shard, encoder, state.device)
    return CondSampler(rows, encoder, state.layout, state.cfg.cond_extra_prob)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def critic_step(
    state: GanState,
    real: torch.Tensor,
    cond: torch.Tensor,
    *,
    generator: nn.Module | None = None,
    critic: nn.Module | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """One WGAN-GP critic update on a batch (B, D) of real rows and their conditions (B, Dc).

    Returns detached 0-d tensors (no device sync here; call float() when needed)."""
    gen, crit, cfg = generator or state.generator, critic or state.critic, state.cfg
    b, pac = real.shape[0], cfg.pac
    noise = torch.randn(b, cfg.embedding_dim, generator=state.rng, device=state.device)
    with torch.no_grad(), _autocast(state.device, autocast_dtype):
        fake = activate(gen(noise, cond).float(), state.layout, cfg.gumbel_tau, state.rng)
    real_in, fake_in = torch.cat([real, cond], 1), torch.cat([fake, cond], 1)
    eps = torch.rand(b // pac, 1, generator=state.rng, device=state.device).repeat_interleave(
        pac, 0
    )
    interp = (eps * real_in + (1 - eps) * fake_in).requires_grad_(True)
    with _autocast(state.device, autocast_dtype):
        scores = crit(torch.cat([real_in, fake_in, interp], 0)).float()  # (3B/pac, 1), one forward
    s_real, s_fake, s_interp = scores.split(b // pac)
    (grad,) = torch.autograd.grad(s_interp.sum(), interp, create_graph=True)
    penalty = ((grad.reshape(-1, pac * grad.shape[1]).norm(2, dim=1) - 1) ** 2).mean()
    wdist = s_real.mean() - s_fake.mean()
    loss = -wdist + cfg.gp_weight * penalty
    state.opt_c.zero_grad(set_to_none=True)
    loss.backward()
    state.opt_c.step()
    return {
        "critic_loss": loss.detach(),
        "wasserstein": wdist.detach(),
        "gradient_penalty": penalty.detach(),
    }


def generator_step(
    state: GanState,
    cond: torch.Tensor,
    *,
    generator: nn.Module | None = None,
    critic: nn.Module | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """One generator update. Pass the *unwrapped* critic (ddp_critic.module): only the
    generator's parameters receive gradients, so no critic all-reduce happens here."""
    gen, crit, cfg = generator or state.generator, critic or state.critic, state.cfg
    noise = torch.randn(cond.shape[0], cfg.embedding_dim, generator=state.rng, device=state.device)
    with _autocast(state.device, autocast_dtype):
        raw = gen(noise, cond).float()
        fake = activate(raw, state.layout, cfg.gumbel_tau, state.rng)
        score = crit(torch.cat([fake, cond], 1)).float()
    adv = -score.mean()
    ce = cond_cross_entropy(raw, cond, state.layout)
    loss = adv + ce
    state.opt_g.zero_grad(set_to_none=True)
    params = [p for p in gen.parameters() if p.requires_grad]
    torch.autograd.backward(loss, inputs=params)
    state.opt_g.step()
    return {"generator_loss": adv.detach(), "cond_loss": ce.detach()}


def train_epoch(
    state: GanState,
    shard: torch.Tensor,
    sampler: CondSampler,
    batch_size: int,
    *,
    generator: nn.Module | None = None,
    critic: nn.Module | None = None,
    seed: int | None = None,
    autocast_dtype: torch.dtype | None = None,
    deadline: float | None = None,
    max_steps: int | None = None,
    progress: Callable[..., None] | None = None,
) -> dict[str, float]:
    """One pass: len(shard) // batch_size steps (critic_steps critic updates + 1 generator update).

    `batch_size` is this worker's batch (a multiple of cfg.pac). With `seed`, the RNG is reset
    from (seed, epoch) first, so a resumed epoch replays exactly. `deadline` (time.monotonic())
    ends the epoch early. Returns mean metrics, rows/s and `epoch` (the number just finished).
    """
    cfg = state.cfg
    if batch_size % cfg.pac or batch_size <= 0:
        raise ConfigError(
            f"per-worker batch size {batch_size} must be a positive multiple of pac {cfg.pac}; "
            f"choose batch_size = k * pac * num_workers"
        )
    gen, crit = generator or state.generator, critic or state.critic
    if seed is not None:
        state.rng.manual_seed(seed * 1_000_003 + state.epoch)
    gen.train()
    crit.train()
    steps = max(1, shard.shape[0] // batch_size) if max_steps is None else max_steps
    sums: dict[str, torch.Tensor] = {}
    start, done = time.monotonic(), 0
    for _ in range(steps):
        for _ in range(cfg.critic_steps):
            real, cond = sampler.sample(batch_size, state.rng)
            _accumulate(
                sums,
                critic_step(
                    state, real, cond, generator=gen, critic=crit, autocast_dtype=autocast_dtype
                ),
            )
        _, cond = sampler.sample(batch_size, state.rng)
        _accumulate(
            sums,
            generator_step(
                state, cond, generator=gen, critic=_unwrap(crit), autocast_dtype=autocast_dtype
            ),
        )
        done += 1
        if progress:
            progress(step=done, steps=steps)
        if deadline is not None and time.monotonic() >= deadline:
            break
    seconds = time.monotonic() - start
    state.epoch += 1
    metrics = {
        k: float(v) / (done * (cfg.critic_steps if k in _CRITIC_KEYS else 1))
        for k, v in sums.items()
    }
    metrics.update(
        epoch=state.epoch,
        steps=done,
        rows_per_s=done * batch_size / max(seconds, 1e-9),
        seconds=seconds,
    )
    if not all(math.isfinite(v) for v in metrics.values()):
        metrics["diverged"] = 1.0
    state.history.append(metrics)
    return metrics


_CRITIC_KEYS = ("critic_loss", "wasserstein", "gradient_penalty")


def _accumulate(sums: dict[str, torch.Tensor], values: dict[str, torch.Tensor]) -> None:
    for k, v in values.items():
        sums[k] = sums[k] + v if k in sums else v


def _unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return getattr(module, "module", module)
