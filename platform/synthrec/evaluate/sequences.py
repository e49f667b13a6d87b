"""Evaluation of event logs as per-user sequences: fidelity and user-level privacy.

A row-wise score cannot see what a recommender learns from a log: who has how many events,
when, in which order. `sequence_metrics(real, synthetic, ...)` groups each flat event table
(one row per event; ids of any type; time as epoch s/ms/us/ns numbers, ISO text or an Arrow
timestamp, read at whole-second resolution) by user, orders each user's events by time
(ties keep file order), and reports:

Fidelity (real = the generator's training log)
- `events_per_user`: events per user; KS complement (1 - two-sample KS D, 1 = same
  distribution) and quantiles, real vs synthetic.
- `inter_event_seconds`: gaps between a user's consecutive events; KS complement on
  log1p(seconds) (the same as on seconds: KS is invariant to monotone maps) and quantiles.
- `session_lengths`: events per session. Sessions are the values of the session column per
  user when one is given; otherwise a user's events are cut into sessions wherever the gap
  exceeds SESSION_GAP_S (30 minutes).
- `item_popularity`: total variation distance (0 = same) between the item frequencies, the
  share of real items the synthetic log uses (coverage) and the share of synthetic events on
  items the real log lacks.
- `transitions`: `pair_share_in_real`, the share of synthetic (previous -> next item) pairs
  of one user that occur somewhere in the real log (1 for a copy of the real log); with a
  holdout, the same share for the held-out users' pairs is the reference a generator should
  reach. `matrix_distance`: TV distance between the real and the synthetic next-item
  distribution of each source item, averaged over source items weighted by their real
  frequency (a source the synthetic log never leaves counts 1). Computed on the sparse set of
  pairs that occur, so it costs O(events log events) for any catalog size. Rare sources make
  it noisy; the holdout's distance to the real log is its noise floor.
- `repeat_rate`: share of events whose item the same user already had earlier.
- `category_entropy` (with a category column): entropy in bits of each user's category
  distribution; KS complement and quantiles.

Privacy, per user (training users = the users of `real`; computed in sequence_privacy.py)
- `exact_copies`: share of synthetic users whose whole item sequence equals a training
  user's (64-bit sequence hashes; collisions are negligible), and the same share for
  held-out users, who never were in training (the baseline for coincidence).
- `longest_shared_run`: for each synthetic user the longest run of consecutive items it
  shares with any training user (exact, via a generalized suffix array), against the same
  figure for held-out users; quantiles, and `share_at_least_5`, the share of users whose run
  is >= SHARED_RUN_LIMIT items. The target is synthetic <= holdout.
- `membership_auc`: an attacker scores every real user (training members vs held-out
  non-members) by closeness to the synthetic users: the longest run shared with any
  synthetic user (`auc_run`) and the largest Jaccard similarity of item sets with any
  synthetic user (`auc_jaccard`, on at most 2,000 users per side drawn with `seed`;
  `attack_users_per_side`). `membership_auc` is the larger of the two (the attacker keeps
  the better score, which biases it slightly above 0.5 on small holdouts); 0.5 = no leak.
Holdout users whose id also occurs in the real table (a temporal split of the same users)
are dropped from every holdout figure; with none left those figures are None with a note.

`histograms` holds what the report plots (shared bins, real / synthetic counts).
`sequence_section` reads the column names from a schema and an EvaluateConfig.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec.config import EvaluateConfig
from synthrec.data.derived import epoch_seconds, time_unit
from synthrec.errors import ConfigError, DataError
from synthrec.evaluate.fidelity import ks_complement
from synthrec.evaluate.sequence_privacy import sorted_distinct, user_privacy
from synthrec.schema import Role, Schema, time_column

MIN_HOLDOUT_USERS = 20  # fewer held-out users give no baseline and no membership attack
SESSION_GAP_S = 30 * 60  # a longer gap between a user's events starts a new session
SHARED_RUN_LIMIT = 5  # the privacy target: runs of >= 5 shared consecutive items
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
SESSION_NAMES = ("session_id", "session", "sessionid", "visit_id")
CATEGORY_NAMES = ("category", "category_id", "categoryid", "cat", "cat_id", "genre")
HIST_BINS = 40


class EventLog(NamedTuple):
    """One table's events sorted by (user, time); every array has one entry per event."""

    user: np.ndarray  # (n,) int64 user index 0..num_users-1, non-decreasing
    user_code: np.ndarray  # (num_users,) code of each user's id, shared across tables
    item: np.ndarray  # (n,) int64 item code, shared across tables
    time: np.ndarray  # (n,) int64 epoch seconds
    session_len: np.ndarray  # (num_sessions,) events per session
    category: np.ndarray | None  # (n,) int64 category code, shared across tables
    starts: np.ndarray  # (num_users + 1,) offsets of each user's events

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.starts)


