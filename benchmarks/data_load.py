"""Load + preprocess + split time of ML-100K, cold (no cache) and cached.

    python benchmarks/data_load.py [--data ../shared/data/ml-100k] [--repeats 5]

Prints a markdown table (median of the repeats) for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

from seqrec.data.prepare import prepare_dataset

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not (args.data / "u.data").exists():
        raise SystemExit(f"skipped: MovieLens 100K not found at {args.data}")
    cold, cached = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            seq = prepare_dataset(args.data, cache_dir=Path(tmp))
            cold.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            again = prepare_dataset(args.data, cache_dir=Path(tmp))
            cached.append(time.perf_counter() - t0)
            assert again.meta["cache_hit"] and not seq.meta["cache_hit"]
    print(f"`python benchmarks/data_load.py` — {dt.date.today()}, median of {args.repeats}\n")
    print("| dataset | events | cold: read + preprocess + split + cache write (s) | cached load (s) |")
    print("|---|---:|---:|---:|")
    print(f"| ML-100K | {seq.n_events:,} | {statistics.median(cold):.3f} | {statistics.median(cached):.4f} |")


if __name__ == "__main__":
    main()
