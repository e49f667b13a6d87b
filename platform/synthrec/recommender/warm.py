"""Warm start: a new model F's first weights taken from a trained one (a refresh's parent).

The new model's vocabulary is fitted on the new data, so items and feature values may have
been added. Tensors with the same name and shape are copied; the item-id embedding
(`items.ids.weight`, (I+1, d), row = item index) is copied row by row for the raw item ids
both models know, new items keep their fresh initialisation. Everything else (a feature
vocabulary that grew, a layer the parent lacks) keeps the new model's initial values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc
import torch

from synthrec.recommender.artifacts import Recommender
from synthrec.recommender.data import InteractionEncoder

ITEM_IDS = "items.ids.weight"


@dataclass
class WarmStart:
    state: dict[str, torch.Tensor]  # the new model's state dict, parent weights copied in
    copied_share: float  # share of the new model's parameters taken from the parent
    known_items: int  # items of the new vocabulary the parent knew


def warm_state(
    model: torch.nn.Module, encoder: InteractionEncoder, parent: Recommender
) -> WarmStart:
    """`model`'s state with `parent`'s weights copied where names and shapes (or item ids)
    match."""
    new = {k: v.detach().clone() for k, v in model.state_dict().items()}
    old = parent.model.state_dict()
    copied = total = 0
    known = 0
    for key, value in new.items():
        total += value.numel()
        if key not in old:
            continue
        if old[key].shape == value.shape and key != ITEM_IDS:
            value.copy_(old[key])
            copied += value.numel()
        elif key == ITEM_IDS and old[key].shape[1:] == value.shape[1:]:
            rows_new, rows_old = _shared_items(encoder, parent.encoder)
            value[rows_new] = old[key][rows_old]
            copied += len(rows_new) * value.shape[1]
            known = len(rows_new)
    return WarmStart(new, copied / max(total, 1), known)


def _shared_items(
    new: InteractionEncoder, old: InteractionEncoder
) -> tuple[np.ndarray, np.ndarray]:
    """(row in the new table, row in the old one) of every raw item id both vocabularies hold."""
    where = pc.index_in(new.item_ids, value_set=old.item_ids)
    found = pc.is_valid(where).to_numpy(zero_copy_only=False)
    rows_new = np.flatnonzero(found) + 1  # item index = position + 1 (row 0 is padding)
    rows_old = pc.drop_null(where).to_numpy().astype(np.int64) + 1
    return rows_new, rows_old
