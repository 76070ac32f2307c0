"""Options of the SeqRec environments (every one is a keyword argument of ``gymnasium.make``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from seqrec.infra.errors import SeqrecError

ObsMode = Literal["embedding", "ids"]
ActionMode = Literal["item", "candidates", "slate", "continuous"]


@dataclass
class EnvConfig:
    """How the simulated sessions are observed, acted on and rewarded."""

    obs_mode: ObsMode = "embedding"
    """``embedding``: the frozen encoder's state (+ 2 session features) as a ``Box``;
    ``ids``: a ``Dict`` of the padded history ids, behaviours and mask (end-to-end agents)."""
    action_mode: ActionMode = "item"
    """``item`` Discrete(n_items); ``candidates`` Discrete(K) over K retrieved items;
    ``slate`` MultiDiscrete([n_items] * slate_size), cascade click; ``continuous`` Box(d) query."""
    n_candidates: int = 20
    """K, the number of retrieved candidates in ``candidates`` mode."""
    slate_size: int = 5
    """Items per recommendation in ``slate`` mode."""
    max_episode_steps: int = 50
    """Steps before truncation."""
    reward_weights: dict[str, float] = field(default_factory=lambda: {"click": 1.0})
    """Reward = ``click`` weight × click + the weight of the behaviour that followed it
    (e.g. ``{"click": 1, "cart": 2, "purchase": 5}``); names from the dataset's behaviours."""
    start: Literal["valid", "test", "train"] = "valid"
    """Episodes start from each user's logged history up to this split (``valid``: the
    test event is held out; it stays available for offline evaluation)."""
    mask_consumed: bool = True
    """``action_masks()`` excludes items already in the user's history."""
    device: str = "cpu"
    """Where the encoder, the simulator and the session tensors live (``auto | cpu | cuda | cuda:N``,
    :mod:`seqrec.infra.devices`); they stay there between steps. Worth it for the batched env with many
    sub-envs; the default ``"cpu"`` is the tested path."""
    obs_backend: Literal["numpy", "torch"] = "numpy"
    """``numpy``: observations are NumPy arrays (what SB3 expects); ``torch``: the batched env
    returns them as torch tensors on ``device``, with no copy to the host (the single env is
    always NumPy). Rewards, flags and ``info`` are NumPy either way."""

    def __post_init__(self) -> None:
        if self.obs_mode not in ("embedding", "ids"):
            raise SeqrecError(f"obs_mode must be 'embedding' or 'ids', not {self.obs_mode!r}")
        if self.action_mode not in ("item", "candidates", "slate", "continuous"):
            raise SeqrecError(f"action_mode must be item, candidates, slate or continuous, not {self.action_mode!r}")
        if self.n_candidates < 1 or self.slate_size < 1 or self.max_episode_steps < 1:
            raise SeqrecError("n_candidates, slate_size and max_episode_steps must be >= 1")
        if self.start not in ("valid", "test", "train"):
            raise SeqrecError(f"start must be train, valid or test, not {self.start!r}")
        if self.obs_backend not in ("numpy", "torch"):
            raise SeqrecError(f"obs_backend must be 'numpy' or 'torch', not {self.obs_backend!r}")
        from seqrec.infra.devices import resolve_device  # here, not at import: the CLI reads these defaults without loading torch

        resolve_device(self.device)
