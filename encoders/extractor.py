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

Any other key (the env's ``session`` features, ``candidates`` embeddings, …) must be a
``Box``; it is flattened and concatenated after the encoder state, as SB3's
``CombinedExtractor`` would, so the policy sees everything the observation holds.

Use ``Box`` rather than ``MultiDiscrete`` for ``items``: SB3 one-hot encodes
``MultiDiscrete`` observations before they reach the extractor.

For an SB3 model, pass ``config`` (a plain dict from :meth:`EncoderConfig.to_dict`) in
``features_extractor_kwargs`` and copy pretrained weights in afterwards with
:func:`load_encoder_weights`: SB3 pickles ``policy_kwargs`` into every saved zip, and a live
module there bloats it (or a checkpoint path ties it to a file) while the zip holds the
trained weights anyway.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import Tensor

from seqrec.data.sequences import PAD
from seqrec.encoders.config import EncoderConfig
from seqrec.encoders.model import SequenceEncoder

ID_KEYS = ("items", "behaviours", "mask")
"""Observation keys the encoder reads; every other key is passed through flattened."""


class SequenceFeaturesExtractor(BaseFeaturesExtractor):
    """SB3 features extractor: ``Dict`` observation of raw ids -> encoder state (+ the other keys).

    :param observation_space: ``Dict`` with ``items`` (and optionally ``behaviours``, ``mask``,
        and any other ``Box`` keys), see the module docstring.
    :param encoder: an encoder to wrap (e.g. a pretrained one); trained further by the agent
        unless ``freeze``.
    :param checkpoint: or a checkpoint path to load the encoder from.
    :param config: or a config (or its :meth:`~EncoderConfig.to_dict`) to build a fresh encoder from.
    :param dataset_key: with ``checkpoint``: the dataset the encoder must have been trained on.
    :param freeze: keep the encoder's weights fixed (``requires_grad=False``, eval mode).

    ``features_dim`` is ``config.dim`` plus the flattened sizes of the other keys.
    Shapes: ``forward(obs) -> (B, features_dim)``; the first ``dim`` columns are the encoder state.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        encoder: SequenceEncoder | None = None,
        checkpoint: str | Path | None = None,
        config: EncoderConfig | dict | None = None,
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
        extra = [k for k in observation_space.spaces if k not in ID_KEYS]
        not_box = [k for k in extra if not isinstance(observation_space.spaces[k], spaces.Box)]
        if not_box:
            raise ValueError(f"observation keys {not_box} must be Box spaces to pass through the extractor "
                             "(SB3 one-hot encodes the others)")
        if sum(x is not None for x in (encoder, checkpoint, config)) != 1:
            raise ValueError("give exactly one of encoder, checkpoint or config")
        if checkpoint is not None:
            encoder = SequenceEncoder.load(checkpoint, dataset_key=dataset_key)
        elif config is not None:
            encoder = SequenceEncoder(EncoderConfig.from_dict(config) if isinstance(config, dict) else config)
        assert encoder is not None
        self.extra_keys = tuple(extra)
        extra_dim = sum(int(np.prod(observation_space.spaces[k].shape)) for k in extra)
        super().__init__(observation_space, features_dim=encoder.config.dim + extra_dim)
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
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            state = self.encoder(items, behaviours)
        if not self.extra_keys:
            return state
        return torch.cat([state, *(observations[k].flatten(1).to(state.dtype) for k in self.extra_keys)], dim=1)


def load_encoder_weights(module: torch.nn.Module, encoder: SequenceEncoder) -> int:
    """Copy ``encoder``'s weights into every :class:`SequenceFeaturesExtractor` inside ``module``.

    An SB3 policy may hold several (actor and critic, target networks); each gets its own
    copy, so training the agent never changes ``encoder``. Returns how many were set.

    :raises ValueError: an extractor's architecture differs from ``encoder``'s.
    """
    found = [m for m in module.modules() if isinstance(m, SequenceFeaturesExtractor)]
    for extractor in found:
        if extractor.encoder.config != encoder.config:
            raise ValueError(f"extractor encoder {extractor.encoder.config} does not match the pretrained {encoder.config}")
        extractor.encoder.load_state_dict(encoder.state_dict())
        extractor.encoder.dataset_key = encoder.dataset_key
    return len(found)
