"""Write a small made-up Taobao-style log whose columns synthrec does not know by name:

uid (integer user id), sku (integer item id), category_id, behavior_type (pv / fav / cart /
buy), ts (epoch seconds), note (free text to drop)

python make_log.py log.csv [ROWS]
"""

from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

START_S = 1_511_539_200  # 2017-11-25 00:00 UTC
BEHAVIOURS = np.array(["pv", "fav", "cart", "buy"])
SHARES = [0.85, 0.05, 0.06, 0.04]


def make_log(rows: int = 3_000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    num_users, num_items = max(rows // 15, 10), max(rows // 10, 20)
    popular = 1.0 / np.arange(1, num_items + 1) ** 1.1  # a few items take most views
    user = np.sort(rng.integers(0, num_users, rows))  # rows grouped by user, times rising
    item = rng.choice(num_items, rows, p=popular / popular.sum())
    ts = START_S + np.sort(rng.integers(0, 9 * 86_400, rows))
    return pa.table(
        {
            "uid": pa.array(100_000 + user, pa.int64()),
            "sku": pa.array(5_000_000 + item, pa.int64()),
            "category_id": pa.array(item % 12, pa.int64()),
            "behavior_type": pa.array(BEHAVIOURS[rng.choice(4, rows, p=SHARES)]),
            "ts": pa.array(ts, pa.int64()),
            "note": pa.array(np.array(["gift", "sale", "repeat", "new"])[np.arange(rows) % 4]),
        }
    )


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "log.csv"
    pacsv.write_csv(make_log(int(sys.argv[2]) if len(sys.argv) > 2 else 3_000), out)
    print(f"wrote {out}")
