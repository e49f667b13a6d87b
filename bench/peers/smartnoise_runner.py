"""Fit one smartnoise-synth synthesizer (MST, AIM or DP-CTGAN) and sample from it; runs in the
smartnoise env (bench/peers/setup_smartnoise.sh), never imported by synthrec.

    python smartnoise_runner.py TRAIN.parquet OUT.parquet --synth mst --epsilon 2 --delta 1e-6 \
        --rows 80000 [--epochs 30]

Every column is categorical (bench/dp.py bins the numeric ones on public edges first). Prints
one JSON line: fit and sample seconds. smartnoise's preprocessing takes each categorical
column's values from the data without noise (preprocessor_eps=0: no continuous column needs
bounds); bench/dp.py states that in its table notes.
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("train")
    ap.add_argument("out")
    ap.add_argument("--synth", choices=["mst", "aim", "dpctgan"], required=True)
    ap.add_argument("--epsilon", type=float, required=True)
    ap.add_argument("--delta", type=float, required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()

    from snsynth import Synthesizer

    df = pq.read_table(args.train).to_pandas().astype(str)
    extra = {"epochs": args.epochs} if args.synth == "dpctgan" else {}
    synth = Synthesizer.create(args.synth, epsilon=args.epsilon, delta=args.delta, **extra)
    start = time.perf_counter()
    synth.fit(df, categorical_columns=list(df.columns), preprocessor_eps=0.0)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    sample = pd.DataFrame(synth.sample(args.rows), columns=df.columns).astype(str)
    sample_s = time.perf_counter() - start
    pq.write_table(pa.Table.from_pandas(sample, preserve_index=False), args.out)
    print(json.dumps({"fit_s": fit_s, "sample_s": sample_s}))


if __name__ == "__main__":
    main()
