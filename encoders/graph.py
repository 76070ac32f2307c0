"""Batched session graphs built with tensor ops (no Python loop per sequence).

Every padded history in a batch becomes one directed item-transition graph, as in SR-GNN
(Wu et al., 2019, https://arxiv.org/abs/1811.00855): each distinct item of the history is
one node (a repeated item is the *same* node), and each pair of consecutive items
``(s_t, s_{t+1})`` is an edge ``s_t -> s_{t+1}`` (a transition seen twice is one edge; an
item followed by itself is a self-loop). The graphs of a batch are stored as one
disconnected graph in torch-geometric layout (``edge_index`` of shape ``(2, |E|)`` over the
batch's ``|V|`` nodes), with the SR-GNN normalisation as edge weights:

.. math::
    w^{in}_{u \to v} = \frac{1}{\deg^{in}(v)}, \qquad w^{out}_{u \to v} = \frac{1}{\deg^{out}(u)}

(``deg`` counts distinct neighbours), so that aggregating incoming messages at ``v`` with
``w_in`` averages over ``v``'s predecessors and aggregating along reversed edges at ``u``
with ``w_out`` averages over ``u``'s successors.

This runs inside the environment's ``step``: it costs one ``torch.unique`` over the batch's
valid positions and one over its edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from seqrec.data.sequences import PAD


@dataclass
class SessionGraph:
    """A batch of session graphs (see the module docstring). ``B`` sequences, ``L`` positions,
    ``N`` nodes, ``E`` edges.

    :param node_item: item id of each node, shape (N,); nodes of a sequence are sorted by item id.
    :param node_batch: sequence of each node, shape (N,), non-decreasing.
    :param edge_index: transitions ``src -> dst``, shape (2, E), deduplicated.
    :param weight_in: ``1 / in_degree(dst)`` per edge, shape (E,).
    :param weight_out: ``1 / out_degree(src)`` per edge, shape (E,).
    :param position_node: node of each input position, shape (B, L); -1 at padding.
    :param last_node: node of each sequence's most recent item, shape (B,); -1 for an empty sequence.
    """

    node_item: Tensor
    node_batch: Tensor
    edge_index: Tensor
    weight_in: Tensor
    weight_out: Tensor
    position_node: Tensor
    last_node: Tensor

    @property
    def num_nodes(self) -> int:
        return int(self.node_item.numel())

    @property
    def num_sequences(self) -> int:
        return int(self.position_node.shape[0])


def build_session_graph(items: Tensor) -> SessionGraph:
    """Build the session graphs of a batch of padded histories.

    :param items: item ids, shape (B, L), integer; ``PAD`` (-1) marks padding. Padding may be
        anywhere (left padding is the usual case): consecutive *valid* items are linked.
    :return: the :class:`SessionGraph` of the batch.

    Shapes: ``(B, L)`` → ``|V| ≤ B·L`` nodes, ``|E| ≤ B·(L-1)`` edges.
    """
    if items.dim() != 2:
        raise ValueError(f"items must have shape (B, L), got {tuple(items.shape)}")
    items = items.long()
    device = items.device
    n_seq, length = items.shape
    valid = items != PAD
    # one node per (sequence, item): unique over a combined key, sorted by sequence then item
    span = int(items.max().clamp(min=0).item()) + 1 if items.numel() else 1
    rows = torch.arange(n_seq, device=device).unsqueeze(1).expand(n_seq, length)
    keys = rows[valid] * span + items[valid]
    uniq, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    position_node = torch.full((n_seq, length), -1, dtype=torch.long, device=device)
    position_node[valid] = inverse
    n_nodes = int(uniq.numel())

    # previous valid position of every position: running max of valid indices
    index = torch.where(valid, torch.arange(length, device=device).expand(n_seq, length), -1)
    latest = torch.cummax(index, dim=1).values  # (B, L): last valid position <= t
    prev = torch.cat([torch.full((n_seq, 1), -1, dtype=torch.long, device=device), latest[:, :-1]], dim=1)
    has_edge = valid & (prev >= 0)
    src = position_node.gather(1, prev.clamp(min=0))[has_edge]
    dst = position_node[has_edge]
    edge_keys = torch.unique(src * max(n_nodes, 1) + dst, sorted=True)
    src, dst = edge_keys // max(n_nodes, 1), edge_keys % max(n_nodes, 1)
    in_deg = torch.bincount(dst, minlength=n_nodes).clamp(min=1)
    out_deg = torch.bincount(src, minlength=n_nodes).clamp(min=1)

    last_pos = latest[:, -1]
    last_node = torch.where(last_pos >= 0, position_node.gather(1, last_pos.clamp(min=0).unsqueeze(1)).squeeze(1), -1)
    return SessionGraph(
        node_item=uniq % span,
        node_batch=uniq // span,
        edge_index=torch.stack([src, dst]),
        weight_in=1.0 / in_deg[dst].float(),
        weight_out=1.0 / out_deg[src].float(),
        position_node=position_node,
        last_node=last_node,
    )
