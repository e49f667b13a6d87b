"""How much recommendation signal do synthetic rows carry? Simple scorers fitted on synthetic
rows only, judged like model F on real MovieLens-100K (leave-last-out, full ranking minus each
user's real train items), beside the same scorers fitted on the real training rows.

    .venv/bin/python bench/synthetic_signal.py [--gan-budget-min 10] [--synthetic-rows 100000]
        [--synthetic FILE]

- popularity: items ranked by their count in the rows;
- EASE (λ = 200): item-item weights from the rows' user × item matrix, applied to each real
  user's real history (what co-occurrence the rows teach);
- the user's own rows (synthetic only): items ranked by how often the rows pair them with
  this user id, the rows' popularity breaking ties.

The GAN is fitted inside the run on the leave-last-out training rows (as in
bench/recommender.py, same sampling), unless `--synthetic` names a Parquet file of rows.
Results: bench/results/synthetic_signal.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recommender import F_CONFIG, load, log, save_results, synthesize  # noqa: E402

from synthrec.data.splits import leave_last_out  # noqa: E402
from synthrec.recommender.baselines import EASE, Popularity  # noqa: E402
from synthrec.recommender.data import InteractionEncoder, Log  # noqa: E402
from synthrec.recommender.metrics import (
    SegmentSpec,
    evaluate_ranking,
    segment_masks,
    split_leave_last_out,
)  # noqa: E402


class OwnRows:
    """Score of item i for a real user = rows pairing that user id with i, plus popularity / 1e6."""

    def __init__(self, rows: Log, real_users: pa.Array, popularity: np.ndarray):
        index = pc.fill_null(pc.index_in(rows.user_ids, value_set=real_users), -1).to_numpy()
        self.counts = np.zeros((len(real_users), len(popularity)))
        groups = np.repeat(index, rows.lengths)
        known = groups >= 0
        np.add.at(self.counts, (groups[known], rows.items[known]), 1.0)
        self.counts += popularity / max(popularity.max(), 1.0) * 1e-6

    def score(self, log: Log, group: np.ndarray, stop: np.ndarray) -> np.ndarray:
        return self.counts[group]


def pair_facts(rows: Log, train: Log) -> dict:
    """Share of the rows' (user, item) pairs that occur in the real training rows, and share of
    rows repeating a pair of the same user."""
    width = int(max(rows.items.max(), train.items.max())) + 1
    index = pc.fill_null(pc.index_in(rows.user_ids, value_set=train.user_ids), -1).to_numpy()
    groups = np.repeat(index, rows.lengths)
    keys = groups * width + rows.items
    real_keys = train.group_of * width + train.items
    own_keys = (
        rows.group_of * width + rows.items
    )  # repeats within the rows' own users, known or not
    return {
        "rows": int(len(keys)),
        "pairs_in_real_train": float(np.isin(keys[groups >= 0], real_keys).mean()),
        "repeated_pairs": float(1.0 - len(np.unique(own_keys)) / len(own_keys)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gan-budget-min", type=float, default=10.0)
    parser.add_argument("--synthetic-rows", type=int, default=100_000)
    parser.add_argument(
        "--synthetic", default=None, help="Parquet file of synthetic rows (skips the GAN fit)"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = load()
    enc = InteractionEncoder.fit(table, F_CONFIG)
    split = split_leave_last_out(table, enc)
    real = enc.encode(split.train, "real train")
    masks, _ = segment_masks(split.test, real, enc, SegmentSpec())
    if args.synthetic:
        synthetic, info = (
            pq.read_table(args.synthetic).select(table.column_names),
            {"file": args.synthetic},
        )
    else:
        log("fitting the GAN on the leave-last-out training rows")
        synthetic, info = synthesize(
            leave_last_out(table)[0], args.synthetic_rows, args.gan_budget_min, seed=0
        )
    rows = enc.encode(synthetic, "synthetic rows")
    result: dict = {"synthetic": {**info, **pair_facts(rows, real)}, "scores": {}}
    for source, fitted in (("real train rows", real), ("synthetic rows", rows)):
        pop = Popularity(fitted, enc.num_items)
        scorers = {"popularity": pop, "EASE": EASE(fitted, enc.num_items, l2=200.0)}
        if fitted is rows:  # from real rows it is empty: their items are excluded from the ranking
            scorers["the user's own rows"] = OwnRows(fitted, split.log.user_ids, pop.counts)
        for name, scorer in scorers.items():
            r = evaluate_ranking(scorer, split.test, masks)
            result["scores"][f"{name}, from {source}"] = r
            log(f"{name}, from {source}: NDCG@10 {r['overall']['ndcg@10']:.4f}")
    lines = [
        "| scorer, fitted on | NDCG@10 | Recall@10 | NDCG@10 short history | NDCG@10 rare genre |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in result["scores"].items():
        lines.append(
            f"| {name} | {r['overall']['ndcg@10']:.4f} | {r['overall']['recall@10']:.4f} | "
            f"{r['short_history']['ndcg@10']:.4f} | {r['rare_category']['ndcg@10']:.4f} |"
        )
    s = result["synthetic"]
    text = (
        f"`{' '.join(['python', *sys.argv])}` ({time.strftime('%Y-%m-%d %H:%M')})\n\n"
        + "\n".join(lines)
        + f"\n\nsynthetic rows: {s['rows']:,}; (user, item) pairs found in the real training rows: "
        f"{s['pairs_in_real_train']:.1%}; rows repeating a pair of their user: "
        f"{s['repeated_pairs']:.1%}\n"
    )
    save_results("synthetic_signal", result, text)


if __name__ == "__main__":
    main()
