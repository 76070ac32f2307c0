"""The encoder's inference path as a module of tensors only, for :class:`~seqrec.infra.traced.TracedByShape`.

A single env re-encodes one history after every click; traced, that costs about half of the
eager :meth:`~seqrec.encoders.model.SequenceEncoder.infer` at one row, with the same states bit
for bit. Every branch of :meth:`~seqrec.encoders.model.SequenceEncoder.forward_branches`
depends on shapes and configuration only, never on values, so a trace per input shape is exact.
"""

from __future__ import annotations

from torch import Tensor, nn

from seqrec.encoders.model import SequenceEncoder

__all__ = ["EncoderInference"]


class EncoderInference(nn.Module):
    """``encoder.infer(items, behaviours, item_table)`` as ``forward(items, behaviours)``: (B, L), (B, L) -> (B, dim).

    :param encoder: an encoder in eval mode (its weights are shared, not copied).
    :param item_table: the cached ``_item_table()`` of an encoder with item side features, or None.
    """

    def __init__(self, encoder: SequenceEncoder, item_table: Tensor | None = None):
        super().__init__()
        if encoder.training:
            raise ValueError("EncoderInference needs an encoder in eval mode (dropout would be traced)")
        self.encoder, self.item_table = encoder, item_table

    def forward(self, items: Tensor, behaviours: Tensor) -> Tensor:
        return self.encoder.forward_branches(items, behaviours, dense_graph=True, item_table=self.item_table)[0]
