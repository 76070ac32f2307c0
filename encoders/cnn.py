r"""Caser-style convolutional branch (Tang & Wang, 2018, https://arxiv.org/abs/1809.07426).

The last ``L`` item embeddings form an ``L × d`` "image". *Horizontal* filters of heights
``h = 1..L`` (``n_h`` each) span the full embedding width and slide over time; each
filter's ReLU activations are max-pooled over its placements in the window, so it detects
a union-level pattern of ``h`` consecutive items wherever it occurs. *Vertical* filters
(``n_v``) are ``L × 1``: each is a learned weighted sum of the window's embeddings.

Two forms share those filters' definition:

* :class:`CaserConv` reads one window (the last ``L`` items) and returns one vector — the
  CNN branch used alone or in the *parallel* fusion.
* :class:`CausalCaserConv` computes the same features for the window ending at **every**
  position (causal zero padding), giving per-position features — the *stacked* fusion
  feeds them to the GNN as node features.

Both compute all horizontal filters with **one** matmul against the stacked filter rows
(``Y = E W``, ``W`` of shape ``(d, n_h · L(L+1)/2)``) followed by shifted sums; on CPU this
is several times faster than one small convolution per height.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqrec.encoders.dropout import ByteDropout


class _CaserFilters(nn.Module):
    """Horizontal and vertical Caser filters for window ``L``; shared by both forms."""

    def __init__(self, dim: int, window: int, n_horizontal: int, n_vertical: int):
        super().__init__()
        self.dim, self.window, self.n_horizontal, self.n_vertical = dim, window, n_horizontal, n_vertical
        # rows of every filter: for height h and row k < h, block (h, k) of n_h columns
        self.horizontal_weight = nn.Parameter(torch.empty(dim, n_horizontal * window * (window + 1) // 2))
        self.horizontal_bias = nn.Parameter(torch.empty(window, n_horizontal))
        self.vertical_weight = nn.Parameter(torch.empty(n_vertical, window))
        self.vertical_bias = nn.Parameter(torch.empty(n_vertical))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for h in range(1, self.window + 1):  # Conv2d's default init, fan_in = h * d per height
            bound = 1.0 / math.sqrt(h * self.dim)
            nn.init.uniform_(self._block(self.horizontal_weight.data, h), -bound, bound)
            nn.init.uniform_(self.horizontal_bias.data[h - 1], -bound, bound)
        bound = 1.0 / math.sqrt(self.window)
        nn.init.uniform_(self.vertical_weight, -bound, bound)
        nn.init.uniform_(self.vertical_bias, -bound, bound)

    def _block(self, y: Tensor, h: int) -> Tensor:
        """Columns of height ``h``'s filters: (..., h * n_h)."""
        start = self.n_horizontal * (h - 1) * h // 2
        return y[..., start : start + h * self.n_horizontal]

    def horizontal(self, e: Tensor) -> list[Tensor]:
        """ReLU activations of every placement, per height: (B, P, d) -> [(B, P-h+1, n_h)] for h = 1..L."""
        y = e @ self.horizontal_weight  # (B, P, n_h * L(L+1)/2)
        length, n_h = e.shape[1], self.n_horizontal
        out = []
        for h in range(1, self.window + 1):
            block = self._block(y, h)
            acc = block[:, : length - h + 1, :n_h]
            for k in range(1, h):
                acc = acc + block[:, k : length - h + 1 + k, k * n_h : (k + 1) * n_h]
            out.append(torch.relu(acc + self.horizontal_bias[h - 1]))
        return out


