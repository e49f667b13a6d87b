"""Privacy: exact copies, distance to closest record (DCR), NNDR and a distance-based
membership-inference attack (MIA).

Distance space (documented, bounded): continuous columns are scaled by the real (train)
range, so a full-range difference is 1, with a null indicator where a column has nulls;
each categorical, label, user-id or item-id column adds exactly 1 to the squared distance
when the values differ (the distance of one-hot vectors scaled by 1/sqrt(2), computed by
comparing codes). Ids count because in interaction logs the (user, item) pair is what
identifies a record (sdmetrics' DCR drops ids). Text is left out. Exact copies compare every
column. Distances are Euclidean, found by brute force in cache-sized float32 tiles, then
recomputed exactly in float64 for the neighbours found.

Samples: at most `query_rows` synthetic, holdout and train rows are queried against at most
`reference_rows` train (DCR, NNDR) or synthetic (MIA) rows, all drawn with the config seed.
Exact-copy rates use every row.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from synthrec.evaluate.columns import Column, Shape
from synthrec.schema import Role

QUERY_TILE, REF_TILE = 256, 4096  # distance tile: 4 MB of float32, cache-sized
REAL, SYNTHETIC, HOLDOUT = 0, 1, 2  # table positions in the encoded columns
NO_COLUMNS = "no columns besides user ids to compare rows on"


# ---------------------------------------------------------------------------- exact copies


def row_hashes(columns: dict[str, Column], table: int) -> np.ndarray:
    """A 64-bit hash of each row over every column (shared codes make tables comparable).
    Collisions are ~1e-9 likely for a million rows against a hundred thousand."""
    first = next(iter(columns.values())).values[table]
    h = np.full(len(first), 0x9E3779B97F4A7C15, dtype=np.uint64)
    for col in columns.values():
        v = col.values[table]
        if col.shape == Shape.CONTINUOUS:
            v = np.where(np.isnan(v), np.nan, v + 0.0)  # one NaN pattern; -0.0 == 0.0
            bits = v.view(np.uint64)
        else:
            bits = v.astype(np.uint64)
        h = _mix(h ^ _mix(bits))
    return h


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer (wrapping uint64 arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def exact_copy_rate(query_hashes: np.ndarray, train_hashes: np.ndarray) -> float:
    """Share of query rows identical (every column) to at least one train row."""
    return float(np.isin(query_hashes, train_hashes).mean()) if len(query_hashes) else float("nan")


# ---------------------------------------------------------------------------- distance space


class Points(NamedTuple):
    """Rows in the distance space: scaled numerics (n, p) float32 and codes (n, m) int32."""

    numeric: np.ndarray
    codes: np.ndarray


def distance_points(
    columns: dict[str, Column], tables: list[int], rows: list[np.ndarray]
) -> list[Points]:
    """Points for each (table, row indices). Numerics are scaled by the real (REAL) range,
    nulls become 0 plus a 0/1 null indicator; every other column contributes its codes."""
    numeric: list[list[np.ndarray]] = [[] for _ in tables]
    codes: list[list[np.ndarray]] = [[] for _ in tables]
    for col in columns.values():
        if col.shape == Shape.CONTINUOUS:
            real = col.values[REAL]
            lo, hi = np.nanmin(real), np.nanmax(real)
            scale = (hi - lo) if hi > lo else 1.0
            has_nulls = any(np.isnan(col.values[t]).any() for t in tables)
            for out, t, idx in zip(numeric, tables, rows):
                v = col.values[t][idx]
                null = np.isnan(v)
                out.append(np.where(null, 0.0, (v - lo) / scale))
                if has_nulls:
                    out.append(null.astype(np.float64))
        else:
            for out, t, idx in zip(codes, tables, rows):
                out.append(col.values[t][idx])
    return [
        Points(
            np.column_stack(x).astype(np.float32) if x else np.zeros((len(i), 0), np.float32),
            np.column_stack(c).astype(np.int32) if c else np.zeros((len(i), 0), np.int32),
        )
        for x, c, i in zip(numeric, codes, rows)
    ]


def nearest(query: Points, reference: Points, k: int = 2) -> np.ndarray:
    """(len(query), k) exact distances to the k nearest reference rows, ascending.

    Squared distance = |x_q - x_r|^2 + number of differing codes. The numeric part is a
    matmul; code matches are counted by equality (a one-hot dot product without the one-hot
    vectors, exact for any number of ids). Query tiles run on a thread per core (numpy and
    BLAS release the GIL); each scans the reference in cache-sized tiles with a running top-k.
    """
    k = min(k, len(reference.numeric))
    r_t = np.ascontiguousarray(reference.numeric.T)  # (p, R)
    r_codes_t = np.ascontiguousarray(
        reference.codes.T
    )  # (m, R): contiguous rows for np.equal.outer
    r_base = (reference.numeric.astype(np.float64) ** 2).sum(1).astype(
        np.float32
    ) + reference.codes.shape[1]
    starts = range(0, len(query.numeric), QUERY_TILE)
    out = np.empty((len(query.numeric), k), dtype=np.float64)

    def run(start: int) -> None:
        q = Points(
            query.numeric[start : start + QUERY_TILE], query.codes[start : start + QUERY_TILE]
        )
        idx = _top_k(q, r_t, r_codes_t, r_base, k)
        out[start : start + len(q.numeric)] = _exact(q, reference, idx)

    # one BLAS thread per worker: tiny (c, p) @ (p, t) products lose most time to BLAS spin-waits
    with (
        threadpool_limits(1, user_api="blas"),
        ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool,
    ):
        list(pool.map(run, starts))
    return out


def _top_k(
    q: Points, r_t: np.ndarray, r_codes_t: np.ndarray, r_base: np.ndarray, k: int
) -> np.ndarray:
    """(c, k) reference indices of the k smallest squared distances (up to |x_q|^2)."""
    c, q_codes_t = len(q.numeric), np.ascontiguousarray(q.codes.T)
    best_d = np.full((c, k), np.inf, dtype=np.float32)
    best_i = np.zeros((c, k), dtype=np.int64)
    rows = np.arange(c)
    for rs in range(0, r_t.shape[1], REF_TILE):
        re = min(rs + REF_TILE, r_t.shape[1])
        d2 = q.numeric @ r_t[:, rs:re]  # (c, t)
        d2 *= -2.0
        d2 += r_base[None, rs:re]
        if len(q_codes_t):
            matches = np.equal.outer(q_codes_t[0], r_codes_t[0, rs:re]).view(np.uint8)
            for j in range(1, len(q_codes_t)):
                matches += np.equal.outer(q_codes_t[j], r_codes_t[j, rs:re])
            d2 -= matches
        for _ in range(k):  # k is 1 or 2: argmin passes beat a partial sort
            j = d2.argmin(axis=1)
            d = d2[rows, j]
            d2[rows, j] = np.inf
            worse = d < best_d[:, -1]
            best_d[worse, -1], best_i[worse, -1] = d[worse], j[worse] + rs
            order = np.argsort(best_d, axis=1, kind="stable")
            best_d, best_i = (
                np.take_along_axis(best_d, order, 1),
                np.take_along_axis(best_i, order, 1),
            )
    return best_i


def _exact(q: Points, ref: Points, idx: np.ndarray) -> np.ndarray:
    """Sorted float64 distances to the neighbours found (the expansion cancels near 0)."""
    diff = q.numeric[:, None, :].astype(np.float64) - ref.numeric[idx]  # (c, k, p)
    d2 = (diff**2).sum(-1) + (q.codes[:, None, :] != ref.codes[idx]).sum(-1)
    return np.sort(np.sqrt(d2), axis=1)


# ---------------------------------------------------------------------------- metrics


def dcr_summary(distances: np.ndarray) -> dict:
    qs = np.quantile(distances, [0.05, 0.25, 0.5]) if len(distances) else [np.nan] * 3
    return {
        "p5": float(qs[0]),
        "p25": float(qs[1]),
        "median": float(qs[2]),
        "mean": float(distances.mean()) if len(distances) else float("nan"),
        "rows": int(len(distances)),
    }


def share_closer_than(distances: np.ndarray, threshold: float) -> float:
    """Share of rows strictly closer to the train set than `threshold` (the holdout's p5)."""
    return float((distances < threshold).mean()) if len(distances) else float("nan")


def nndr(two_nearest: np.ndarray) -> np.ndarray:
    """Nearest / second-nearest distance ratio per row; 1 where both are 0 (a tie)."""
    d1, d2 = two_nearest[:, 0], two_nearest[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d2 > 0, d1 / d2, 1.0)


def mia_auc(member_dcr: np.ndarray, nonmember_dcr: np.ndarray) -> float:
    """AUC of the attack "a row is a training member if it is close to a synthetic row":
    0.5 = the synthetic data tells members from non-members no better than chance."""
    if not len(member_dcr) or not len(nonmember_dcr):
        return float("nan")
    labels = np.r_[np.ones(len(member_dcr)), np.zeros(len(nonmember_dcr))]
    return float(roc_auc_score(labels, -np.r_[member_dcr, nonmember_dcr]))


def histogram(synthetic: np.ndarray, holdout: np.ndarray | None, bins: int = 40) -> dict:
    """Shared-bin counts of DCRs, for the report (JSON-friendly)."""
    both = synthetic if holdout is None else np.r_[synthetic, holdout]
    hi = float(np.quantile(both, 0.995)) if len(both) else 1.0
    edges = np.linspace(0.0, hi if hi > 0 else 1.0, bins + 1)
    out = {
        "edges": edges.tolist(),
        "synthetic": np.histogram(np.minimum(synthetic, edges[-1]), edges)[0].tolist(),
    }
    if holdout is not None:
        out["holdout"] = np.histogram(np.minimum(holdout, edges[-1]), edges)[0].tolist()
    return out


# ---------------------------------------------------------------------------- orchestration


def evaluate_privacy(
    columns: dict[str, Column], has_holdout: bool, query_rows: int, reference_rows: int, seed: int
) -> dict:
    """All privacy metrics; `columns` hold real (train), synthetic and, if any, holdout.

    User-id columns are left out of copies and distances: a model's pseudonymous user ids
    (encoder id_policy pseudonymize) never equal real ones, so matching them would make
    synthetic rows look farther from the train rows than held-out rows are. Copies are
    then rows equal on every other column (stricter under id_policy keep too)."""
    columns = {n: c for n, c in columns.items() if c.role != Role.USER_ID}
    if not columns:
        return {"exact_copy_rate": None, "holdout_exact_copy_rate": None, "note": NO_COLUMNS}
    rng = np.random.default_rng(seed)
    hashes = {
        t: row_hashes(columns, t)
        for t in ([REAL, SYNTHETIC, HOLDOUT] if has_holdout else [REAL, SYNTHETIC])
    }
    sizes = {t: len(h) for t, h in hashes.items()}
    out: dict = {
        "exact_copy_rate": exact_copy_rate(hashes[SYNTHETIC], hashes[REAL]),
        "holdout_exact_copy_rate": exact_copy_rate(hashes[HOLDOUT], hashes[REAL])
        if has_holdout
        else None,
    }
    distance_cols = {n: c for n, c in columns.items() if c.shape != Shape.OTHER}
    if not distance_cols:
        return out | {"note": "no numeric, categorical or id columns to measure distances on"}

    def sample(table: int, rows: int) -> np.ndarray:
        n = sizes[table]
        return np.arange(n) if n <= rows else np.sort(rng.choice(n, rows, replace=False))

    # (table, rows) blocks: 0 train reference, 1 synthetic queries, then with a holdout:
    # 2 holdout queries, 3 synthetic reference, 4 members (train), 5 non-members (holdout)
    plan = [(REAL, sample(REAL, reference_rows)), (SYNTHETIC, sample(SYNTHETIC, query_rows))]
    if has_holdout:
        n_mia = min(query_rows, sizes[HOLDOUT], sizes[REAL])
        plan += [
            (HOLDOUT, sample(HOLDOUT, query_rows)),
            (SYNTHETIC, sample(SYNTHETIC, reference_rows)),
            (REAL, np.sort(rng.choice(sizes[REAL], n_mia, replace=False))),
            (HOLDOUT, np.sort(rng.choice(sizes[HOLDOUT], n_mia, replace=False))),
        ]
    points = distance_points(distance_cols, [t for t, _ in plan], [i for _, i in plan])

    def nn(query: int, ref: int, k: int) -> np.ndarray:
        return nearest(points[query], points[ref], k)

    syn_nn = nn(1, 0, 2)
    syn_dcr = syn_nn[:, 0]
    out.update(
        distance_columns=list(distance_cols),
        sample={"reference_train_rows": len(plan[0][1]), "synthetic_query_rows": len(plan[1][1])},
        dcr={"synthetic": dcr_summary(syn_dcr)},
        nndr={"synthetic_median": float(np.median(nndr(syn_nn)))},
    )
    if not has_holdout:
        out.update(
            dcr_share_closer_than_holdout_p5=None,
            mia_auc=None,
            dcr_histogram=histogram(syn_dcr, None),
            note=(
                "no holdout: the DCR baseline and the membership attack need real rows the "
                "generator never saw"
            ),
        )
        return out
    hold_nn = nn(2, 0, 2)
    hold_dcr = hold_nn[:, 0]
    p5 = float(np.quantile(hold_dcr, 0.05))
    member, nonmember = nn(4, 3, 1)[:, 0], nn(5, 3, 1)[:, 0]
    out["dcr"]["holdout"] = dcr_summary(hold_dcr)
    out["nndr"]["holdout_median"] = float(np.median(nndr(hold_nn)))
    out["sample"].update(
        holdout_query_rows=len(hold_dcr),
        mia_reference_synthetic_rows=len(plan[3][1]),
        mia_members=len(member),
        mia_nonmembers=len(nonmember),
    )
    out.update(
        holdout_dcr_p5=p5,
        dcr_share_closer_than_holdout_p5=share_closer_than(syn_dcr, p5),
        mia_auc=mia_auc(member, nonmember),
        dcr_histogram=histogram(syn_dcr, hold_dcr),
    )
    return out
