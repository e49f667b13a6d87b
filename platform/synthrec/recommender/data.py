"""Interaction tables -> index arrays for model F and the baselines. Vectorized; no torch.

An `InteractionEncoder` is fitted once on the real table. It fixes the column roles (user,
item, time, user features, item features, optional query), the item vocabulary (index 0 =
padding, items 1..I, I+1 = the user token) and the feature codecs.
`InteractionEncoder.encode(table)` turns any table with the same columns (real, synthetic, a
split) into a `Log`: rows grouped by user, in time order, ties in row order (the order of
`synthrec.data.splits`).

Model F reads a log through `windows(log, group, stop, max_len)`: a window ends at stream
position `stop` of the user's stream [USER, item_0, item_1, ...]; its output at the last slot
predicts item `stop`. The first slot always holds the user token, so user features are seen
even when a long history is cut.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.config import RecommenderConfig
from synthrec.errors import DataError, ModelError, SchemaError
from synthrec.schema import (
    TIME_NAMES,
    Kind,
    Role,
    Schema,
    infer_schema,
    kind_of,
    null_mask,
    time_column,
)

PAD = 0
QUERY_NAMES = ("query", "search", "search_query", "query_text")
POSITION_NAMES = ("position", "display_position", "rank_position", "slot")
ATTRIBUTE_MIN_PURITY = (
    0.99  # share of entities with one value for a column to count as their attribute
)


# ---------------------------------------------------------------------------- columns


@dataclass(frozen=True)
class Columns:
    """Which table column plays which part in model F."""

    user: str
    item: str
    time: str
    user_features: tuple[str, ...] = ()
    item_features: tuple[str, ...] = ()
    query: str | None = None
    label: str | None = None  # the first of `labels` (click): today's click AUC reads it
    labels: tuple[str, ...] = ()  # funnel order, weakest first: click, cart, purchase
    position: str | None = None  # display position: a training-only bias of the ranking heads
    positive_index: int = 0  # rows with labels[positive_index:] set are positive interactions

    @property
    def used(self) -> list[str]:
        names = [self.user, self.item, self.time, *self.user_features, *self.item_features]
        extra = [c for c in (self.query, self.label, self.position) if c]
        return names + extra + [c for c in self.labels if c not in extra]


def discover_columns(
    table: pa.Table, cfg: RecommenderConfig, schema: Schema | None = None
) -> Columns:
    """Column roles from the schema (inferred if None), refined by which columns are constant
    per user or per item. Config fields, when set, win over discovery."""
    if table.num_rows == 0:
        raise DataError("the real table is empty (0 rows); model F needs interactions")
    schema = schema or infer_schema(table)
    user, item = schema.column_of(Role.USER_ID), schema.column_of(Role.ITEM_ID)
    if not user or not item:
        raise SchemaError(
            f"model F needs a user id and an item id column; found user={user}, item={item} among "
            f"{', '.join(table.column_names)}; name them user_id/item_id or set their roles in "
            "the schema"
        )
    time = cfg.time_column or time_column(schema)
    if time is None or time not in table.column_names:
        raise SchemaError(
            f"no time column ({'configured ' + repr(time) if time else 'none found'}); set "
            f"time_column to a datetime or numeric column (tried {', '.join(TIME_NAMES)})"
        )
    # short queries look categorical to schema inference, so the name decides
    query = cfg.query_column or next(
        (
            c.name
            for c in schema.columns
            if c.name.lower() in QUERY_NAMES
            and c.role in (Role.TEXT, Role.CATEGORICAL)
            and c.kind == Kind.STRING
        ),
        None,
    )
    labels = (
        list(cfg.labels) if cfg.labels is not None else [c.name for c in schema.by_role(Role.LABEL)]
    )
    label = labels[0] if labels else None
    position = cfg.position_column or next(
        (
            c.name
            for c in schema.columns
            if c.name.lower() in POSITION_NAMES and c.kind in (Kind.INT, Kind.FLOAT)
        ),
        None,
    )
    positive_index = _positive_index(labels, cfg.positive_label)
    taken = {user, item, time, query, position, *labels}
    candidates = [
        c.name
        for c in schema.columns
        if c.role in (Role.CATEGORICAL, Role.NUMERIC) and c.name not in taken
    ]
    user_feats = (
        cfg.user_features
        if cfg.user_features is not None
        else _attributes_of(table, user, candidates)
    )
    item_feats = (
        cfg.item_features
        if cfg.item_features is not None
        else _attributes_of(table, item, candidates)
    )
    for name in [*user_feats, *item_feats, *[c for c in (query, position) if c], *labels]:
        if name not in table.column_names:
            raise SchemaError(
                f"feature column '{name}' is not in the table; columns: "
                f"{', '.join(table.column_names)}"
            )
    return Columns(
        user,
        item,
        time,
        tuple(user_feats),
        tuple(c for c in item_feats if c not in user_feats),
        query,
        label,
        tuple(labels),
        position,
        positive_index,
    )


def _positive_index(labels: list[str], positive_label: str | None) -> int:
    if positive_label is None:
        return 0
    if positive_label not in labels:
        raise SchemaError(
            f"positive_label '{positive_label}' is not a label column; label columns: "
            f"{', '.join(labels) or 'none'} (set labels, or leave positive_label unset)"
        )
    return labels.index(positive_label)


def _attributes_of(table: pa.Table, key: str, candidates: list[str]) -> list[str]:
    """Candidates that (almost) never change within one `key` value and are not constant overall."""
    keys = pc.dictionary_encode(table.column(key).combine_chunks()).indices.to_numpy()
    num_keys = int(keys.max()) + 1
    found = []
    for name in candidates:
        values = _codes(table.column(name))
        if values.max() == values.min():
            continue
        pairs = np.unique(keys.astype(np.int64) * (int(values.max()) + 1) + values)
        per_key = np.bincount(pairs // (int(values.max()) + 1), minlength=num_keys)
        if np.mean(per_key <= 1) >= ATTRIBUTE_MIN_PURITY:
            found.append(name)
    return found


def _codes(col: pa.ChunkedArray) -> np.ndarray:
    """Dense integer codes of a column's values (nulls get their own code)."""
    codes = pc.dictionary_encode(col.combine_chunks()).indices
    return pc.fill_null(codes, -1).to_numpy().astype(np.int64) + 1


