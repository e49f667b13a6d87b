"""Reversible encoding of a relational log for the sequence generator (no nn.Module, no Ray).

A log (synthrec.data.relational.RelationalLog) becomes, per user, a sequence of steps. Each
step (one event) is a few small integers:

- `gap`: the time since the user's previous event, in bins: bin 0 is "same second" (ties are
  common: a user rating a page of films at once), the others are quantiles of log(1 + gap)
  over the training gaps; decoding draws uniformly in log space inside the bin;
- `item`: the item's row in the catalog (its attributes come from the catalog, so item ->
  attribute dependencies hold exactly);
- one code per other event column (session break, query, behaviour, position, rating...):
  categorical columns keep their `MAX_VOCAB` most frequent values (the rest share a "rare"
  class that decodes by drawing among the rare values by frequency, so ids stay real values);
  numeric columns with more than `MAX_LEVELS` values are quantile-binned and decode uniformly
  inside their bin; nulls have a class of their own.

A session column is not generated as ids: each step carries a "new session" flag, and
decoding numbers the sessions of each synthetic user.

The users table (attributes, plus the number of events and the time of the first event,
which the user model generates with the attributes) conditions the sequence: each attribute is
coded like an event column and the sequence model adds their embeddings to every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.data.derived import epoch_seconds, time_unit
from synthrec.data.relational import RelationalLog
from synthrec.errors import DataError

MAX_VOCAB = 2_000  # most frequent values of a categorical column kept as classes
MAX_LEVELS = 64  # a numeric column with at most this many values is treated as categorical
NUM_BINS = 32  # quantile bins of a numeric column / of log time gaps
FINE = 512  # quantiles of the log time gaps kept to decode inside a bin
LENGTH_COL = "__events"  # users table: number of events of the user
START_COL = "__start"  # users table: the user's first event time, epoch seconds
SESSION_FLAG = "__new_session"


@dataclass
class FieldCodec:
    """One column <-> small integer codes. kind: "category" (values are the classes, the last
    but one is "rare", the last "null") or "bins" (edges of quantile bins, last class "null")."""

    name: str
    kind: str
    values: list[Any] = field(default_factory=list)  # category: kept values
    rare_values: list[Any] = field(default_factory=list)
    rare_weights: list[float] = field(default_factory=list)
    edges: list[float] = field(default_factory=list)  # bins: NUM_BINS + 1 edges
    integer: bool = False
    arrow_type: str = "string"
    has_null: bool = True  # the training column had nulls (models saved before: assume so)

    @property
    def num_classes(self) -> int:
        return len(self.values) + 2 if self.kind == "category" else len(self.edges) + 1

    def drawable(self) -> np.ndarray:
        """(num_classes,) bool: the classes that stand for something the training column held
        (no null class for a column without nulls, no "rare" class without rare values)."""
        ok = np.ones(self.num_classes, bool)
        ok[-1] = self.has_null
        if self.kind == "category":
            ok[-2] = bool(self.rare_values)
        return ok

    @classmethod
    def fit(cls, col: pa.ChunkedArray | pa.Array, name: str) -> FieldCodec:
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        numeric = pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
        counts = pc.value_counts(col.drop_null())
        num_values = len(counts)
        if numeric and num_values > MAX_LEVELS:
            x = col.drop_null().to_numpy(zero_copy_only=False).astype(np.float64)
            edges = np.unique(np.quantile(x, np.linspace(0, 1, NUM_BINS + 1)))
            if len(edges) < 2:
                edges = np.array([x.min(), x.min() + 1.0])
            return cls(
                name,
                "bins",
                edges=edges.tolist(),
                integer=pa.types.is_integer(col.type),
                arrow_type=str(col.type),
                has_null=col.null_count > 0,
            )
        values = counts.field("values").to_pylist()
        freq = counts.field("counts").to_numpy().astype(np.float64)
        order = np.argsort(-freq, kind="stable")
        keep, rare = order[:MAX_VOCAB], order[MAX_VOCAB:]
        return cls(
            name,
            "category",
            values=[values[i] for i in keep],
            rare_values=[values[i] for i in rare],
            rare_weights=(freq[rare] / freq[rare].sum()).tolist() if len(rare) else [],
            arrow_type=str(col.type),
            has_null=col.null_count > 0,
        )

    def encode(self, col: pa.ChunkedArray | pa.Array) -> np.ndarray:
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        null = col.is_null().to_numpy(zero_copy_only=False)
        if self.kind == "bins":
            x = pc.fill_null(col.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False)
            codes = np.clip(
                np.searchsorted(self.edges, x, side="right") - 1, 0, len(self.edges) - 2
            )
        else:
            index = pc.index_in(col, value_set=pa.array(self.values, col.type))
            codes = pc.fill_null(index, len(self.values)).to_numpy(zero_copy_only=False)
        codes = codes.astype(np.int64)
        codes[null] = self.num_classes - 1
        return codes

    def decode(self, codes: np.ndarray, rng: np.random.Generator) -> pa.Array:
        null = codes == self.num_classes - 1
        if self.kind == "bins":
            edges = np.asarray(self.edges)
            b = np.minimum(codes, len(edges) - 2)
            x = edges[b] + rng.random(len(codes)) * (edges[b + 1] - edges[b])
            if self.integer:
                x = np.floor(x)
            out = pa.array(x, mask=null).cast(pa.type_for_alias(self.arrow_type))
            return out
        kept = len(self.values)
        index = np.where(codes < kept, codes, 0)
        values = pa.array(self.values + [None], _arrow_type(self.arrow_type))
        out = values.take(pa.array(np.where(null, kept, index)))
        rare = codes == kept
        if rare.any():
            if self.rare_values:
                pick = rng.choice(len(self.rare_values), int(rare.sum()), p=self.rare_weights)
                rare_vals = pa.array(self.rare_values, out.type).take(pa.array(pick))
            else:  # never seen rare values: fall back to the most frequent kept value
                rare_vals = values.take(pa.array(np.zeros(int(rare.sum()), np.int64)))
            merged = np.empty(len(codes), np.int64)
            merged[~rare] = np.arange(int((~rare).sum()))
            merged[rare] = int((~rare).sum()) + np.arange(int(rare.sum()))
            both = pa.concat_arrays([out.filter(pa.array(~rare)), rare_vals])
            out = both.take(pa.array(merged))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _arrow_type(alias: str) -> pa.DataType:
    try:
        return pa.type_for_alias(alias)
    except ValueError:
        return pa.string()


@dataclass
class GapCodec:
    """Time gaps (seconds, >= 0) <-> bins: bin 0 is a zero gap, bins 1.. quantiles of log1p.
    Decoding follows the training gaps inside a bin too (their finer quantiles, `fine`), not a
    uniform spread over the bin: the top bin spans days to weeks."""

    edges: list[float]  # log1p edges of the positive gaps
    fine: list[float] = field(default_factory=list)  # FINE + 1 quantiles of the same values

    @property
    def num_classes(self) -> int:
        return len(self.edges)  # 1 zero bin + len(edges) - 1 positive bins

    @classmethod
    def fixed(cls, span_s: float) -> GapCodec:
        """Bins of a DP fit: NUM_BINS - 1 even steps of log(1 + gap) from 0 to the public
        time span `span_s`, decoded log-uniformly inside a bin (nothing read from the gaps)."""
        top = float(np.log1p(max(span_s, 1.0)))
        return cls(np.linspace(0.0, top, NUM_BINS).tolist())

    @classmethod
    def fit(cls, gaps: np.ndarray) -> GapCodec:
        pos = np.log1p(gaps[gaps > 0])
        if len(pos) == 0:
            return cls([0.0, 1.0])
        edges = np.unique(np.quantile(pos, np.linspace(0, 1, NUM_BINS)))
        if len(edges) < 2:
            edges = np.array([edges[0], edges[0] + 1e-6])
        return cls(edges.tolist(), np.quantile(pos, np.linspace(0, 1, FINE + 1)).tolist())

    def encode(self, gaps: np.ndarray) -> np.ndarray:
        b = np.searchsorted(self.edges, np.log1p(np.maximum(gaps, 0)), side="right")
        b = np.clip(b, 1, len(self.edges) - 1)
        return np.where(gaps <= 0, 0, b).astype(np.int64)

    def decode(self, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        edges = np.asarray(self.edges)
        b = np.clip(codes, 1, len(edges) - 1)
        lo, hi = edges[b - 1], edges[b]
        u = rng.random(len(codes))
        if len(self.fine) > 1:  # inverse CDF of the training gaps, restricted to the bin
            fine = np.asarray(self.fine)
            grid = np.arange(len(fine), dtype=np.float64)
            i_lo, i_hi = np.interp(lo, fine, grid), np.interp(hi, fine, grid)
            x = np.interp(i_lo + u * (i_hi - i_lo), grid, fine)
        else:
            x = lo + u * (hi - lo)
        return np.where(codes == 0, 0.0, np.maximum(np.expm1(x), 0.0))


DP_MAX_SESSIONS = 100_000  # session id spacing of a DP fit (the real most-sessions is private)


@dataclass(frozen=True)
class PublicBounds:
    """What a DP fit of the encoder reads instead of the rows: the log's time span (epoch
    seconds) and the range of events per user, both public (privacy.bounds)."""

    time: tuple[float, float]
    events: tuple[float, float]

    @property
    def span_s(self) -> float:
        return self.time[1] - self.time[0]

    def bins(self, name: str, bounds: tuple[float, float], users: pa.Table) -> FieldCodec:
        """NUM_BINS even bins over `bounds` (values outside fall in the end bins)."""
        col = users.column(name)
        return FieldCodec(
            name,
            "bins",
            edges=np.linspace(bounds[0], bounds[1], NUM_BINS + 1).tolist(),
            integer=pa.types.is_integer(col.type),
            arrow_type=str(col.type),
            has_null=False,
        )


@dataclass
class Sequences:
    """Encoded events, grouped by user (users in users-table order, events in time order)."""

    offsets: np.ndarray  # (U+1,) event offsets per user
    gap: np.ndarray  # (E,) gap codes
    item: np.ndarray  # (E,) catalog row
    fields: np.ndarray  # (E, F) event field codes
    user: np.ndarray  # (U, A) user attribute codes

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1


@dataclass
class SequenceEncoder:
    """Fitted on one RelationalLog; encodes logs of the same structure and decodes samples."""

    structure: dict[str, Any]  # RelationalLog.to_dict()
    time_unit: str
    time_type: str
    gap: GapCodec
    fields: list[FieldCodec]  # event columns (the session column becomes SESSION_FLAG)
    users: list[FieldCodec]  # user attributes, then LENGTH_COL and START_COL
    session_col: str | None
    session_type: str | None
    user_type: str
    time_range: tuple[float, float] = (0.0, 0.0)  # first and last event time, epoch seconds
    max_sessions: int = 1  # most sessions of one user (integer session ids are spaced by it)

    @property
    def user_col(self) -> str:
        return self.structure["user_col"]

    @property
    def item_col(self) -> str:
        return self.structure["item_col"]

    @property
    def time_col(self) -> str:
        return self.structure["time_col"]

    @property
    def event_field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    # -- fitting ----------------------------------------------------------------------------
    @classmethod
    def fit(
        cls, log: RelationalLog, public: PublicBounds | None = None
    ) -> tuple[SequenceEncoder, Sequences, pa.Table]:
        """The encoder, the encoded log and the users table the user model learns (attributes,
        LENGTH_COL, START_COL; the user key dropped). `public` (a DP fit): the time gaps, the
        events per user and the first event times are binned over those public bounds, the
        time range and the session spacing come from them, nothing from the rows; the other
        columns' value lists must be public (synthrec.privacy.check_sequence_accounted)."""
        require_sequence_log(log)
        events, starts, seconds = _sorted_events(log)
        gaps = _gaps(seconds, starts)
        session_col = log.event_cols.get("session")
        if session_col not in events.column_names:
            session_col = None
        flag = _session_flags(events, session_col, starts)
        users_table = _users_table(log, events, starts, seconds)
        event_cols = [
            c
            for c in events.column_names
            if c not in (log.user_col, log.item_col, log.time_col, session_col)
        ]
        field_codecs = [FieldCodec.fit(events.column(c), c) for c in event_cols]
        if flag is not None:
            field_codecs.insert(
                0, FieldCodec(SESSION_FLAG, "category", values=[False, True], has_null=False)
            )
        user_codecs = [FieldCodec.fit(users_table.column(c), c) for c in users_table.column_names]
        time_range = (float(seconds.min()), float(seconds.max()))
        max_sessions = int(_sessions_per_user(flag, starts).max()) if flag is not None else 1
        gap = GapCodec.fit(gaps) if public is None else GapCodec.fixed(public.span_s)
        if public is not None:
            user_codecs[-2:] = [
                public.bins(LENGTH_COL, public.events, users_table),
                public.bins(START_COL, public.time, users_table),
            ]
            time_range, max_sessions = public.time, DP_MAX_SESSIONS
        enc = cls(
            structure=log.to_dict(),
            time_unit=time_unit(log.events.column(log.time_col)) or "s",
            time_type=str(log.events.schema.field(log.time_col).type),
            gap=gap,
            fields=field_codecs,
            users=user_codecs,
            session_col=session_col,
            session_type=(str(events.schema.field(session_col).type) if session_col else None),
            user_type=str(log.events.schema.field(log.user_col).type),
            time_range=time_range,
            max_sessions=max_sessions,
        )
        return enc, enc._encode(log, events, starts, gaps, flag, users_table), users_table

    def encode(self, log: RelationalLog) -> Sequences:
        require_sequence_log(log)
        events, starts, seconds = _sorted_events(log)
        col = self.session_col
        flag = _session_flags(events, col, starts) if col else None
        users_table = _users_table(log, events, starts, seconds)
        return self._encode(log, events, starts, _gaps(seconds, starts), flag, users_table)

    def _encode(self, log, events, starts, gaps, flag, users_table) -> Sequences:
        items = log.require_items().column(0).combine_chunks()
        item = pc.index_in(events.column(log.item_col), value_set=items)
        if item.null_count:
            raise DataError(f"{item.null_count} events have an item missing from the catalog")
        codes = []
        for f in self.fields:
            if f.name == SESSION_FLAG:
                codes.append(flag.astype(np.int64))
            else:
                codes.append(f.encode(events.column(f.name)))
        user_codes = [f.encode(users_table.column(f.name)) for f in self.users]
        num_users = len(starts)
        return Sequences(
            offsets=np.r_[starts, len(gaps)].astype(np.int64),
            gap=self.gap.encode(gaps),
            item=item.to_numpy(zero_copy_only=False).astype(np.int64),
            fields=np.stack(codes, 1) if codes else np.zeros((len(gaps), 0), np.int64),
            user=(np.stack(user_codes, 1) if user_codes else np.zeros((num_users, 0), np.int64)),
        )

    # -- decoding ---------------------------------------------------------------------------
    def decode(
        self,
        users: pa.Table,
        lengths: np.ndarray,
        gap: np.ndarray,
        item: np.ndarray,
        fields: np.ndarray,
        items: pa.Table,
        user_ids: pa.Array,
        rng: np.random.Generator,
        first_user: int = 0,
    ) -> RelationalLog:
        """Users (attributes as the user model drew them, with LENGTH_COL and START_COL), their
        generated steps concatenated in user order, and pseudonymous ids -> a RelationalLog.

        A user whose events would run past the training log's last time starts earlier (as
        late as still fits, never before the first time): a log is a window in time.
        `first_user` is the global number of the first user (integer session ids)."""
        num_events = int(lengths.sum())
        user_of = np.repeat(np.arange(len(lengths)), lengths)
        starts = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
        seconds = self.gap.decode(gap, rng)
        seconds[starts[lengths > 0]] = 0.0
        start_s = pc.fill_null(users.column(START_COL).cast(pa.float64()), 0.0).to_numpy()
        cum = np.cumsum(seconds)
        t = cum - np.repeat(cum[starts] - seconds[starts], lengths) if num_events else cum
        if num_events and self.time_range[1] > self.time_range[0]:
            lo, hi = self.time_range
            span = t[np.maximum(starts + lengths - 1, 0)] * (lengths > 0)  # (U,) time spans
            squeeze = np.minimum(1.0, (hi - lo) / np.maximum(span, 1e-9))  # longer than the log
            t = t * squeeze[user_of]
            start_s = np.clip(np.minimum(start_s, hi - span * squeeze), lo, None)
        t = start_s[user_of] + t
        columns: dict[str, pa.Array] = {
            self.user_col: user_ids.take(pa.array(user_of)),
            self.time_col: _time_array(t, self.time_unit, self.time_type),
            self.item_col: items.column(0).combine_chunks().take(pa.array(item)),
        }
        for j, f in enumerate(self.fields):
            if f.name == SESSION_FLAG:
                columns[self.session_col] = _session_ids(
                    fields[:, j],
                    starts,
                    lengths,
                    user_ids,
                    self.session_type,
                    first_user * self.max_sessions,
                    t,
                )
            else:
                columns[f.name] = f.decode(fields[:, j], rng)
        names = self.structure["tables"]["events"]
        events = pa.table({n: columns[n] for n in names}) if num_events else _empty(names, columns)
        user_cols = self.structure["tables"].get("users", [self.user_col])
        user_table = pa.table(
            {self.user_col: user_ids, **{c: users.column(c) for c in user_cols[1:]}}
        )
        return RelationalLog.from_dict(self.structure, events=events, users=user_table, items=items)

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "structure": self.structure,
            "time_unit": self.time_unit,
            "time_type": self.time_type,
            "gap_edges": self.gap.edges,
            "gap_fine": self.gap.fine,
            "fields": [f.to_dict() for f in self.fields],
            "users": [f.to_dict() for f in self.users],
            "session_col": self.session_col,
            "session_type": self.session_type,
            "user_type": self.user_type,
            "time_range": list(self.time_range),
            "max_sessions": self.max_sessions,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SequenceEncoder:
        return cls(
            structure=d["structure"],
            time_unit=d["time_unit"],
            time_type=d["time_type"],
            gap=GapCodec(d["gap_edges"], d.get("gap_fine", [])),
            fields=[FieldCodec(**f) for f in d["fields"]],
            users=[FieldCodec(**f) for f in d["users"]],
            session_col=d["session_col"],
            session_type=d["session_type"],
            user_type=d["user_type"],
            time_range=tuple(d.get("time_range", (0.0, 0.0))),
            max_sessions=int(d.get("max_sessions", 1)),
        )


