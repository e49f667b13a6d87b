"""What an id codec may store and emit: keyed pseudonyms for user ids, a floor on text counts.

Pseudonyms: HMAC-SHA256 of the real id under a random 32-byte key drawn at fit time (never
from the seed, which is often 0 and written in configs). Strings become `u_` + 16 hex
characters, integers a 63-bit integer. The id codec keeps only the pseudonyms and the key,
so output ids are stable within a model, never a real id, and not reversible without the
key; the key is needed only to encode real rows again (training).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.encoding.arrow import plain
from synthrec.errors import DataError

KEY_BYTES = 32
PREFIX = "u_"
KEY_TRIES = 4  # fresh keys tried when pseudonyms collide with each other or with real ids


def pseudonyms(values: pa.Array, key: bytes) -> pa.Array:
    """The pseudonym of each value (C,), same order: strings for string ids, int64 otherwise."""
    is_string = pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
    digests = [
        hmac.new(key, str(v).encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        for v in values.to_pylist()
    ]  # one HMAC per distinct id, at fit time or per distinct id of an encoded table
    if is_string:
        return pa.array([PREFIX + d[:8].hex() for d in digests], pa.large_string())
    ints = np.array([int.from_bytes(d[:8], "big") >> 1 for d in digests], np.int64)
    return pa.array(ints, pa.int64())


def new_vocabulary(values: pa.Array, name: str) -> tuple[bytes, pa.Array]:
    """A fresh key and the pseudonyms (C,) of the real ids `values`, all distinct and none
    equal to a real id."""
    for _ in range(KEY_TRIES):
        key = secrets.token_bytes(KEY_BYTES)
        fake = pseudonyms(values, key)
        clash = pc.any(pc.is_in(fake, value_set=values.cast(fake.type))).as_py()
        if pc.count_distinct(fake).as_py() == len(fake) and not clash:
            return key, fake
    raise DataError(
        f"column '{name}': could not draw pseudonyms distinct from the real ids; "
        f"set encoder id_policy: keep for this table"
    )


def pseudonymize(col: pa.ChunkedArray, key: bytes) -> pa.ChunkedArray:
    """Real ids (n,) -> their pseudonyms, hashing each distinct id once (nulls stay null)."""
    col = plain(col)
    distinct = pc.unique(col).drop_null()
    return pseudonyms(distinct, key).take(pc.index_in(col, value_set=distinct))
