"""Sampling rows/s of the synthrec on the path, to compare two checkouts on one machine.

    PYTHONPATH=CHECKOUT/platform .venv/bin/python bench/sampling_rate.py [--epochs 2]

Fits the default architecture for a few epochs on the ML-100K train split (first 80,000
rows), warms up with 20,000 rows, then times 3 draws of 100,000 rows on one torch thread and
prints the median. Sampling cost depends on the architecture and the catalog, not on how well
the model is trained, so a short fit is enough to compare code versions; run each version in
the same session, one after the other. Works with checkouts from before the encoding split
(no EncoderConfig) and after it (real ids kept, as before).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

EVENTS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ml-100k" / "events.parquet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from synthrec.config import GanConfig
    from synthrec.gan import Synthesizer

    try:
        from synthrec.config import EncoderConfig

        cfg = GanConfig(encoder=EncoderConfig(id_policy="keep"))
    except ImportError:  # a checkout from before the encoding split
        cfg = GanConfig()
    table = pq.read_table(EVENTS).slice(0, 80_000)
    synth = Synthesizer().fit(table, cfg=cfg, epochs=args.epochs)
    synth.sample(20_000, seed=0)
    rates = []
    for i in range(3):
        start = time.perf_counter()
        synth.sample(100_000, seed=i + 1)
        rates.append(100_000 / (time.perf_counter() - start))
    print(f"rows/s median of 3: {np.median(rates):,.0f} ({', '.join(f'{r:,.0f}' for r in rates)})")


if __name__ == "__main__":
    main()