SESSION_CONSTANT = 0.99  # share of a session's later events equal to the event before


def session_level_fields(seqs: Sequences, names: list[str]) -> list[int]:
    """Event fields constant within sessions (a search query, a device): at least
    SESSION_CONSTANT of the events that continue a session repeat the previous event's value."""
    if SESSION_FLAG not in names or len(seqs.item) < 2:
        return []
    flag = seqs.fields[:, names.index(SESSION_FLAG)] == 1
    later = ~flag[1:]  # events continuing a session (a user's first event always starts one)
    if not later.any():
        return []
    same = seqs.fields[1:][later] == seqs.fields[:-1][later]  # (E', F)
    share = same.mean(0)
    return [j for j, n in enumerate(names) if n != SESSION_FLAG and share[j] >= SESSION_CONSTANT]


def require_sequence_log(log: RelationalLog) -> None:
    """Sequence generation needs a user, an item and a time column."""
    missing = [
        what
        for what, col in (("user", log.user_col), ("item", log.item_col), ("time", log.time_col))
        if not col
    ]
    if missing:
        raise DataError(
            f"sequence generation needs a user, an item and a time column; this log has no "
            f"{' and no '.join(missing)} column (columns found: {', '.join(log.columns)}). "
            "Name them in the schema (roles user_id, item_id, datetime), or use the row "
            "generator: --generator rows"
        )


