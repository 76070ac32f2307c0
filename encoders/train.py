"""Next-item pretraining and ranking evaluation of the sequence encoder.

Training examples are *every* train target with its history (the prefix augmentation of
RecBole's sequential protocol): the target event at flat position ``p`` (split ``train``,
not a user's first event) is predicted from the ``max_len`` events before it. The loss is
the cross-entropy of the target over the full catalogue (softmax over all items) up to
``PretrainConfig.sampled_softmax_above`` items, and above it a sampled softmax against
``n_sampled`` shared, log-Q-corrected negatives per step (:mod:`seqrec.encoders.sampled`;
``metrics.json`` records which as ``loss``); AdamW fits it (optionally with a linear
learning-rate decay), the output bias starting at the centred log-popularity of the items;
validation NDCG@10 (targets of split ``valid``, with their whole past as history) decides
early stopping, and the best epoch's weights (or their exponential moving average,
``ema_decay``) are kept and scored on the ``test`` targets. Validation and test rank the
target among the whole catalogue up to ``full_ranking_max_items`` items, among sampled
negatives above (every metrics dict names its ``protocol``). The training step may run
under bfloat16 autocast (``PretrainConfig.precision``); validation and test always score
in float32. Timings are recorded both as wall-clock and as process CPU time (the latter is
what to compare on a machine shared with other jobs).

Reads top to bottom: seeding → data → model → loop → checkpoint and ``metrics.json``.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from seqrec.infra.atomic import write_json_atomic
from seqrec.infra.budget import PROBE_STEPS, EpochBudget
from seqrec.infra.devices import resolve_device
from seqrec.infra.errors import SeqrecError
from seqrec.data.sequences import SequenceData
from seqrec.infra.threads import torch_threads
from seqrec.encoders.config import EncoderConfig, PretrainConfig
from seqrec.encoders.metrics import METRIC_NAMES, ranking_metrics, sampled_target_ranks, target_ranks
from seqrec.encoders.model import SequenceEncoder
from seqrec.encoders.sampled import NegativeSampler, sampled_softmax_loss

CHECKPOINT_NAME = "encoder.pt"
METRICS_NAME = "metrics.json"


def examples_at(seq: SequenceData, positions: np.ndarray, max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Histories and targets of the events at flat ``positions`` (n,):
    ``(items (n, max_len), behaviours (n, max_len), targets (n,))``."""
    items, behaviours = seq.histories(positions, max_len)
    return torch.from_numpy(items), torch.from_numpy(behaviours.astype(np.int64)), torch.from_numpy(seq.items[positions])


