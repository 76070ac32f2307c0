r"""Every knob of the synthetic generator (:class:`SynthConfig`), and what the defaults give.

The model these fields parametrise is documented where it is computed:
:mod:`seqrec.data.synth_parameters` (how the catalogue and the users are drawn),
:mod:`seqrec.data.ground_truth` (the true click, exit and churn probabilities),
:mod:`seqrec.data.logging_policy` (which item the logging platform shows) and
:mod:`seqrec.data.synthetic` (the logging simulation and the files). Names in ``code`` and
in ``\text{...}`` in those docstrings are :class:`SynthConfig` fields.

Defaults
--------
``SynthConfig()`` (seed 0): 3,000 users, 500 items, 150,732 events (mean 50 per user,
median 36; seeds 1-3 give 144-152k), 24,067 sessions (mean length 6.3), click rate 29.9%
(view / click / cart / purchase = 105,712 / 31,374 / 8,143 / 5,503), 2,934 users churned
and 66 truncated at 200 events; about 1.3 s to generate, 2 s with writing.
The weights were chosen so that (1) the truth is learnable from the log, and (2) the
future matters: clicks change later probabilities through satiation, drift and category
transitions, and misses end sessions and lose users. The number of users was chosen for
(1): each user brings only ~50 events, so per-item biases and the category transition
matrix are identified by the number of users; with 3,000 the fitted simulator's Spearman
with the true P(click) over random (history, item) pairs is 0.91-0.92 (seeds 0-2), with
1,000 it was 0.83-0.88, below what even a model given the true preferences reaches
there (``benchmarks/simulator_truth.py``).

Regimes
-------
Named variants of these defaults that mirror the shapes of real logs (anonymous
sessions, a large Zipf catalogue, positives only, a view/cart/buy funnel) are in
:mod:`seqrec.data.synth_presets`. The fields they need beyond the model's weights
(``popularity_zipf``, ``fav_prob``, ``max_sessions_per_user``, ``write_impressions``,
``behaviour_names``), and the exposure knobs for checking debiased simulators against a
random-exposure log (``exposure_bias``, ``random_exposure``), are left out of
:meth:`SynthConfig.to_dict` while they hold their defaults, so the files of a default config
are the same bytes as before they existed.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqrec.infra.configs import from_dict as config_from_dict
from seqrec.infra.errors import SeqrecError

__all__ = ["DEFAULT_BEHAVIOURS", "SynthConfig"]

DEFAULT_BEHAVIOURS: tuple[str, ...] = ("view", "click", "cart", "purchase")
"""The default ``behaviour_names``: not clicked, clicked, carted, purchased."""

_OMIT_AT_DEFAULT = {"omit_at_default": True}
"""Field metadata: :meth:`SynthConfig.to_dict` leaves the field out while it holds its default."""


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of the synthetic generator (defaults: 3,000 users, ~150k events)."""

    n_users: int = 3000
    """Number of simulated users N (raw user ids 0..N-1)."""
    n_items: int = 500
    """Catalogue size M (raw item ids 0..M-1); at least ``n_categories``."""
    seed: int = 0
    """Random seed; the same config gives byte-identical files."""
    n_categories: int = 20
    """Number of item categories C."""
    dim: int = 16
    """Dimension d of the item and user latent vectors."""
    category_concentration: float = 5.0
    """Dirichlet concentration of the category shares (large: equal-sized categories)."""
    item_noise: float = 0.3
    """Norm scale of an item vector's deviation from its category centroid."""
    popularity_sigma: float = 1.0
    """Std of the popularity bias b_i; popularity share = softmax(b) (lognormal skew)."""
    popularity_zipf: float = field(default=0.0, metadata=_OMIT_AT_DEFAULT)
    """Zipf exponent s of the popularity; 0 (default) draws the lognormal bias above. When
    > 0, item ranks are a random permutation, b_i = -s * (log rank_i - mean log rank) and the
    popularity share is exactly rank^-s / H (``popularity_sigma`` is then unused)."""
    followup_weights: tuple[float, ...] = (1.0, 0.6)
    """T entries of each category's preferred follow-up categories (one per follow-up)."""
    dirichlet_alpha: float = 0.3
    """Dirichlet concentration of the users' category interests (small: few favourites)."""
    drift: float = 0.3
    """rho: weight of the recency-weighted mean of clicked item vectors in u_eff."""
    recency_decay: float = 0.7
    """lambda: per-click decay of the recency weights in u_eff."""
    satiation_decay: float = 0.75
    """gamma: per-click decay of satiation (smaller recovers faster)."""
    repeat_penalty: float = 2.0
    """kappa: extra satiation from a recent click on the very same item."""
    history_window: int = 50
    """W: only the last W clicks enter the click model."""
    w_intercept: float = -1.5
    """w0: click-logit intercept."""
    w_preference: float = 2.5
    """w1: weight of the preference term <u_eff, v_i>."""
    w_popularity: float = 0.7
    """w2: weight of the popularity bias b_i."""
    w_transition: float = 1.5
    """w3: weight of the category-transition affinity trans(last click, i)."""
    w_satiation: float = 0.5
    """w4: weight of the satiation penalty."""
    cart_prob: float = 0.3
    """Typical P(cart | click) (item-specific around it on the logit scale)."""
    buy_prob: float = 0.4
    """Typical P(purchase | cart) (item-specific around it on the logit scale)."""
    fav_prob: float = field(default=0.0, metadata=_OMIT_AT_DEFAULT)
    """Typical P(fav | click, no cart) (item-specific like ``cart_prob``); 0 (default): no fav
    stage. With a fav stage ``behaviour_names`` has five names."""
    funnel_noise: float = 0.5
    """Std of the item-specific cart/purchase (and fav) logit offsets."""
    exit_intercept: float = -2.2
    """e0: session-exit logit after a click (misses = 0)."""
    exit_slope: float = 0.3
    """e1: added exit logit per consecutive non-click step."""
    churn_intercept: float = -3.5
    """k0: churn logit after a session with no misses."""
    churn_slope: float = 2.0
    """k1: added churn logit per unit of the session's miss rate."""
    log_popularity: float = 0.5
    """Logging-policy share drawn by popularity."""
    log_same_category: float = 0.3
    """Logging-policy share drawn uniformly from the last clicked item's category."""
    log_uniform: float = 0.2
    """Logging-policy share drawn uniformly from the catalogue."""
    exposure_bias: float = field(default=0.0, metadata=_OMIT_AT_DEFAULT)
    """S: strength of the logging policy's bias toward the items the user is likely to click,
    pi_S(i | u, h) proportional to pi_0(i | h) * exp(S * true click logit); 0 (default) is pi_0
    itself (:mod:`seqrec.data.logging_policy`); ``pscore`` (written with the impressions) is then
    pi_S of the shown item. Costs O(N * M) per step when > 0."""
    random_exposure: int = field(default=0, metadata=_OMIT_AT_DEFAULT)
    """Also write ``random_exposure.csv``: this many distinct items per user drawn uniformly
    from the catalogue, each with an outcome drawn from the user's true P(click) at the end of
    their logged history (:mod:`seqrec.data.synthetic`); 0 (default): not written."""
    max_events_per_user: int = 200
    """Truncate each user's log after this many shown items (the number of time steps)."""
    max_sessions_per_user: int = field(default=0, metadata=_OMIT_AT_DEFAULT)
    """A user leaves after this many sessions (no churn draw after the last); 0 (default): no
    limit. 1 makes every user id a session id (anonymous session logs)."""
    start_ts: int = 1_600_000_000
    """Earliest possible first timestamp (unix seconds; fixed, never 'now')."""
    start_spread_s: int = 30 * 86_400
    """Users' first events are spread uniformly over this many seconds."""
    gap_min_s: int = 30
    """Minimum seconds between consecutive events of a session."""
    gap_max_s: int = 120
    """Maximum seconds between consecutive events of a session."""
    session_gap_min_s: int = 3_600
    """Minimum seconds between the end of a session and the next one."""
    session_gap_mean_s: float = 129_600.0
    """Mean of the exponential extra gap between sessions (seconds; 1.5 days)."""
    write_impressions: bool = field(default=True, metadata=_OMIT_AT_DEFAULT)
    """Write every shown item (the not-clicked ones as ``behaviour_names[0]``) and the
    ``pscore`` column; False writes only the clicked events and no ``pscore``, as most click
    logs are (the simulation, and so the truth, is the same)."""
    behaviour_names: tuple[str, ...] = field(default=DEFAULT_BEHAVIOURS, metadata=_OMIT_AT_DEFAULT)
    """Name of each funnel stage by ``value`` (the deepest stage an impression reached): not
    clicked, clicked, [favourited,] carted, purchased; five names when ``fav_prob`` > 0."""

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> SeqrecError:
            return SeqrecError(f"SynthConfig.{name}={getattr(self, name)!r}: {why}")

        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in ("followup_weights", "behaviour_names"):
                continue
            if f.type in ("bool", bool):
                if not isinstance(v, (bool, np.bool_)):
                    raise bad(f.name, "must be True or False")
                object.__setattr__(self, f.name, bool(v))
            elif f.type in ("int", int):
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                    raise bad(f.name, "must be an integer")
            elif isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise bad(f.name, "must be a number")
            elif not math.isfinite(float(v)):
                raise bad(f.name, "must be finite")
        object.__setattr__(self, "followup_weights", tuple(float(x) for x in self.followup_weights))
        if not isinstance(self.behaviour_names, (tuple, list)) or not all(isinstance(b, str) for b in self.behaviour_names):
            raise bad("behaviour_names", "must be a sequence of names")
        object.__setattr__(self, "behaviour_names", tuple(self.behaviour_names))

        for name in ("n_users", "n_items", "n_categories", "dim", "history_window", "max_events_per_user"):
            if getattr(self, name) < 1:
                raise bad(name, "must be >= 1")
        if self.seed < 0:
            raise bad("seed", "must be >= 0")
        if self.n_items < self.n_categories:
            raise bad("n_items", f"must be >= n_categories ({self.n_categories}) so no category is empty")
        if len(self.followup_weights) >= self.n_categories:
            raise bad("followup_weights", f"needs fewer entries than n_categories ({self.n_categories})")
        if any(not math.isfinite(w) or w < 0 for w in self.followup_weights):
            raise bad("followup_weights", "entries must be finite and >= 0")
        for name in ("category_concentration", "dirichlet_alpha"):
            if getattr(self, name) <= 0:
                raise bad(name, "must be > 0")
        for name in ("item_noise", "popularity_sigma", "popularity_zipf", "funnel_noise", "repeat_penalty",
                     "w_satiation", "session_gap_mean_s", "max_sessions_per_user", "exposure_bias", "random_exposure"):
            if getattr(self, name) < 0:
                raise bad(name, "must be >= 0")
        for name in ("drift", "log_popularity", "log_same_category", "log_uniform"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "must be in [0, 1]")
        for name in ("recency_decay", "satiation_decay"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise bad(name, "must be in (0, 1)")
        for name in ("cart_prob", "buy_prob"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise bad(name, "must be in (0, 1)")
        if not 0.0 <= self.fav_prob < 1.0:
            raise bad("fav_prob", "must be in [0, 1) (0: no fav stage)")
        n_names = 5 if self.fav_prob > 0 else 4
        if len(self.behaviour_names) != n_names:
            stages = "not clicked, clicked, fav, cart, purchase" if n_names == 5 else "not clicked, clicked, cart, purchase"
            raise bad("behaviour_names", f"needs {n_names} names ({stages}) with fav_prob={self.fav_prob:g}")
        if len(set(self.behaviour_names)) != n_names or not all(re.fullmatch(r"[A-Za-z0-9_.:-]+", b)
                                                                 for b in self.behaviour_names):
            raise bad("behaviour_names", "names must be distinct and made of letters, digits and _ . : -")
        total = self.log_popularity + self.log_same_category + self.log_uniform
        if abs(total - 1.0) > 1e-9:
            raise bad("log_uniform", f"log_popularity + log_same_category + log_uniform = {total:g}, must be 1")
        if self.log_uniform + self.log_same_category <= 0:
            raise bad("log_uniform", "log_uniform + log_same_category must be > 0 so every item can be shown")
        if self.random_exposure > self.n_items:
            raise bad("random_exposure", f"must be <= n_items ({self.n_items}): the items of a user are distinct")
        if self.gap_min_s < 1:
            raise bad("gap_min_s", "must be >= 1 (timestamps strictly increase)")
        if self.gap_max_s < self.gap_min_s:
            raise bad("gap_max_s", f"must be >= gap_min_s ({self.gap_min_s})")
        if self.session_gap_min_s < self.gap_max_s:
            raise bad("session_gap_min_s", f"must be >= gap_max_s ({self.gap_max_s})")
        if self.start_spread_s < 1:
            raise bad("start_spread_s", "must be >= 1")
        if self.start_ts < 0:
            raise bad("start_ts", "must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (tuples as lists); the fields of the regimes
        (module docstring) only where they differ from their defaults."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if not (f.metadata.get("omit_at_default") and getattr(self, f.name) == f.default)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthConfig:
        """Rebuild a config from :meth:`to_dict`; unknown keys raise :class:`SeqrecError`."""
        return config_from_dict(cls, d, tuple_fields=("followup_weights", "behaviour_names"))