def _sorted_events(log: RelationalLog):
    """Events ordered by (users-table order, time, file order); each user's first row; seconds."""
    events = log.events
    users = log.require_users().column(0).combine_chunks()
    user = pc.index_in(events.column(log.user_col), value_set=users)
    if user.null_count:
        raise DataError(
            f"{user.null_count} events have no user (null '{log.user_col}'); sequence "
            "generation needs every event to belong to a user"
        )
    user = user.to_numpy(zero_copy_only=False)
    tcol = events.column(log.time_col)
    unit = time_unit(tcol)
    if unit is None:
        raise DataError(f"time column '{log.time_col}' holds no readable times ({tcol.type})")
    seconds, valid = epoch_seconds(tcol, unit)
    if not valid.all():
        raise DataError(
            f"{int((~valid).sum())} events have no time in '{log.time_col}'; fill or drop them"
        )
    order = np.lexsort((np.arange(len(user)), seconds, user))
    events = events.take(pa.array(order))
    user, seconds = user[order], seconds[order].astype(np.float64)
    counts = np.bincount(user, minlength=len(users))
    if (counts == 0).any():
        raise DataError(f"{int((counts == 0).sum())} users in the users table have no events")
    starts = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64)
    return events, starts, seconds


def _gaps(seconds: np.ndarray, starts: np.ndarray) -> np.ndarray:
    gaps = np.diff(seconds, prepend=seconds[:1])
    gaps[starts] = 0.0
    return np.maximum(gaps, 0.0)