# ---------------------------------------------------------------------------- entry points


def sequence_metrics(
    real: pa.Table,
    synthetic: pa.Table,
    *,
    user_col: str,
    item_col: str,
    time_col: str,
    session_col: str | None = None,
    category_col: str | None = None,
    holdout: pa.Table | None = None,
    seed: int = 0,
) -> dict:
    """Sequence fidelity and user-level privacy of `synthetic` against `real` (the training
    log) as a JSON-ready dict; `holdout` (users the generator never saw) adds the privacy
    baselines and the membership attack. See the module docstring for each figure."""
    tables = {"real": real, "synthetic": synthetic}
    if holdout is not None:
        tables["holdout"] = holdout
    cols = [c for c in (user_col, item_col, time_col, session_col, category_col) if c]
    for name, table in tables.items():
        missing = [c for c in cols if c not in table.column_names]
        if missing:
            raise DataError(
                f"{name} table lacks column(s) {', '.join(missing)} needed for sequence "
                f"metrics; columns: {', '.join(table.column_names)}"
            )
    if not real.num_rows or not synthetic.num_rows:
        raise DataError("sequence metrics need events in both the real and the synthetic table")
    logs, dropped = _event_logs(tables, user_col, item_col, time_col, session_col, category_col)
    for name in ("real", "synthetic"):
        if not len(logs[name].item):
            raise DataError(
                f"{name} table has no event with a {user_col}, {item_col} and {time_col} value "
                f"({dropped[name]} rows with nulls)"
            )
    num_items = int(max(log.item.max(initial=-1) for log in logs.values())) + 1
    real_log, syn_log = logs["real"], logs["synthetic"]
    hold_log, hold_note = _new_users(logs.get("holdout"), real_log)
    out = {
        "columns": {
            "user": user_col,
            "item": item_col,
            "time": time_col,
            "session": session_col,
            "category": category_col,
        },
        "users": {k: len(v.starts) - 1 for k, v in logs.items()},
        "events": {k: len(v.item) for k, v in logs.items()},
        "dropped_rows_with_nulls": dropped,
        "events_per_user": _compare(real_log.lengths, syn_log.lengths),
        "inter_event_seconds": _compare(_gaps(real_log), _gaps(syn_log), transform=np.log1p),
        "session_lengths": {
            "definition": f"column '{session_col}' per user"
            if session_col
            else f"cut at gaps > {SESSION_GAP_S} s",
            **_compare(real_log.session_len, syn_log.session_len),
        },
        "item_popularity": _popularity(real_log.item, syn_log.item, num_items),
        "transitions": _transitions(real_log, syn_log, hold_log, num_items),
        "repeat_rate": {
            "real": _repeat_rate(real_log, num_items),
            "synthetic": _repeat_rate(syn_log, num_items),
        },
        "category_entropy": _category_entropy(real_log, syn_log) if category_col else None,
        "privacy": _privacy(real_log, syn_log, hold_log, num_items, seed),
        "histograms": _histograms(real_log, syn_log, num_items),
    }
    if hold_note:
        out["note"] = hold_note
    return _finite(out)


