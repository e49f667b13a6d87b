"""POST /v1/rank: the backend that answers it (bodies in rank_schemas). No Ray here.

    {"user_id": "42", "history": ["12"], "query": "red shoes", "items": ["12", "7", ...]}
 -> {"items": [{"item_id": "12", "score": 0.7, "p_click": 0.7, "p_cart": 0.1,
                "p_purchase": 0.04, "cold_item": false}, ...],
     "cold_start": false, "model_version": "..."}

Items come back in the order given (the caller sorts, or merges with its own signals).
`score` is P(click); p_cart and p_purchase are joint probabilities down the funnel
(P(click and cart), P(click and cart and purchase)), so each is at most the one before.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic_core import to_json

from synthrec.config import StorageConfig
from synthrec.errors import DataError
from synthrec.serving.api import RequestRejected
from synthrec.serving.rank_schemas import FUNNEL, RankRequest

__all__ = ["FUNNEL", "RankRequest", "RankerBackend"]


class RankerBackend:
    """A loaded recommender with ranking heads; `rank_many` answers each request with a JSON
    body or a rejection."""

    def __init__(self, uri: str, storage: StorageConfig | None = None, device: str = "cpu"):
        from synthrec.recommender.artifacts import read_recommender_dir, recommender_from_dir
        from synthrec.recommender.rerank import BatchRanker

        self.uri = uri
        model_dir = read_recommender_dir(uri, storage)
        self.model = recommender_from_dir(model_dir)
        self.ranker = BatchRanker(self.model, device)
        self.version = hashlib.sha256(model_dir.files["model.safetensors"]).hexdigest()[:16]
        # the funnel fields this model fills: stage k of its label chain
        self.fields = _funnel_fields(len(self.ranker.labels))

    def rank_many(self, requests: list[RankRequest]) -> list[bytes | RequestRejected]:
        answers = self.ranker.rank_many(
            [(r.user_id, r.history, r.query, r.items) for r in requests]
        )
        return [
            RequestRejected(str(a), _field_of(str(a)))
            if isinstance(a, DataError)
            else self._encode(a)
            for a in answers
        ]

    def _encode(self, answer) -> bytes:
        p = answer.probabilities  # (C, K)
        items = []
        for j, (item, cold) in enumerate(zip(answer.item_ids, answer.cold_items)):
            row = {"item_id": item, "score": float(p[j, 0])}
            row.update({f: None for f in FUNNEL})
            row.update({f: float(p[j, k]) for f, k in self.fields})
            row["cold_item"] = cold
            items.append(row)
        return to_json(
            {"items": items, "cold_start": bool(answer.cold_start), "model_version": self.version}
        )

    def model_info(self) -> dict[str, Any]:
        return {
            "loaded": True,
            "version": self.version,
            "metadata": {"labels": self.ranker.labels, "num_items": self.model.encoder.num_items},
        }


def _funnel_fields(num_labels: int) -> list[tuple[str, int]]:
    """(response field, label-chain stage): click is stage 0; with three labels cart and
    purchase are 1 and 2; with two, the second is the purchase."""
    if num_labels >= 3:
        return [("p_click", 0), ("p_cart", 1), ("p_purchase", num_labels - 1)]
    if num_labels == 2:
        return [("p_click", 0), ("p_purchase", 1)]
    return [("p_click", 0)]


def _field_of(message: str) -> str | None:
    for field in ("history", "query", "user_id", "items"):
        if message.startswith(field):
            return field
    return None