def _session_flags(events: pa.Table, col: str | None, starts: np.ndarray) -> np.ndarray | None:
    if col is None:
        return None
    codes = pc.dictionary_encode(events.column(col)).combine_chunks().indices
    codes = pc.fill_null(codes, -1).to_numpy(zero_copy_only=False)
    flag = np.r_[True, codes[1:] != codes[:-1]]
    flag[starts] = True
    return flag


def _sessions_per_user(flag: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return np.add.reduceat(flag.astype(np.int64), starts) if len(flag) else np.zeros(1, np.int64)


def _users_table(log: RelationalLog, events: pa.Table, starts, seconds) -> pa.Table:
    users = log.require_users()
    counts = np.diff(np.r_[starts, len(seconds)])
    table = users.drop_columns([users.column_names[0]])
    table = table.append_column(LENGTH_COL, pa.array(counts.astype(np.int64)))
    return table.append_column(START_COL, pa.array(seconds[starts]))


def _time_array(t: np.ndarray, unit: str, type_str: str) -> pa.Array:
    if unit == "iso":  # ISO 8601 text in UTC, to the second
        text = np.datetime_as_string(np.round(t).astype("datetime64[s]"), unit="s")
        return pa.array(np.char.add(text, "Z"))
    scale = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}.get(unit, 1)
    target = _arrow_type(type_str) if not type_str.startswith("timestamp") else None
    if type_str.startswith("timestamp"):
        ts_type = pa.timestamp(unit if unit in ("s", "ms", "us", "ns") else "s")
        return pa.array(np.round(t * scale).astype(np.int64)).cast(ts_type)
    values = t * scale
    if target is not None and pa.types.is_integer(target):
        return pa.array(np.round(values).astype(np.int64)).cast(target)
    if target is not None and pa.types.is_floating(target):
        return pa.array(values).cast(target)
    return pa.array(np.round(values).astype(np.int64))


