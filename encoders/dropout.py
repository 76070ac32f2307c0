"""Element-wise dropout that draws 8 random bits per element instead of one random number.

On CPU the random number generator dominates ``nn.Dropout`` on large activations (a
``(512, 50, 64)`` embedding batch spends more time in ``bernoulli_`` than in the model's
matmuls). :class:`ByteDropout` fills the mask from 64-bit draws viewed as bytes (one draw
covers 8 elements): the keep probability is rounded to a multiple of 1/256, and otherwise
it is ordinary inverted dropout, seeded by torch's global generator. The mask is built
as a float tensor (bytes → float, ``ge_``, ``mul_``), which on CPU costs a fifth of a
uint8 comparison followed by a bool multiply.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ByteDropout(nn.Module):
    """Inverted dropout with byte-resolution probability (see the module docstring).

    :param p: drop probability, rounded to ``round(256 p) / 256``.

    Shapes: any tensor -> the same shape.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.threshold = int(round(256 * p))

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.threshold == 0:
            return x
        n = x.numel()
        bits = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64, device=x.device)
        # the mask as floats, 0 or the rescale 256 / (256 - threshold): comparing in float is
        # vectorised on CPU (a uint8 comparison and a bool multiply are each ~6x slower), and
        # one float mask makes forward and backward a single multiply each
        keep = bits.view(torch.uint8)[:n].view(x.shape).to(x.dtype).ge_(self.threshold).mul_(256.0 / (256 - self.threshold))
        return x * keep

    def extra_repr(self) -> str:
        return f"p={self.threshold / 256:g}"
