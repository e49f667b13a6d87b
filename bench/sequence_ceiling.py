"""What structure must synthetic rows carry for F trained on them alone to come near F trained
on real rows? F's synthetic-only arm (bench/recommender.py's protocol: trained and early-stopped
on the rows alone, judged on real MovieLens-100K leave-last-out) on rows *derived from the real
training rows*, each keeping one kind of structure:

    .venv/bin/python bench/sequence_ceiling.py [--seeds 1] [--gan-budget-min 10 | --synthetic FILE]

- real rows: F's real-only arm, the 100% reference of this run;
- user's items, shuffled: each user's real items in a random order (the user-item joint exact,
  the order lost): what a generator that got "who likes what" exactly right, but not the
  sequence, could teach;
- first-order chain: each user's items redrawn as a chain from the real item -> next-item
  transition counts, the user's real first item as its start (order kept one step deep, the
  user's taste only through the chain): what a generator of exact first-order transitions
  could teach;
- item popularity: each user's items redrawn from item frequencies (no joint at all);
- synthrec's GAN rows: with `--gan-budget-min M`, a GAN fitted here on the training rows (as in
  bench/recommender.py), its rows sampled plainly and with genre shares tempered (the rows
  bench/recommender.py uses); or `--synthetic FILE`, rows from a file.

The derived rows keep every other column of the real row (user features, time, rating) and
take the new item's attributes (genre, release year) from the item; they copy real structure
on purpose and are probes, not shareable data. Results: bench/results/sequence_ceiling.{json,md}.
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
from recommender import F_CONFIG, f_arm, load, log, mean_over_seeds, save_results, synthesize  # noqa: E402

from synthrec.data.splits import leave_last_out  # noqa: E402
from synthrec.recommender.data import InteractionEncoder  # noqa: E402
from synthrec.recommender.metrics import (
    SegmentSpec,
    evaluate_ranking,
    segment_masks,
    split_leave_last_out,
)  # noqa: E402

ITEM_COLUMNS = ("item_id", "genre", "release_year")  # the item and the columns it determines


class Template:
    """The real training rows in F's order (user, then time, then file order: `enc.encode`),
    with each row's item index."""

    def __init__(self, train: pa.Table, enc: InteractionEncoder):
        log = enc.encode(train, "template")
        n = len(log.rows)
        self.rows = train.take(pa.array(log.rows))
        items = pc.dictionary_encode(self.rows.column("item_id")).combine_chunks()
        self.item = items.indices.to_numpy().astype(np.int64)  # (N,) 0..C-1
        self.num_items = len(items.dictionary)
        self.starts, self.lengths = log.offsets[:-1], log.lengths
        self.first = np.zeros(n, bool)  # (N,) a user's first row
        self.first[self.starts] = True
        self.user = log.group_of
        self.any_row = np.zeros(self.num_items, np.int64)
        self.any_row[self.item] = np.arange(n)  # a row holding each item

    def with_items(self, item: np.ndarray) -> pa.Table:
        """The template with each row's item replaced by `item` (N,), attributes following it."""
        source = pa.array(self.any_row[item])
        columns = {
            name: (
                self.rows.column(name).take(source)
                if name in ITEM_COLUMNS
                else self.rows.column(name)
            )
            for name in self.rows.column_names
        }
        return pa.table(columns, schema=self.rows.schema)


def shuffled_within_users(t: Template, rng: np.random.Generator) -> np.ndarray:
    key = rng.random(len(t.item))
    order = np.lexsort((key, t.user))  # rows are grouped by user already: permute inside each group
    return t.item[order]


def first_order_chain(t: Template, rng: np.random.Generator) -> np.ndarray:
    """Items drawn step by step from the real transition counts (all users' chains at once);
    an item never followed by another restarts from item popularity."""
    follows = ~t.first[1:]
    pairs = np.unique(t.item[:-1][follows] * t.num_items + t.item[1:][follows], return_counts=True)
    src, dst, cum = (
        pairs[0] // t.num_items,
        pairs[0] % t.num_items,
        np.cumsum(pairs[1]).astype(np.float64),
    )
    row_start = np.r_[0.0, cum][
        np.searchsorted(src, np.arange(t.num_items + 1))
    ]  # (C+1,) cum count before item
    popular = np.cumsum(np.bincount(t.item, minlength=t.num_items)) / len(t.item)
    out = t.item.copy()  # position 0 of each user keeps the real first item
    current = t.item[t.starts]
    for step in range(1, int(t.lengths.max())):  # one vectorized draw per position, all users
        alive = t.lengths > step
        cur = current[alive]
        lo, hi = row_start[cur], row_start[cur + 1]
        pick = np.searchsorted(cum, lo + rng.random(len(cur)) * (hi - lo), side="right")
        nxt = dst[np.minimum(pick, len(dst) - 1)]
        dead_end = hi <= lo
        nxt[dead_end] = np.searchsorted(popular, rng.random(int(dead_end.sum())), side="right")
        out[t.starts[alive] + step] = nxt
        current[alive] = nxt
    return out


