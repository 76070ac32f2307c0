"""``seqrec pretrain`` and ``seqrec encoder …``: fit and evaluate the sequence encoder.

``cli/main.py`` mounts :func:`pretrain_command` as ``seqrec pretrain`` and :data:`app` as
``seqrec encoder``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from seqrec.infra.errors import SeqrecError
from seqrec.encoders.config import EncoderConfig, PretrainConfig

app = typer.Typer(help="Sequence encoder: evaluate a pretrained checkpoint.", no_args_is_help=True)

_FORMAT = typer.Option(None, "--format", help="Force the log format: ml-100k, ml-dat, ml-csv, recbole, synthetic, csv, parquet.")
_COLUMNS = typer.Option(None, "--columns", help="Generic logs: user=COL,item=COL,time=COL[,behaviour=COL][,value=COL].")
_SEP = typer.Option(None, "--sep", help="Generic text logs: field separator (default ',' or tab for .tsv).")


def _load_data(data: Path, format: Optional[str], columns: Optional[str], sep: Optional[str]):
    from seqrec.data.prepare import prepare_dataset

    if not data.exists():
        raise SeqrecError(f"{data}: no such file or folder")
    return prepare_dataset(data, format=format, columns=columns, sep=sep.encode().decode("unicode_escape") if sep else sep)


def _print_metrics(title: str, rows: dict[str, dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    from seqrec.encoders.metrics import METRIC_NAMES

    table = Table(title=title)
    table.add_column("split")
    for name in METRIC_NAMES:
        table.add_column(name.upper(), justify="right")
    for split, values in rows.items():
        table.add_row(split, *(f"{values[n]:.4f}" for n in METRIC_NAMES))
    Console().print(table)


def pretrain_command(
    data: Path = typer.Option(..., "--data", help="A log file or dataset folder (read and cached by `seqrec data prepare`)."),
    encoder: str = typer.Option("cnn+gnn", "--encoder", help="cnn | gnn | cnn+gnn."),
    fusion: str = typer.Option("parallel", "--fusion", help="cnn+gnn only: stacked | parallel."),
    out: Path = typer.Option(Path("runs/encoder"), "--out", help="Output folder: encoder.pt, metrics.json, tb/."),
    epochs: int = typer.Option(PretrainConfig.epochs, "--epochs", help="Maximum epochs (early stopping on valid NDCG@10; the learning rate decays over them)."),
    max_len: int = typer.Option(50, "--max-len", help="Longest history read."),
    dim: int = typer.Option(64, "--dim", help="Embedding and state size."),
    cnn_window: int = typer.Option(5, "--cnn-window", help="Caser window L (last L items)."),
    gnn_len: int = typer.Option(10, "--gnn-len", help="The last N items form the session graph (the readout attends over all max-len)."),
    attention_dim: int = typer.Option(EncoderConfig.attention_dim, "--attention-dim", help="Hidden size of the GNN readout's attention score (0 = --dim)."),
    dropout: float = typer.Option(0.3, "--dropout", help="Dropout on item embeddings and the state."),
    item_features: bool = typer.Option(False, "--item-features/--no-item-features", help="Add item side features (e.g. genres)."),
    behaviours: bool = typer.Option(True, "--behaviours/--no-behaviours", help="Embed behaviour types when the log has more than one."),
    batch_size: int = typer.Option(512, "--batch-size", help="Training targets per step."),
    lr: float = typer.Option(3e-3, "--lr", help="AdamW learning rate (decays linearly to lr/10 over --epochs)."),
    lr_decay: bool = typer.Option(True, "--lr-decay/--no-lr-decay", help="Decay the learning rate linearly to lr/10 over --epochs."),
    weight_decay: float = typer.Option(1e-4, "--weight-decay", help="AdamW weight decay."),
    branch_loss: float = typer.Option(
        PretrainConfig.branch_loss, "--branch-loss", help="cnn+gnn parallel: weight of each branch's own next-item loss (0 = off)."
    ),
    patience: int = typer.Option(5, "--patience", help="Early-stopping patience in epochs."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    threads: int = typer.Option(1, "--threads", help="CPU threads for torch."),
    precision: str = typer.Option(PretrainConfig.precision, "--precision", help="Training step: auto | fp32 | bf16 (matmuls in bfloat16; evaluation is always fp32)."),
    format: Optional[str] = _FORMAT,
    columns: Optional[str] = _COLUMNS,
    sep: Optional[str] = _SEP,
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
) -> None:
    """Pretrain the sequence encoder by next-item prediction; report full-ranking test metrics."""
    from seqrec.encoders.config import EncoderConfig
    from seqrec.encoders.train import METRICS_NAME, pretrain

    seq = _load_data(data, format, columns, sep)
    n_features = seq.item_features.shape[1] if item_features and seq.item_features is not None else 0
    if item_features and not n_features:
        raise SeqrecError(f"{data}: the dataset has no item side features (drop --item-features)")
    config = EncoderConfig(
        n_items=seq.n_items, dim=dim, max_len=max_len, encoder=encoder, fusion=fusion,  # type: ignore[arg-type]
        cnn_window=min(cnn_window, max_len), gnn_len=min(gnn_len, max_len), dropout=dropout, attention_dim=attention_dim,
        n_behaviours=len(seq.behaviour_names) if behaviours and len(seq.behaviour_names) > 1 else 0, n_item_features=n_features,
    )  # fmt: skip
    train = PretrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                           branch_loss=branch_loss, patience=patience, seed=seed, threads=threads, precision=precision)  # fmt: skip
    metrics = pretrain(seq, config, train, out)
    if json_out:
        typer.echo(json.dumps({k: metrics[k] for k in ("test", "valid", "best_epoch", "epochs", "seconds_per_epoch", "time_to_best_s")}))
        return
    _print_metrics(f"seqrec pretrain --encoder {encoder}" + (f" --fusion {fusion}" if encoder == "cnn+gnn" else ""), {"valid (best)": metrics["valid"], "test": metrics["test"]})
    typer.echo(
        f"best epoch {metrics['best_epoch']} of {metrics['epochs']}, {metrics['seconds_per_epoch']:.1f} s/epoch, "
        f"best valid after {metrics['time_to_best_s']:.0f} s; wrote {out / 'encoder.pt'} and {out / METRICS_NAME}"
    )


@app.command("evaluate")
def evaluate_command(
    checkpoint: Path = typer.Argument(..., help="An encoder checkpoint (encoder.pt) written by `seqrec pretrain`."),
    data: Path = typer.Option(..., "--data", help="The dataset it was trained on."),
    split: str = typer.Option("test", "--split", help="valid | test."),
    format: Optional[str] = _FORMAT,
    columns: Optional[str] = _COLUMNS,
    sep: Optional[str] = _SEP,
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
) -> None:
    """Recompute full-ranking metrics (HR, NDCG, MRR at 10 and 20) of a checkpoint."""
    from seqrec.encoders.model import SequenceEncoder
    from seqrec.encoders.train import evaluate

    if split not in ("valid", "test"):
        raise SeqrecError(f"--split must be valid or test, not {split!r}")
    seq = _load_data(data, format, columns, sep)
    encoder = SequenceEncoder.load(checkpoint, dataset_key=seq.meta.get("key"))
    metrics = evaluate(encoder, seq, split)
    if json_out:
        typer.echo(json.dumps(metrics))
    else:
        _print_metrics(f"seqrec encoder evaluate {checkpoint}", {split: metrics})
