"""DP-SGD for the row GAN's critic; the generator sees the real rows only through the critic.

Each critic step (one step of the privacy accountant):
- Poisson sampling: every row of the shard joins the batch with probability q (expected
  global batch / n), drawn from a secret generator, so the batch size varies (B rows);
- each real row brings its own conditional vector (one of its discrete columns, chosen at
  random, revealed), and the fake row paired with it is generated under that vector, by the
  generator in eval mode (batch statistics would tie each fake row to the others' rows);
- the unit of privacy is one real row: its whole loss term -D(real) + D(fake) + λ·GP, where
  the gradient penalty is taken at the interpolation of that real row and its fake, so the
  penalty is per example too (WGAN-GP's penalty is a mean over rows; here each row's own
  penalty enters its own clipped gradient). Per-row gradients come from torch.func
  (vmap over grad, the penalty's input gradient nested inside); each is clipped to norm C;
- the clipped gradients are summed (across workers too, through `reduce`), Gaussian noise of
  std σ·C is added once (by rank 0 only), and the result is divided by the expected global
  batch before the optimizer step.
The generator step draws its conditional vectors from the encoder's noisy counts, never
from real rows (one column revealed per row, as in the critic step); packing (pac) is off.
Metrics of the real batch (critic loss, Wasserstein estimate) are not reported: they are
statistics of the rows outside the budget.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from synthrec.config import GanConfig
from synthrec.encoding import Encoder
from synthrec.encoding.encoder import PrivateFit
from synthrec.gan.networks import GanLayout, activate
from synthrec.privacy import (
    Budget,
    NoisyHistogram,
    add_noise,
    check_accounted,
    clip_and_sum,
    private_columns,
)
from synthrec.privacy.statistics import domain_columns, grid_columns
from synthrec.schema import Schema

Reduce = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass
class DpState:
    """A DP run's budget, its secret generator (Poisson sampling, noise) and the generator
    step's conditional distribution."""

    budget: Budget
    rng: torch.Generator
    cond_cum: torch.Tensor  # cumulative value probabilities, span j's values in (j, j+1]
    span_first: torch.Tensor  # (J,) first conditional entry of each span
    span_last: torch.Tensor  # (J,) last one

    def state_dict(self) -> dict[str, Any]:
        """The accountant's state. The secret generator stays out: a resumed worker draws a
        fresh secret seed (copying rank 0's stream to every rank would correlate their
        Poisson samples)."""
        return {"budget": self.budget.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.budget.load_state_dict(state["budget"])


def build_dp(encoder: Encoder, layout: GanLayout, budget: Budget, device: torch.device) -> DpState:
    """DpState with a fresh secret seed (a DP run is not replayable from its config seed)."""
    rng = torch.Generator(device=device).manual_seed(secrets.randbits(63))
    probs, first, last, start = [], [], [], 0
    for j, si in enumerate(layout.cond_spans):
        counts = np.asarray(encoder.span_counts[si], np.float64)
        probs.append(j + np.cumsum(counts / counts.sum()))
        first.append(start)
        start += encoder.spans[si].size
        last.append(start - 1)
    cum = torch.tensor(np.concatenate(probs) if probs else np.zeros(0), device=device)
    as_long = lambda x: torch.tensor(x, dtype=torch.long, device=device)  # noqa: E731
    return DpState(budget, rng, cum, as_long(first), as_long(last))


def steps_per_epoch(num_rows: int, batch_size: int) -> int:
    """Generator steps of one expected pass over the rows: 1/q with q = batch / n."""
    return max(1, round(num_rows / batch_size))


def private_fit(
    table: pa.Table, schema: Schema, cfg: GanConfig, epochs: int, batch_size: int
) -> tuple[Encoder, Budget]:
    """The encoder of a DP run and the run's budget, before any training: refuses a schema
    that leaves a statistic uncovered (PrivacyError), plans the noise for `epochs` expected
    passes of expected batch `batch_size`, then fits the encoder with noisy counts."""
    priv = cfg.privacy
    stats = check_accounted(schema, priv)
    columns, domains = private_columns(stats), domain_columns(stats)
    thresholded = len(columns) - len(domains)
    n = table.num_rows
    steps = epochs * steps_per_epoch(n, batch_size) * cfg.critic_steps
    budget = Budget.plan(
        priv, n, batch_size, steps, encoder_release=bool(columns), threshold=thresholded > 0
    )
    histogram = None
    if columns:
        histogram = NoisyHistogram.build(
            budget.encoder_noise, len(columns), budget.threshold_delta, thresholded
        )
        budget.extra["count_noise_std"] = round(histogram.std, 3)
        if thresholded:
            budget.extra["count_threshold"] = round(histogram.threshold, 3)
    grid = {c: priv.bounds[c] for c in grid_columns(stats)}
    secret = np.random.default_rng(secrets.randbits(128))
    fit = PrivateFit(
        frozenset(columns), histogram, secret, grid, {c: priv.domains[c] for c in domains}
    )
    encoder = Encoder.fit(table, schema, cfg.encoder, seed=cfg.seed, private=fit)
    budget.extra["statistics"] = {s.column: s.coverage for s in stats}
    return encoder, budget


def row_conditions(real: torch.Tensor, layout: GanLayout, rng: torch.Generator) -> torch.Tensor:
    """(B, Dc) conditional vectors revealing one random discrete column of each row (B, D)."""
    b, num = real.shape[0], len(layout.cond_spans)
    if num == 0:
        return real.new_zeros(b, 0)
    span = torch.randint(num, (b,), generator=rng, device=real.device)
    reveal = layout.cond_seg[None, :] == span[:, None]  # (B, Dc)
    return real[:, layout.cond_src] * reveal


def marginal_conditions(n: int, dp: DpState, layout: GanLayout) -> torch.Tensor:
    """(n, Dc) conditional vectors from the released counts: a random column, a value of it
    with probability ~ its noisy count (the distribution row_conditions has on real rows)."""
    dev, num = dp.cond_cum.device, len(layout.cond_spans)
    cond = torch.zeros(n, layout.cond_dim, device=dev)
    if num == 0:
        return cond
    span = torch.randint(num, (n,), generator=dp.rng, device=dev)
    u = torch.rand(n, generator=dp.rng, device=dev, dtype=torch.float64)
    flat = torch.searchsorted(dp.cond_cum, span + u, right=True)
    flat = torch.minimum(torch.maximum(flat, dp.span_first[span]), dp.span_last[span])
    cond[torch.arange(n, device=dev), flat] = 1.0
    return cond


def per_row_gradients(
    critic: nn.Module, real_in: torch.Tensor, fake_in: torch.Tensor, eps: torch.Tensor, gp: float
) -> dict[str, torch.Tensor]:
    """name -> (B, *shape): the gradient of each row's loss -D(real) + D(fake) + gp·GP,
    GP = (|grad_x D(x)| - 1)² at x = eps·real + (1 - eps)·fake (rows (B, in), eps (B,))."""
    params = {k: v.detach() for k, v in critic.named_parameters()}

    def score(p: dict, x: torch.Tensor) -> torch.Tensor:  # one row (in,) -> scalar
        return functional_call(critic, p, (x[None],)).sum()

    def row_loss(p: dict, real: torch.Tensor, fake: torch.Tensor, e: torch.Tensor):
        interp = e * real + (1 - e) * fake
        slope = grad(score, argnums=1)(p, interp)  # (in,)
        penalty = (torch.sqrt((slope * slope).sum() + 1e-12) - 1) ** 2
        return -score(p, real) + score(p, fake) + gp * penalty

    per_row = vmap(grad(row_loss), in_dims=(None, 0, 0, 0), randomness="different")
    return per_row(params, real_in, fake_in, eps)


def dp_critic_step(
    state,
    dp: DpState,
    shard: torch.Tensor,
    expected_batch: int,
    *,
    generator: nn.Module | None = None,
    add_step_noise: bool = True,
    reduce: Reduce | None = None,
) -> None:
    """One DP-SGD critic update on a Poisson sample of `shard` (N, D). `expected_batch`: the
    expected global batch (q · n), the divisor of the noisy sum. `add_step_noise`: this worker
    adds the step's noise (exactly one worker does); `reduce` sums across workers."""
    gen, crit, cfg, lay = generator or state.generator, state.critic, state.cfg, state.layout
    dp.budget.take_step()
    rows = torch.rand(shard.shape[0], generator=dp.rng, device=shard.device)
    real = shard[rows < dp.budget.sample_rate]  # (B, D), B ~ Binomial(N, q)
    cond = row_conditions(real, lay, dp.rng)
    noise = torch.randn(real.shape[0], cfg.embedding_dim, generator=dp.rng, device=shard.device)
    # eval mode: batch-norm statistics of this batch would make each fake row depend on the
    # other rows' conditions (breaking the per-row bound) and write them into the running
    # statistics the released generator keeps
    training = gen.training
    gen.eval()
    with torch.no_grad():
        fake = activate(gen(noise, cond).float(), lay, cfg.gumbel_tau, dp.rng)
    gen.train(training)
    if real.shape[0]:
        eps = torch.rand(real.shape[0], 1, generator=dp.rng, device=shard.device)
        grads = per_row_gradients(
            crit, torch.cat([real, cond], 1), torch.cat([fake, cond], 1), eps, cfg.gp_weight
        )
        summed, _ = clip_and_sum(grads, dp.budget.max_grad_norm)
    else:  # an empty sample still costs its step (the accountant counts it) and its noise
        summed = {k: torch.zeros_like(p) for k, p in crit.named_parameters()}
    if add_step_noise:
        summed = add_noise(summed, dp.budget.noise_std, dp.rng)
    if reduce is not None:
        summed = reduce(summed)
    state.opt_c.zero_grad(set_to_none=True)
    for name, p in crit.named_parameters():
        p.grad = summed[name] / expected_batch
    state.opt_c.step()


def dp_train_epoch(
    state,
    shard: torch.Tensor,
    expected_batch: int,
    *,
    generator: nn.Module | None = None,
    rank: int = 0,
    reduce: Reduce | None = None,
    deadline: float | None = None,
    progress: Callable[..., None] | None = None,
) -> dict[str, float]:
    """One expected pass (round(1/q) generator steps of critic_steps DP critic steps each),
    ending early when the budget is spent or at `deadline`. Returns the generator's mean
    losses, rows/s, `epoch`, `epsilon_spent` and `budget_spent` (1.0 once spent)."""
    from synthrec.gan.train import generator_step

    dp, cfg = state.dp, state.cfg
    gen = generator or state.generator
    gen.train()
    state.critic.train()
    steps = max(1, round(1 / dp.budget.sample_rate))
    sums: dict[str, float] = {}
    start, done = time.monotonic(), 0
    for _ in range(steps):
        if dp.budget.steps + cfg.critic_steps > dp.budget.max_steps:
            break
        for _ in range(cfg.critic_steps):
            dp_critic_step(
                state, dp, shard, expected_batch, generator=gen,
                add_step_noise=rank == 0, reduce=reduce,
            )  # fmt: skip
        cond = marginal_conditions(expected_batch, dp, state.layout)
        for k, v in generator_step(state, cond, generator=gen, critic=state.critic).items():
            sums[k] = sums.get(k, 0.0) + float(v)
        done += 1
        if progress:
            progress(step=done, steps=steps)
        if deadline is not None and time.monotonic() >= deadline:
            break
    seconds = time.monotonic() - start
    state.epoch += 1
    spent = dp.budget.steps + cfg.critic_steps > dp.budget.max_steps
    metrics = {k: v / max(done, 1) for k, v in sums.items()}
    metrics.update(
        epoch=state.epoch,
        steps=done,
        rows_per_s=done * expected_batch / max(seconds, 1e-9),
        seconds=seconds,
        epsilon_spent=dp.budget.spent(),
        budget_spent=float(spent),
    )
    if not all(math.isfinite(v) for v in metrics.values()):
        metrics["diverged"] = 1.0
    state.history.append(metrics)
    return metrics


def dp_metadata(budget: Budget) -> dict[str, Any]:
    """The model metadata of a DP run: `epsilon_spent` and `delta` at the top (what
    /v1/models and the report show), the whole plan under `differential_privacy`."""
    summary = budget.summary()
    return {
        "epsilon_spent": summary["epsilon_spent"],
        "delta": budget.delta,
        "differential_privacy": summary,
    }
