"""What the encoder stores and emits: pseudonymous user ids, no rare free-text values."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from encoding_tables import PSEUDONYMS, fit_table

from synthrec.encoding import Encoder
from synthrec.schema import infer_schema


@pytest.fixture(scope="module")
def fitted():
    return fit_table(PSEUDONYMS)


def random_parts(enc: Encoder, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.uniform(-1, 1, (n, s.size)) if s.kind == "scalar" else rng.integers(0, s.size, n)
        for s in enc.spans
    ]


def test_encoding_user_ids_are_pseudonyms_stable_within_a_model_and_never_real(fitted):
    table, enc = fitted
    real = set(table["user_id"].to_pylist())
    back = enc.inverse_transform(enc.transform(table))["user_id"].to_pylist()
    assert all(re.fullmatch(r"u_[0-9a-f]{16}", u) for u in back) and not real & set(back)
    # one pseudonym per real id, the same for every row of that id
    pairs = set(zip(table["user_id"].to_pylist(), back))
    assert len(pairs) == len(real) == len(set(back))
    drawn = enc.decode(random_parts(enc, 2_000, 0), rng=np.random.default_rng(0))
    assert not real & set(drawn["user_id"].to_pylist())
    # the model stores pseudonyms and the key, never a real user id
    meta, arrays = enc.state()
    stored = arrays["user_id.values.data"].tobytes()
    assert all(f"{u}".encode() not in stored for u in list(real)[:50])
    again = Encoder.from_state(meta, arrays)  # stable within the model, after a reload
    assert again.inverse_transform(enc.transform(table))["user_id"].to_pylist() == back
    assert again.transform(table).tobytes() == enc.transform(table).tobytes()
    other = fit_table(PSEUDONYMS)[1]  # another fit: another random key, other pseudonyms
    assert not set(other.inverse_transform(other.transform(table))["user_id"].to_pylist()) & set(
        back
    )
    assert enc.privacy()["user_id_policy"] == {"user_id": "pseudonymize"}


def test_encoding_integer_user_ids_become_int64_pseudonyms_and_keep_is_explicit():
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "user_id": pa.array(rng.integers(0, 200, 3_000), pa.int32()),
            "genre": pa.array(rng.choice(["a", "b"], 3_000)),
        }
    )
    enc = Encoder.fit(table, infer_schema(table), PSEUDONYMS)
    out = enc.decode(random_parts(enc, 1_000, 1), rng=np.random.default_rng(1))
    assert out.schema.field("user_id").type == pa.int64()
    assert not set(out["user_id"].to_pylist()) & set(table["user_id"].to_pylist())
    keep = PSEUDONYMS.model_copy(update={"id_policy": "keep"})
    enc = Encoder.fit(table, infer_schema(table), keep)
    out = enc.decode(random_parts(enc, 1_000, 1), rng=np.random.default_rng(1))
    assert out.schema == table.schema
    assert set(out["user_id"].to_pylist()) <= set(table["user_id"].to_pylist())
    assert enc.privacy()["user_id_policy"] == {"user_id": "keep"}


def query_table(n: int = 4_000) -> pa.Table:
    """Common queries (tied to a category) and rare ones (1-4 rows each)."""
    rng = np.random.default_rng(2)
    common = [f"cheap shoes size {i}" for i in range(30)]
    queries = list(rng.choice(common, n - 60))
    rare = [f"my name is person {i} at home" for i in range(20)]
    queries += [q for i, q in enumerate(rare) for _ in range(1 + i % 4)][:60]
    queries += common[:1] * (60 - (len(queries) - (n - 60)))
    category = [int(q.split()[-1]) % 5 if q in common else 9 for q in queries]
    return pa.table(
        {
            "query": pa.array(queries),
            "category": pa.array(category, pa.int64()),
            "price": pa.array(rng.lognormal(2, 1, n)),
        }
    )


def test_encoding_rare_text_values_are_never_stored_or_emitted():
    table = query_table()
    schema = infer_schema(table, {"query": "text", "category": "categorical"})
    counts = dict(zip(*[c.to_pylist() for c in pc.value_counts(table["query"]).flatten()]))
    rare = {q for q, c in counts.items() if c < PSEUDONYMS.min_text_count}
    assert rare and PSEUDONYMS.min_text_count == 5
    enc = Encoder.fit(table, schema, PSEUDONYMS)
    codec = enc.codec("query")
    assert codec.meta["withheld_values"] == len(rare)
    assert enc.privacy()["text_min_count"]["query"] == {
        "min_count": 5,
        "withheld_values": len(rare),
        "withheld_rows": sum(counts[q] for q in rare),
    }
    _, arrays = enc.state()
    assert b"my name is" not in arrays["query.values.data"].tobytes()
    for rng in (np.random.default_rng(3), None):  # draws (sampling) and nearest ids
        out = enc.decode(random_parts(enc, 5_000, 3), rng=rng)
        assert not rare & set(out["query"].to_pylist())
    back = enc.inverse_transform(enc.transform(table))["query"].to_pylist()
    assert not rare & set(back)
    kept = [q for q in back if q is not None]
    assert set(kept) <= set(counts) - rare and len(kept) >= 0.9 * len(back)
