"""User-level privacy of a synthetic event log: shared runs, exact copies, membership attack.

- Longest shared run: the training, synthetic and holdout logs are laid end to end as one
  text, each user's items closed by a sentinel of its own (no run crosses users), and sorted
  into a suffix array by prefix doubling (numpy sorts, log2(longest repeat) rounds). The
  longest run a user of log Q shares with any user of log R is the longest common prefix of
  one of its suffixes with the nearest R suffix on either side in suffix-array order; the
  doubling ranks give that prefix in log2 steps. Exact, no hashing; O(N log N) per round.
- Exact copies: a 64-bit polynomial hash of each user's whole item sequence (items through
  splitmix64, length mixed in) looked up among the training users' hashes.
- Membership attack: training users (members) and held-out users (non-members) are scored by
  the longest run they share with any synthetic user, and by the largest Jaccard similarity
  of their item set with any synthetic user's (on at most MAX_ATTACK_USERS users per side,
  drawn with the seed); the ROC AUC of each score, 0.5 = no leak.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy import sparse
from sklearn.metrics import roc_auc_score

if TYPE_CHECKING:
    from synthrec.evaluate.sequences import EventLog

MAX_ATTACK_USERS = 2_000  # users per side scored by the Jaccard membership attack
TRAIN, SYN, HOLD = 0, 1, 2  # log positions in the suffix-array text
HASH_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd: its powers never vanish modulo 2**64


class UserPrivacy(NamedTuple):
    """Raw user-level figures; the holdout ones are None without held-out users."""

    synthetic_runs: np.ndarray  # (synthetic users,) longest run shared with a training user
    holdout_runs: np.ndarray | None  # (holdout users,) the same for held-out users
    synthetic_copy_share: float  # share of synthetic users equal to a training user
    holdout_copy_share: float | None
    auc_run: float | None  # membership attack on the run shared with synthetic users
    auc_jaccard: float | None  # membership attack on the item-set Jaccard similarity
    attack_users: int | None  # users per side in the Jaccard attack


def user_privacy(
    train: EventLog, synthetic: EventLog, holdout: EventLog | None, num_items: int, seed: int
) -> UserPrivacy:
    """Shared runs, exact copies and membership attacks of `synthetic` against `train`;
    `holdout` (users never trained on) gives the baselines and the attack's non-members."""
    logs = [train, synthetic] + ([holdout] if holdout is not None else [])
    text = _text(logs, num_items)
    train_hashes = sorted_distinct(_sequence_hashes(train))
    syn_runs = _runs_against(text, SYN, TRAIN)
    syn_copies = float(np.isin(_sequence_hashes(synthetic), train_hashes).mean())
    if holdout is None:
        return UserPrivacy(syn_runs, None, syn_copies, None, None, None, None)
    auc_jaccard, attack_users = _jaccard_attack(train, holdout, synthetic, num_items, seed)
    return UserPrivacy(
        syn_runs,
        _runs_against(text, HOLD, TRAIN),
        syn_copies,
        float(np.isin(_sequence_hashes(holdout), train_hashes).mean()),
        _auc(_runs_against(text, TRAIN, SYN), _runs_against(text, HOLD, SYN)),
        auc_jaccard,
        attack_users,
    )


