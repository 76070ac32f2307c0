"""The sequence encoder: history of item ids (and behaviours) -> one state vector.

:class:`SequenceEncoder` combines the Caser-style CNN branch (:mod:`seqrec.encoders.cnn`)
and the SR-GNN-style GNN branch (:mod:`seqrec.encoders.gnn`) as ``EncoderConfig.encoder``
and ``EncoderConfig.fusion`` select:

=============  ==========  ==============================================================
encoder        fusion      state
=============  ==========  ==============================================================
``cnn``        –           Caser over the last ``cnn_window`` items
``gnn``        –           SR-GNN: graph of the last ``gnn_len`` items, attention readout
                           over all ``max_len`` positions
``cnn+gnn``    parallel    both on the item embeddings; a learned gate (or concat + linear,
                           ``parallel_mix``) mixes the two vectors
``cnn+gnn``    stacked     causal Caser features of every graph position are the GNN's node
                           features (a zero-initialised residual on the embeddings)
=============  ==========  ==============================================================

Item embeddings are shared by input and output (tied): ``scores(state)`` are the logits
``state @ item_embeddings().T + bias`` over the whole catalogue (``item_vectors(ids)`` gives
some rows of that table, for a sampled softmax). Dropout (``dropout``) acts
on the input embeddings and on the state, during training only.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqrec.infra.atomic import atomic_write
from seqrec.infra.errors import CheckpointError
from seqrec.data.sequences import PAD
from seqrec.encoders.cnn import CaserConv, CausalCaserConv
from seqrec.encoders.config import EncoderConfig
from seqrec.encoders.dropout import ByteDropout
from seqrec.encoders.gnn import SessionGatedConv, SessionReadout
from seqrec.encoders.graph import build_session_graph

CHECKPOINT_FORMAT = 1
"""Version of the checkpoint layout written by :meth:`SequenceEncoder.save`."""


def fit_length(x: Tensor, length: int) -> Tensor:
    """Left-pad with PAD or keep the last ``length`` columns: (B, L) -> (B, length)."""
    if x.shape[1] >= length:
        return x[:, x.shape[1] - length :]
    return F.pad(x, (length - x.shape[1], 0), value=PAD)


class DenseSessionGraph(NamedTuple):
    """The session graphs of a batch as dense per-sequence matrices over its ``n`` positions.

    A node (a distinct item of a sequence) is represented by its first position. ``same``
    (B, n, n) float: 1 where two valid positions hold the same item; ``weights`` (B, 2n, n):
    row ``v`` holds SR-GNN's ``1 / deg_in(v)`` at the first position of each distinct
    predecessor node and row ``n + v`` holds ``1 / deg_out(v)`` at each distinct successor's,
    so ``weights @ x`` gives the two means that :class:`~seqrec.encoders.gnn.SessionGatedConv`
    aggregates; ``node_position`` (N,) long: the flat position ``b * n + t`` of each node's
    first position; ``position_node`` (B, n) long: each position's node in ``0..N-1``, -1 at
    padding; ``last_position`` (B,) long: the last valid position, -1 for an empty sequence.
    """

    same: Tensor
    weights: Tensor
    node_position: Tensor
    position_node: Tensor
    last_position: Tensor


def dense_session_graph(items: Tensor) -> DenseSessionGraph:
    """The graphs of :func:`~seqrec.encoders.graph.build_session_graph` (distinct-item nodes,
    deduplicated transitions between consecutive valid items, degree-normalised weights) as
    dense matrices: one batched matmul over (B, n, n), no sort or unique.

    Shapes: items ``(B, n)`` long (PAD = -1 anywhere) -> :class:`DenseSessionGraph` with N nodes.
    """
    B, n = items.shape
    valid = items != PAD
    col = torch.arange(n, device=items.device)
    same_b = (items[:, :, None] == items[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    first = valid & ~(same_b & (col[None, :] < col[:, None])).any(2)  # a node's first position
    latest = torch.cummax(torch.where(valid, col, -1), dim=1).values  # last valid position <= t
    prev = F.pad(latest[:, :-1], (1, 0), value=-1)  # the previous valid position, -1 if none
    # follows[u, t]: position t's predecessor holds u's item; node u -> node v iff it holds for some t of v's item
    follows = same_b.gather(2, prev.clamp(min=0)[:, None, :].expand(B, n, n)) & (prev >= 0)[:, None, :]
    same = same_b.to(torch.float32)
    adj = torch.bmm(follows.to(torch.float32), same) > 0  # (B, u, v)
    into = (adj & first[:, :, None]).transpose(1, 2).to(torch.float32)  # (B, v, u): distinct predecessors
    out = (adj & first[:, None, :]).to(torch.float32)  # (B, u, v): distinct successors
    weights = torch.cat([into / into.sum(2, keepdim=True).clamp(min=1), out / out.sum(2, keepdim=True).clamp(min=1)], dim=1)
    node_rank = (torch.cumsum(first.flatten(), 0) - 1).reshape(B, n)  # node index at first positions
    position_node = torch.where(valid, ((same_b & first[:, None, :]) * node_rank[:, None, :]).sum(2), -1)
    return DenseSessionGraph(same, weights, first.flatten().nonzero().squeeze(1), position_node, latest[:, -1])


class SequenceEncoder(nn.Module):
    """CNN + GNN sequence encoder (see the module docstring).

    :param config: the architecture; ``config.dim`` is the state size.

    Shapes: ``forward(items (B, L), behaviours (B, L) | None) -> (B, dim)`` for any
    ``L`` (inputs are left-padded with -1 or cut to their last ``max_len`` columns);
    ``scores(state (B, dim)) -> (B, n_items)``.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.dataset_key: str | None = None  # set by load(); pretrain saves seq.meta["key"]
        d = config.dim
        self.item_embedding = nn.Embedding(config.n_items + 1, d, padding_idx=0)  # row 0 = PAD
        self.item_bias = nn.Parameter(torch.zeros(config.n_items))
        if config.n_item_features:
            self.register_buffer("item_features", torch.zeros(config.n_items, config.n_item_features))
            self.feature_projection = nn.Linear(config.n_item_features, d, bias=False)
        self.behaviour_embedding = nn.Embedding(config.n_behaviours + 1, d, padding_idx=0) if config.n_behaviours else None
        self.input_dropout = ByteDropout(config.dropout)
        stacked = config.encoder == "cnn+gnn" and config.fusion == "stacked"
        self.cnn: nn.Module | None = None
        if stacked:
            self.cnn = CausalCaserConv(d, config.cnn_window, config.n_horizontal, config.n_vertical)
        elif config.uses_cnn:
            self.cnn = CaserConv(d, config.cnn_window, config.n_horizontal, config.n_vertical, config.dropout)
        if config.uses_gnn:
            self.gnn = SessionGatedConv(d, config.gnn_steps)
            self.readout = SessionReadout(d, config.max_len, config.positional, config.attention_dim or None)
        self.gate = nn.Linear(2 * d, d) if config.encoder == "cnn+gnn" and not stacked else None
        self.state_dropout = ByteDropout(config.dropout)
        self._read_len = max(config.cnn_window if config.uses_cnn else 1, config.max_len if config.uses_gnn else 1)
        # columns the CNN or the graph read (the rest only feed the readout's attention)
        self._recent_len = max(
            config.cnn_window if config.uses_cnn else 1,
            config.gnn_len + (config.cnn_window - 1 if stacked else 0) if config.uses_gnn else 1,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.item_embedding.weight, std=self.config.dim**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        nn.init.zeros_(self.item_bias)
        if self.behaviour_embedding is not None:
            nn.init.normal_(self.behaviour_embedding.weight, std=0.02)
            with torch.no_grad():
                self.behaviour_embedding.weight[0].zero_()

    # ------------------------------------------------------------------ item tables
    def _item_table(self) -> Tensor:
        """Input/output item vectors with the PAD row first, shape (n_items + 1, dim)."""
        table = self.item_embedding.weight
        if self.config.n_item_features:
            table = table + F.pad(self.feature_projection(self.item_features), (0, 0, 1, 0))
        return F.pad(table[1:], (0, 0, 1, 0))  # row 0 (PAD) is exactly zero: padded positions embed to 0

    def item_embeddings(self) -> Tensor:
        """Output item embeddings used for scoring, shape (n_items, dim)."""
        return self._item_table()[1:]

    def item_vectors(self, items: Tensor) -> Tensor:
        """Output embeddings of some items, the rows ``items`` of :meth:`item_embeddings`
        without building the whole table: ids of any shape (…) -> (…, dim)."""
        vectors = F.embedding(items + 1, self.item_embedding.weight)  # a row copy each, not an element-wise gather
        if self.config.n_item_features:
            vectors = vectors + self.feature_projection(F.embedding(items, self.item_features))
        return vectors

    def scores(self, state: Tensor, table: Tensor | None = None) -> Tensor:
        """Next-item logits over the full catalogue: (B, dim) -> (B, n_items).

        :param table: :meth:`item_embeddings`, when a caller scoring many batches without
            gradients built it once (it is rebuilt per call otherwise).
        """
        return state @ (self.item_embeddings() if table is None else table).T + self.item_bias

    def set_item_features(self, features: Tensor) -> None:
        """Copy item side features, shape (n_items, n_item_features), into the model."""
        if not self.config.n_item_features:
            raise ValueError("this encoder was built with n_item_features=0")
        self.item_features.copy_(torch.as_tensor(features, dtype=torch.float32))

    # ------------------------------------------------------------------ encoding
    def forward(self, items: Tensor, behaviours: Tensor | None = None) -> Tensor:
        """Encode histories into states (see :meth:`forward_branches`).

        :param items: item ids, shape (B, L), left-padded with -1 (most recent item last).
        :param behaviours: behaviour codes, shape (B, L), -1 at padding; ignored unless
            ``config.n_behaviours > 0``.
        :return: states, shape (B, config.dim).
        """
        return self.forward_branches(items, behaviours)[0]

    def infer(self, items: Tensor, behaviours: Tensor | None = None, item_table: Tensor | None = None) -> Tensor:
        """Eval-mode states without autograd, the environment's fast path: (B, L) -> (B, dim).

        The same function as :meth:`forward` in eval mode (equal up to float rounding), with the
        session graph propagated densely per sequence (:func:`dense_session_graph`) instead of
        through torch-geometric's sparse message passing, which at the env's batch sizes costs
        far more in per-call overhead than in arithmetic.

        :param item_table: ``_item_table()`` cached by a caller that encodes often (only used
            with item side features, whose table is otherwise rebuilt per call).
        :raises ValueError: the module is in training mode (dropout would be applied).
        """
        if self.training:
            raise ValueError("infer() is the eval-mode fast path; call .eval() first (or use forward)")
        with torch.no_grad():
            return self.forward_branches(items, behaviours, dense_graph=True, item_table=item_table)[0]

    def forward_branches(self, items: Tensor, behaviours: Tensor | None = None, *, dense_graph: bool = False,
                         item_table: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """Encode histories; also return the parallel branches' own states.

        :param dense_graph: propagate the session graph densely (:meth:`infer`'s path; same
            function, no sparse graph is built).
        :param item_table: a cached ``_item_table()`` (side features only; see :meth:`infer`).
        :return: the state (B, dim) as :meth:`forward` gives it, and for ``cnn+gnn`` with
            ``parallel`` fusion the CNN and GNN branch states ``[(B, dim), (B, dim)]`` before
            the mix and before the state dropout (pretraining's ``branch_loss`` scores them);
            an empty list for the other encoders.
        """
        if items.dim() != 2:
            raise ValueError(f"items must have shape (B, L), got {tuple(items.shape)}")
        cfg = self.config
        items = fit_length(items.long(), cfg.max_len)[:, -self._read_len :]  # only the columns a branch reads
        codes = None
        if self.behaviour_embedding is not None and behaviours is not None:
            codes = fit_length(behaviours.long(), cfg.max_len)[:, -self._read_len :].clamp(min=-1, max=cfg.n_behaviours - 1)
        # Two column groups, embedded separately: the recent columns that the CNN and the graph
        # read, and the older ones that only the readout's attention reads. Slicing one
        # (B, 50, d) tensor three ways would make its backward zero-fill and add three
        # full-size gradients; two lookups only scatter into the (n_items + 1, d) table.
        recent = min(items.shape[1], self._recent_len)
        emb = self._embed(items[:, -recent:], None if codes is None else codes[:, -recent:], item_table)
        older = self._embed(items[:, :-recent], None if codes is None else codes[:, :-recent], item_table) if recent < items.shape[1] else None
        graph_state = self._dense_graph_state if dense_graph else self._graph_state

        branches: list[Tensor] = []
        if cfg.encoder == "cnn":
            state = self.cnn(emb[:, -cfg.cnn_window :])
        elif cfg.encoder == "gnn":
            state = graph_state(items, emb, emb, older)
        elif self.gate is None:  # stacked: per-position Caser features -> node features
            context = cfg.gnn_len + cfg.cnn_window - 1  # the first graph position sees a full window
            mask = items[:, -cfg.gnn_len :] != PAD
            conv = self.cnn(emb[:, -context:])[:, -cfg.gnn_len :] * mask.unsqueeze(-1)
            state = graph_state(items, conv, emb, older)
        else:  # parallel: both branches on the embeddings, gated mix
            conv = self.cnn(emb[:, -cfg.cnn_window :])
            graph = graph_state(items, emb, emb, older)
            both = torch.cat([conv, graph], dim=-1)
            if cfg.parallel_mix == "concat":
                state = self.gate(both)
            else:
                z = torch.sigmoid(self.gate(both))
                state = z * conv + (1 - z) * graph
            branches = [conv, graph]
        return self.state_dropout(state), branches

    def _embed(self, items: Tensor, codes: Tensor | None, item_table: Tensor | None = None) -> Tensor:
        """Input embeddings with input dropout: (B, T) ids (PAD = -1) -> (B, T, d), zeros at PAD.

        PAD looks up the table's zero row 0 (and behaviour code 0), so no mask multiply is needed.
        Without side features the table is the embedding weight itself (its row 0 is zero and,
        as ``padding_idx``, gets no gradient), so no (n_items + 1, d) copy is made per lookup;
        with them, ``item_table`` is a cached ``_item_table()`` (built here when None).
        """
        if self.config.n_item_features:
            emb = F.embedding(items + 1, self._item_table() if item_table is None else item_table)
        else:
            emb = F.embedding(items + 1, self.item_embedding.weight, padding_idx=0)
        if codes is not None:
            emb = emb + self.behaviour_embedding(torch.where(items != PAD, codes + 1, 0))
        return self.input_dropout(emb)

    def _graph_state(self, items: Tensor, node_inputs: Tensor, recent: Tensor, older: Tensor | None) -> Tensor:
        """GNN branch -> (B, d).

        The last ``gnn_len`` items form the session graph; the readout attends over every
        column of ``items``, the ones before the graph entering with their input embedding
        (no propagation).

        :param items: (B, L) ids, PAD = -1.
        :param node_inputs: per-position inputs of the graph, (B, L', d) with ``L' >= gnn_len``
            (the last ``gnn_len`` are used); a node gets the mean over its positions.
        :param recent: (B, R, d) input embeddings of the last ``R >= gnn_len`` columns (zeros at PAD).
        :param older: (B, L - R, d) input embeddings of the columns before those, or None when ``R = L``.
        """
        n = self.config.gnn_len
        graph = build_session_graph(items[:, -n:])
        pos = graph.position_node
        in_graph = pos >= 0
        flat = pos[in_graph]
        counts = torch.bincount(flat, minlength=graph.num_nodes).clamp(min=1).unsqueeze(-1)
        x = node_inputs.new_zeros(graph.num_nodes, node_inputs.shape[-1]).index_add_(0, flat, node_inputs[:, -n:][in_graph]) / counts
        h = self.gnn(x, graph.edge_index, graph.weight_in, graph.weight_out)
        h = F.pad(h, (0, 0, 1, 0))  # row 0 = padding position / empty sequence
        h_pos = h[pos + 1]  # (B, gnn_len, d), zeros at padding
        h_last = h[graph.last_node + 1]
        return self._read_out(items, h_pos, h_last, recent, older)

    def _dense_graph_state(self, items: Tensor, node_inputs: Tensor, recent: Tensor, older: Tensor | None) -> Tensor:
        """:meth:`_graph_state` with the graph propagated densely (:func:`dense_session_graph`); same shapes.

        Messages are summed by one batched matmul over positions; the GRU runs once per node
        (at its first position), and every position of a node reads that node's state back.
        """
        n = self.config.gnn_len
        graph = dense_session_graph(items[:, -n:])
        B, d = items.shape[0], node_inputs.shape[-1]
        nodes = graph.node_position
        rows_in = nodes + nodes.div(n, rounding_mode="floor") * n  # the node's a_in row of the (B * 2n, d) messages
        x = torch.bmm(graph.same, node_inputs[:, -n:]) / graph.same.sum(2, keepdim=True).clamp(min=1)  # (B, n, d)
        h = x.reshape(B * n, d).index_select(0, nodes)  # (N, d): the mean input over each node's positions
        for _ in range(self.gnn.num_steps):  # SessionGatedConv.forward: a_in, a_out, then the GRU
            a = torch.bmm(graph.weights, x).reshape(B * 2 * n, d)
            h = self.gnn.gru(torch.cat([a.index_select(0, rows_in), a.index_select(0, rows_in + n)], dim=1), h)
            x = F.embedding(graph.position_node + 1, F.pad(h, (0, 0, 1, 0)))  # (B, n, d); padding reads the zero row
        h_last = x.gather(1, graph.last_position.clamp(min=0)[:, None, None].expand(B, 1, d)).squeeze(1)  # zeros when empty
        return self._read_out(items, x, h_last, recent, older)

    def _read_out(self, items: Tensor, h_pos: Tensor, h_last: Tensor, recent: Tensor, older: Tensor | None) -> Tensor:
        """The readout over every column: graph states (B, gnn_len, d) after the older input embeddings."""
        n = self.config.gnn_len
        before = [part for part in (older, recent[:, : recent.shape[1] - n]) if part is not None and part.shape[1]]
        if before:  # older positions: input embeddings
            h_pos = torch.cat([*before, h_pos], dim=1)
        return self.readout(h_pos, items != PAD, h_last)

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | Path, dataset_key: str | None = None) -> Path:
        """Write the checkpoint atomically (temp file in the same folder, then rename).

        Holds the format version, the config, ``dataset_key`` (``seq.meta["key"]`` of the
        training data) and the weights.
        """
        path = Path(path)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "kind": "seqrec.encoders.SequenceEncoder",
            "config": self.config.to_dict(),
            "dataset_key": dataset_key,
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }
        with atomic_write(path, "wb") as fh:
            torch.save(payload, fh)
        return path

    @classmethod
    def load(cls, path: str | Path, dataset_key: str | None = None, map_location: str | torch.device = "cpu") -> "SequenceEncoder":
        """Restore a checkpoint written by :meth:`save`.

        :param dataset_key: when given, the checkpoint must have been trained on the dataset
            with this key (``seq.meta["key"]``).
        :raises CheckpointError: (one line) the file is missing, truncated or corrupted, of
            another format version, or made for another dataset.
        """
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: encoder checkpoint not found")
        try:
            payload = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:  # truncated zip, bad pickle, …
            reason = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"{path}: encoder checkpoint is truncated or corrupted ({reason})") from None
        if not isinstance(payload, dict) or payload.get("kind") != "seqrec.encoders.SequenceEncoder":
            raise CheckpointError(f"{path}: not a seqrec encoder checkpoint")
        if payload.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: checkpoint format {payload.get('format')!r}, this seqrec reads format {CHECKPOINT_FORMAT}")
        if dataset_key is not None and payload.get("dataset_key") != dataset_key:
            raise CheckpointError(
                f"{path}: encoder was trained on dataset {payload.get('dataset_key')!r}, not on {dataset_key!r} (pretrain it on this data)"
            )
        try:
            model = cls(EncoderConfig.from_dict(payload["config"]))
            model.load_state_dict(payload["state_dict"])
        except (KeyError, RuntimeError, TypeError, ValueError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"{path}: encoder checkpoint does not match its config ({reason})") from None
        model.dataset_key = payload.get("dataset_key")
        model.eval()
        return model
