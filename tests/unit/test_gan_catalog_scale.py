"""Catalog-scale ids: >= 100,000 distinct items fit and sample with resident memory < 8 GiB,
and id memory grows with catalog size x embedding size, not with rows x catalog."""

from __future__ import annotations

import resource

import pyarrow.compute as pc
import pytest

from synthrec.config import GanConfig, SimulateConfig
from synthrec.data.simulator import simulate, simulated_schema
from synthrec.gan import Synthesizer


@pytest.mark.slow
def test_gan_catalog_scale_fit_and_sample_under_8_gib():
    table = simulate(SimulateConfig(rows=500_000, num_items=300_000, num_users=20_000, seed=0))
    num_items = pc.count_distinct(table["item_id"]).as_py()
    assert num_items >= 100_000
    cfg = GanConfig(batch_size=1_000, sample_batch_rows=20_000)
    synth = Synthesizer().fit(table, simulated_schema(), cfg=cfg, time_budget_s=60)
    ids = synth.encoder.codec("item_id")
    assert ids.vectors.shape == (num_items, cfg.encoder.id_embedding_dim)
    assert synth.encoder.output_dim < 2_000  # no one-hot over 10^5 items
    out = synth.sample(100_000, seed=0, conditions={"category": table["category"][0].as_py()})
    assert out.num_rows == 100_000 and pc.count_distinct(out["item_id"]).as_py() > 1_000
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    assert peak_gib < 8, f"peak resident memory {peak_gib:.2f} GiB"
