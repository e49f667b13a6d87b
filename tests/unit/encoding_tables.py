"""Tables and settings shared by the encoding tests."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from synthrec.config import EncoderConfig
from synthrec.encoding import Encoder
from synthrec.schema import infer_schema

# real ids kept, so round trips compare values; test_encoding_privacy uses PSEUDONYMS
CFG = EncoderConfig(
    mode_fit_rows=1_000, id_profile_rows=2_000, max_onehot_cardinality=16, id_policy="keep"
)
PSEUDONYMS = CFG.model_copy(update={"id_policy": "pseudonymize"})


def make_table(n: int = 3_000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    price = np.round(rng.lognormal(3, 1, n), 2)
    price_mask = rng.random(n) < 0.05
    genre = rng.choice(["a", "b", "c", "d"], n, p=[0.6, 0.25, 0.1, 0.05])
    return pa.table(
        {
            "user_id": pa.array([f"u{i}" for i in rng.integers(0, 300, n)]),
            "item_id": pa.array(rng.zipf(1.5, n) % 500, pa.int64()),
            "genre": pa.array(genre).dictionary_encode(),
            "brand": pa.array(
                [f"b{i}" for i in rng.integers(0, 40, n)]
            ),  # above the one-hot threshold
            "price": pa.array(price, mask=price_mask),
            "qty": pa.array(rng.integers(1, 4, n), pa.int32()),  # few levels -> one-hot
            "age": pa.array(rng.integers(18, 80, n), pa.int64()),  # many levels -> modes
            "when": pa.array(1_700_000_000_000_000 + rng.integers(0, 10**12, n), pa.int64()).cast(
                pa.timestamp("us")
            ),
            "click": pa.array(rng.integers(0, 2, n), pa.int64()),
        }
    )


def fit_table(cfg: EncoderConfig = CFG) -> tuple[pa.Table, Encoder]:
    table = make_table()
    return table, Encoder.fit(table, infer_schema(table, {"genre": "categorical"}), cfg)
