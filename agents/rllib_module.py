"""The RLlib policy of ``seqrec train --engine rllib``: PPO's module with the env's action mask.

Follows RLlib's action-masking example (``ray/rllib/examples/rl_modules/action_masking_rl_module.py``):
the env's observation is a ``Dict`` of ``action_mask`` and ``observations``; the networks see
``observations`` only and ``log(mask)`` (clamped to RLlib's ``FLOAT_MIN``) is added to the
logits, so a masked action (an item the user already consumed) has probability ~0 in
exploration, in inference and in the PPO loss alike.

``model_config``: ``pi_hidden`` (list, default ``[]`` = a linear policy head, which is what
:func:`init_from_encoder` sets to the encoder's scores) and ``vf_hidden`` (default ``[128, 128]``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.torch_utils import FLOAT_MIN

from seqrec.infra.errors import SeqrecError


def _mlp(sizes: list[int], out: int) -> nn.Sequential:
    """``sizes[0] -> ... -> out`` with tanh between layers (SB3's default PPO activation)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], out))


class MaskedPPOModule(TorchRLModule, ValueFunctionAPI):
    """Policy logits and value on the flat ``observations`` ``(B, width)``; logits masked by ``action_mask`` ``(B, n_actions)``.

    Shapes: ``obs["observations"] (B, width)``, ``obs["action_mask"] (B, n_actions)`` ->
    ``action_dist_inputs (B, n_actions)``; :meth:`compute_values` -> ``(B,)``.
    """

    def setup(self) -> None:
        width = int(self.observation_space["observations"].shape[0])
        n_actions = int(self.action_space.n)
        cfg: dict[str, Any] = dict(self.model_config or {})
        self.pi = _mlp([width, *cfg.get("pi_hidden", [])], n_actions)
        if not self.inference_only:
            self.vf = _mlp([width, *cfg.get("vf_hidden", [128, 128])], 1)

    def _masked_logits(self, batch: dict) -> torch.Tensor:
        obs = batch[Columns.OBS]
        return self.pi(obs["observations"]) + torch.clamp(torch.log(obs["action_mask"]), min=FLOAT_MIN)

    def _forward(self, batch: dict, **kwargs) -> dict:
        return {Columns.ACTION_DIST_INPUTS: self._masked_logits(batch)}

    def compute_values(self, batch: dict, embeddings: Any = None) -> torch.Tensor:
        return self.vf(batch[Columns.OBS]["observations"]).squeeze(-1)


def init_from_encoder(module: MaskedPPOModule, item_emb: torch.Tensor, item_bias: torch.Tensor, temperature: float) -> None:
    """Set a linear policy head to the encoder's next-item scores / ``temperature`` (item mode).

    ``observations`` is ``[state (d) | session features]``, so weights ``[E | 0] / T`` and bias
    ``b / T`` (``E`` the item embeddings ``(n_items, d)``, ``b`` the item bias) give the encoder's
    scores: the agent starts as the greedy baseline, as SB3's ``policy_init="encoder"`` does.
    """
    head = module.pi[-1]
    n, d = item_emb.shape
    if len(module.pi) != 1 or head.weight.shape[0] != n or head.weight.shape[1] < d:
        raise SeqrecError(f"policy head {tuple(head.weight.shape)} is not a linear head over {n} items from a state of dim {d}")
    with torch.no_grad():
        head.weight.zero_()
        head.weight[:, :d] = item_emb / temperature
        head.bias.copy_(item_bias / temperature)
