"""Configuration dataclasses of the sequence encoder and of its pretraining.

:class:`EncoderConfig` fixes the architecture (it is stored in every checkpoint and is
enough to rebuild the network); :class:`PretrainConfig` fixes how it is fitted. Both are
plain frozen dataclasses passed explicitly; only the CLI reads ``sys.argv``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal

from seqrec.infra.devices import check_device_name
from seqrec.infra.errors import SeqrecError

EncoderKind = Literal["cnn", "gnn", "cnn+gnn"]
FusionKind = Literal["stacked", "parallel"]
ENCODER_KINDS: tuple[str, ...] = ("cnn", "gnn", "cnn+gnn")
FUSION_KINDS: tuple[str, ...] = ("stacked", "parallel")
MixKind = Literal["gate", "concat"]
PrecisionKind = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of :class:`~seqrec.encoders.model.SequenceEncoder`."""

    n_items: int
    """Catalogue size; item ids are ``0 .. n_items-1`` (``-1`` pads)."""
    dim: int = 64
    """Embedding size and state size (the env's observation size)."""
    max_len: int = 50
    """Longest history read; longer inputs keep their last ``max_len`` items. The GNN's
    attention readout reads all of them."""
    encoder: EncoderKind = "cnn+gnn"
    """Which branches run: ``cnn`` (Caser-style), ``gnn`` (SR-GNN-style) or both."""
    fusion: FusionKind = "parallel"
    """``cnn+gnn`` only. ``stacked``: causal-CNN features of every position become the GNN's
    node features. ``parallel``: both branches read the item embeddings, then a gate mixes them."""
    parallel_mix: MixKind = "gate"
    """``parallel`` only: ``gate`` (z = σ(W[c; g]), state = z·c + (1-z)·g) or ``concat``
    (state = W[c; g])."""
    cnn_window: int = 5
    """Caser window L: the CNN reads the last ``cnn_window`` items (``stacked``: kernel heights 1..L)."""
    n_horizontal: int = 16
    """Caser horizontal filters per height (heights 1 .. ``cnn_window``)."""
    n_vertical: int = 4
    """Caser vertical filters (each a weighted sum of the window's embeddings)."""
    gnn_steps: int = 1
    """Gated graph propagation steps (SR-GNN uses 1)."""
    gnn_len: int = 10
    """The last ``gnn_len`` items (≤ ``max_len``) form the session graph and are propagated;
    older ones enter the readout with their input embedding. Cost grows with it."""
    dropout: float = 0.3
    """Dropout on the input embeddings and on the fused state."""
    n_behaviours: int = 0
    """Behaviour types with an embedding added to the item embedding (0 = ignore behaviours)."""
    n_item_features: int = 0
    """Width of item side features (e.g. 19 MovieLens genres) projected into the embedding; 0 = none."""
    positional: bool = True
    """Add learned recency-position embeddings to the GNN readout's attention (position-aware readout)."""
    attention_dim: int = 0
    """Hidden size of the GNN readout's attention score (0 = ``dim``). That score runs over all
    ``max_len`` positions of every history and is the largest cost of a training step."""

    def __post_init__(self) -> None:
        if self.n_items < 1:
            raise SeqrecError(f"n_items must be >= 1, not {self.n_items}")
        if self.encoder not in ENCODER_KINDS:
            raise SeqrecError(f"encoder must be one of {', '.join(ENCODER_KINDS)}, not {self.encoder!r}")
        if self.fusion not in FUSION_KINDS:
            raise SeqrecError(f"fusion must be stacked or parallel, not {self.fusion!r}")
        if self.parallel_mix not in ("gate", "concat"):
            raise SeqrecError(f"parallel_mix must be gate or concat, not {self.parallel_mix!r}")
        if self.dim < 1 or self.max_len < 1:
            raise SeqrecError(f"dim and max_len must be >= 1 (got dim={self.dim}, max_len={self.max_len})")
        if not 1 <= self.cnn_window <= self.max_len:
            raise SeqrecError(f"cnn_window must be in 1..max_len={self.max_len}, not {self.cnn_window}")
        if not 1 <= self.gnn_len <= self.max_len:
            raise SeqrecError(f"gnn_len must be in 1..max_len={self.max_len}, not {self.gnn_len} (lower --gnn-len or raise --max-len)")
        if self.gnn_steps < 1 or self.n_horizontal < 1 or self.n_vertical < 0:
            raise SeqrecError("gnn_steps and n_horizontal must be >= 1 and n_vertical >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise SeqrecError(f"dropout must be in [0, 1), not {self.dropout}")
        if self.attention_dim < 0:
            raise SeqrecError(f"attention_dim must be >= 0 (0 = dim), not {self.attention_dim}")
        if self.n_behaviours < 0 or self.n_item_features < 0:
            raise SeqrecError("n_behaviours and n_item_features must be >= 0")

    @property
    def uses_cnn(self) -> bool:
        return self.encoder in ("cnn", "cnn+gnn")

    @property
    def uses_gnn(self) -> bool:
        return self.encoder in ("gnn", "cnn+gnn")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "EncoderConfig":
        """Rebuild from :meth:`to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SeqrecError(f"unknown encoder config keys: {', '.join(unknown)}")
        return cls(**values)


@dataclass(frozen=True)
class PretrainConfig:
    """How :func:`~seqrec.encoders.train.pretrain` fits the encoder (next-item prediction)."""

    epochs: int = 20
    """Upper bound on epochs (early stopping may end sooner; with ``lr_decay`` the rate
    reaches ``lr / 10`` at this epoch)."""
    batch_size: int = 512
    """Training targets per step (every train target with its history is one example)."""
    lr: float = 3e-3
    """AdamW learning rate."""
    lr_decay: bool = True
    """Decay the learning rate linearly to ``lr / 10`` over ``epochs`` (per step)."""
    weight_decay: float = 1e-4
    """AdamW weight decay (decoupled)."""
    ema_decay: float | None = None
    """Validate, test and save an exponential moving average of the weights (per step, this
    decay; ~1/(1-decay) steps of memory); smoother than the raw weights. None: raw weights."""
    branch_loss: float = 0.5
    """``cnn+gnn`` parallel only: weight of an auxiliary next-item cross-entropy on each
    branch's own state (CNN and GNN, through the shared output layer), added to the loss
    of the mixed state, so that each branch stays a good predictor on its own. 0 = off."""
    sampled_softmax_above: int = 5_000
    """Catalogues with more items than this train on a sampled softmax (``n_sampled`` negatives
    per step shared by the batch, log-Q corrected; :mod:`seqrec.encoders.sampled`); up to it,
    on the exact full softmax. Default ``cnn+gnn`` step on one thread
    (``benchmarks/encoder_scale.py``): the sampled one is no faster up to ~2,000 items,
    ~1.3× faster at 5,000, ~2× at 10,000, ~11× at 50,000; so ML-100K (1,682 items) and the
    synthetic default (500) stay exact, where the approximation would buy nothing."""
    n_sampled: int = 2048
    """Sampled softmax: negatives drawn per step (with replacement, shared by every example)."""
    sampling_alpha: float = 0.75
    """Sampled softmax: negatives are drawn with probability ∝ (train count + 1) ** alpha
    (0 = uniform; word2vec's 0.75 by default)."""
    full_ranking_max_items: int = 100_000
    """Validation and test rank the target among every item up to this catalogue size; above,
    among ``eval_negatives`` uniformly sampled items (``protocol`` in the metrics says which)."""
    eval_negatives: int = 1000
    """Sampled evaluation (catalogues above ``full_ranking_max_items``): negatives per target."""
    patience: int = 5
    """Stop after this many epochs without a better validation NDCG@10."""
    seed: int = 0
    """Seeds parameter init, shuffling and dropout; the same seed and threads give the same model."""
    threads: int = 1
    """``torch.set_num_threads`` during training (timings in the benchmarks use 1)."""
    precision: PrecisionKind = "auto"
    """Training-step arithmetic. ``bf16``: CPU autocast, so matmuls run in bfloat16 while the
    weights, gradients and AdamW state stay float32 (~1.5× faster per step on a CPU with
    native bf16 instructions, slower on one without). ``fp32``: float32 throughout. ``auto``:
    bf16 where the CPU has native bf16 instructions, else fp32. Validation and test always
    run in float32, so rankings are never decided by bf16 rounding."""
    device: str = "cpu"
    """Where the training steps and evaluation run: ``auto | cpu | cuda | cuda:N``
    (:mod:`seqrec.infra.devices`; ``auto``: CUDA when present). Batches are gathered and
    negatives drawn on the CPU either way; the checkpoint is always saved for the CPU."""
    valid_max_targets: int = 20_000
    """Validation (early stopping, every epoch) scores at most this many targets, a fixed random
    subset (seeded); the test split is always scored whole. A log of 600k users would
    otherwise rank 600k histories against the catalogue every epoch."""
    eval_batch_size: int = 1024
    """Histories scored per step in validation / test."""
    max_seconds: float | None = None
    """Optional wall-clock budget of the training loop (validation included). The step time
    measured over the first ``PROBE_STEPS`` steps sets how many examples an epoch may draw so
    that ``BUDGET_EPOCHS`` epochs fit (a fresh random subset each epoch: a large log is
    subsampled, never given up on); the step that crosses it ends training (after one last
    validation).
    ``metrics.json`` records the examples per epoch used."""
    examples_per_epoch: int | None = None
    """At most this many training examples per epoch, a fresh random subset each epoch
    (None: every train target)."""
    progress: bool = True
    """Show a tqdm progress bar."""
    tensorboard: bool = True
    """Write TensorBoard scalars under ``out_dir/tb``."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise SeqrecError("epochs, batch_size and eval_batch_size must be >= 1")
        if self.lr <= 0 or self.weight_decay < 0:
            raise SeqrecError(f"lr must be > 0 and weight_decay >= 0 (got lr={self.lr}, weight_decay={self.weight_decay})")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise SeqrecError(f"ema_decay must be in [0, 1) or None, not {self.ema_decay}")
        if self.branch_loss < 0:
            raise SeqrecError(f"branch_loss must be >= 0, not {self.branch_loss}")
        if self.precision not in PRECISIONS:
            raise SeqrecError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.n_sampled < 1 or self.eval_negatives < 1 or self.full_ranking_max_items < 1 or self.sampled_softmax_above < 0:
            raise SeqrecError("n_sampled, eval_negatives and full_ranking_max_items must be >= 1 and sampled_softmax_above >= 0")
        if self.sampling_alpha < 0:
            raise SeqrecError(f"sampling_alpha must be >= 0 (0 = uniform negatives), not {self.sampling_alpha}")
        if self.patience < 1 or self.threads < 1 or self.valid_max_targets < 1:
            raise SeqrecError("patience, threads and valid_max_targets must be >= 1")
        check_device_name(self.device)
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise SeqrecError(f"max_seconds must be None or > 0, not {self.max_seconds}")
        if self.examples_per_epoch is not None and self.examples_per_epoch < 1:
            raise SeqrecError(f"examples_per_epoch must be None or >= 1, not {self.examples_per_epoch}")

    @property
    def training_dtype(self) -> "torch.dtype":  # noqa: F821
        """The autocast dtype of a training step: ``precision`` with ``auto`` resolved on this CPU."""
        import torch

        if self.precision == "auto":  # oneDNN's own check for native bf16 (AVX512-BF16 / AMX / Arm BF16)
            native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)()
            return torch.bfloat16 if native else torch.float32
        return torch.bfloat16 if self.precision == "bf16" else torch.float32
