"""DP-SGD's two operations on per-unit gradients (a unit: one row, or all of one user's
events): clip each unit's whole gradient to L2 norm C and sum, then add Gaussian noise of std
σ·C once per global step. Data-parallel callers sum the clipped gradients across workers and
let exactly one worker add the noise, so the step's noise is σ·C whatever the world size.
"""

from __future__ import annotations

import torch

CLIP_EPS = 1e-6  # keeps the scale finite for an all-zero gradient


def clip_and_sum(
    grads: dict[str, torch.Tensor], max_norm: float
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """`grads`: name -> (B, *shape) per-unit gradients. Returns name -> (*shape) sum over
    units of each unit's gradient scaled to L2 norm <= max_norm (its norm taken over all
    parameters together), and the per-unit norms before clipping (B,)."""
    flat = [g.reshape(g.shape[0], -1) for g in grads.values()]
    norms = torch.sqrt(sum((f * f).sum(1) for f in flat))  # (B,)
    scale = (max_norm / (norms + CLIP_EPS)).clamp(max=1.0)  # (B,)
    summed = {k: torch.einsum("b,b...->...", scale, g) for k, g in grads.items()}
    return summed, norms


def clip_and_sum_by_unit(
    grads: dict[str, torch.Tensor], units: torch.Tensor, max_norm: float
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """User-level clipping: `grads` name -> (B, *shape) per-example gradients, `units` (B,)
    the unit (user) of each example, codes 0..U-1. Each unit's examples are summed first, and
    that sum is clipped to max_norm: all of a user's events together move the step by at
    most C. Returns the clipped sum and the per-unit norms before clipping (U,)."""
    num = int(units.max()) + 1 if units.numel() else 0
    per_unit = {
        k: torch.zeros(num, *g.shape[1:], dtype=g.dtype, device=g.device).index_add_(0, units, g)
        for k, g in grads.items()
    }
    return clip_and_sum(per_unit, max_norm)


def add_noise(
    summed: dict[str, torch.Tensor], std: float, rng: torch.Generator
) -> dict[str, torch.Tensor]:
    """summed + N(0, std²) on every coordinate, drawn from `rng` (a secret generator: noise
    that can be replayed from a known seed protects nothing)."""
    return {
        k: v + std * torch.randn(v.shape, generator=rng, device=v.device, dtype=v.dtype)
        for k, v in summed.items()
    }
