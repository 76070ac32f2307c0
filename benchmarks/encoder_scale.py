"""Pretraining cost against catalogue size: full softmax versus sampled softmax.

Builds a synthetic next-item log of ``--events`` events (``--users`` users of equal length;
item popularity Zipf(0.8), the next item is the previous one + 1 half the time, else a
popularity draw) for each catalogue size in ``--sizes``, and on ``--threads`` threads times
``--batches`` training steps (after 2 warm-up steps) of the default encoder and
:class:`~seqrec.encoders.config.PretrainConfig` (``cnn+gnn`` parallel, branch loss, batch 512,
``precision`` auto) with the full softmax (up to ``--full-up-to`` items) and with the sampled
one (``n_sampled`` shared negatives), then one validation pass (the ranking protocol ``evaluate`` picks for that size).
Prints a markdown table: milliseconds per step, the projected training seconds of one
epoch, and the validation seconds.

    python benchmarks/encoder_scale.py --sizes 1000,10000,50000,100000 --threads 1

With ``--pretrain N``, also runs the real :func:`~seqrec.encoders.train.pretrain` with all
defaults (loss picked by the threshold) on the log with ``N`` items and prints its total
time, epochs and test metrics.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from seqrec.data.sequences import SequenceData, SplitConfig, split_labels
from seqrec.encoders.config import EncoderConfig, PretrainConfig
from seqrec.encoders.train import build_encoder, build_optimizer, evaluate, negative_sampler, next_item_loss, pretrain, seed_everything, split_examples
from seqrec.infra.threads import torch_threads


def synthetic_sequences(n_items: int, n_events: int, n_users: int, seed: int = 0) -> SequenceData:
    """A learnable next-item log: ``n_users`` users with ``n_events // n_users`` events each."""
    rng = np.random.default_rng(seed)
    popularity = rng.permutation(1.0 / np.arange(1, n_items + 1) ** 0.8)
    popularity /= popularity.sum()
    length = n_events // n_users
    items = np.empty((n_users, length), np.int64)
    items[:, 0] = rng.choice(n_items, n_users, p=popularity)
    for t in range(1, length):  # one vectorised step per position, all users at once
        follow = rng.random(n_users) < 0.5
        items[:, t] = np.where(follow, (items[:, t - 1] + 1) % n_items, rng.choice(n_items, n_users, p=popularity))
    users = np.repeat(np.arange(n_users), length)
    ts = np.tile(np.arange(length), n_users).astype(np.int64)
    user_ptr = np.arange(0, n_users * length + 1, length, dtype=np.int64)
    return SequenceData(
        users=users, items=items.ravel(), ts=ts, behaviours=np.zeros(len(users), np.int8), values=np.ones(len(users), np.float32),
        split=split_labels(user_ptr, ts, SplitConfig()), user_ptr=user_ptr, n_items=n_items, behaviour_names=["event"],
        user_ids=np.arange(n_users), item_ids=np.arange(n_items), meta={"key": f"scale-{n_items}-{n_events}-{seed}"},
    )  # fmt: skip


def time_steps(seq: SequenceData, train: PretrainConfig, sampled: bool, batches: int) -> float:
    """Seconds per training step (forward, loss, backward, AdamW) with the full or the sampled softmax."""
    generator = seed_everything(train.seed)
    config = EncoderConfig(n_items=seq.n_items)
    items, behaviours, targets = split_examples(seq, "train", config.max_len)
    encoder = build_encoder(seq, config).train()
    optimizer = build_optimizer(encoder, train, sampled)
    sampler = negative_sampler(seq, replace(train, sampled_softmax_above=0 if sampled else seq.n_items))
    dtype = train.training_dtype
    order = torch.randperm(len(targets), generator=generator)
    start = 0.0
    for b in range(batches + 2):  # 2 warm-up steps
        if b == 2:
            start = time.perf_counter()
        idx = order[(b * train.batch_size) % len(targets) :][: train.batch_size]
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            loss = next_item_loss(encoder, items[idx], behaviours[idx], targets[idx], train.branch_loss, sampler, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,2000,5000,10000,50000,100000", help="catalogue sizes, comma-separated")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=10, help="timed training steps per cell")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--full-up-to", type=int, default=100_000, help="time the full softmax only up to this many items")
    parser.add_argument("--pretrain", type=int, default=0, help="also run pretrain() with defaults on the log with this many items")
    args = parser.parse_args()
    train = PretrainConfig(threads=args.threads, progress=False, tensorboard=False)
    print(f"`python benchmarks/encoder_scale.py --sizes {args.sizes} --events {args.events} --users {args.users} "
          f"--batches {args.batches} --threads {args.threads} --full-up-to {args.full_up_to}` — {dt.date.today()}, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {args.threads} thread(s), step dtype {str(train.training_dtype).removeprefix('torch.')}\n")  # fmt: skip
    print(f"| items | train targets | full softmax: ms/step | sampled-{train.n_sampled}: ms/step | full: s/epoch (projected) "
          "| sampled: s/epoch (projected) | default loss | validation: protocol, s |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---|---|")
    with torch_threads(args.threads):
        for n_items in (int(s) for s in args.sizes.split(",")):
            seq = synthetic_sequences(n_items, args.events, args.users)
            n_targets = len(seq.positions("train"))
            n_steps = -(-n_targets // train.batch_size)
            full = time_steps(seq, train, False, args.batches) if n_items <= args.full_up_to else None
            sampled = time_steps(seq, train, True, args.batches)
            encoder = build_encoder(seq, EncoderConfig(n_items=n_items))
            t0 = time.perf_counter()
            valid = evaluate(encoder, seq, "valid", train.eval_batch_size, train.full_ranking_max_items, train.eval_negatives)
            valid_s = time.perf_counter() - t0
            default = "full" if negative_sampler(seq, train) is None else "sampled"
            full_ms, full_epoch = ("–", "–") if full is None else (f"{1000 * full:.0f}", f"{full * n_steps:.1f}")
            print(f"| {n_items:,} | {n_targets:,} | {full_ms} | {1000 * sampled:.0f} | {full_epoch} | {sampled * n_steps:.1f} | "
                  f"{default} | {valid['protocol']}, {valid_s:.2f} |", flush=True)  # fmt: skip
        if args.pretrain:
            seq = synthetic_sequences(args.pretrain, args.events, args.users)
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                m = pretrain(seq, EncoderConfig(n_items=args.pretrain), train, Path(tmp))
                total = time.perf_counter() - t0
            pop = evaluate_popularity(seq)
            print(f"\npretrain() with defaults, {args.pretrain:,} items: {total:.0f} s in all, {m['epochs']} epochs "
                  f"({m['seconds_per_epoch']:.1f} s/epoch), loss {m['loss']}, test {m['test']['protocol']} "
                  f"NDCG@10 {m['test']['ndcg@10']:.4f} HR@10 {m['test']['hr@10']:.4f} (popularity NDCG@10 {pop:.4f})")  # fmt: skip


def evaluate_popularity(seq: SequenceData) -> float:
    """Full-ranking test NDCG@10 of ranking by train popularity (a floor for the encoder)."""
    from seqrec.encoders.metrics import ranking_metrics, target_ranks

    targets = torch.from_numpy(seq.items[seq.positions("test")])
    scores = torch.from_numpy(seq.item_popularity(("train",)).astype(np.float64)).expand(len(targets), -1)
    return ranking_metrics(target_ranks(scores, targets))["ndcg@10"]


if __name__ == "__main__":
    main()
