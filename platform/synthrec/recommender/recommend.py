"""Top-k recommendations for a batch of requests: the one implementation behind
`Recommender.recommend` (CLI, evaluation) and the serving path of /v1/recommendations.

Per batch, without per-request setup:
- item vectors are the model directory's index (a loaded model's weights never change);
- history ids resolve through a dict built once, not a hash table rebuilt per call;
- one transformer pass for the batch, then the catalog search of `synthrec.recommender.topk`:
  the exact scan (one (B, d) @ (d, I+1) product, torch.topk per row) or, for large catalogs,
  an inverted file's probed lists or int8 candidates, re-scored in float32; cold users
  without history or query read a popularity order sorted once.
Ties rank the lower item index first, as the ranking metrics do. No Ray and no HTTP here.

A search request (one with a query) on a model with ranking heads is retrieved, then ranked:
the next-item scores pick `RETRIEVE` candidates, the heads order them by position-free
P(click), and the answer's scores are those probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import torch

from synthrec.errors import DataError
from synthrec.recommender.data import PAD, Log, windows
from synthrec.recommender.topk import TopKKind, build_top_k

if TYPE_CHECKING:
    from synthrec.recommender.artifacts import Recommender

# (user_id, history, query, k, exclude_seen): one request, as the HTTP layer validated it
Request = tuple[str | None, list, str | None, int, bool]
RETRIEVE = 200  # candidates a search request's next-item scores hand to the ranking heads


@dataclass
class Ranked:
    """One answer: item indices 1..I best first, their scores, and whether the user was new."""

    items: np.ndarray  # (k,) int64
    scores: list[float]
    cold_start: bool


@dataclass
class Answer:
    """One answer with item ids as strings (what the HTTP API returns)."""

    item_ids: list[str]
    scores: list[float]
    cold_start: bool


@dataclass
class _Resolved:
    seen: np.ndarray  # item indices 1..I the user has seen (stored history + request history)
    user_cat: np.ndarray  # (1, Cu)
    user_num: np.ndarray  # (1, 2·Mu)
    cold: bool
    query: str | None


class BatchRecommender:
    """Answers requests over a loaded `Recommender`, scoring on `device` (cpu or cuda) with
    the catalog search `top_k` (exact, int8 two-stage, ivf, or auto by catalog size).

    Moves the recommender's model to `device`."""

    def __init__(
        self, rec: Recommender, device: str | torch.device = "cpu", top_k: TopKKind = "exact"
    ) -> None:
        self.rec, self.device = rec, torch.device(device)
        rec.model.to(self.device).eval()
        self.vectors = rec.item_vectors.to(self.device).contiguous()  # (I+1, d) float32
        self.search = build_top_k(self.vectors, top_k)
        self.item_ids = np.asarray(
            [str(v) for v in rec.encoder.item_ids.to_pylist()], dtype=object
        )  # index - 1
        self.item_index = {s: i + 1 for i, s in enumerate(self.item_ids)}
        pop = rec.popularity.astype(np.float64)
        order = np.lexsort((np.arange(len(pop)), -pop))
        self.popular = order[order != PAD]  # by popularity, ties by index
        self.popularity = pop

    def recommend_many(self, requests: list[Request]) -> list[Answer | DataError]:
        """Per request an Answer (ids as strings), or the DataError it raised; a bad request
        does not fail the others."""
        return [
            r
            if isinstance(r, DataError)
            else Answer(self.item_ids[r.items - 1].tolist(), r.scores, r.cold_start)
            for r in self.rank_many(requests)
        ]

    def rank_many(self, requests: list[Request]) -> list[Ranked | DataError]:
        """Per request the best item indices and scores, or the DataError it raised."""
        resolved = [self._resolve(*r[:4]) for r in requests]
        scored = [
            i
            for i, r in enumerate(resolved)
            if not isinstance(r, DataError) and not (r.cold and not len(r.seen) and r.query is None)
        ]
        ranks = self.rec.model.ranker is not None
        search = [j for j, i in enumerate(scored) if ranks and resolved[i].query is not None]
        ks = [requests[i][3] for i in scored]
        tops = (
            self._top_k(
                [resolved[i] for i in scored],
                [max(k, RETRIEVE) if j in search else k for j, k in enumerate(ks)],
                [requests[i][4] for i in scored],
            )
            if scored
            else []
        )
        if search:
            tops = self._rank_search(tops, search, [resolved[i] for i in scored], ks)
        top_of = dict(zip(scored, tops))
        out: list[Ranked | DataError] = []
        for i, (r, request) in enumerate(zip(resolved, requests)):
            if isinstance(r, DataError):
                out.append(r)
            elif i in top_of:
                out.append(Ranked(*top_of[i], r.cold))
            else:  # cold, nothing to go on: popularity (nothing seen to exclude)
                top = self.popular[: request[3]]
                out.append(Ranked(top, self.popularity[top].tolist(), True))
        return out

    def _rank_search(
        self,
        tops: list[tuple[np.ndarray, list[float]]],
        search: list[int],
        batch: list[_Resolved],
        ks: list[int],
    ) -> list[tuple[np.ndarray, list[float]]]:
        """The retrieved candidates of the search requests re-ordered by P(click), top k."""
        candidates = [tops[j][0] for j in search]
        p = self.candidate_probabilities([batch[j] for j in search], candidates)[:, 0]
        out, start = list(tops), 0
        for j, items in zip(search, candidates):
            click = p[start : start + len(items)]
            start += len(items)
            order = np.lexsort((items, -click))[: ks[j]]  # equal scores: lower index first
            out[j] = (items[order], click[order].tolist())
        return out

    @torch.no_grad()
    def candidate_probabilities(
        self, batch: list[_Resolved], candidates: list[np.ndarray]
    ) -> np.ndarray:
        """(sum C, K) position-free funnel probabilities from the ranking heads of each
        request's candidate indices (0 = an item the model does not know), concatenated in
        request order; column k = P(label_0 and ... and label_k)."""
        states = self.states(batch)  # (B, d)
        counts = np.array([len(c) for c in candidates], np.int64)
        slot = torch.from_numpy(np.repeat(np.arange(len(batch)), counts)).to(self.device)
        items = torch.from_numpy(np.concatenate(candidates)).to(self.device)
        logits = self.rec.model.rank_logits(states[slot], items, None, self.vectors)
        return torch.sigmoid(logits).double().cumprod(dim=1).cpu().numpy()

    def _resolve(
        self, user_id: str | None, history: list | None, query: str | None, k: int
    ) -> _Resolved | DataError:
        rec = self.rec
        if k < 1:
            return DataError(f"k must be >= 1, got {k}")
        if query is not None and rec.encoder.query_buckets == 0:
            return DataError("query: this model was trained without a query column; send no query")
        history = list(history or ())
        extra = [self.item_index.get(str(h)) for h in history]
        if None in extra:
            unknown = list(dict.fromkeys(h for h, i in zip(history, extra) if i is None))
            shown = ", ".join(map(repr, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
            return DataError(
                f"history: {len(unknown)} item id(s) the model does not know ({shown}); every "
                "item must appear in the real table the model was fitted on"
            )
        extra_idx = np.asarray(extra, np.int64)
        index = rec.user_row(user_id)
        if index is None:
            user_num = np.zeros((1, rec.user_num.shape[1]), np.float32)
            user_num[:, 1::2] = 1.0  # numeric features unknown: null flags on
            return _Resolved(
                extra_idx, np.zeros((1, rec.user_cat.shape[1]), np.int64), user_num, True, query
            )
        stored = rec.histories[index]
        seen = np.concatenate([stored[stored != PAD], extra_idx])
        return _Resolved(
            seen, rec.user_cat[index : index + 1], rec.user_num[index : index + 1], False, query
        )

    @torch.no_grad()
    def states(self, batch: list[_Resolved]) -> torch.Tensor:
        """(B, d) user states after each request's history, with its query: one transformer
        pass for the batch (the next-item scores and the ranking heads both read it)."""
        rec = self.rec
        lengths = np.array([len(r.seen) for r in batch], np.int64)
        items = np.concatenate([r.seen for r in batch]).astype(np.int64)
        log = Log(
            items,
            np.r_[0, np.cumsum(lengths)],
            pa.array(["request"] * len(batch)),
            np.concatenate([r.user_cat for r in batch]),
            np.concatenate([r.user_num for r in batch]),
            np.arange(len(items)),
        )
        w = windows(
            log, np.arange(len(batch)), lengths, rec.model.spec.max_len, rec.encoder.user_token
        )
        query = None
        with_query = [j for j, r in enumerate(batch) if r.query is not None]
        if with_query:
            query = np.zeros((len(batch), rec.encoder.query_max_tokens), np.int64)
            query[with_query] = rec.encoder.hash_queries(
                pa.array([batch[j].query for j in with_query])
            )
            query = torch.from_numpy(query).to(self.device)
        dev = self.device
        return rec.model.user_state(
            torch.from_numpy(w.tokens).to(dev),
            torch.from_numpy(w.user_cat).to(dev),
            torch.from_numpy(w.user_num).to(dev),
            query,
            self.vectors,
        )  # (B, d)

    @torch.no_grad()
    def _top_k(
        self, batch: list[_Resolved], ks: list[int], exclude: list[bool]
    ) -> list[tuple[np.ndarray, list[float]]]:
        """Best k item indices per row (ties by index) and their scores; padding and seen
        items excluded."""
        pad = np.array([PAD])
        mask = [
            (j, np.concatenate([pad, r.seen]) if ex else pad)
            for j, (r, ex) in enumerate(zip(batch, exclude))
        ]
        num_items = self.vectors.shape[0] - 1
        ks = [
            min(k, num_items - (len(np.unique(r.seen)) if ex else 0))
            for k, r, ex in zip(ks, batch, exclude)
        ]
        values, index = self.search.search(self.states(batch), max(max(ks), 1), mask)
        values, index = values.double().cpu().numpy(), index.cpu().numpy()  # sorted, best first
        out = []
        for j, k in enumerate(ks):
            top, vals = index[j, : max(k, 0)], values[j, : max(k, 0)]
            order = np.lexsort((top, -vals))  # equal scores: lower index first
            out.append((top[order].astype(np.int64), vals[order].tolist()))
        return out
