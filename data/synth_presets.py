r"""Named regimes of the synthetic generator: the same documented user model, logged the way real logs are.

Real logs come in shapes the default (a platform log with every impression) does not
have: anonymous sessions, catalogues of tens of thousands of items with a Zipf head,
click logs with no impressions, multi-behaviour funnels. Each preset below is a
:class:`~seqrec.data.synth_config.SynthConfig` that differs from the default only in
the fields that make its regime, so the ground truth (``truth.npz``) describes exactly
the process that wrote its ``events.csv`` and a fitted simulator can be scored against
the true P(click) on every regime. ``seqrec data synth --preset NAME`` writes one;
``--users``, ``--items`` and ``--seed`` still override.

==================== =========================================================================
preset               mirrors, and what the default size gives (seed 0, ``synth.json`` summary)
==================== =========================================================================
``default``          a platform log with impressions: 3,000 users, 500 items, 150,732 events
                     (view / click / cart / purchase) with ``pscore``
                     (:mod:`~seqrec.data.synth_config`)
``sessions``         anonymous session click logs (YOOCHOOSE, Diginetica): 20,000 sessions,
                     each user id one session (``max_sessions_per_user=1``), patience raised
                     so a session holds about 5 clicks (``exit_intercept=-3``,
                     ``exit_slope=0.2``), clicked items only (no impressions, no ``pscore``).
                     85,782 events in 16,826 sessions (the 3,174 without a click are absent),
                     mean 5.1 events per session, median 4, 18% of length 1
``sparse-catalogue`` a large catalogue (Amazon, Retailrocket): 50,000 items in 50 categories,
                     exact Zipf popularity (``popularity_zipf=1``), 1,800 users, with
                     impressions; ``w_popularity=0.35`` (half the default) because the Zipf
                     bias reaches log M - 1 = 9.8 (the default's lognormal about 3), which
                     made the top items near-certain clicks. 102,013 events, click rate 35%;
                     35,248 items appear, most of them once or twice; the top 1% of items
                     hold 31% of the events and 60% of the clicks
``positives-only``   an implicit-feedback click log (most public logs): the default model,
                     only the clicked rows (value >= 1): no ``view`` rows, no ``pscore``.
                     45,020 events (click / cart / purchase) of 150,732 impressions; 2,790
                     users (the 210 without a click are absent)
``funnel``           an e-commerce behaviour log (Taobao UserBehavior): positives only, named
                     ``pv`` / ``fav`` / ``cart`` / ``buy`` (``pv``: the item page was opened,
                     a positive, not an impression), with a fav stage; the typical stage
                     probabilities (``cart_prob=0.063``, ``buy_prob=0.275``,
                     ``fav_prob=0.029``) give mean item probabilities 0.070, 0.285, 0.032
                     under ``funnel_noise``, so the shares are 90 / 3 / 5 / 2 % in
                     expectation. 45,104 events: 90.3 / 2.8 / 5.0 / 1.9 %
==================== =========================================================================

Each takes 0.5-1.8 s to generate (``sessions`` the longest) and 4.3-5.6 s with the CLI,
of which 3.3 s and 0.41 GB are the CLI's imports; peak RSS under 0.65 GB.

Example::

    >>> from seqrec.data.synth_presets import synth_preset
    >>> cfg = synth_preset("funnel", n_users=50, seed=1)
    >>> cfg.behaviour_names, cfg.write_impressions
    (('view', 'pv', 'fav', 'cart', 'buy'), False)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from seqrec.data.synth_config import SynthConfig
from seqrec.infra.errors import SeqrecError

__all__ = ["PRESETS", "Preset", "synth_preset"]


@dataclass(frozen=True)
class Preset:
    """One named regime: the :class:`SynthConfig` fields it changes, and what real log it mirrors."""

    summary: str
    """One line: what real log the regime mirrors (the CLI help shows it)."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """The :class:`SynthConfig` fields that differ from the default."""

    def config(self, **overrides: Any) -> SynthConfig:
        """The regime's config, with ``overrides`` (e.g. ``n_users``, ``seed``) on top."""
        return SynthConfig(**{**self.overrides, **overrides})


PRESETS: Mapping[str, Preset] = MappingProxyType({
    "default": Preset("platform log with impressions (view/click/cart/purchase) and pscore"),
    "sessions": Preset(
        "anonymous sessions, clicked items only, ~5 events each (YOOCHOOSE-like)",
        {"n_users": 20_000, "max_sessions_per_user": 1, "exit_intercept": -3.0, "exit_slope": 0.2,
         "write_impressions": False}),
    "sparse-catalogue": Preset(
        "50k items, Zipf popularity, ~100k events with impressions",
        {"n_users": 1_800, "n_items": 50_000, "n_categories": 50, "popularity_zipf": 1.0,
         "w_popularity": 0.35}),
    "positives-only": Preset(
        "the default model, clicked rows only: no view rows, no pscore",
        {"write_impressions": False}),
    "funnel": Preset(
        "pv/fav/cart/buy at ~90/3/5/2 %, positives only (Taobao-like)",
        {"write_impressions": False, "behaviour_names": ("view", "pv", "fav", "cart", "buy"),
         "cart_prob": 0.063, "buy_prob": 0.275, "fav_prob": 0.029}),
})
"""The regimes by name (module docstring); ``default`` is ``SynthConfig()``."""


def synth_preset(name: str, **overrides: Any) -> SynthConfig:
    """The :class:`SynthConfig` of preset ``name`` with ``overrides`` on top.

    :raises SeqrecError: for an unknown name (the message lists the known ones) or a bad override.
    """
    if name not in PRESETS:
        raise SeqrecError(f"unknown synthetic preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name].config(**overrides)
