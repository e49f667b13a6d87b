"""Baselines under the same `Scorer` protocol as model F: popularity and EASE (closed form)."""

from __future__ import annotations

import numpy as np

from synthrec.errors import DataError
from synthrec.recommender.data import Log


class Popularity:
    """Score = number of training interactions of the item; the same list for everyone."""

    def __init__(self, train_log: Log, num_items: int):
        self.counts = np.bincount(train_log.items, minlength=num_items + 1).astype(np.float64)
        self.counts[0] = 0.0

    def score(self, log: Log, group: np.ndarray, stop: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(group), len(self.counts)))


class EASE:
    """Steck (2019): B = I - P·diagMat(1/diag(P)), P = (XᵀX + λI)⁻¹, diag(B) = 0; score = x·B.

    X is the binary user × item matrix of the training log; a query's x is its history."""

    def __init__(self, train_log: Log, num_items: int, l2: float = 200.0):
        if num_items > 30_000:
            raise DataError(
                f"EASE inverts an item × item matrix; {num_items} items is too many (max 30,000)"
            )
        X = _binary_matrix(train_log.items, train_log.offsets, num_items)
        gram = X.T @ X
        gram[np.diag_indices_from(gram)] += l2
        P = np.linalg.inv(gram)
        B = -P / np.diag(P)[None, :]
        B[np.diag_indices_from(B)] = 0.0
        self.B = B  # (I+1, I+1); row/column 0 (padding) stay zero through X

    def score(self, log: Log, group: np.ndarray, stop: np.ndarray) -> np.ndarray:
        flat, offsets = log.prefix_items(group, stop)
        return _binary_matrix(flat, offsets, self.B.shape[0] - 1) @ self.B


def _binary_matrix(items: np.ndarray, offsets: np.ndarray, num_items: int) -> np.ndarray:
    """(rows, I+1) float64 with 1 where a row (CSR `offsets`) holds an item."""
    X = np.zeros((len(offsets) - 1, num_items + 1), dtype=np.float64)
    X[np.repeat(np.arange(len(offsets) - 1), np.diff(offsets)), items] = 1.0
    X[:, 0] = 0.0
    return X
