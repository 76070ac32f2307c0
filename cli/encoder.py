"""``seqrec pretrain`` and ``seqrec encoder evaluate``: fit and evaluate the sequence encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from seqrec.cli.options import COLUMNS, DEVICE, FORMAT, POSITIVE, SEP, default_of, existing_path
from seqrec.cli.output import show_table
from seqrec.encoders.config import EncoderConfig, PretrainConfig
from seqrec.infra.errors import SeqrecError

app = typer.Typer(help="Sequence encoder: evaluate a pretrained checkpoint.", no_args_is_help=True)

_E = lambda name: default_of(EncoderConfig, name)  # noqa: E731
_P = lambda name: default_of(PretrainConfig, name)  # noqa: E731


def _load_data(data: Path, format: Optional[str], columns: Optional[str], sep: Optional[str], positive: Optional[str]):
    from seqrec.data.prepare import prepare_dataset
    from seqrec.data.preprocess import PrepConfig

    return prepare_dataset(existing_path(data), format=format, columns=columns, sep=sep, prep=PrepConfig(positive=positive))


def _print_metrics(title: str, rows: dict[str, dict]) -> None:
    from seqrec.encoders.metrics import METRIC_NAMES

    show_table(title, ("split", *(n.upper() for n in METRIC_NAMES)), [(s, *(f"{v[n]:.4f}" for n in METRIC_NAMES)) for s, v in rows.items()])


def pretrain_command(
    data: Path = typer.Option(..., "--data", help="A log file or dataset folder (read and cached by `seqrec data prepare`)."),
    encoder: str = typer.Option(_E("encoder"), "--encoder", help="cnn | gnn | cnn+gnn."),
    fusion: str = typer.Option(_E("fusion"), "--fusion", help="cnn+gnn only: stacked | parallel."),
    out: Path = typer.Option(Path("runs/encoder"), "--out", help="Output folder: encoder.pt, metrics.json, tb/."),
    epochs: int = typer.Option(_P("epochs"), "--epochs", help="Maximum epochs (early stopping on valid NDCG@10; the learning rate decays over them)."),
    max_len: int = typer.Option(_E("max_len"), "--max-len", help="Longest history read."),
    dim: int = typer.Option(_E("dim"), "--dim", help="Embedding and state size."),
    cnn_window: int = typer.Option(_E("cnn_window"), "--cnn-window", help="Caser window L (last L items)."),
    gnn_len: int = typer.Option(_E("gnn_len"), "--gnn-len", help="The last N items form the session graph (the readout attends over all max-len)."),
    attention_dim: int = typer.Option(_E("attention_dim"), "--attention-dim", help="Hidden size of the GNN readout's attention score (0 = --dim)."),
    dropout: float = typer.Option(_E("dropout"), "--dropout", help="Dropout on item embeddings and the state."),
    item_features: bool = typer.Option(False, "--item-features/--no-item-features", help="Add item side features (e.g. genres)."),
    behaviours: bool = typer.Option(True, "--behaviours/--no-behaviours", help="Embed behaviour types when the log has more than one."),
    batch_size: int = typer.Option(_P("batch_size"), "--batch-size", help="Training targets per step."),
    lr: float = typer.Option(_P("lr"), "--lr", help="AdamW learning rate."),
    lr_decay: bool = typer.Option(_P("lr_decay"), "--lr-decay/--no-lr-decay", help="Decay the learning rate linearly to lr/10 over --epochs."),
    weight_decay: float = typer.Option(_P("weight_decay"), "--weight-decay", help="AdamW weight decay."),
    branch_loss: float = typer.Option(_P("branch_loss"), "--branch-loss", help="cnn+gnn parallel: weight of each branch's own next-item loss (0 = off)."),
    patience: int = typer.Option(_P("patience"), "--patience", help="Early-stopping patience in epochs."),
    seed: int = typer.Option(_P("seed"), "--seed", help="Random seed."),
    threads: int = typer.Option(_P("threads"), "--threads", help="CPU threads for torch."),
    precision: str = typer.Option(_P("precision"), "--precision", help="Training step: auto | fp32 | bf16 (matmuls in bfloat16; evaluation is always fp32)."),
    device: str = DEVICE,
    format: Optional[str] = FORMAT,
    columns: Optional[str] = COLUMNS,
    sep: Optional[str] = SEP,
    positive: Optional[str] = POSITIVE,
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
) -> None:
    """Pretrain the sequence encoder by next-item prediction; report full-ranking test metrics."""
    from seqrec.encoders.train import METRICS_NAME, pretrain

    seq = _load_data(data, format, columns, sep, positive)
    n_features = seq.item_features.shape[1] if item_features and seq.item_features is not None else 0
    if item_features and not n_features:
        raise SeqrecError(f"{data}: the dataset has no item side features (drop --item-features)")
    config = EncoderConfig(
        n_items=seq.n_items, dim=dim, max_len=max_len, encoder=encoder, fusion=fusion,  # type: ignore[arg-type]
        cnn_window=min(cnn_window, max_len), gnn_len=min(gnn_len, max_len), dropout=dropout, attention_dim=attention_dim,
        n_behaviours=len(seq.behaviour_names) if behaviours and len(seq.behaviour_names) > 1 else 0, n_item_features=n_features,
    )  # fmt: skip
    train = PretrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                           branch_loss=branch_loss, patience=patience, seed=seed, threads=threads, precision=precision,
                           device=device)  # type: ignore[arg-type]
    metrics = pretrain(seq, config, train, out)
    if json_out:
        typer.echo(json.dumps({k: metrics[k] for k in ("test", "valid", "best_epoch", "epochs", "seconds_per_epoch", "time_to_best_s")}))
        return
    title = f"seqrec pretrain --encoder {encoder}" + (f" --fusion {fusion}" if encoder == "cnn+gnn" else "")
    _print_metrics(title, {"valid (best)": metrics["valid"], "test": metrics["test"]})
    typer.echo(f"best epoch {metrics['best_epoch']} of {metrics['epochs']}, {metrics['seconds_per_epoch']:.1f} s/epoch, "
               f"best valid after {metrics['time_to_best_s']:.0f} s; wrote {out / 'encoder.pt'} and {out / METRICS_NAME}")  # fmt: skip


@app.command("evaluate")
def evaluate_command(
    checkpoint: Path = typer.Argument(..., help="An encoder checkpoint (encoder.pt) written by `seqrec pretrain`."),
    data: Path = typer.Option(..., "--data", help="The dataset it was trained on."),
    split: str = typer.Option("test", "--split", help="valid | test."),
    format: Optional[str] = FORMAT,
    columns: Optional[str] = COLUMNS,
    sep: Optional[str] = SEP,
    positive: Optional[str] = POSITIVE,
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
) -> None:
    """Recompute full-ranking metrics (HR, NDCG, MRR at 10 and 20) of a checkpoint."""
    from seqrec.encoders.model import SequenceEncoder
    from seqrec.encoders.train import evaluate

    if split not in ("valid", "test"):
        raise SeqrecError(f"--split must be valid or test, not {split!r}")
    seq = _load_data(data, format, columns, sep, positive)
    metrics = evaluate(SequenceEncoder.load(checkpoint, dataset_key=seq.meta.get("key")), seq, split)
    if json_out:
        typer.echo(json.dumps(metrics))
    else:
        _print_metrics(f"seqrec encoder evaluate {checkpoint}", {split: metrics})