def sorted_distinct(values: np.ndarray) -> np.ndarray:
    """np.unique(values) by sorting: numpy 2.4's plain np.unique takes a hash path that is
    ~80x slower on a million int64 keys."""
    ordered = np.sort(values)
    keep = np.ones(len(ordered), dtype=bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    return ordered[keep]


# ---------------------------------------------------------------------------- shared runs


class _Text(NamedTuple):
    """Logs laid end to end, each user's items followed by a sentinel unique to that user
    (so no shared run crosses users), with the suffix array of the whole text."""

    levels: list[np.ndarray]  # levels[l][i]: rank of the 2**l symbols from position i
    order: np.ndarray  # (N,) positions sorted by their suffixes (the suffix array)
    group: np.ndarray  # (N,) the log each position belongs to
    user_start: list[np.ndarray]  # per log: the text position of each user's first item


def _text(logs: list[EventLog], num_items: int) -> _Text:
    lengths = [log.lengths for log in logs]
    block = np.concatenate(lengths) + 1  # a user's items and its sentinel
    ends = np.cumsum(block)
    sym = np.empty(int(ends[-1]), dtype=np.int64)
    is_item = np.ones(len(sym), dtype=bool)
    is_item[ends - 1] = False
    sym[is_item] = np.concatenate([log.item for log in logs])
    sym[ends - 1] = num_items + np.arange(len(block))
    users_per_log = [len(x) for x in lengths]
    group = np.repeat(np.repeat(np.arange(len(logs)), users_per_log), block)
    first = np.split(ends - block, np.cumsum(users_per_log)[:-1])
    levels, order = _suffix_array(sym)
    return _Text(levels, order, group, first)


def _suffix_array(sym: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Prefix doubling: ranks of the 1, 2, 4, ... symbols from each position, until every
    suffix has its own rank. O(N log N) per round, log2(longest repeat) rounds."""
    n = len(sym)
    rank = np.unique(sym, return_inverse=True)[1].reshape(-1).astype(np.int64)
    levels, h = [], 1
    while True:
        levels.append(rank.astype(np.int32))
        nxt = np.zeros(n, dtype=np.int64)  # 0: past the end of the text
        if h < n:
            nxt[: n - h] = rank[h:] + 1
        key = rank * (n + 1) + nxt
        order = np.argsort(key)
        ordered = key[order]
        new = np.ones(n, dtype=bool)
        new[1:] = ordered[1:] != ordered[:-1]
        if new.all():
            return levels, order
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.cumsum(new) - 1
        h *= 2


def _lcp(a: np.ndarray, b: np.ndarray, levels: list[np.ndarray]) -> np.ndarray:
    """Longest common prefix of the suffixes at positions a and b (pairwise), read off the
    doubling ranks from the longest level down."""
    a, b, lcp = a.copy(), b.copy(), np.zeros(len(a), dtype=np.int64)
    n = len(levels[0])
    for level in range(len(levels) - 1, -1, -1):
        idx = np.flatnonzero((a < n) & (b < n))
        hit = idx[levels[level][a[idx]] == levels[level][b[idx]]]
        step = 1 << level
        a[hit] += step
        b[hit] += step
        lcp[hit] += step
    return lcp


def _runs_against(text: _Text, query: int, ref: int) -> np.ndarray:
    """Per user of log `query`: the longest run of consecutive items it shares with any user
    of log `ref`. The longest common prefix with any ref suffix is the one with the nearest
    ref suffix on either side in suffix-array order."""
    starts = text.user_start[query]
    if not len(starts):
        return np.zeros(0, dtype=np.int64)
    n = len(text.order)
    slot_group = text.group[text.order]
    slots = np.arange(n)
    is_ref = slot_group == ref
    left = np.maximum.accumulate(np.where(is_ref, slots, -1))
    right = np.minimum.accumulate(np.where(is_ref, slots, n)[::-1])[::-1]
    q = np.flatnonzero(slot_group == query)
    best = np.zeros(len(q), dtype=np.int64)
    for nb in (left[q], right[q]):
        ok = (nb >= 0) & (nb < n)
        found = _lcp(text.order[q[ok]], text.order[nb[ok]], text.levels)
        best[ok] = np.maximum(best[ok], found)
    run = np.zeros(n, dtype=np.int64)
    run[text.order[q]] = best
    return np.maximum.reduceat(run, starts)  # past its last user: other logs' zeros


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer (wrapping uint64 arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _sequence_hashes(log: EventLog) -> np.ndarray:
    """A 64-bit hash of each user's whole item sequence (order and length included)."""
    if not len(log.item):
        return np.zeros(0, dtype=np.uint64)
    x = _mix64(log.item.astype(np.uint64) + np.uint64(1))
    powers = np.cumprod(np.full(int(log.lengths.max()), HASH_BASE, dtype=np.uint64))
    pos = np.arange(len(log.item)) - log.starts[log.user]
    h = np.add.reduceat(x * powers[pos], log.starts[:-1])
    return _mix64(h ^ _mix64(log.lengths.astype(np.uint64)))


def _auc(members: np.ndarray, nonmembers: np.ndarray) -> float:
    labels = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
    return float(roc_auc_score(labels, np.r_[members, nonmembers].astype(np.float64)))


def _item_sets(log: EventLog, users: np.ndarray, num_items: int) -> sparse.csr_matrix:
    """(len(users), num_items) 0/1 matrix of the items each chosen user had."""
    pick = np.isin(log.user, users)
    row = np.searchsorted(users, log.user[pick])
    mat = sparse.csr_matrix(
        (np.ones(len(row), dtype=np.float32), (row, log.item[pick])),
        shape=(len(users), num_items),
    )
    mat.sum_duplicates()
    mat.data[:] = 1.0
    return mat


def _max_jaccard(query: sparse.csr_matrix, ref: sparse.csr_matrix) -> np.ndarray:
    """Largest Jaccard similarity of each query row's item set with any ref row's."""
    q_size = np.asarray(query.sum(axis=1)).ravel()
    r_size = np.asarray(ref.sum(axis=1)).ravel()
    best = np.zeros(query.shape[0])
    chunk = max(1, 4_000_000 // max(ref.shape[0], 1))  # a dense (chunk, refs) block <= 32 MB
    ref_t = ref.T.tocsc()
    for lo in range(0, query.shape[0], chunk):
        inter = (query[lo : lo + chunk] @ ref_t).toarray()
        union = q_size[lo : lo + chunk, None] + r_size[None, :] - inter
        best[lo : lo + chunk] = (inter / np.maximum(union, 1.0)).max(axis=1, initial=0.0)
    return best


def _jaccard_attack(
    real: EventLog, hold: EventLog, syn: EventLog, num_items: int, seed: int
) -> tuple[float, int]:
    """(AUC, users per side) of the attack on the largest Jaccard similarity."""
    rng = np.random.default_rng(seed)
    num = min(len(real.starts) - 1, len(hold.starts) - 1, MAX_ATTACK_USERS)
    members = np.sort(rng.choice(len(real.starts) - 1, num, replace=False))
    nonmembers = np.sort(rng.choice(len(hold.starts) - 1, num, replace=False))
    ref = _item_sets(syn, np.arange(len(syn.starts) - 1), num_items)
    scores = [
        _max_jaccard(_item_sets(log, users, num_items), ref)
        for log, users in ((real, members), (hold, nonmembers))
    ]
    return _auc(*scores), num
