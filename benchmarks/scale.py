"""Cost growth on one machine: how time and peak memory grow with the size of the log.

    python benchmarks/scale.py --part prep [--sizes 1M,5M,20M,50M] [--repeats 2] [--dir /tmp/seqrec-scale]

Parts (each a function in ``PARTS``; add a part by adding one, e.g. bundle build time or env
steps/s on a big bundle):

``prep``  ``prepare_dataset`` (what ``seqrec data prepare`` runs: hash, stream, k-core, sort,
          split, write the memory-mapped cache entry) on synthetic ``user,item,behaviour,time``
          CSV logs with pv/cart/fav/buy events, beside the yardstick: ``pandas.read_csv`` of the
          same file. Targets: prep ≤ 3× the read, peak RSS ≤ 4 GB at 50M events.
``bundle`` ``seqrec prepare`` with default options (so its 45-minute time budget) on logs of the
          ``funnel`` preset of the documented generative model (pv/fav/cart/buy, about 15 events
          per user, one item per 100 events: 10M events over 100k items), which have a known
          truth and real structure for the simulator to learn (uniform random logs have none,
          and the sanity gate rightly refuses them); then an env process on each bundle
          (``gymnasium.make`` + reset + 200 steps): its peak RSS. Targets at 10M events:
          ≤ 60 min, peak RSS ≤ 8 GB, click AUC above popularity's; env process ≤ 1.5 GB.
          ``--sizes 100k,1M,10M``; a log already in ``--dir`` is reused (the generator is seeded).

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
    elif kind == "env":
        import gymnasium as gym

        import seqrec  # noqa: F401  (registers SeqRec-v0)

        env = gym.make("SeqRec-v0", bundle=str(path))
        t0 = time.perf_counter()
        env.reset(seed=0)
        for _ in range(200):
            if any(env.step(env.action_space.sample())[2:4]):
                env.reset()
        seconds = time.perf_counter() - t0
        extra = {"steps_per_s": round(200 / seconds, 1)}
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


def funnel_log(folder: Path, n_events: int) -> Path:
    """A ``funnel``-preset log of about ``n_events`` events (15.5 per user, one item per 100 events)."""
    if not (folder / "events.csv").exists():
        from seqrec.data.synth_presets import synth_preset
        from seqrec.data.synthetic import write_synthetic

        t0 = time.perf_counter()
        write_synthetic(folder, synth_preset("funnel", n_users=max(n_events * 2 // 31, 50), n_items=max(n_events // 100, 50)))
        print(f"# wrote {folder} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return folder


def build(log: Path, out: Path) -> dict:
    """``seqrec prepare LOG --out OUT`` with default options, under ``/usr/bin/time``: wall s and peak RSS."""
    cmd = ["/usr/bin/time", "-f", "%e %M", sys.executable, "-m", "seqrec.cli.main", "prepare", str(log), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"prepare {log} failed:\n{done.stderr[-2000:]}")
    wall, rss_kb = done.stderr.strip().splitlines()[-1].split()
    return {"seconds": float(wall), "peak_rss_mb": int(rss_kb) // 1024}


def bundle_row(out: Path) -> dict:
    """One row of the bundle table from a built bundle (``bundle.json``, ``fidelity.json``)."""
    meta = json.loads((out / "bundle.json").read_text())
    fidelity = json.loads((out / "fidelity.json").read_text())
    click = fidelity["click_model"]
    budget = meta.get("budget") or {}
    subsampled = [k for k in ("pretrain", "simulator") if (budget.get(k) or {}).get("subsampled")]
    return {"events": fidelity["dataset"]["n_events"], "users": meta["n_users"], "items": meta["n_items"], "stages": meta.get("stage_seconds", {}),
            "subsampled": subsampled, "auc": click.get("auc"), "popularity_auc": click.get("popularity_auc")}


def part_bundle(args: argparse.Namespace) -> None:
    """Bundle build time, peak RSS and simulator quality, and an env process's memory, per log size."""
    rows = []
    for size in args.sizes.split(","):
        log = funnel_log(args.dir / f"funnel-{size}", parse_size(size))
        out = args.dir / f"bundle-{size}"
        built = build(log, out) if args.rebuild or not (out / "bundle.json").exists() else json.loads((out / "build.json").read_text())
        (out / "build.json").write_text(json.dumps(built))
        env = measure("env", out, 1)
        rows.append((size, built, bundle_row(out), env))
        print(f"# {size}: {built} {rows[-1][2]} env {env}", file=sys.stderr)
    print(f"`python benchmarks/scale.py --part bundle --sizes {args.sizes}` — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC\n")
    print("| events | users | items | bundle (s) | prep / pretrain / simulator / report (s) | epochs subsampled | peak RSS (GB) | click AUC / popularity AUC | env process RSS (GB) |")
    print("|---:|---:|---:|---:|---|---|---:|---|---:|")
    for size, built, row, env in rows:
        st = row["stages"]
        stages = " / ".join(f"{st.get(k, 0):.0f}" for k in ("data preparation", "encoder pretraining", "simulator fit", "fidelity report"))
        print(f"| {row['events']:,} | {row['users']:,} | {row['items']:,} | {built['seconds']:.0f} | {stages} | "
              f"{', '.join(row['subsampled']) or 'none'} | {built['peak_rss_mb'] / 1024:.2f} | "
              f"{row['auc']} / {row['popularity_auc']} | {env['peak_rss_mb'] / 1024:.2f} |")  # fmt: skip


PARTS: dict[str, Callable[[argparse.Namespace], None]] = {"prep": part_prep, "bundle": part_bundle}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=sorted(PARTS), default="prep", help="which cost to measure")
    parser.add_argument("--sizes", default="1M,5M,20M,50M", help="log sizes in events (k/M suffixes)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per measurement; the best is reported")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "seqrec-scale", help="where the logs go")
    parser.add_argument("--keep", action="store_true", help="keep the generated logs")
    parser.add_argument("--rebuild", action="store_true", help="bundle part: rebuild bundles already in --dir")
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
