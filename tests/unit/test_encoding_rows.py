"""Compact encoded rows: the same rows as the dense matrix, in memory that does not grow
with the catalog (a million-item catalog made the dense matrix 10^7 x ~1,100 floats)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pyarrow as pa
import torch
from encoding_tables import CFG, make_table

from synthrec.encoding import Encoder
from synthrec.encoding.rows import CompactRows
from synthrec.gan.sampler import EncodedShard
from synthrec.schema import infer_schema


def catalog_table(n: int, num_items: int, seed: int = 0) -> pa.Table:
    """make_table with item ids drawn from a catalog of `num_items` (most of them distinct)."""
    table = make_table(n, seed)
    items = np.random.default_rng(seed).integers(0, num_items, n)
    return table.set_column(1, "item_id", pa.array(items, pa.int64()))


def test_encoding_rows_compact_equals_dense_transform():
    table = make_table(3_000)
    enc = Encoder.fit(table, infer_schema(table), CFG, seed=0)
    dense = enc.transform(table, seed=5)
    compact = enc.transform_compact(table, seed=5, chunk_rows=700)  # several chunks per codec
    np.testing.assert_array_equal(compact.dense(enc.spans), dense)
    np.testing.assert_array_equal(CompactRows.from_dense(dense, enc.spans).dense(enc.spans), dense)
    shard = EncodedShard(compact, enc)
    rows = torch.tensor([0, 2_999, 17, 17])
    torch.testing.assert_close(shard[rows], torch.from_numpy(dense[rows.numpy()]))
    mask = torch.from_numpy(np.arange(3_000) % 3 == 0)  # DP's Poisson sampling indexes by mask
    torch.testing.assert_close(shard[mask], torch.from_numpy(dense[mask.numpy()]))


def test_encoding_rows_memory_does_not_grow_with_the_catalog():
    """Bytes per encoded row stay flat from a 1,000- to a 20,000-id catalog, while the dense
    width grows ~sqrt(catalog); the encoding's peak allocation stays below the dense matrix."""
    sizes = {}
    for num_items in (1_000, 20_000):
        table = catalog_table(20_000, num_items)
        enc = Encoder.fit(table, infer_schema(table), CFG, seed=0)
        tracemalloc.start()
        compact = enc.transform_compact(table, seed=0, chunk_rows=1_024)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        stored = compact.codes.nbytes + compact.scalars.nbytes
        dense = table.num_rows * enc.output_dim * 4
        sizes[num_items] = (stored, peak, dense)
    (small, _, small_dense), (large, large_peak, large_dense) = sizes[1_000], sizes[20_000]
    assert large_dense > 1.5 * small_dense  # the dense matrix grows with the catalog ...
    assert large == small  # ... the compact rows do not
    assert large_peak < 0.5 * large_dense, sizes
