"""Decoding on the generator's device (torch ops, `device` as a parameter) draws from the
same distribution as the numpy path: run here with device="cpu", the code a GPU runs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from scipy.stats import chi2_contingency
from test_gan_synthesizer import CFG, make_table

from synthrec.encoding.id_search import IdTable, gumbel_draw, gumbel_draw_torch
from synthrec.gan import Synthesizer

CPU = torch.device("cpu")


def same_distribution(a: np.ndarray, b: np.ndarray) -> bool:
    """Two samples of codes from one distribution: chi-square test of homogeneity, p > 0.001
    (codes seen fewer than 5 times in both pooled into one cell)."""
    size = int(max(a.max(), b.max())) + 1
    counts = np.stack([np.bincount(a, minlength=size), np.bincount(b, minlength=size)])
    rare = counts.sum(0) < 10
    cells = np.column_stack([counts[:, ~rare], counts[:, rare].sum(1)])
    cells = cells[:, cells.sum(0) > 0]
    return cells.shape[1] < 2 or chi2_contingency(cells).pvalue > 1e-3


def id_table(num_ids: int = 300, dim: int = 4) -> IdTable:
    rng = np.random.default_rng(0)
    vectors = rng.uniform(-0.5, 0.5, (num_ids, dim)).astype(np.float32)
    group = rng.integers(0, 3, num_ids)  # three groups of ~100 ids (wider than 64 candidates)
    log_w = rng.normal(0, 0.5, num_ids).astype(np.float32)
    allowed = np.ones(num_ids, bool)
    return IdTable.build(group, np.arange(num_ids), 3, vectors, log_w, 25.0, [], allowed)


def test_device_decode_id_search_matches_numpy_in_distribution():
    table, n = id_table(), 30_000
    rng = np.random.default_rng(1)
    query = np.repeat(rng.uniform(-0.3, 0.3, (3, 4)).astype(np.float32), n // 3, axis=0)
    group = np.repeat(np.arange(3), n // 3)
    host = table.pick(group, query, [], np.random.default_rng(2))
    device = table.pick(group, query, [], np.random.default_rng(2), CPU)
    assert same_distribution(host, device)
    assert not np.array_equal(host, device)  # two different random streams, one distribution
    nearest_host = table.pick(group, query, [], None)
    np.testing.assert_array_equal(table.pick(group, query, [], None, CPU), nearest_host)


def test_device_decode_gumbel_draws_match_softmax():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05] + [1e-6] * 80, np.float32))
    score = np.tile(logits, (40_000, 1))
    want = np.exp(logits[:4]) / np.exp(logits).sum()
    for drawn in (
        gumbel_draw(score, np.random.default_rng(0)),
        gumbel_draw_torch(torch.from_numpy(score), torch.Generator().manual_seed(0)).numpy(),
    ):
        got = np.bincount(drawn, minlength=84)[:4] / len(drawn)
        np.testing.assert_allclose(got, want, atol=0.01)


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    return Synthesizer().fit(make_table(), cfg=CFG, epochs=2)


def test_device_decode_category_draws_match_numpy(synth):
    raw = torch.randn(1, len(synth._layout.onehot_cols)).repeat(40_000, 1)
    host = synth._segment_argmax(raw.numpy(), np.random.default_rng(0))
    device = synth.segment_draw(raw, torch.Generator().manual_seed(0)).numpy()
    for span in range(host.shape[1]):
        assert same_distribution(host[:, span], device[:, span]), span


def test_device_decode_whole_sample_matches_numpy_path(synth, monkeypatch):
    host = synth.sample(20_000, seed=3, return_type="arrow")
    monkeypatch.setattr(Synthesizer, "_decode_device", property(lambda self: CPU))
    device = synth.sample(20_000, seed=3, return_type="arrow")
    for col in ("genre", "gender", "rating", "item_id"):
        both = pa.chunked_array(host[col].chunks + device[col].chunks).combine_chunks()
        codes = np.asarray(pc.dictionary_encode(both).indices)
        assert same_distribution(codes[: host.num_rows], codes[host.num_rows :]), col
    prices = [pc.mean(t["price"]).as_py() for t in (host, device)]
    assert abs(prices[0] - prices[1]) < 0.1 * abs(prices[0])
