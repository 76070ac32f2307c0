"""Stable-Baselines3 features extractor wrapping :class:`SequenceEncoder`.

For agents that learn end to end from raw item-id observations. The observation space is
a ``gymnasium.spaces.Dict`` with

=============  ==========================  ==================================================
key            space                       meaning
=============  ==========================  ==================================================
``items``      ``Box(-1, n_items-1, (L,))``  item ids, left-padded with -1 (float or int dtype)
``behaviours`` ``Box(-1, K-1, (L,))``        optional behaviour codes, -1 at padding
``mask``       ``Box(0, 1, (L,))``           optional; positions with ``mask < 0.5`` are padding
=============  ==========================  ==================================================

Use ``Box`` rather than ``MultiDiscrete`` for ``items``: SB3 one-hot encodes
``MultiDiscrete`` observations before they reach the extractor.
"""

from __future__ import annotations

from pathlib import Path

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import Tensor

from seqrec.data.sequences import PAD
from seqrec.encoders.config import EncoderConfig
from seqrec.encoders.model import SequenceEncoder


class SequenceFeaturesExtractor(BaseFeaturesExtractor):
    """SB3 features extractor: ``Dict`` observation of raw ids -> encoder state.

    :param observation_space: ``Dict`` with ``items`` (and optionally ``behaviours``, ``mask``),
        see the module docstring.
    :param encoder: an encoder to wrap (e.g. a pretrained one); trained further by the agent
        unless ``freeze``.
    :param checkpoint: or a checkpoint path to load the encoder from.
    :param config: or a config to build a fresh encoder from.
    :param dataset_key: with ``checkpoint``: the dataset the encoder must have been trained on.
    :param freeze: keep the encoder's weights fixed (``requires_grad=False``, eval mode).

    ``features_dim`` is ``config.dim``. Shapes: ``forward(obs) -> (B, dim)``.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        encoder: SequenceEncoder | None = None,
        checkpoint: str | Path | None = None,
        config: EncoderConfig | None = None,
        dataset_key: str | None = None,
        freeze: bool = False,
    ):
        if not isinstance(observation_space, spaces.Dict) or "items" not in observation_space.spaces:
            raise ValueError(
                f"SequenceFeaturesExtractor needs a Dict observation space with an 'items' key, got {observation_space}; "
                "use the env's raw-id observation mode"
            )
        items_space = observation_space.spaces["items"]
        if not isinstance(items_space, spaces.Box) or len(items_space.shape) != 1:
            raise ValueError(
                f"observation 'items' must be a 1-D Box of ids (got {items_space}); SB3 one-hot encodes MultiDiscrete, use Box"
            )
        if sum(x is not None for x in (encoder, checkpoint, config)) != 1:
            raise ValueError("give exactly one of encoder, checkpoint or config")
        if checkpoint is not None:
            encoder = SequenceEncoder.load(checkpoint, dataset_key=dataset_key)
        elif config is not None:
            encoder = SequenceEncoder(config)
        assert encoder is not None
        super().__init__(observation_space, features_dim=encoder.config.dim)
        self.encoder = encoder
        self.freeze = freeze
        if freeze:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> "SequenceFeaturesExtractor":
        super().train(mode)
        if self.freeze:
            self.encoder.eval()
        return self

    def forward(self, observations: dict[str, Tensor]) -> Tensor:
        items = observations["items"].round().long()
        behaviours = observations.get("behaviours")
        if "mask" in observations:
            items = torch.where(observations["mask"] >= 0.5, items, PAD)
        if behaviours is not None:
            behaviours = torch.where(items == PAD, PAD, behaviours.round().long())
        if self.freeze:
            with torch.no_grad():
                return self.encoder(items, behaviours)
        return self.encoder(items, behaviours)