def _finite(obj):
    """JSON-ready copy: NaN and inf (a KS test with an empty side) become None."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def sequence_columns(schema: Schema, cfg: EvaluateConfig) -> dict | None:
    """Column names for `sequence_metrics` from the schema (user id, item id, time) and the
    config's overrides, or None when the schema lacks one of the three. A session or
    category column named in `cfg` must exist; unnamed, they are found by name."""
    for key in ("sequence_session_column", "sequence_category_column"):
        name = getattr(cfg, key)
        if name is not None and name not in schema.names:
            raise ConfigError(f"{key} '{name}' is not a column; columns: {', '.join(schema.names)}")
    found = {
        "user_col": schema.column_of(Role.USER_ID),
        "item_col": schema.column_of(Role.ITEM_ID),
        "time_col": time_column(schema),
    }
    if not all(found.values()):
        return None
    lower = {n.lower(): n for n in schema.names}
    found["session_col"] = cfg.sequence_session_column or next(
        (lower[n] for n in SESSION_NAMES if n in lower), None
    )
    found["category_col"] = cfg.sequence_category_column or next(
        (lower[n] for n in CATEGORY_NAMES if n in lower and schema[lower[n]].role != Role.TEXT),
        None,
    )
    return found


def sequence_section(
    real: pa.Table,
    synthetic: pa.Table,
    holdout: pa.Table | None,
    schema: Schema,
    cfg: EvaluateConfig,
) -> dict:
    """metrics["sequences"] of `evaluate_synthetic`: the sequence metrics, or a note that
    says why there are none."""
    if not cfg.sequences:
        return {"note": "sequence metrics turned off (sequences: false)"}
    cols = sequence_columns(schema, cfg)
    if cols is None:
        return {
            "note": "sequence metrics need a user id, an item id and a time column; the schema "
            f"has {', '.join(f'{c.name} ({c.role.value})' for c in schema.columns)}"
        }
    return sequence_metrics(real, synthetic, holdout=holdout, seed=cfg.seed, **cols)


# ---------------------------------------------------------------------------- event logs


def _event_logs(
    tables: dict[str, pa.Table],
    user_col: str,
    item_col: str,
    time_col: str,
    session_col: str | None,
    category_col: str | None,
) -> tuple[dict[str, EventLog], dict[str, int]]:
    users = _shared_codes([t.column(user_col) for t in tables.values()])
    items = _shared_codes([t.column(item_col) for t in tables.values()])
    cats = (
        _shared_codes([t.column(category_col) for t in tables.values()], null_code=True)
        if category_col
        else [None] * len(tables)
    )
    real_unit = _unit(tables["real"].column(time_col), "real")
    logs, dropped = {}, {}
    for k, (name, table) in enumerate(tables.items()):
        secs, valid = epoch_seconds(
            table.column(time_col), _unit(table.column(time_col), name, real_unit)
        )
        keep = valid & (users[k] >= 0) & (items[k] >= 0)
        dropped[name] = int((~keep).sum())
        sess = None
        if session_col:
            sess = _shared_codes([table.column(session_col)], null_code=True)[0][keep]
        cat = cats[k][keep] if cats[k] is not None else None
        logs[name] = _sorted_log(users[k][keep], items[k][keep], secs[keep], sess, cat)
    return logs, dropped


def _unit(col: pa.ChunkedArray, name: str, fallback: str | None = None) -> str:
    unit = time_unit(col) or fallback
    if unit is None:
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            return "s"  # plain numbers (not epoch-sized): read as seconds
        raise DataError(
            f"{name} time column holds {col.type}, not a time; use epoch numbers, ISO text "
            "or a timestamp"
        )
    return unit


def _shared_codes(cols: list[pa.ChunkedArray], null_code: bool = False) -> list[np.ndarray]:
    """Integer codes of each column's values in one vocabulary (equal values, equal codes,
    across columns); nulls get -1, or a code of their own with `null_code`."""
    plain = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in cols]
    numeric = all(pa.types.is_integer(c.type) for c in plain)
    common = pa.int64() if numeric else pa.large_string()
    chunks = [chunk for c in plain for chunk in c.cast(common).chunks]
    joined = pa.chunked_array(chunks, common).combine_chunks()
    if null_code:
        joined = pc.fill_null(joined, pa.scalar(-(2**62) if numeric else "\x00null", common))
    codes = pc.dictionary_encode(joined).indices.to_numpy(zero_copy_only=False)
    codes = np.nan_to_num(codes.astype(np.float64), nan=-1).astype(np.int64)
    bounds = np.cumsum([0] + [len(c) for c in cols])
    return [codes[bounds[i] : bounds[i + 1]] for i in range(len(cols))]


def _sorted_log(
    user: np.ndarray,
    item: np.ndarray,
    secs: np.ndarray,
    session: np.ndarray | None,
    category: np.ndarray | None,
) -> EventLog:
    user_code, local = np.unique(user, return_inverse=True)
    order = np.lexsort((secs, local))  # stable: equal times keep file order
    local, item, secs = local[order], item[order], secs[order]
    counts = np.bincount(local, minlength=len(user_code))
    starts = np.concatenate([[0], np.cumsum(counts)])
    if session is not None:  # events per (user, session value)
        _, session_len = np.unique(
            local * (int(session.max(initial=0)) + 1) + session[order], return_counts=True
        )
    else:  # a new session at each user's first event and after each long gap
        new = np.ones(len(item), dtype=bool)
        new[1:] = (local[1:] != local[:-1]) | (np.diff(secs) > SESSION_GAP_S)
        session_len = np.diff(np.append(np.flatnonzero(new), len(item)))
    return EventLog(
        local.astype(np.int64),
        user_code,
        item,
        secs,
        session_len,
        category[order] if category is not None else None,
        starts,
    )


def _new_users(hold: EventLog | None, real: EventLog) -> tuple[EventLog | None, str | None]:
    """The holdout less any user who also occurs in the real table."""
    if hold is None:
        return None, None
    if not len(hold.item):
        return None, "the holdout has no events; holdout figures are left out"
    known = np.isin(hold.user_code, real.user_code)
    fresh = int((~known).sum())
    note = (
        f"{int(known.sum())} of {len(known)} holdout users also occur in the real table and "
        "are left out of the user-level holdout figures"
        if known.any()
        else None
    )
    if fresh == 0:
        return None, note + "; a user-level baseline needs held-out users (split by user)"
    if fresh < MIN_HOLDOUT_USERS:  # a membership AUC over a handful of users means nothing
        few = (
            f"{fresh} held-out users are too few for a user-level baseline and membership "
            f"attack (at least {MIN_HOLDOUT_USERS}; split the holdout by user)"
        )
        return None, f"{note}; {few}" if note else few
    if note is None:
        return hold, None
    keep = ~known[hold.user]
    log = _sorted_log(
        hold.user_code[hold.user[keep]],
        hold.item[keep],
        hold.time[keep],
        None,  # holdout sessions are not compared
        hold.category[keep] if hold.category is not None else None,
    )
    return log, note


def _gaps(log: EventLog) -> np.ndarray:
    same = log.user[1:] == log.user[:-1]
    return np.diff(log.time)[same].astype(np.float64)


# ---------------------------------------------------------------------------- fidelity


def _summary(values: np.ndarray) -> dict:
    if not len(values):
        return {"count": 0}
    qs = np.quantile(values, QUANTILES)
    return {
        "count": len(values),
        "mean": float(values.mean()),
        **{f"p{round(q * 100)}": float(v) for q, v in zip(QUANTILES, qs)},
        "max": float(values.max()),
    }


def _compare(real: np.ndarray, synthetic: np.ndarray, transform=None) -> dict:
    real, synthetic = np.asarray(real, np.float64), np.asarray(synthetic, np.float64)
    f = transform or (lambda x: x)
    return {
        "ks_complement": ks_complement(f(real), f(synthetic)),
        "real": _summary(real),
        "synthetic": _summary(synthetic),
    }


def _popularity(real: np.ndarray, synthetic: np.ndarray, num_items: int) -> dict:
    pr = np.bincount(real, minlength=num_items) / len(real)
    ps = np.bincount(synthetic, minlength=num_items) / len(synthetic)
    return {
        "tv_distance": float(0.5 * np.abs(pr - ps).sum()),
        "real_items": int((pr > 0).sum()),
        "synthetic_items": int((ps > 0).sum()),
        "coverage": float(((pr > 0) & (ps > 0)).sum() / max((pr > 0).sum(), 1)),
        "synthetic_share_on_unseen_items": float(ps[pr == 0].sum()),
    }


def _pair_keys(log: EventLog, num_items: int) -> np.ndarray:
    """(previous -> next item) of each user's consecutive events as previous * n + next."""
    same = log.user[1:] == log.user[:-1]
    return log.item[:-1][same] * num_items + log.item[1:][same]