def by_popularity(t: Template, rng: np.random.Generator) -> np.ndarray:
    return t.item[rng.integers(0, len(t.item), len(t.item))]


DERIVED = {
    "user's items, shuffled": shuffled_within_users,
    "first-order chain": first_order_chain,
    "item popularity": by_popularity,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds", type=int, default=1, help="F seeds per arm (also the derivation seed)"
    )
    parser.add_argument(
        "--synthetic", default=None, help="Parquet file of synthrec rows to score alongside"
    )
    parser.add_argument(
        "--gan-budget-min", type=float, default=None, help="fit synthrec's GAN here for M minutes"
    )
    parser.add_argument("--synthetic-rows", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.monotonic()
    table = load()
    enc = InteractionEncoder.fit(table, F_CONFIG)
    split = split_leave_last_out(table, enc)
    masks, _ = segment_masks(split.test, enc.encode(split.train, "real train"), enc, SegmentSpec())
    train = leave_last_out(table)[0]
    template = Template(train, enc)
    result: dict = {"args": vars(args), "config": F_CONFIG.model_dump(), "arms": {}}
    gan_rows: dict[str, pa.Table] = {}
    if args.synthetic:
        gan_rows["synthrec GAN rows (file)"] = pq.read_table(args.synthetic).select(
            table.column_names
        )
    elif args.gan_budget_min:
        log("fitting the GAN on the leave-last-out training rows")
        tempered, info = synthesize(
            train, args.synthetic_rows, args.gan_budget_min, seed=0, plain_rows=True
        )
        gan_rows["synthrec GAN rows, plain"] = info.pop("plain")
        gan_rows["synthrec GAN rows, genres tempered"] = tempered
        result["synthetic"] = info

    def rows_for(name: str, seed: int) -> pa.Table:
        if name in gan_rows:
            return gan_rows[name]
        return template.with_items(DERIVED[name](template, np.random.default_rng(seed)))

    arms = ["real rows", *DERIVED, *gan_rows]
    for name in arms:
        runs = []
        for seed in range(args.seeds):
            cfg = F_CONFIG.model_copy(update={"seed": seed})
            log(f"training F on {name} (seed {seed})")
            if name == "real rows":
                scorer, info = f_arm(enc, split, split.train, None, cfg)
            else:
                scorer, info = f_arm(enc, split, None, rows_for(name, seed), cfg)
            runs.append({**evaluate_ranking(scorer, split.test, masks), "training": info})
            log(f"{name} seed {seed}: NDCG@10 {runs[-1]['overall']['ndcg@10']:.4f} {info}")
        result["arms"][name] = mean_over_seeds(runs)
    result["total_seconds"] = round(time.monotonic() - start, 1)
    reference = result["arms"]["real rows"]["overall"]["ndcg@10"]
    lines = [
        "| F trained on | NDCG@10 | share of real rows | Recall@10 | NDCG@10 short history | "
        "NDCG@10 rare genre | best epoch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in result["arms"].items():
        ndcg = r["overall"]["ndcg@10"]
        lines.append(
            f"| {name} | {ndcg:.4f} | {ndcg / reference:.0%} | {r['overall']['recall@10']:.4f} | "
            f"{r['short_history']['ndcg@10']:.4f} | {r['rare_category']['ndcg@10']:.4f} | "
            f"{r['training']['best_epoch']} |"
        )
    text = (
        f"`{' '.join(['python', *sys.argv])}` ({time.strftime('%Y-%m-%d %H:%M')}, "
        f"{result['total_seconds'] / 60:.0f} min, {args.seeds} seed(s) per arm)\n\n"
        + "\n".join(lines)
        + "\n"
    )
    save_results("sequence_ceiling", result, text)


if __name__ == "__main__":
    main()