class CaserConv(nn.Module):
    r"""Caser's horizontal + vertical convolutions over one window.

    .. math::
        \mathbf{o}^{h} = \big[\max_t \mathrm{ReLU}(\mathbf{F}^{h}_k * \mathbf{E})_t\big]_{h,k},
        \quad \mathbf{o}^{v} = \big[\tilde{\mathbf{F}}_k^\top \mathbf{E}\big]_k,
        \quad \mathbf{z} = \mathbf{W}_2\, \mathrm{ReLU}(\mathbf{W}_1 [\mathbf{o}^v; \mathbf{o}^h])

    Args:
        dim (int): embedding size ``d``.
        window (int): window length ``L`` (horizontal heights ``1..L``).
        n_horizontal (int): horizontal filters per height.
        n_vertical (int): vertical filters (0 disables them).
        dropout (float, optional): dropout before the fully connected layer. (default: :obj:`0.0`)

    Shapes:
        - **input:** :math:`(B, L, d)` (the last ``L`` embeddings, padding rows zero)
        - **output:** :math:`(B, d)`
    """

    def __init__(self, dim: int, window: int, n_horizontal: int, n_vertical: int, dropout: float = 0.0):
        super().__init__()
        self.filters = _CaserFilters(dim, window, n_horizontal, n_vertical)
        self.dropout = ByteDropout(dropout)  # nn.Dropout's bernoulli_ costs ~2 ms per batch of 512 on CPU
        self.fc1 = nn.Linear(n_horizontal * window + n_vertical * dim, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, e: Tensor) -> Tensor:
        f = self.filters
        if e.dim() != 3 or e.shape[1] != f.window or e.shape[2] != f.dim:
            raise ValueError(f"expected (B, {f.window}, {f.dim}) embeddings, got {tuple(e.shape)}")
        parts = [act.amax(dim=1) for act in f.horizontal(e)]  # each (B, n_h)
        if f.n_vertical:  # (B, n_v, d) -> (B, n_v * d)
            v = torch.einsum("vl,bld->bvd", f.vertical_weight, e) + f.vertical_bias[:, None]
            parts.insert(0, v.flatten(1))
        return self.fc2(torch.relu(self.fc1(self.dropout(torch.cat(parts, dim=-1)))))

    def __repr__(self) -> str:
        f = self.filters
        return f"{self.__class__.__name__}({f.dim}, window={f.window}, n_h={f.n_horizontal}, n_v={f.n_vertical})"


class CausalCaserConv(nn.Module):
    r"""Caser's features for the window ending at every position (causal, per position).

    Position ``t`` gets the :class:`CaserConv` features of the window ``[t-L+1, t]``
    (positions before the start are zero): each horizontal filter of height ``h`` is
    max-pooled over its ``L-h+1`` placements inside that window, and each vertical filter is
    a weighted sum over it. A linear map brings them back to ``d`` and they are added to the
    input embedding (residual), so node features keep the item's identity; that map starts
    at zero, so training starts from the plain embeddings and adds convolved features.

    Args:
        dim (int): embedding size ``d``.
        window (int): window length ``L``.
        n_horizontal (int): horizontal filters per height.
        n_vertical (int): vertical filters (0 disables them).

    Shapes:
        - **input:** :math:`(B, T, d)` embeddings of a whole history (padding rows zero)
        - **output:** :math:`(B, T, d)`
    """

    def __init__(self, dim: int, window: int, n_horizontal: int, n_vertical: int):
        super().__init__()
        self.filters = _CaserFilters(dim, window, n_horizontal, n_vertical)
        self.fc = nn.Linear(n_horizontal * window + n_vertical * dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.filters.reset_parameters()
        nn.init.zeros_(self.fc.weight)  # the residual starts at zero: node features = embeddings
        nn.init.zeros_(self.fc.bias)

    def forward(self, e: Tensor) -> Tensor:
        f = self.filters
        if e.dim() != 3 or e.shape[2] != f.dim:
            raise ValueError(f"expected (B, T, {f.dim}) embeddings, got {tuple(e.shape)}")
        length = e.shape[1]
        padded = F.pad(e, (0, 0, f.window - 1, 0))  # (B, T+L-1, d), causal zero padding
        parts = []
        for h, act in enumerate(f.horizontal(padded), start=1):  # act: (B, T+L-h, n_h), placement start s
            # window of output t covers starts t .. t+L-h: a running max of width L-h+1
            parts.append(act.unfold(1, f.window - h + 1, 1).amax(dim=-1) if h < f.window else act)
        if f.n_vertical:  # (B, T, L, d) windows -> (B, T, n_v * d)
            windows = padded.unfold(1, f.window, 1)  # (B, T, d, L)
            v = torch.einsum("vl,btdl->btvd", f.vertical_weight, windows) + f.vertical_bias[:, None]
            parts.insert(0, v.reshape(e.shape[0], length, -1))
        return e + self.fc(torch.cat(parts, dim=-1))

    def __repr__(self) -> str:
        f = self.filters
        return f"{self.__class__.__name__}({f.dim}, window={f.window}, n_h={f.n_horizontal}, n_v={f.n_vertical})"
