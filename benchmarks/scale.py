"""Cost growth on one machine: how time and peak memory grow with the size of the log.

    python benchmarks/scale.py --part prep [--sizes 1M,5M,20M,50M] [--repeats 2] [--dir /tmp/seqrec-scale]

Parts (each a function in ``PARTS``; add a part by adding one, e.g. bundle build time or env
steps/s on a big bundle):

``prep``  ``prepare_dataset`` (what ``seqrec data prepare`` runs: hash, stream, k-core, sort,
          split, write the memory-mapped cache entry) on synthetic ``user,item,behaviour,time``
          CSV logs with pv/cart/fav/buy events, beside the yardstick: ``pandas.read_csv`` of the
          same file. Targets: prep ≤ 3× the read, peak RSS ≤ 4 GB at 50M events.

Every measurement runs in its own process (``--one KIND PATH``), so its peak RSS is its own;
with ``--repeats`` the best of the runs is reported. The logs are written by a vectorised
generator into ``--dir`` (about 26 bytes per event) and deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

BEHAVIOURS = np.array(["pv", "cart", "fav", "buy"])
BEHAVIOUR_P = (0.89, 0.055, 0.03, 0.025)  # a Taobao-like funnel


# ----------------------------------------------------------------------------- the logs


def write_log(path: Path, n_events: int, seed: int = 0, chunk: int = 2_000_000) -> Path:
    """A synthetic event log of ``n_events`` rows: ``user,item,behaviour,time``, in time order.

    Users (n/50 of them) are uniform, items (n/20) Zipf-popular, time spans nine days, so a
    user's events are scattered through the file (the sort has real work). Written in chunks
    by pyarrow's CSV writer: ~1.5 s per million events on two cores.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    n_users, n_items = max(n_events // 50, 10), max(n_events // 20, 10)
    start, span = 1_511_500_000, 9 * 86400
    schema = pa.schema([("user", pa.int64()), ("item", pa.int64()), ("behaviour", pa.string()), ("time", pa.int64())])
    path.write_text("user,item,behaviour,time\n")
    opts = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with open(path, "ab") as fh, pacsv.CSVWriter(fh, schema, write_options=opts) as writer:
        for lo in range(0, n_events, chunk):
            n = min(chunk, n_events - lo)
            ts = start + (np.arange(lo, lo + n, dtype=np.int64) * span) // n_events
            users = rng.integers(1, n_users + 1, n) * 7 + 3
            items = np.minimum(rng.zipf(1.3, n), n_items) * 13 + rng.integers(0, 13, n)
            beh = BEHAVIOURS[rng.choice(len(BEHAVIOURS), n, p=BEHAVIOUR_P)]
            writer.write(pa.table({"user": users, "item": items, "behaviour": beh, "time": ts}, schema=schema))
    return path


def parse_size(text: str) -> int:
    """``"5M"`` -> 5,000,000; ``"200k"`` -> 200,000."""
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


# ----------------------------------------------------------------------------- one measurement (own process)


def one(kind: str, path: Path) -> dict:
    """Time ``kind`` on ``path`` in this process: ``{"seconds", "peak_rss_mb", ...}``."""
    if kind == "read":
        import pandas as pd

        t0 = time.perf_counter()
        rows = len(pd.read_csv(path))
        seconds = time.perf_counter() - t0
        extra = {"rows": rows}
    elif kind == "prep":
        from seqrec.data.prepare import prepare_dataset

        with tempfile.TemporaryDirectory(dir=path.parent) as cache:
            t0 = time.perf_counter()
            seq = prepare_dataset(path, cache_dir=cache)
            seconds = time.perf_counter() - t0
            extra = {"events_kept": seq.n_events, "users": seq.n_users, "items": seq.n_items}
            del seq
    else:
        raise SystemExit(f"unknown measurement {kind!r}")
    return {"seconds": round(seconds, 3), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), **extra}


def measure(kind: str, path: Path, repeats: int) -> dict:
    """The best of ``repeats`` runs of ``kind``, each in a fresh process."""
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, __file__, "--one", kind, str(path)], capture_output=True, text=True, check=False)
        if out.returncode:
            raise SystemExit(f"{kind} {path} failed:\n{out.stderr[-2000:]}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "all_seconds": [r["seconds"] for r in runs], "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


# ----------------------------------------------------------------------------- parts


def part_prep(args: argparse.Namespace) -> None:
    """Prep time and peak RSS against the raw read, one row per log size."""
    rows = []
    for size in args.sizes.split(","):
        n = parse_size(size)
        path = args.dir / f"events-{size}.csv"
        if not path.exists():
            t0 = time.perf_counter()
            write_log(path, n)
            print(f"# wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        read, prep = measure("read", path, args.repeats), measure("prep", path, args.repeats)
        rows.append((n, path.stat().st_size, read, prep))
        print(f"# {size}: read {read['all_seconds']} s, prep {prep['all_seconds']} s, peak RSS {prep['peak_rss_mb']} MB", file=sys.stderr)
        if not args.keep:
            path.unlink()
    print(f"`python benchmarks/scale.py --part prep --sizes {args.sizes} --repeats {args.repeats}` — "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, best of {args.repeats}\n")  # fmt: skip
    print("| events | CSV (GB) | raw read: `pd.read_csv` (s) | read peak RSS (GB) | prep (s) | prep ÷ read | prep peak RSS (GB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, size, read, prep in rows:
        print(f"| {n:,} | {size / 1e9:.2f} | {read['seconds']:.2f} | {read['peak_rss_mb'] / 1024:.2f} | {prep['seconds']:.2f} | "
              f"{prep['seconds'] / read['seconds']:.2f}× | {prep['peak_rss_mb'] / 1024:.2f} |")  # fmt: skip


PARTS: dict[str, Callable[[argparse.Namespace], None]] = {"prep": part_prep}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=sorted(PARTS), default="prep", help="which cost to measure")
    parser.add_argument("--sizes", default="1M,5M,20M,50M", help="log sizes in events (k/M suffixes)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per measurement; the best is reported")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "seqrec-scale", help="where the logs go")
    parser.add_argument("--keep", action="store_true", help="keep the generated logs")
    parser.add_argument("--one", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], Path(args.one[1]))))
        return
    args.dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.dir).free
    need = 30 * max(parse_size(s) for s in args.sizes.split(",")) * 3  # the log and two cache entries
    if free < need:
        raise SystemExit(f"{args.dir}: {free / 1e9:.1f} GB free, the largest log needs about {need / 1e9:.1f} GB")
    PARTS[args.part](args)


if __name__ == "__main__":
    main()