def _transitions(real: EventLog, syn: EventLog, hold: EventLog | None, num_items: int) -> dict:
    real_keys, syn_keys = _pair_keys(real, num_items), _pair_keys(syn, num_items)
    real_set = sorted_distinct(real_keys)
    out = {
        "pairs": {"real": len(real_keys), "synthetic": len(syn_keys)},
        "pair_share_in_real": _share_in(syn_keys, real_set),
        "holdout_pair_share_in_real": None,
        "matrix_distance": transition_distance(real_keys, syn_keys, num_items),
        "holdout_matrix_distance": None,
    }
    if hold is not None:
        hold_keys = _pair_keys(hold, num_items)
        out["pairs"]["holdout"] = len(hold_keys)
        out["holdout_pair_share_in_real"] = _share_in(hold_keys, real_set)
        out["holdout_matrix_distance"] = transition_distance(real_keys, hold_keys, num_items)
    return out


def _share_in(keys: np.ndarray, sorted_set: np.ndarray) -> float | None:
    if not len(keys):
        return None
    at = np.minimum(np.searchsorted(sorted_set, keys), max(len(sorted_set) - 1, 0))
    return float((sorted_set[at] == keys).mean()) if len(sorted_set) else 0.0


def transition_distance(real_keys: np.ndarray, other_keys: np.ndarray, num_items: int) -> float:
    """Mean over source items (weighted by real frequency) of the TV distance between the
    real and the other next-item distributions; pair keys as from `_pair_keys`. A source
    the other log never leaves counts 1. Sparse: only pairs that occur are touched."""
    if not len(real_keys):
        return float("nan")
    if not len(other_keys):
        return 1.0
    rk, rc = np.unique(real_keys, return_counts=True)
    ok, oc = np.unique(other_keys, return_counts=True)
    r_src, o_src = rk // num_items, ok // num_items
    r_tot = np.bincount(r_src, weights=rc, minlength=num_items)
    o_tot = np.bincount(o_src, weights=oc, minlength=num_items)
    keys, inv = np.unique(np.concatenate([rk, ok]), return_inverse=True)
    diff = np.bincount(inv, weights=np.concatenate([rc / r_tot[r_src], -oc / o_tot[o_src]]))
    tv = 0.5 * np.bincount(keys // num_items, weights=np.abs(diff), minlength=num_items)
    tv[o_tot == 0] = 1.0
    return float((r_tot * tv).sum() / r_tot.sum())


def _repeat_rate(log: EventLog, num_items: int) -> float | None:
    if not len(log.item):
        return None
    return 1.0 - len(sorted_distinct(log.user * num_items + log.item)) / len(log.item)


def _user_entropy(log: EventLog) -> np.ndarray:
    """Entropy (bits) of each user's category distribution."""
    num_cats = int(log.category.max(initial=0)) + 1
    keys, counts = np.unique(log.user * num_cats + log.category, return_counts=True)
    user = keys // num_cats
    p = counts / log.lengths[user]
    return np.bincount(user, weights=-p * np.log2(p), minlength=len(log.starts) - 1)


def _category_entropy(real: EventLog, syn: EventLog) -> dict:
    return _compare(_user_entropy(real), _user_entropy(syn))


# ---------------------------------------------------------------------------- privacy


def _run_summary(runs: np.ndarray) -> dict:
    return {
        **_summary(runs.astype(np.float64)),
        f"share_at_least_{SHARED_RUN_LIMIT}": float((runs >= SHARED_RUN_LIMIT).mean())
        if len(runs)
        else None,
    }


def _privacy(
    real: EventLog, syn: EventLog, hold: EventLog | None, num_items: int, seed: int
) -> dict:
    found = user_privacy(real, syn, hold, num_items, seed)
    runs = {"synthetic": found.synthetic_runs}
    if found.holdout_runs is not None:
        runs["holdout"] = found.holdout_runs
    aucs = [a for a in (found.auc_run, found.auc_jaccard) if a is not None]
    return {
        "exact_copies": {
            "synthetic": found.synthetic_copy_share,
            "holdout": found.holdout_copy_share,
        },
        "longest_shared_run": {
            "limit": SHARED_RUN_LIMIT,
            "synthetic": _run_summary(found.synthetic_runs),
            "holdout": _run_summary(found.holdout_runs) if found.holdout_runs is not None else None,
            "histogram": _run_histogram(runs),
        },
        "membership_auc": max(aucs) if aucs else None,
        "auc_run": found.auc_run,
        "auc_jaccard": found.auc_jaccard,
        "attack_users_per_side": found.attack_users,
    }


# ---------------------------------------------------------------------------- histograms


def _hist(sides: dict[str, np.ndarray], edges: np.ndarray) -> dict:
    out = {"edges": edges.tolist()}
    for name, values in sides.items():
        out[name] = np.histogram(np.clip(values, edges[0], edges[-1]), edges)[0].tolist()
    return out


def _count_edges(values: list[np.ndarray]) -> np.ndarray:
    """Geometric edges for counts >= 1 (events per user, per session)."""
    present = [v for v in values if len(v)]
    low = max(min((float(v.min()) for v in present), default=1.0), 1.0)
    top = max((float(v.max()) for v in present), default=1.0)
    return np.unique(np.floor(np.geomspace(low, top + 1, HIST_BINS + 1))) - 0.5


def _rank_curve(items: np.ndarray, num_items: int) -> dict:
    share = np.sort(np.bincount(items, minlength=num_items))[::-1] / max(len(items), 1)
    share = share[share > 0]
    rank = np.unique(np.round(np.geomspace(1, max(len(share), 1), 60)).astype(np.int64))
    return {"rank": rank.tolist(), "share": share[rank - 1].tolist() if len(share) else []}


def _run_histogram(runs: dict[str, np.ndarray]) -> dict:
    top = int(min(max(r.max(initial=0) for r in runs.values()), 50))
    return _hist(runs, np.arange(top + 2) - 0.5)


def _histograms(real: EventLog, syn: EventLog, num_items: int) -> dict:
    gaps = {"real": np.log10(1 + _gaps(real)), "synthetic": np.log10(1 + _gaps(syn))}
    top_gap = max(float(g.max(initial=0)) for g in gaps.values())
    out = {
        "events_per_user": _hist(
            {"real": real.lengths, "synthetic": syn.lengths},
            _count_edges([real.lengths, syn.lengths]),
        ),
        "log10_inter_event_seconds": _hist(gaps, np.linspace(0, max(top_gap, 1.0), HIST_BINS + 1)),
        "session_lengths": _hist(
            {"real": real.session_len, "synthetic": syn.session_len},
            _count_edges([real.session_len, syn.session_len]),
        ),
        "item_rank": {
            "real": _rank_curve(real.item, num_items),
            "synthetic": _rank_curve(syn.item, num_items),
        },
        "category_entropy": None,
    }
    if real.category is not None:
        ent = {"real": _user_entropy(real), "synthetic": _user_entropy(syn)}
        top = max(float(e.max(initial=0)) for e in ent.values())
        out["category_entropy"] = _hist(ent, np.linspace(0, max(top, 1.0), 31))
    return out
