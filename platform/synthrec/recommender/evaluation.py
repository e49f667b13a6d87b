"""Judge a published model F on real data: the protocol of `metrics`, with baselines beside it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.errors import DataError
from synthrec.recommender.artifacts import Recommender
from synthrec.recommender.baselines import EASE, Popularity
from synthrec.recommender.impressions import Impressions, build_impressions
from synthrec.recommender.metrics import (
    SegmentSpec,
    click_auc,
    evaluate_ranking,
    segment_masks,
    split_leave_last_out,
    split_temporal,
)
from synthrec.recommender.train import next_item_rows

EASE_MAX_ITEMS = 30_000
TEMPORAL_TRAIN_SHARE = 0.8  # ML-100K: 80,000 of 100,000 rows


def evaluate_recommender(
    rec: Recommender,
    real: pa.Table,
    segments: SegmentSpec = SegmentSpec(),
    num_train: int | None = None,
    baselines: bool = True,
    progress: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """Leave-last-out ranking metrics per segment and temporal click AUC, for the model and
    (optionally) popularity and EASE fitted on the same training rows."""
    enc = rec.encoder
    enc.check_compatible(real, "real table")
    # next-item ranking is judged on the interactions the head learns from (positives)
    split = split_leave_last_out(next_item_rows(real, enc, rec.config, "real table"), enc)
    train_log = enc.encode(split.train, "real train rows")
    masks, info = segment_masks(split.test, train_log, enc, segments)
    scorers: dict[str, Any] = {"F": rec}
    if baselines:
        scorers["popularity"] = Popularity(train_log, enc.num_items)
        if enc.num_items <= EASE_MAX_ITEMS:
            scorers["ease"] = EASE(train_log, enc.num_items)
    ranking = {name: evaluate_ranking(s, split.test, masks) for name, s in scorers.items()}
    if progress:
        progress("ranking")
    num_train = num_train or int(real.num_rows * TEMPORAL_TRAIN_SHARE)
    clicks: dict[str, Any] = {}
    if enc.columns.label and real.num_rows > 1:
        temporal_train, queries = split_temporal(real, enc, num_train)
        t_log = enc.encode(temporal_train, "temporal train rows")
        temporal = {"F": rec}
        if baselines:
            temporal["popularity"] = Popularity(t_log, enc.num_items)
            if enc.num_items <= EASE_MAX_ITEMS:
                temporal["ease"] = EASE(t_log, enc.num_items)
        clicks = {name: click_auc(s, queries)["click_auc"] for name, s in temporal.items()}
    holdout = rec.training.get("holdout", rec.config.holdout)
    notes = [
        "ranking: each user's last positive interaction (click or stronger, when the log has "
        "labels), all items ranked except those seen before it",
        f"F was trained with holdout={holdout}"
        + (
            ""
            if holdout == "leave_last_out"
            else ": it saw the test rows, so its ranking figures are optimistic"
        ),
        f"click AUC: rows after the first {num_train} in time order, scored from each user's "
        "earlier rows; "
        "F's weights were fitted on its own split, baselines on the first rows",
    ]
    heads: dict[str, Any] = {}
    if rec.model.ranker is not None and real.num_rows > 1:
        heads = evaluate_heads(rec, real, num_train, baselines)
        notes.append(
            f"ranking heads: impressions after the first {num_train} rows in time, scored "
            "without position; baselines fitted on the earlier impressions"
        )
    return {
        "ranking": ranking,
        "click_auc": clicks,
        "ranking_heads": heads,
        "segments": info,
        "num_test_users": len(split.test),
        "notes": notes,
    }


def check_evaluable(real: pa.Table) -> None:
    if real.num_rows == 0:
        raise DataError("the real table is empty (0 rows); evaluation needs held-out interactions")


def heldout_impressions(
    rec: Recommender, real: pa.Table, num_train: int
) -> tuple[Impressions, Impressions]:
    """(impressions of the first `num_train` rows in time, impressions of the rest), each
    with its request's history of positives. Rows whose item the model never saw (new in
    the later rows) are left out: there is nothing of theirs to score."""
    enc = rec.encoder
    times = real.column(enc.columns.time).to_numpy()
    later = np.zeros(real.num_rows, dtype=bool)
    later[np.argsort(times, kind="stable")[num_train:]] = True
    known = pc.is_in(real.column(enc.columns.item), value_set=enc.item_ids).to_numpy(
        zero_copy_only=False
    )
    real, later = real.filter(pa.array(known)), later[known]
    imp = build_impressions(
        enc, real, rec.model.spec.max_len, rec.config.max_positions, "real table"
    )
    return imp.subset(~later[imp.rows]), imp.subset(later[imp.rows])


def evaluate_heads(
    rec: Recommender, real: pa.Table, num_train: int, baselines: bool = True, tree_iter: int = 200
) -> dict[str, dict[str, float]]:
    """Click AUC, GAUC per user and per query, NDCG@10 of each held-out list and purchase AUC
    of F's ranking heads and (optionally) item CTR, position only and boosted trees."""
    from synthrec.recommender.rank_metrics import (
        BoostedTrees,
        ItemCTR,
        PositionOnly,
        impression_metrics,
    )
    from synthrec.recommender.ranking import RankScorer

    train, test = heldout_impressions(rec, real, num_train)
    scorers: dict[str, Any] = {"F": RankScorer(rec.model)}
    if baselines and len(train):
        scorers["item_ctr"] = ItemCTR(train, rec.encoder.num_items)
        scorers["position_only"] = PositionOnly(train)
        scorers["boosted_trees"] = BoostedTrees(
            train, rec.encoder, seed=rec.config.seed, max_iter=tree_iter
        )
    return {name: impression_metrics(s.predict(test), test) for name, s in scorers.items()}
