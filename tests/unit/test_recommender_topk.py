"""The int8 two-stage catalog search finds what the exact scan finds (recall@10 >= 0.98),
returns exact scores, and never returns a masked item."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthrec.config import ServeConfig
from synthrec.recommender.topk import ExactTopK, Int8TopK, build_top_k, resolve_kind

NUM_ITEMS, DIM, QUERIES = 60_000, 64, 64


def random_vectors(gen: torch.Generator) -> torch.Tensor:
    return torch.randn(NUM_ITEMS, DIM, generator=gen)


def clustered_vectors(gen: torch.Generator) -> torch.Tensor:
    """Items around 200 centres with norms spread 0.5x..2x: many near-ties inside a cluster,
    the case a coarse quantizer finds hardest."""
    centres = torch.randn(200, DIM, generator=gen) * 2
    member = torch.randint(0, 200, (NUM_ITEMS,), generator=gen)
    v = centres[member] + 0.3 * torch.randn(NUM_ITEMS, DIM, generator=gen)
    return v * (0.5 + 1.5 * torch.rand(NUM_ITEMS, 1, generator=gen))


def recall_at_10(vectors: torch.Tensor, states: torch.Tensor) -> float:
    _, exact = ExactTopK(vectors).search(states, 10)
    _, approx = Int8TopK(vectors).search(states, 10)
    hits = [len(np.intersect1d(a, b)) for a, b in zip(exact.numpy(), approx.numpy())]
    return sum(hits) / (10 * len(hits))


@pytest.mark.parametrize("make", [random_vectors, clustered_vectors])
def test_topk_int8_recall_at_10_against_exact_scan(make):
    gen = torch.Generator().manual_seed(0)
    vectors = make(gen)
    states = vectors[torch.randint(0, NUM_ITEMS, (QUERIES,), generator=gen)]  # item-like users
    states = states + torch.randn(QUERIES, DIM, generator=gen)
    assert recall_at_10(vectors, states) >= 0.98


def test_topk_int8_scores_are_exact_and_masked_items_never_return():
    gen = torch.Generator().manual_seed(1)
    vectors = random_vectors(gen)
    states = torch.randn(3, DIM, generator=gen)
    _, best = ExactTopK(vectors).search(states, 20)
    mask = [(0, best[0, :10].numpy()), (2, np.array([0]))]  # hide row 0's ten best
    values, index = Int8TopK(vectors).search(states, 10, mask)
    assert not np.isin(index[0].numpy(), best[0, :10].numpy()).any()
    assert 0 not in index[2].numpy()
    exact = torch.einsum("bd,bkd->bk", states, vectors[index])
    torch.testing.assert_close(values, exact)
    assert (values[:, :-1] >= values[:, 1:]).all()  # best first


def test_topk_kind_auto_switches_to_int8_for_large_catalogs():
    assert resolve_kind("auto", 1_000) == "exact"
    assert resolve_kind("auto", 1_000_000) == "int8"
    assert resolve_kind("exact", 1_000_000) == "exact"  # the exact path stays selectable
    assert build_top_k(torch.zeros(10, 8), "int8").kind == "int8"
    assert ServeConfig().top_k == "auto"
    assert ServeConfig(top_k="exact").top_k == "exact"