def split_examples(seq: SequenceData, split: str, max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`examples_at` every target of ``split``."""
    return examples_at(seq, seq.positions(split), max_len)


SCORE_BLOCK = 1 << 22
"""Most scores (or gathered embedding entries) evaluation holds at once, 16 MiB of float32:
rows scored per step shrink below ``batch_size`` as the catalogue grows."""


@torch.no_grad()
def evaluate(
    encoder: SequenceEncoder, seq: SequenceData, split: str = "test", batch_size: int = 1024,
    full_ranking_max_items: int = PretrainConfig.full_ranking_max_items, n_negatives: int = PretrainConfig.eval_negatives,
    seed: int = 0, max_targets: int | None = None,
) -> dict[str, float | int | str]:  # fmt: skip
    """Ranking metrics of ``encoder`` on the targets of ``split`` (at most ``max_targets`` of
    them, a fixed random subset drawn with ``seed``; None: all).

    Up to ``full_ranking_max_items`` items, every item is a candidate (nothing excluded but
    padding; ``protocol`` ``"full"``). Above, each target is ranked among ``n_negatives``
    items drawn uniformly for it (``"sampled-<N>-uniform"``; see :mod:`seqrec.encoders.metrics`),
    from a generator seeded with ``seed``, so every model is scored against the same draws.
    Returns ``hr@10``, ``ndcg@10``, ``mrr@10``, ``hr@20``, ``ndcg@20``, ``n`` (number of
    targets) and ``protocol``.
    """
    if encoder.config.n_items != seq.n_items:
        raise SeqrecError(f"encoder scores {encoder.config.n_items} items but the data has {seq.n_items}")
    positions = seq.positions(split)
    if max_targets is not None and len(positions) > max_targets:
        positions = np.sort(np.random.default_rng(seed).choice(positions, max_targets, replace=False))
    sampled = seq.n_items > full_ranking_max_items
    per_row = n_negatives * encoder.config.dim if sampled else seq.n_items
    rows = max(1, min(batch_size, SCORE_BLOCK // per_row))
    generator = torch.Generator().manual_seed(seed)
    was_training = encoder.training
    encoder.eval()
    device = encoder.item_bias.device  # the encoder's device; ranks come back to the CPU
    table = None if sampled else encoder.item_embeddings()  # built once, not per block
    ranks = []
    for start in range(0, len(positions), rows):  # histories gathered per block: memory of a block, not of the split
        items, behaviours, target = (t.to(device) for t in examples_at(seq, positions[start:start + rows], encoder.config.max_len))
        state = encoder(items, behaviours)
        if not sampled:
            ranks.append(target_ranks(encoder.scores(state, table), target).cpu())
            continue
        negatives = torch.randint(seq.n_items, (len(state), n_negatives), generator=generator).to(device)  # the same stream for any rows
        target_scores = (state * encoder.item_vectors(target)).sum(-1) + encoder.item_bias[target]
        negative_scores = torch.bmm(encoder.item_vectors(negatives), state.unsqueeze(-1)).squeeze(-1) + encoder.item_bias[negatives]
        ranks.append(sampled_target_ranks(target_scores, negative_scores, negatives == target.unsqueeze(1)).cpu())
    encoder.train(was_training)
    out: dict[str, float | int | str] = {**ranking_metrics(torch.cat(ranks))}
    out["n"] = int(len(positions))
    out["protocol"] = f"sampled-{n_negatives}-uniform" if sampled else "full"
    return out


def next_item_loss(
    encoder: SequenceEncoder, items: Tensor, behaviours: Tensor, targets: Tensor, branch_loss: float = 0.0,
    sampler: NegativeSampler | None = None, generator: torch.Generator | None = None,
) -> Tensor:  # fmt: skip
    """The pretraining loss of one batch: the next-item cross-entropy of the state, plus
    ``branch_loss`` times that of each parallel branch's own state (through the state dropout).

    With ``sampler`` None, the softmax is over the whole catalogue; else over the targets and
    one draw of shared negatives from ``sampler`` (using ``generator``), log-Q corrected.

    Shapes: ``items``, ``behaviours`` (B, L); ``targets`` (B,) -> a scalar.
    """
    state, branches = encoder.forward_branches(items, behaviours)
    states = [state, *(encoder.state_dropout(branch) for branch in branches)] if branch_loss > 0 else [state]
    if sampler is None:
        losses = [F.cross_entropy(encoder.scores(s), targets) for s in states]
    else:
        negatives, negative_log_q = sampler.draw(generator)
        ids = torch.cat([targets, negatives])  # one gather (and one scatter in backward) for both
        vectors, bias, b = encoder.item_vectors(ids), encoder.item_bias[ids], len(targets)
        losses = sampled_softmax_loss(
            states, vectors[:b], bias[:b], vectors[b:], bias[b:], sampler.log_expected_count(targets), negative_log_q,
            negatives.unsqueeze(0) == targets.unsqueeze(1),
        )  # fmt: skip
    loss = losses[0]
    for branch in losses[1:]:
        loss = loss + branch_loss * branch
    return loss


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; returns the generator that orders the batches."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def build_encoder(seq: SequenceData, config: EncoderConfig) -> SequenceEncoder:
    """A fresh encoder for ``seq`` with its item side features copied in (when configured)."""
    if config.n_items != seq.n_items:
        raise SeqrecError(f"config.n_items={config.n_items} but the data has {seq.n_items} items")
    encoder = SequenceEncoder(config)
    if config.n_item_features:
        if seq.item_features is None or seq.item_features.shape[1] != config.n_item_features:
            have = 0 if seq.item_features is None else seq.item_features.shape[1]
            raise SeqrecError(f"config.n_item_features={config.n_item_features} but the data has {have} item features")
        encoder.set_item_features(torch.from_numpy(np.asarray(seq.item_features, np.float32)))
    return encoder


def negative_sampler(seq: SequenceData, train: PretrainConfig) -> NegativeSampler | None:
    """The sampled softmax's negatives (from the train popularity) when the catalogue has more
    than ``train.sampled_softmax_above`` items; None (the full softmax) otherwise."""
    if seq.n_items <= train.sampled_softmax_above:
        return None
    return NegativeSampler(seq.item_popularity(("train",)), train.n_sampled, train.sampling_alpha)


def build_optimizer(encoder: SequenceEncoder, train: PretrainConfig, sampled: bool) -> torch.optim.AdamW:
    """AdamW of pretraining; fused (one pass over each parameter per step) with the sampled
    softmax, where updating the (n_items, dim) item table is most of a step's cost on a large
    catalogue. The full softmax keeps the for-loop AdamW, so its results stay bit for bit."""
    return torch.optim.AdamW(encoder.parameters(), lr=train.lr, weight_decay=train.weight_decay, fused=True if sampled else None)


def pretrain(seq: SequenceData, config: EncoderConfig, train: PretrainConfig, out_dir: Path) -> dict:
    """Fit ``config``'s encoder on ``seq`` by next-item prediction; write checkpoint and metrics.

    Writes into ``out_dir``: ``encoder.pt`` (atomic, versioned, best-validation weights),
    ``metrics.json`` (best valid and test metrics, timings, per-epoch history, configs) and
    TensorBoard scalars under ``tb/`` (when ``train.tensorboard``).

    :return: the dict written to ``metrics.json``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch_threads(train.threads):
        return _pretrain(seq, config, train, out_dir)


def _pretrain(seq: SequenceData, config: EncoderConfig, train: PretrainConfig, out_dir: Path) -> dict:
    # SEEDING
    generator = seed_everything(train.seed)

    # DATA: every train target; its last max_len events are gathered per batch (memory of a batch, not of the log)
    positions = seq.positions("train")
    if len(positions) == 0:
        raise SeqrecError("no train targets with history (every user needs >= 2 train events)")
    budget = EpochBudget(len(positions), train.batch_size, train.max_seconds, train.examples_per_epoch)

    # MODEL
    device = resolve_device(train.device)
    encoder = build_encoder(seq, config)
    with torch.no_grad():  # start the output bias at the log-popularity prior (centred)
        log_pop = torch.log1p(torch.from_numpy(seq.item_popularity(("train",))).float())
        encoder.item_bias.copy_(log_pop - log_pop.mean())
    encoder.to(device)
    # LOSS: the exact full softmax on small catalogues, shared log-Q-corrected negatives above
    sampler = negative_sampler(seq, train)
    if sampler is not None:
        sampler.to(device)
    loss_name = f"sampled-softmax-{train.n_sampled}" if sampler is not None else "full-softmax"
    optimizer = build_optimizer(encoder, train, sampled=sampler is not None)
    # the decay spans the planned steps, re-planned when a time budget shortens the epochs
    planned = lambda: budget.planned_epochs(train.epochs) * budget.steps()  # noqa: E731
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - 0.9 * min(step / planned(), 1.0)) if train.lr_decay else None
    # the model that is validated, tested and saved: the EMA of the weights, or the weights
    average = AveragedModel(encoder, multi_avg_fn=get_ema_multi_avg_fn(train.ema_decay), use_buffers=True) if train.ema_decay is not None else None
    scored: SequenceEncoder = average.module if average is not None else encoder  # type: ignore[assignment]
    writer = _summary_writer(out_dir, config, train) if train.tensorboard else None
    progress = _progress(planned(), train.progress)

    # LOOP
    dtype = training_dtype(train, device)  # autocast of the training step only; evaluation is float32
    history: list[dict] = []
    t_valid = time.perf_counter()
    initial = _evaluate(scored, seq, "valid", train)
    valid_seconds = time.perf_counter() - t_valid
    budget.reserve(valid_seconds * len(seq.positions("test")) / max(int(initial["n"]), 1))  # the final test, scored whole
    best = {"epoch": 0, "valid": initial, "state": _copy_state(scored), "elapsed": 0.0, "cpu": 0.0}
    bad_epochs, train_seconds = 0, 0.0
    start, cpu_start = time.perf_counter(), time.process_time()
    for epoch in range(1, train.epochs + 1):
        encoder.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(positions), generator=generator).numpy()
        total, seen, b = 0.0, 0, 0
        while b < budget.steps():
            idx = order[b * train.batch_size : min((b + 1) * train.batch_size, budget.limit)]
            items, behaviours, targets = (t.to(device, non_blocking=True) for t in examples_at(seq, positions[idx], config.max_len))
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                loss = next_item_loss(encoder, items, behaviours, targets, train.branch_loss, sampler, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            if average is not None:
                average.update_parameters(encoder)
            total += loss.detach().item() * len(idx)
            seen += len(idx)
            b += 1
            progress.update(1)
            if not budget.probed and b == PROBE_STEPS:
                budget.probe(time.perf_counter() - t0, b, valid_seconds)
                progress.total = planned()
            if budget.exhausted():  # end the epoch here: validate, keep the best, stop
                break
        train_seconds += time.perf_counter() - t0
        valid = _evaluate(scored, seq, "valid", train)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        row = {"epoch": epoch, "loss": total / seen, "examples": seen, "valid": valid, "epoch_seconds": time.perf_counter() - t0, "elapsed_s": elapsed, "cpu_s": cpu}
        history.append(row)
        progress.set_postfix(epoch=epoch, loss=f"{row['loss']:.3f}", ndcg10=f"{valid['ndcg@10']:.4f}", best=best["epoch"])
        if writer is not None:
            writer.add_scalar("train/loss", row["loss"], epoch)
            writer.add_scalar("time/epoch_seconds", row["epoch_seconds"], epoch)
            for name in METRIC_NAMES:
                writer.add_scalar(f"valid/{name}", valid[name], epoch)
        if valid["ndcg@10"] > best["valid"]["ndcg@10"]:
            best = {"epoch": epoch, "valid": valid, "state": _copy_state(scored), "elapsed": elapsed, "cpu": cpu}
            bad_epochs = 0
        else:
            bad_epochs += 1
        if bad_epochs >= train.patience or budget.exhausted():
            break
    progress.close()

    # RESULTS
    encoder.load_state_dict(best["state"])
    encoder.eval()
    test = _evaluate(encoder, seq, "test", train)
    dataset_key = seq.meta.get("key")
    checkpoint = encoder.save(out_dir / CHECKPOINT_NAME, dataset_key=dataset_key)
    n_epochs = len(history)
    cpu_per_epoch = (history[-1]["cpu_s"] / n_epochs) if n_epochs else 0.0
    metrics = {
        "test": test,
        "valid": best["valid"],
        "initial_valid": initial,
        "best_epoch": best["epoch"],
        "epochs": n_epochs,
        "seconds_per_epoch": round(sum(r["epoch_seconds"] for r in history) / max(n_epochs, 1), 3),
        "train_seconds_per_epoch": round(train_seconds / max(n_epochs, 1), 3),
        "cpu_seconds_per_epoch": round(cpu_per_epoch, 3),
        "time_to_best_s": round(best["elapsed"], 3),
        "time_to_best_cpu_s": round(best["cpu"], 3),
        "total_seconds": round(time.perf_counter() - start, 3),
        "loss": loss_name,
        "threads": train.threads,
        "device": str(device),
        "training_dtype": str(dtype).removeprefix("torch."),
        "n_train_examples": int(len(positions)),
        "budget": budget.to_dict(),
        "n_parameters": int(sum(p.numel() for p in encoder.parameters())),
        "dataset_key": dataset_key,
        "checkpoint": str(checkpoint),
        "encoder_config": config.to_dict(),
        "pretrain_config": asdict(train),
        "history": history,
    }
    if writer is not None:
        for name in METRIC_NAMES:
            writer.add_scalar(f"test/{name}", test[name], best["epoch"])
        writer.close()
    write_json_atomic(out_dir / METRICS_NAME, metrics)
    return metrics


def training_dtype(train: PretrainConfig, device: torch.device) -> torch.dtype:
    """The training step's autocast dtype: ``train.training_dtype`` on the CPU; on CUDA,
    ``auto`` means bfloat16 where the GPU supports it."""
    if device.type != "cuda" or train.precision != "auto":
        return train.training_dtype
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32


def _evaluate(encoder: SequenceEncoder, seq: SequenceData, split: str, train: PretrainConfig) -> dict:
    return evaluate(encoder, seq, split, train.eval_batch_size, train.full_ranking_max_items, train.eval_negatives,
                    max_targets=train.valid_max_targets if split == "valid" else None)


def _copy_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _summary_writer(out_dir: Path, config: EncoderConfig, train: PretrainConfig):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out_dir / "tb"))
    table = "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in {**config.to_dict(), **asdict(train)}.items())
    writer.add_text("hyperparameters", table)
    return writer


def _progress(total: int, enabled: bool):
    from seqrec.infra.progress import progress

    return progress(total=total, desc="pretrain", unit="batch", disable=not enabled)
