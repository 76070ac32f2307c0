"""Benchmark the sequence encoder variants on a dataset (default: MovieLens 100K).

Pretrains ``cnn``, ``gnn``, ``cnn+gnn`` (stacked) and ``cnn+gnn`` (parallel) with the same
settings, then measures encoder inference throughput (states per second) at batch 1, 64
and 256, and prints one markdown table with the command and the date (the table recorded
in ``benchmarks/README.md``). Results also go to ``OUT/results.json``.

    SEQREC_CACHE=/tmp/seqrec-cache python benchmarks/encoders.py --data ../shared/data/ml-100k --threads 1

Timings depend on the machine and on whatever else runs on it; the printed table says
how many threads were used.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from seqrec.data.prepare import prepare_dataset
from seqrec.encoders.config import EncoderConfig, PretrainConfig
from seqrec.encoders.model import SequenceEncoder
from seqrec.encoders.train import pretrain, split_examples


@dataclass
class Args:
    data: Path = Path("../shared/data/ml-100k")
    """Dataset (any log `seqrec data prepare` reads)."""
    out: Path = Path("runs/bench-encoders")
    """Folder for each variant's checkpoint and metrics, and results.json."""
    variants: str = "cnn,gnn,cnn+gnn:stacked,cnn+gnn:parallel"
    """Comma-separated ENCODER[:FUSION] list."""
    threads: int = 1
    """torch threads for training and inference."""
    seed: int = 0
    """Pretraining seed."""
    epochs: int = 40
    """Maximum epochs per variant (early stopping on valid NDCG@10)."""
    batch_sizes: str = "1,64,256"
    """Inference batch sizes for the throughput measurement."""
    seconds: float = 2.0
    """Time spent per throughput measurement."""


def parse_args(argv: list[str]) -> Args:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in asdict(Args()).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    return Args(**vars(parser.parse_args(argv)))


@torch.no_grad()
def throughput(encoder: SequenceEncoder, histories: torch.Tensor, batch: int, seconds: float) -> float:
    """States per second of ``encoder(histories[i:i+batch])`` (eval mode, no grad)."""
    encoder.eval()
    n, done, i = len(histories), 0, 0
    encoder(histories[:batch])  # warm-up
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        rows = torch.arange(i, i + batch) % n
        encoder(histories[rows])
        done += batch
        i += batch
    return done / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    command = "python benchmarks/encoders.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    torch.set_num_threads(args.threads)
    seq = prepare_dataset(args.data)
    histories, _, _ = split_examples(seq, "test", 50)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    rows = []
    for spec in args.variants.split(","):
        encoder_kind, _, fusion = spec.partition(":")
        config = EncoderConfig(n_items=seq.n_items, encoder=encoder_kind, fusion=fusion or "parallel")  # type: ignore[arg-type]
        train = PretrainConfig(epochs=args.epochs, seed=args.seed, threads=args.threads, tensorboard=False)
        name = encoder_kind + (f" ({fusion})" if encoder_kind == "cnn+gnn" else "")
        print(f"== {name}", flush=True)
        metrics = pretrain(seq, config, train, args.out / spec.replace(":", "-").replace("+", "_"))
        encoder = SequenceEncoder.load(metrics["checkpoint"], dataset_key=seq.meta["key"])
        speed = {b: throughput(encoder, histories[:, -config.max_len :], b, args.seconds) for b in batch_sizes}
        rows.append({"variant": name, "metrics": metrics, "throughput": speed})

    date = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        f"Command: `{command}` — {date}, {args.threads} thread(s), {platform.processor() or platform.machine()}, "
        f"dataset key `{seq.meta['key']}` ({seq.n_users} users, {seq.n_items} items, {seq.n_events} events).",
        "",
        "| variant | test NDCG@10 | test HR@10 | test MRR@10 | test NDCG@20 | test HR@20 | valid NDCG@10 | s/epoch | time to best valid (s) | best epoch / epochs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m, t = r["metrics"], r["metrics"]["test"]
        lines.append(
            f"| {r['variant']} | {t['ndcg@10']:.4f} | {t['hr@10']:.4f} | {t['mrr@10']:.4f} | {t['ndcg@20']:.4f} | {t['hr@20']:.4f} "
            f"| {m['valid']['ndcg@10']:.4f} | {m['seconds_per_epoch']:.1f} | {m['time_to_best_s']:.0f} | {m['best_epoch']} / {m['epochs']} |"
        )
    lines += ["", "| variant | " + " | ".join(f"states/s @ batch {b}" for b in batch_sizes) + " |", "|---|" + "---|" * len(batch_sizes)]
    for r in rows:
        lines.append(f"| {r['variant']} | " + " | ".join(f"{r['throughput'][b]:,.0f}" for b in batch_sizes) + " |")
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"command": command, "date": date, "threads": args.threads, "dataset_key": seq.meta["key"],
              "rows": [{"variant": r["variant"], "throughput": r["throughput"],
                        **{k: r["metrics"][k] for k in ("test", "valid", "best_epoch", "epochs", "seconds_per_epoch", "time_to_best_s", "encoder_config", "pretrain_config")}}
                       for r in rows]}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(result, indent=2))
    (args.out / "table.md").write_text(table + "\n")
    return result


if __name__ == "__main__":
    main()
