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
from seqrec.encoders.metrics import per_target_metric, target_ranks
from seqrec.encoders.train import METRICS_NAME, pretrain, split_examples


@dataclass
class Args:
    data: Path = Path("../shared/data/ml-100k")
    """Dataset (any log `seqrec data prepare` reads)."""
    out: Path = Path("runs/bench-encoders")
    """Folder for each variant's checkpoint and metrics, and results.json."""
    variants: str = "cnn,gnn,cnn+gnn:stacked,cnn+gnn:parallel"
    """Comma-separated ENCODER[:FUSION][@EPOCHS] list (``@EPOCHS`` overrides ``--epochs`` for that variant)."""
    threads: int = 1
    """torch threads for training and inference."""
    seeds: str = "0"
    """Comma-separated pretraining seeds; with several, the table gives mean ± std over them."""
    epochs: int = PretrainConfig.epochs
    """Maximum epochs per variant (early stopping on valid NDCG@10; the learning rate decays over them)."""
    batch_sizes: str = "1,64,256"
    """Inference batch sizes for the throughput measurement."""
    seconds: float = 2.0
    """Time spent per throughput measurement."""
    paired: str = ""
    """``A/B`` variant specs (e.g. ``cnn+gnn:parallel/gnn``, both in ``--variants``): paired
    comparison on the same seeds and the same test (and valid) users, with bootstrap confidence intervals."""
    reuse: bool = False
    """Reuse a seed's run when its folder under ``--out`` already holds ``metrics.json``
    (re-tabulate or compare finished runs without training again)."""
    n_boot: int = 10000
    """Bootstrap resamples of the paired comparison."""
    precision: str = PretrainConfig.precision
    """Training-step arithmetic: auto | fp32 | bf16 (see ``PretrainConfig.precision``)."""


def parse_args(argv: list[str]) -> Args:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in asdict(Args()).items():
        if isinstance(default, bool):
            parser.add_argument("--" + name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=default)
        else:
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


@torch.no_grad()
def split_ranks(checkpoint: str | Path, seq, split: str = "test") -> torch.Tensor:
    """1-based full-catalogue rank of every target of ``split``, shape (n_targets,), in split order."""
    encoder = SequenceEncoder.load(checkpoint, dataset_key=seq.meta["key"])
    items, behaviours, targets = split_examples(seq, split, encoder.config.max_len)
    return torch.cat([target_ranks(encoder.scores(encoder(items[i : i + 1024], behaviours[i : i + 1024])), targets[i : i + 1024])
                      for i in range(0, len(targets), 1024)])  # fmt: skip


def paired_comparison(ranks_a: torch.Tensor, ranks_b: torch.Tensor, n_boot: int = 10000, seed: int = 0) -> dict:
    """Paired comparison of two variants trained with the same seeds, on the same test users.

    :param ranks_a: test ranks of variant A, shape (S, U): S seeds (row s of both is seed s), U users.
    :param ranks_b: the same for variant B.
    :return: per metric (``ndcg@10``, ``hr@10``): the mean per-user difference A - B pooled over
        seeds and users, the per-seed differences, and two 95 % percentile-bootstrap intervals:
        ``ci_users`` resamples users (the same users for every seed: the test set's sampling
        noise given these trained models), ``ci_seeds_users`` resamples seeds and users (also
        the training noise; coarse with few seeds); ``p_le_0`` is the fraction of the latter's
        resamples with a difference <= 0.
    """
    if ranks_a.shape != ranks_b.shape or ranks_a.dim() != 2:
        raise ValueError(f"ranks must both have shape (seeds, users), got {tuple(ranks_a.shape)} and {tuple(ranks_b.shape)}")
    gen = torch.Generator().manual_seed(seed)
    n_seeds, n_users = ranks_a.shape
    users = torch.randint(0, n_users, (n_boot, n_users), generator=gen)
    seeds = torch.randint(0, n_seeds, (n_boot, n_seeds), generator=gen)
    out: dict = {"seeds": n_seeds, "users": n_users, "n_boot": n_boot}
    for name in ("ndcg@10", "hr@10"):
        per_a, per_b = per_target_metric(ranks_a, name), per_target_metric(ranks_b, name)
        diff = per_a - per_b  # (S, U)
        boot_users = diff[:, users].mean(dim=(0, 2))  # (n_boot,)
        boot_both = diff[seeds.unsqueeze(-1), users.unsqueeze(1)].mean(dim=(1, 2))
        quantiles = torch.tensor([0.025, 0.975], dtype=torch.float64)
        out[name] = {
            "mean_a": float(per_a.mean()),
            "mean_b": float(per_b.mean()),
            "diff": float(diff.mean()),
            "per_seed": [round(float(d), 4) for d in diff.mean(dim=1)],
            "ci_users": [float(q) for q in boot_users.quantile(quantiles)],
            "ci_seeds_users": [float(q) for q in boot_both.quantile(quantiles)],
            "p_le_0": float((boot_both <= 0).double().mean()),
        }
    return out


_KEPT = ("test", "valid", "best_epoch", "epochs", "seconds_per_epoch", "cpu_seconds_per_epoch", "time_to_best_s",
         "time_to_best_cpu_s", "encoder_config", "pretrain_config")  # fmt: skip


def _mean_std(values: list[float], fmt: str) -> str:
    """``mean`` or ``mean ± std`` of ``values`` formatted with ``fmt``."""
    mean = sum(values) / len(values)
    if len(values) == 1:
        return format(mean, fmt)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f"{format(mean, fmt)} ± {format(std, fmt)}"


