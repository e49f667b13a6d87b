"""Warm start of model F from a parent: weights copied by name and shape, item rows by raw id."""

from types import SimpleNamespace

import torch
from test_recommender_data import toy_table

from synthrec.config import RecommenderConfig
from synthrec.recommender.data import InteractionEncoder
from synthrec.recommender.train import build_model
from synthrec.recommender.warm import ITEM_IDS, warm_state

CFG = RecommenderConfig(dim=16, num_layers=1, num_heads=1, max_len=6, epochs=1)


def test_warm_state_copies_shared_items_and_layers():
    torch.manual_seed(0)
    old_enc = InteractionEncoder.fit(toy_table(num_items=10), CFG)  # items i0..i9
    new_enc = InteractionEncoder.fit(toy_table(num_items=14, seed=1), CFG)  # i0..i13
    parent_model = build_model(old_enc, CFG)
    with torch.no_grad():
        for p in parent_model.parameters():
            p.add_(1.0)  # differ from any fresh initialisation
    model = build_model(new_enc, CFG)
    warm = warm_state(model, new_enc, SimpleNamespace(model=parent_model, encoder=old_enc))
    old, new = parent_model.state_dict(), warm.state
    old_ids = old_enc.item_ids.to_pylist()
    for row, item in enumerate(new_enc.item_ids.to_pylist(), start=1):
        if item in old_ids:
            assert torch.equal(new[ITEM_IDS][row], old[ITEM_IDS][old_ids.index(item) + 1])
        else:  # a new item keeps its fresh row
            assert torch.equal(new[ITEM_IDS][row], model.state_dict()[ITEM_IDS][row])
    assert warm.known_items == 10
    same = [k for k in new if k != ITEM_IDS and old.get(k) is not None]
    same = [k for k in same if old[k].shape == new[k].shape]
    assert same and all(torch.equal(new[k], old[k]) for k in same)
    assert 0.3 < warm.copied_share < 1.0
    model.load_state_dict(warm.state)  # the state fits the new model
