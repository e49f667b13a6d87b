"""Scores of given candidate items for a batch of requests: the serving path of /v1/rank and
the "rank" stage of a search request on /v1/recommendations. No Ray and no HTTP here.

Per batch: one transformer pass for the requests' user states (the same resolution of user,
history and query as `BatchRecommender`), then one pass of the ranking heads over all
candidates. No display position goes in: the position bias was a training-time term only.
A candidate the model does not know is scored as a cold item (no id, no attributes: the
zero item vector) and flagged, never refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from synthrec.errors import DataError, ModelError
from synthrec.recommender.data import PAD
from synthrec.recommender.recommend import BatchRecommender

if TYPE_CHECKING:
    from synthrec.recommender.artifacts import Recommender

# (user_id, history, query, candidate item ids): one request, as the HTTP layer validated it
RankRequest = tuple[str | None, list, str | None, list]


@dataclass
class RankedCandidates:
    """Candidates in the order given: funnel probabilities (C, K), column k =
    P(label_0 and ... and label_k), e.g. P(click), P(click, cart), P(click, cart, purchase)."""

    item_ids: list[str]
    probabilities: np.ndarray  # (C, K) float64
    cold_items: list[bool]
    cold_start: bool


class BatchRanker:
    """Ranks candidates over a loaded `Recommender` that has ranking heads."""

    def __init__(self, rec: Recommender, device: str | torch.device = "cpu") -> None:
        if rec.model.ranker is None:
            raise ModelError(
                "this recommender has no ranking heads (it was trained on a log without label "
                "columns, or by the next-item trainer); train it with labels to rank candidates"
            )
        self.rec, self.base = rec, BatchRecommender(rec, device)
        self.labels = list(rec.encoder.columns.labels)

    def rank_many(self, requests: list[RankRequest]) -> list[RankedCandidates | DataError]:
        """Per request its candidates' probabilities in the order given, or its DataError."""
        resolved = [self.base._resolve(u, h, q, 1) for u, h, q, _ in requests]
        good = [i for i, r in enumerate(resolved) if not isinstance(r, DataError)]
        out: list[RankedCandidates | DataError] = [
            r if isinstance(r, DataError) else None for r in resolved
        ]  # type: ignore[misc]
        if not good:
            return out
        ids = [[str(c) for c in requests[i][3]] for i in good]
        index = [np.array([self.base.item_index.get(c, PAD) for c in cs], np.int64) for cs in ids]
        probs = self.base.candidate_probabilities([resolved[i] for i in good], index)
        start = 0
        for i, cs, idx in zip(good, ids, index):
            p = probs[start : start + len(cs)]
            start += len(cs)
            out[i] = RankedCandidates(cs, p, (idx == PAD).tolist(), resolved[i].cold)
        return out
