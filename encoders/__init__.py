"""seqrec.encoders: the CNN + GNN sequence encoder that turns a history into the env's state.

=================  ==============================================================
module             holds
=================  ==============================================================
``config``         :class:`EncoderConfig` (architecture), :class:`PretrainConfig`
``graph``          batched session-graph building (vectorised, torch)
``cnn``            Caser-style horizontal + vertical convolutions
``gnn``            SR-GNN-style gated graph layer and attention readout
``model``          :class:`SequenceEncoder` (fusion, scoring, save / load)
``metrics``        HR / NDCG / MRR, full ranking or against sampled negatives
``sampled``        sampled softmax: shared negatives with the log-Q correction
``train``          :func:`pretrain` (next-item prediction) and :func:`evaluate`
``extractor``      SB3 ``BaseFeaturesExtractor`` for raw-id observations
``cli``            ``seqrec pretrain`` and ``seqrec encoder evaluate``
=================  ==============================================================
"""

from seqrec.encoders.config import EncoderConfig, PretrainConfig
from seqrec.encoders.model import SequenceEncoder
from seqrec.encoders.train import evaluate, pretrain

__all__ = ["EncoderConfig", "PretrainConfig", "SequenceEncoder", "evaluate", "pretrain"]
