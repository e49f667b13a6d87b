"""Marginal calibration of sampled rows: the generator draws more candidates than asked, and a
weighted subset is kept whose one-way marginals follow the encoder's category counts.

Weights come from iterative proportional fitting (raking) of the candidates' codes to each
calibrated column's target shares; `num_rows` candidates are then drawn without replacement
with probability following the weights (Efraimidis-Spirakis keys). With `OVERSAMPLE`
candidates per row a value can be raised to at most that many times its share among the
candidates, which bounds how far the rows move from what the generator made.

Under differential privacy the targets are the encoder's noisy counts, already released inside
the model's ε: using them is post-processing and spends nothing. A DP-SGD generator learns the
marginals least well of all (its signal is the noisiest), so this is where calibration pays.
No Ray, no torch: numpy over codes.
"""

from __future__ import annotations

import numpy as np

OVERSAMPLE = 4  # candidates drawn per row kept
IPF_ITERATIONS = 20


def raking_weights(codes: list[np.ndarray], targets: list[np.ndarray]) -> np.ndarray:
    """(n,) weights of n candidates such that, for every column, the weighted share of each
    code approaches its target share. `codes[j]` (n,) int64 in [0, len(targets[j]));
    `targets[j]` non-negative counts (normalized here). Codes no candidate holds are left
    out of reach; a column the candidates already follow keeps weights as they are."""
    n = len(codes[0]) if codes else 0
    weights = np.ones(n)
    shares = [t / t.sum() if t.sum() > 0 else np.full(len(t), 1.0 / len(t)) for t in targets]
    for _ in range(IPF_ITERATIONS):
        for col, share in zip(codes, shares):
            held = np.bincount(col, weights=weights, minlength=len(share))
            held /= held.sum()
            ratio = np.divide(share, held, out=np.zeros_like(share), where=held > 0)
            weights *= ratio[col]
    return weights


def weighted_subset(weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of exactly `k` distinct candidates, each kept with probability
    pi = min(1, c * weight) (c such that the pi sum to k): systematic sampling over a random
    order, so the kept rows' expected shares are the weighted shares wherever no pi is capped
    at 1. Candidates of weight 0 are never kept while others remain."""
    n = len(weights)
    if k >= n:
        return np.arange(n)
    w = np.asarray(weights, dtype=np.float64)
    if np.count_nonzero(w) < k:  # too few weighted candidates: keep them all, then any others
        w = w + np.where(w > 0, 0.0, 1e-12 * max(w.max(), 1.0))
    lo, hi = 0.0, k / w[w > 0].min()
    for _ in range(100):  # bisection on c: sum(min(1, c * w)) = k
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.minimum(1.0, mid * w).sum() < k else (lo, mid)
    pi = np.minimum(1.0, hi * w)
    order = rng.permutation(n)
    cum = np.cumsum(pi[order])
    cum *= k / cum[-1]  # exactly k steps of 1 cross it
    picks = np.searchsorted(cum, rng.random() + np.arange(k), side="right")
    return np.sort(order[np.minimum(picks, n - 1)])
