"""Warm start of a generator from a trained one (a refresh's production generator).

A refresh fits the encoder on the new partition, so a column whose categories changed has
layers of a new shape. Tensors with the same name and shape are copied from the parent;
the others keep their fresh initialisation. The row GAN's saved directory holds only its
generator (the critic starts fresh); the sequence model's first weights (`FitData.init`) are
overwritten on the driver, before any worker starts, except its tables over items (item
indices are refitted on the new partition, so an equal shape may mean other items).
"""

from __future__ import annotations

from typing import Any

from synthrec.config import TrainGanConfig


def copy_matching(target: dict[str, Any], source: dict[str, Any]) -> float:
    """Copy `source`'s tensors into `target`'s (in place) where name and shape agree; -> the
    share of `target`'s elements copied."""
    copied = total = 0
    for key, value in target.items():
        total += value.numel()
        other = source.get(key)
        if other is not None and other.shape == value.shape:
            value.copy_(other)
            copied += value.numel()
    return copied / max(total, 1)


def row_generator_init(cfg: TrainGanConfig) -> dict[str, Any] | None:
    """The parent row GAN's generator weights (cfg.init_model_uri), or None."""
    if cfg.init_model_uri is None:
        return None
    from synthrec.artifacts import load_synthesizer

    parent = load_synthesizer(cfg.init_model_uri, cfg.storage)
    return {k: v.detach().cpu() for k, v in parent.generator.state_dict().items()}


def sequence_init(cfg: TrainGanConfig, init: dict[str, Any]) -> float | None:
    """Overwrite the sequence model's first weights `init` from cfg.init_model_uri where
    they match; -> the share copied (None without a parent)."""
    if cfg.init_model_uri is None:
        return None
    from synthrec.sequences.artifacts import load_sequence_model

    parent = load_sequence_model(cfg.init_model_uri, cfg.storage)
    # item indices are refitted on the new partition: a table over items (the catalog grid,
    # popularity bias, item embeddings) means other items at an equal shape, so it stays new
    items = {parent.model.spec.num_items, parent.model.spec.num_items + 1}
    source = {
        k: v
        for k, v in parent.model.state_dict().items()
        if not k.startswith("item_head.") and not items & set(v.shape)
    }
    return copy_matching(init, source)
