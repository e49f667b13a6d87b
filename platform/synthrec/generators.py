"""One interface over the generator kinds, so generation and serving never ask which they hold.

A generator model directory holds a row GAN (kind "row-gan": one table, counted in rows) or a
sequence model (kind "sequence": users with their events, counted in users). `load_generator`
reads the kind from the directory's header and wraps the model:

    gen = load_generator(uri)                       # RowGenerator | UserGenerator
    gen.unit                                        # "rows" | "users"
    part = gen.sample_block(i, n, seed)             # block i of n rows, or of n whole users

A block is always a flat table, one row per row (row GAN) or per event (sequence model, in
the training log's columns and types), determined by (seed, i, n, conditions, rebalance)
alone: Ray Data writes blocks as they are, so any split of them over workers gives the same
bytes. A user's events never straddle two blocks. `UserGenerator.nest` turns a flat block
into one row per user with the user's events as a list (what /v1/synthetic returns for
`unit: users`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec import model_dir
from synthrec.config import StorageConfig
from synthrec.errors import ModelError
from synthrec.storage import Manifest

Unit = Literal["rows", "users"]
UNIT_OF_KIND: dict[str, Unit] = {"row-gan": "rows", "sequence": "users"}
EVENTS = "events"  # the list column of a nested users table


@dataclass
class RowGenerator:
    """A row GAN (synthrec.gan.Synthesizer): blocks of rows."""

    synth: Any
    kind: ClassVar[str] = "row-gan"
    unit: ClassVar[Unit] = "rows"

    @property
    def metadata(self) -> dict[str, Any]:
        return self.synth.metadata

    def sample_block(self, block_index, count, seed, conditions=None, rebalance=None) -> pa.Table:
        return self.synth.sample_block(
            block_index, count, seed=seed, conditions=conditions, rebalance=rebalance
        )

    def sample_rows(self, count, seed, conditions=None, rebalance=None) -> pa.Table:
        return self.synth.sample(count, conditions=conditions, rebalance=rebalance, seed=seed)

    def units(self, table: pa.Table) -> int:
        """How many of this generator's units (rows) `table` holds."""
        return table.num_rows

    def conditionable_columns(self) -> list[str]:
        return self.synth.conditionable_columns()

    def columns(self) -> list[str]:
        return list(self.synth.encoder.schema.names)

    @property
    def schema(self) -> dict[str, Any]:
        """The schema of what it writes (its training table's), for the dataset manifest."""
        return self.synth.encoder.schema.to_dict()