# ---------------------------------------------------------------------------- feature codecs


@dataclass
class FeatureCodec:
    """Categorical columns -> vocabulary codes (0 = unknown or null); numeric -> standardized
    value plus a null flag. Plain data: travels in config.json."""

    categorical: dict[str, list[str]] = field(default_factory=dict)
    numeric: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def fit(cls, table: pa.Table, columns: tuple[str, ...]) -> FeatureCodec:
        codec = cls()
        for name in columns:
            col = table.column(name)
            if kind_of(col.type) in (Kind.INT, Kind.FLOAT) and not _few_levels(col):
                values = col.to_numpy(zero_copy_only=False).astype(np.float64)
                values = values[~null_mask(col)]
                mean, std = (
                    (float(values.mean()), float(values.std())) if len(values) else (0.0, 1.0)
                )
                codec.numeric[name] = (mean, std if std > 1e-12 else 1.0)
            else:
                uniq = pc.unique(pc.cast(col, pa.string()).drop_null()).to_pylist()
                codec.categorical[name] = sorted(uniq)
        return codec

    @property
    def cat_sizes(self) -> list[int]:
        return [len(v) + 1 for v in self.categorical.values()]

    @property
    def num_dim(self) -> int:
        return 2 * len(self.numeric)

    def encode(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(codes (N, C) int64, numerics (N, 2·M) float32: value, null flag)."""
        n = table.num_rows
        cats = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, (name, vocab) in enumerate(self.categorical.items()):
            index = pc.index_in(
                pc.cast(table.column(name), pa.string()), value_set=pa.array(vocab, pa.string())
            )
            cats[:, j] = pc.fill_null(index, -1).to_numpy() + 1
        nums = np.zeros((n, self.num_dim), dtype=np.float32)
        for j, (name, (mean, std)) in enumerate(self.numeric.items()):
            col = table.column(name)
            missing = null_mask(col)
            values = np.nan_to_num(col.to_numpy(zero_copy_only=False).astype(np.float64))
            nums[:, 2 * j] = np.where(missing, 0.0, (values - mean) / std)
            nums[:, 2 * j + 1] = missing
        return cats, nums

    def to_dict(self) -> dict[str, Any]:
        # Lists, not mappings: the column order is the embedding order, and JSON writers may
        # sort keys.
        return {
            "categorical": [[k, v] for k, v in self.categorical.items()],
            "numeric": [[k, *v] for k, v in self.numeric.items()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureCodec:
        if isinstance(data.get("categorical"), dict):  # written before feature order was kept
            raise ModelError(
                "this recommender was saved by an older synthrec whose feature order was lost; "
                "retrain it with this version"
            )
        return cls(
            {k: list(v) for k, v in data["categorical"]},
            {k: (float(mean), float(std)) for k, mean, std in data["numeric"]},
        )


def _few_levels(col: pa.ChunkedArray, max_levels: int = 12) -> bool:
    """Integer columns with few values (weekday, rating) embed better as categories."""
    return kind_of(col.type) == Kind.INT and len(pc.unique(col)) <= max_levels


# ---------------------------------------------------------------------------- logs


@dataclass
class Log:
    """Interactions grouped by user (contiguous), in time order within each group."""

    items: np.ndarray  # (N,) int64 item index 1..I
    offsets: np.ndarray  # (G+1,) int64 start of each group in `items`
    user_ids: pa.Array  # (G,) raw user id of each group
    user_cat: np.ndarray  # (G, Cu) int64 user feature codes
    user_num: np.ndarray  # (G, 2·Mu) float32 user numerics
    rows: np.ndarray  # (N,) int64 row of each entry in the encoded table
    labels: np.ndarray | None = None  # (N,) int64 0/1
    query: np.ndarray | None = None  # (N, Q) int64 hashed query tokens, 0 = none

    @property
    def num_groups(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def group_of(self) -> np.ndarray:
        """(N,) group of each entry."""
        return np.repeat(np.arange(self.num_groups), self.lengths)

    @property
    def position(self) -> np.ndarray:
        """(N,) position of each entry within its group (0 = the user's first)."""
        return np.arange(len(self.items)) - np.repeat(self.offsets[:-1], self.lengths)

    def locate_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(group, position) of the entries for the given table rows."""
        where = np.full(int(self.rows.max()) + 1, -1, dtype=np.int64)
        where[self.rows] = np.arange(len(self.rows))
        entries = where[rows]
        if (entries < 0).any():
            raise DataError(f"{int((entries < 0).sum())} requested rows are not in this log")
        return self.group_of[entries], self.position[entries]

    def prefix_items(self, group: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Items before `stop` in each group, CSR-style: (flat items, offsets (Q+1,))."""
        counts = stop.astype(np.int64)
        offsets = np.r_[0, np.cumsum(counts)]
        starts = np.repeat(self.offsets[group], counts)
        local = np.arange(offsets[-1]) - np.repeat(offsets[:-1], counts)
        return self.items[starts + local], offsets


@dataclass
class InteractionEncoder:
    """Columns, item vocabulary and feature codecs, fitted on the real table. Plain data."""

    columns: Columns
    item_ids: pa.Array  # (I,) raw ids; item index = position + 1
    item_codec: FeatureCodec
    user_codec: FeatureCodec
    item_cat: np.ndarray  # (I+1, Ci) attributes per item index (row 0 = padding)
    item_num: np.ndarray  # (I+1, 2·Mi)
    query_buckets: int = 0
    query_max_tokens: int = 0

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def user_token(self) -> int:
        return self.num_items + 1

    @classmethod
    def fit(
        cls, table: pa.Table, cfg: RecommenderConfig, schema: Schema | None = None
    ) -> InteractionEncoder:
        columns = discover_columns(table, cfg, schema)
        _check_ids(table, columns, "real table")
        item_ids = pc.unique(table.column(columns.item).combine_chunks()).sort()
        item_codec = FeatureCodec.fit(table, columns.item_features)
        user_codec = FeatureCodec.fit(table, columns.user_features)
        index = (
            pc.index_in(table.column(columns.item), value_set=item_ids).to_numpy().astype(np.int64)
            + 1
        )
        last_row = _last_row_per_key(index, len(item_ids) + 1)
        cats, nums = item_codec.encode(table.take(pa.array(np.maximum(last_row, 0))))
        cats[last_row < 0], nums[last_row < 0] = 0, 0.0  # padding row
        buckets = cfg.query_buckets if columns.query else 0
        return cls(
            columns,
            item_ids,
            item_codec,
            user_codec,
            cats,
            nums,
            buckets,
            cfg.query_max_tokens if columns.query else 0,
        )

    def item_index(
        self, values: pa.Array | pa.ChunkedArray | list, where: str = "input"
    ) -> np.ndarray:
        """Item indices 1..I of raw ids; unknown ids are a DataError naming a few."""
        if not isinstance(values, (pa.Array, pa.ChunkedArray)):
            values = pa.array(values)
        values = _cast_like(values, self.item_ids.type, where)
        index = pc.index_in(values, value_set=self.item_ids)
        if index.null_count:
            unknown = pc.unique(pc.filter(values, pc.is_null(index))).to_pylist()
            shown = ", ".join(map(repr, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
            raise DataError(
                f"{where}: {len(unknown)} item id(s) the model does not know ({shown}); "
                f"every item must appear in the real table the model was fitted on"
            )
        return pc.fill_null(index, -1).to_numpy().astype(np.int64) + 1

    def check_compatible(self, table: pa.Table, where: str) -> None:
        """Fail early when `table` lacks the real table's columns or types differ."""
        if table.num_rows == 0:
            raise DataError(f"{where} is empty (0 rows); provide interactions or leave it out")
        missing = [c for c in self.columns.used if c not in table.column_names]
        if missing:
            raise SchemaError(
                f"{where} lacks column(s) {', '.join(missing)} that the real table has; "
                f"generate it from a model fitted on the real table"
            )
        for name in self.columns.used:
            ref = self.item_ids.type if name == self.columns.item else None
            got = kind_of(table.column(name).type)
            if ref is not None and got != kind_of(ref):
                raise SchemaError(
                    f"{where} column '{name}' is {table.column(name).type}, "
                    f"the real table's is {ref}"
                )
        _check_ids(table, self.columns, where)

    def encode(self, table: pa.Table, where: str = "table", user_prefix: str | None = None) -> Log:
        """Group `table` by user in time order. `user_prefix` renames users (synthetic users
        must not merge into real users' sequences)."""
        self.check_compatible(table, where)
        cols = self.columns
        items = self.item_index(table.column(cols.item), where)
        users = table.column(cols.user).combine_chunks()
        if user_prefix is not None:
            users = pc.binary_join_element_wise(user_prefix, pc.cast(users, pa.string()), "")
        codes = pc.dictionary_encode(users)
        user_code = codes.indices.to_numpy().astype(np.int64)
        times = _time_values(table.column(cols.time), where, cols.time)
        order = np.lexsort((np.arange(table.num_rows), times, user_code))
        sorted_codes = user_code[order]
        starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
        first_rows = order[starts]
        user_cat, user_num = self.user_codec.encode(table.take(pa.array(first_rows)))
        labels = None
        if cols.label and cols.label in table.column_names:
            labels = _label_values(table.column(cols.label))[order]
        query = self.hash_queries(table.column(cols.query))[order] if cols.query else None
        return Log(
            items[order],
            np.r_[starts, len(order)].astype(np.int64),
            codes.dictionary.take(pa.array(sorted_codes[starts])),
            user_cat,
            user_num,
            order.astype(np.int64),
            labels,
            query,
        )

    def hash_queries(self, col: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """(N, Q) bucket ids 1..B of the first Q lower-cased tokens of each query (0 = none)."""
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        text = pc.utf8_trim_whitespace(pc.utf8_lower(pc.fill_null(pc.cast(col, pa.string()), "")))
        tokens = pc.utf8_split_whitespace(text)
        counts = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)
        lengths = np.minimum(counts, self.query_max_tokens)
        flat = pc.list_flatten(tokens)
        enc = pc.dictionary_encode(flat)
        # crc32 of each distinct token (a loop over the vocabulary, not over rows): stable across
        # processes, unlike hash(); the empty token of an empty query maps to 0 (no token)
        bucket_of = np.array(
            [
                zlib.crc32(t.encode()) % self.query_buckets + 1 if t else 0
                for t in enc.dictionary.to_pylist()
            ],
            dtype=np.int64,
        )
        buckets = bucket_of[enc.indices.to_numpy()] if len(flat) else np.zeros(0, np.int64)
        out = np.zeros((len(col), self.query_max_tokens), dtype=np.int64)
        row_start = np.r_[0, np.cumsum(counts)[:-1]]
        for j in range(self.query_max_tokens):
            has = lengths > j
            out[has, j] = buckets[row_start[has] + j]
        return out

    def to_dict(self) -> dict[str, Any]:
        c = self.columns
        return {
            "columns": {
                "user": c.user,
                "item": c.item,
                "time": c.time,
                "user_features": list(c.user_features),
                "item_features": list(c.item_features),
                "query": c.query,
                "label": c.label,
                "labels": list(c.labels),
                "position": c.position,
                "positive_index": c.positive_index,
            },
            "item_codec": self.item_codec.to_dict(),
            "user_codec": self.user_codec.to_dict(),
            "query_buckets": self.query_buckets,
            "query_max_tokens": self.query_max_tokens,
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], item_ids: pa.Array, item_cat: np.ndarray, item_num: np.ndarray
    ) -> InteractionEncoder:
        c = data["columns"]
        columns = Columns(
            c["user"],
            c["item"],
            c["time"],
            tuple(c["user_features"]),
            tuple(c["item_features"]),
            c["query"],
            c["label"],
            tuple(c.get("labels", [c["label"]] if c["label"] else [])),
            c.get("position"),
            int(c.get("positive_index", 0)),
        )
        return cls(
            columns,
            item_ids,
            FeatureCodec.from_dict(data["item_codec"]),
            FeatureCodec.from_dict(data["user_codec"]),
            item_cat,
            item_num,
            int(data["query_buckets"]),
            int(data["query_max_tokens"]),
        )

    def describe(self) -> str:
        return json.dumps(self.to_dict()["columns"])


def _check_ids(table: pa.Table, columns: Columns, where: str) -> None:
    for name in (columns.user, columns.item, columns.time):
        if name not in table.column_names:
            raise SchemaError(f"{where} lacks column '{name}'")
        nulls = table.column(name).null_count
        if nulls:
            raise DataError(
                f"{where} column '{name}': {nulls} nulls; every interaction needs a {name}"
            )


def _cast_like(values: pa.Array | pa.ChunkedArray, target: pa.DataType, where: str):
    if values.type == target:
        return values
    if kind_of(values.type) == kind_of(target) or len(values) == 0:
        return pc.cast(values, target)
    if pa.types.is_string(target) or pa.types.is_large_string(target):
        return pc.cast(values, target)  # ints given for string ids: compare as text
    try:
        return pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(
            f"{where}: item ids of type {values.type} cannot match the model's {target} ids"
        ) from None


def _time_values(col: pa.ChunkedArray, where: str, name: str) -> np.ndarray:
    if pa.types.is_timestamp(col.type):
        return pc.cast(col, pa.int64()).to_numpy()
    if pa.types.is_date(col.type):
        return pc.cast(pc.cast(col, pa.timestamp("s")), pa.int64()).to_numpy()
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        return col.to_numpy()
    raise DataError(
        f"{where} time column '{name}' has type {col.type}; needs numbers or timestamps"
    )


def _label_values(col: pa.ChunkedArray) -> np.ndarray:
    if kind_of(col.type) == Kind.STRING:
        values = pc.cast(col, pa.string()).to_numpy(zero_copy_only=False)
        return np.isin(values, ["1", "true", "True", "yes"]).astype(np.int64)
    return np.nan_to_num(col.to_numpy(zero_copy_only=False).astype(np.float64)).astype(np.int64)


def label_matrix(table: pa.Table, columns: Columns, where: str = "table") -> np.ndarray:
    """(N, K) int64 funnel labels in table order, weakest first. A stronger label implies the
    weaker ones (a purchase was clicked and carted), so each row is made cumulative; values
    other than 0/1 (or true/false) are a DataError naming the column."""
    out = np.zeros((table.num_rows, len(columns.labels)), dtype=np.int64)
    for j, name in enumerate(columns.labels):
        col = table.column(name)
        if kind_of(col.type) == Kind.STRING:
            text = pc.utf8_lower(pc.cast(col, pa.string())).to_numpy(zero_copy_only=False)
            bad = ~np.isin(text, ["0", "1", "true", "false"]) & ~null_mask(col)
            values = np.isin(text, ["1", "true"])
        else:
            raw = np.nan_to_num(col.to_numpy(zero_copy_only=False).astype(np.float64))
            bad, values = ~np.isin(raw, [0.0, 1.0]), raw == 1.0
        if bad.any():
            shown = ", ".join(map(repr, pc.unique(col.filter(pa.array(bad))).to_pylist()[:5]))
            raise DataError(
                f"{where} label column '{name}': values {shown} are not binary (0/1); map "
                "behaviours (pv/cart/buy) to ordered 0/1 label columns first"
            )
        out[:, j] = values
    # cumulative from the strongest label down: purchase -> cart -> click
    return np.maximum.accumulate(out[:, ::-1], axis=1)[:, ::-1] if out.shape[1] else out


def positive_rows(table: pa.Table, columns: Columns, where: str = "table") -> np.ndarray:
    """(N,) bool: rows whose labels from `positive_index` on hold (click or stronger); every
    row when the table has no label column."""
    if not columns.labels:
        return np.ones(table.num_rows, dtype=bool)
    return label_matrix(table, columns, where)[:, columns.positive_index :].any(axis=1)


def _last_row_per_key(keys: np.ndarray, num_keys: int) -> np.ndarray:
    """(num_keys,) index of the last row holding each key, -1 where none."""
    last = np.full(num_keys, -1, dtype=np.int64)
    last[keys] = np.arange(len(keys))  # later rows overwrite earlier ones
    return last


# ---------------------------------------------------------------------------- windows


@dataclass
class Windows:
    """Model inputs: one row per window."""

    tokens: np.ndarray  # (W, T) int64: 0 pad, 1..I items, I+1 user token
    targets: np.ndarray  # (W, T) int64: next item per slot, 0 = no loss
    user_cat: np.ndarray  # (W, Cu)
    user_num: np.ndarray  # (W, 2·Mu)
    query: np.ndarray | None = None  # (W, T, Q)

    def __len__(self) -> int:
        return len(self.tokens)


def windows(
    log: Log, group: np.ndarray, stop: np.ndarray, max_len: int, user_token: int
) -> Windows:
    """Windows ending at stream position `stop` (the user's stream is [USER, item_0, item_1, ...]).

    Slot s holds stream position q = stop - T + 1 + s; its target is item q. Slot 0 always holds
    the user token; when the window does not reach the stream start, slot 0 has no target."""
    T = max_len
    n = log.lengths[group][:, None]  # (W, 1)
    q = stop[:, None] - T + 1 + np.arange(T)[None, :]  # (W, T) stream positions
    base = log.offsets[group][:, None]
    item_at = np.clip(base + q - 1, 0, max(len(log.items) - 1, 0))
    tokens = np.where(
        q < 0, PAD, np.where(q == 0, user_token, log.items[item_at] if len(log.items) else PAD)
    )
    target_at = np.clip(base + q, 0, max(len(log.items) - 1, 0))
    has_target = (q >= 0) & (q < n)
    targets = np.where(has_target, log.items[target_at] if len(log.items) else 0, 0)
    cut = q[:, 0] > 0  # window starts after the stream start: slot 0 becomes the user token
    tokens[:, 0] = np.where(cut, user_token, tokens[:, 0])
    targets[:, 0] = np.where(cut, 0, targets[:, 0])
    query = None
    if log.query is not None:
        query = np.where(has_target[..., None], log.query[target_at], 0)
    return Windows(
        tokens.astype(np.int64),
        targets.astype(np.int64),
        log.user_cat[group],
        log.user_num[group],
        query,
    )


def training_windows(log: Log, max_len: int, user_token: int) -> Windows:
    """Windows that cover every entry of `log` exactly once as a target: per user, the last
    window ends at the last entry, earlier ones step back by T-1 (slot 0 is the user token)."""
    T = max_len
    n = log.lengths
    step = T - 1
    # windows per user: stops n-1, n-1-step, ... until one reaches the stream start (stop <= T-1)
    count = np.where(n <= T, 1, 1 + np.ceil((n - T) / step)).astype(np.int64)
    group = np.repeat(np.arange(log.num_groups), count)
    k = np.arange(len(group)) - np.repeat(np.r_[0, np.cumsum(count)[:-1]], count)
    stop = np.maximum(n[group] - 1 - k * step, 0)
    return windows(log, group, stop, T, user_token)


def concat_windows(parts: list[Windows]) -> Windows:
    query = (
        None if any(p.query is None for p in parts) else np.concatenate([p.query for p in parts])
    )
    fields = ("tokens", "targets", "user_cat", "user_num")
    return Windows(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields), query=query)