def _run_dir(out: Path, spec: str, seed: int) -> Path:
    """Folder of one variant's run: ``OUT/cnn_gnn-parallel-seed0`` for ``cnn+gnn:parallel``."""
    return out / f"{spec.partition('@')[0].replace(':', '-').replace('+', '_')}-seed{seed}"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    command = "python benchmarks/encoders.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    torch.set_num_threads(args.threads)
    seq = prepare_dataset(args.data)
    histories, _, _ = split_examples(seq, "test", 50)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    rows = []
    for spec in args.variants.split(","):
        spec, _, variant_epochs = spec.partition("@")
        epochs = int(variant_epochs) if variant_epochs else args.epochs
        encoder_kind, _, fusion = spec.partition(":")
        config = EncoderConfig(n_items=seq.n_items, encoder=encoder_kind, fusion=fusion or "parallel")  # type: ignore[arg-type]
        name = encoder_kind + (f" ({fusion or 'parallel'})" if encoder_kind == "cnn+gnn" else "")
        runs = []
        for seed in (int(x) for x in args.seeds.split(",")):
            print(f"== {name}, seed {seed}, at most {epochs} epochs", flush=True)
            run_dir = _run_dir(args.out, spec, seed)
            if args.reuse and (run_dir / METRICS_NAME).is_file():
                runs.append(json.loads((run_dir / METRICS_NAME).read_text()))
                continue
            train = PretrainConfig(epochs=epochs, seed=seed, threads=args.threads, precision=args.precision, progress=False, tensorboard=False)
            runs.append(pretrain(seq, config, train, run_dir))
        encoder = SequenceEncoder.load(runs[0]["checkpoint"], dataset_key=seq.meta["key"])
        speed = {b: throughput(encoder, histories[:, -config.max_len :], b, args.seconds) for b in batch_sizes}
        rows.append({"variant": name + (f", {epochs} epochs" if epochs != args.epochs else ""), "runs": runs, "throughput": speed})

    date = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    n_seeds = len(args.seeds.split(","))
    lines = [
        f"Command: `{command}` — {date}, {args.threads} thread(s), {platform.processor() or platform.machine()}, "
        f"dataset key `{seq.meta['key']}` ({seq.n_users} users, {seq.n_items} items, {seq.n_events} events); "
        + (f"mean ± std over seeds {args.seeds}." if n_seeds > 1 else f"seed {args.seeds}."),
        "",
        "| variant | test NDCG@10 | test HR@10 | test MRR@10 | test NDCG@20 | test HR@20 | valid NDCG@10 "
        "| s/epoch (wall) | s/epoch (CPU) | time to best valid, wall / CPU (s) | best epoch / epochs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        runs = r["runs"]
        cell = lambda get, fmt=".4f": _mean_std([get(m) for m in runs], fmt)  # noqa: E731
        lines.append(
            f"| {r['variant']} | " + " | ".join(cell(lambda m, k=k: m["test"][k]) for k in ("ndcg@10", "hr@10", "mrr@10", "ndcg@20", "hr@20"))
            + f" | {cell(lambda m: m['valid']['ndcg@10'])} | {cell(lambda m: m['seconds_per_epoch'], '.1f')} "
            f"| {cell(lambda m: m['cpu_seconds_per_epoch'], '.1f')} "
            f"| {cell(lambda m: m['time_to_best_s'], '.0f')} / {cell(lambda m: m['time_to_best_cpu_s'], '.0f')} "
            f"| {', '.join(str(m['best_epoch']) + '/' + str(m['epochs']) for m in runs)} |"
        )
    lines += ["", "| variant | " + " | ".join(f"states/s @ batch {b}" for b in batch_sizes) + " |", "|---|" + "---|" * len(batch_sizes)]
    for r in rows:
        lines.append(f"| {r['variant']} | " + " | ".join(f"{r['throughput'][b]:,.0f}" for b in batch_sizes) + " |")
    paired = None
    if args.paired:
        spec_a, _, spec_b = args.paired.partition("/")
        seeds = [int(x) for x in args.seeds.split(",")]
        paired = {}
        for split in ("test", "valid"):  # valid: the best-epoch checkpoints, chosen on these very targets
            ranks = {spec: torch.stack([split_ranks(_run_dir(args.out, spec, s) / "encoder.pt", seq, split) for s in seeds]) for spec in (spec_a, spec_b)}
            paired[split] = paired_comparison(ranks[spec_a], ranks[spec_b], args.n_boot)
        lines += ["", f"Paired: {spec_a} − {spec_b}, seeds {args.seeds}, {paired['test']['users']} test users each "
                  f"({args.n_boot} bootstrap resamples; valid rows: optimistic for both, each model's best epoch was chosen on them):", "",
                  "| split, metric | A | B | A − B | per seed | 95 % CI (users) | 95 % CI (seeds × users) | P(A − B ≤ 0) |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for split in ("test", "valid"):
            for name in ("ndcg@10", "hr@10"):
                p = paired[split][name]
                lines.append(f"| {split} {name} | {p['mean_a']:.4f} | {p['mean_b']:.4f} | {p['diff']:+.4f} | {', '.join(f'{d:+.4f}' for d in p['per_seed'])} "
                             f"| [{p['ci_users'][0]:+.4f}, {p['ci_users'][1]:+.4f}] | [{p['ci_seeds_users'][0]:+.4f}, {p['ci_seeds_users'][1]:+.4f}] "
                             f"| {p['p_le_0']:.3f} |")  # fmt: skip
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"command": command, "date": date, "threads": args.threads, "dataset_key": seq.meta["key"],
              "rows": [{"variant": r["variant"], "throughput": r["throughput"],
                        "runs": [{k: m[k] for k in _KEPT} for m in r["runs"]]} for r in rows], "paired": paired}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(result, indent=2))
    (args.out / "table.md").write_text(table + "\n")
    return result


if __name__ == "__main__":
    main()
