"""Judge a published model F on real data: the protocol of `metrics`, with baselines beside it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from synthrec.errors import DataError
from synthrec.recommender.artifacts import Recommender
from synthrec.recommender.baselines import EASE, Popularity
from synthrec.recommender.metrics import (
    SegmentSpec,
    click_auc,
    evaluate_ranking,
    segment_masks,
    split_leave_last_out,
    split_temporal,
)

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
    split = split_leave_last_out(real, enc)
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
        "ranking: each user's last interaction, all items ranked except those seen before it",
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
    return {
        "ranking": ranking,
        "click_auc": clicks,
        "segments": info,
        "num_test_users": len(split.test),
        "notes": notes,
    }


def check_evaluable(real: pa.Table) -> None:
    if real.num_rows == 0:
        raise DataError("the real table is empty (0 rows); evaluation needs held-out interactions")