def _session_ids(
    flag, starts, lengths, user_ids: pa.Array, type_str: str | None, first: int = 0, t=None
) -> pa.Array:
    """Session numbers within each user (1, 2, ...) as '<user>:<n>'; for an integer session
    column, consecutive numbers from `first` in order of the sessions' start times, as a
    log's counter numbers them (blocks start `max_sessions` apart per user, so two blocks
    never share an id)."""
    flag = flag.astype(bool).copy()
    flag[starts[lengths > 0]] = True
    number = np.cumsum(flag)
    user_of = np.repeat(np.arange(len(lengths)), lengths)
    before = np.r_[0, number][starts]  # sessions before the user's first step
    n = number - before[user_of]
    if type_str and pa.types.is_integer(_arrow_type(type_str)):
        session = number.astype(np.int64) - 1  # 0.. in user order
        if t is not None and len(session):
            begin = t[flag]  # each session's start time, sessions in user order
            rank = np.empty(len(begin), np.int64)
            rank[np.argsort(begin, kind="stable")] = np.arange(len(begin))
            session = rank[session]
        return pa.array(first + session).cast(_arrow_type(type_str))
    return pc.binary_join_element_wise(
        user_ids.take(pa.array(user_of)).cast(pa.string()), pa.array(n.astype(str)), ":"
    )


def _empty(names: list[str], columns: dict[str, pa.Array]) -> pa.Table:
    return pa.table({n: columns[n][:0] for n in names})