@dataclass
class UserGenerator:
    """A sequence model (synthrec.sequences.SequenceSynthesizer): blocks of whole users, written
    flat (one row per event, the user id column naming each event's user)."""

    synth: Any
    kind: ClassVar[str] = "sequence"
    unit: ClassVar[Unit] = "users"

    @property
    def metadata(self) -> dict[str, Any]:
        return self.synth.metadata

    @property
    def user_column(self) -> str:
        return self.synth.encoder.user_col

    @property
    def schema(self) -> dict[str, Any]:
        """The schema of the flat log it writes (its training log's), for the manifest."""
        return self.synth.schema

    @property
    def user_columns(self) -> list[str]:
        """The users table's columns, the user id first."""
        return list(self.synth.encoder.structure["tables"]["users"])

    def sample_block(self, block_index, count, seed, conditions=None, rebalance=None) -> pa.Table:
        """Exactly `count` users with all their events, one row per event."""
        from synthrec.sequences.synthesizer import cast_like

        log = self.synth.sample_block(
            block_index, count, seed, conditions, self._rebalance(rebalance)
        )
        return cast_like(log.flatten(), self.synth.flat_types)

    def sample_users(self, count, seed, conditions=None, rebalance=None) -> pa.Table:
        """Exactly `count` users, flat (their events in order, user after user)."""
        return self.synth.sample_table(
            users=count, conditions=conditions, rebalance=self._rebalance(rebalance), seed=seed
        )

    def sample_rows(self, count, seed, conditions=None, rebalance=None) -> pa.Table:
        """Exactly `count` events, user after user; the last user's sequence is cut (users
        drawn in blocks sized from the mean user's length, not full blocks of 4,096)."""
        return self.synth.sample_table(
            events=count, conditions=conditions, rebalance=self._rebalance(rebalance), seed=seed
        )

    def units(self, table: pa.Table) -> int:
        """How many of this generator's units (users) a flat `table` holds."""
        return len(pc.unique(table.column(self.user_column)))

    def nest(self, flat: pa.Table) -> pa.Table:
        return nest_users(flat, self.user_columns)

    def conditionable_columns(self) -> list[str]:
        from synthrec.sequences.encoding import SESSION_FLAG

        enc = self.synth.encoder
        tables = enc.structure["tables"]
        events = [c for c in enc.event_field_names if c != SESSION_FLAG]
        return [*tables.get("users", [])[1:], enc.item_col, *tables.get("items", [])[1:], *events]

    def columns(self) -> list[str]:
        return list(self.synth.flat_types)

    def _rebalance(self, rebalance: dict | None) -> dict | None:
        """Rebalance targets in the catalog's own values: 'uniform' becomes an equal share
        of every value of the item attribute, and keys given as text ('1003', from a flag or
        JSON) are cast to the column's type. Columns outside the catalog pass unchanged (the
        model names them in its error)."""
        if not rebalance:
            return None
        items = self.synth.items
        out: dict[str, Any] = {}
        for col, target in rebalance.items():
            if col not in items.column_names:
                out[col] = target
                continue
            column = items.column(col)
            if target == "uniform":
                out[col] = {v: 1.0 for v in pc.unique(column).drop_null().to_pylist()}
            elif isinstance(target, dict):
                keys = pa.array([str(k) for k in target], pa.string())
                try:
                    cast = keys.cast(column.type).to_pylist()
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    cast = list(target)
                out[col] = {k: float(p) for k, p in zip(cast, target.values())}
            else:
                out[col] = target
        return out


Generator = RowGenerator | UserGenerator


def load_generator(
    uri: str,
    storage: StorageConfig | None = None,
    device: str = "cpu",
    manifest: Manifest | None = None,
    files: dict[str, bytes] | None = None,
) -> Generator:
    """The generator model at `uri`, whichever kind its header names. With `manifest` (read
    once by a driver), exactly that version is loaded; with `files` (that version's files,
    read and checked by a driver), nothing is read from storage."""
    kind = model_dir.read_kind(uri, storage, manifest=manifest, files=files)
    if kind == "row-gan":
        from synthrec.artifacts import load_synthesizer

        return RowGenerator(
            load_synthesizer(uri, storage, device=device, manifest=manifest, files=files)
        )
    if kind == "sequence":
        from synthrec.sequences.artifacts import load_sequence_model

        return UserGenerator(
            load_sequence_model(uri, storage, device=device, manifest=manifest, files=files)
        )
    raise ModelError(
        f"{uri} holds a {kind!r} model, not a generator; pass a directory written by "
        "`synthrec train-gan` (a row GAN or a sequence model)"
    )


def nest_users(flat: pa.Table, user_columns: list[str]) -> pa.Table:
    """One row per user, in order of first appearance: the user columns, then `events`, a list
    of the user's events (every other column) in their order in `flat`. Vectorized: one
    stable sort and one ListArray over it."""
    key = user_columns[0]
    if EVENTS in flat.column_names:
        raise ModelError(f"the log has a column named '{EVENTS}'; it cannot be nested by user")
    ids = flat.column(key).combine_chunks()
    firsts = pc.unique(ids)
    index = pc.index_in(ids, value_set=firsts).to_numpy(zero_copy_only=False)
    order = np.argsort(index, kind="stable")
    counts = np.bincount(index, minlength=len(firsts))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    first_row = order[offsets[:-1]]
    event_cols = [c for c in flat.column_names if c not in user_columns]
    events = flat.select(event_cols).take(pa.array(order))
    structs = pa.StructArray.from_arrays(
        [events.column(c).combine_chunks() for c in event_cols], names=event_cols
    )
    users = flat.select([c for c in user_columns if c in flat.column_names]).take(first_row)
    return users.append_column(EVENTS, pa.ListArray.from_arrays(pa.array(offsets), structs))
