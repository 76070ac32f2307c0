r"""The embedded synthetic dataset: a logged e-commerce stream from a documented user model.

The default ``SeqRec-v0`` environment is built from this dataset, and because every
parameter of the model that produced it is kept (``truth.npz``), a fitted user simulator
can be scored against the *true* click probability, and a policy's true value can be
computed. Everything below is vectorised numpy over all users at once; the only Python
loop is over time steps (at most ``max_events_per_user`` iterations).

Randomness: ``np.random.SeedSequence(seed).spawn(2)`` gives two independent streams, one
for the ground-truth parameters (so :meth:`GroundTruth.from_config` regenerates them
without simulating the log) and one for the logging simulation. The same config gives
byte-identical files.

Notation: :math:`\sigma(x) = 1 / (1 + e^{-x})`; :math:`N` users, :math:`M` items,
:math:`C` categories, dimension :math:`d`; names in ``code`` and in ``\text{...}`` are
:class:`SynthConfig` fields.

Catalogue
---------
* Category centroids :math:`\mu_c \in \mathbb{R}^d`, :math:`c = 0..C-1`: independent
  random unit vectors.
* Item categories: each category gets one item (so none is empty) and the other
  :math:`M - C` items draw their category from the shares
  :math:`s \sim \mathrm{Dirichlet}(\text{category\_concentration} \cdot 1_C)`; then the
  item ids are shuffled.
* Item vectors :math:`v_i = \mu_{c(i)} + \text{item\_noise} \cdot \epsilon_i / \sqrt{d}`,
  :math:`\epsilon_i \sim N(0, I_d)`.
* Popularity bias :math:`b_i \sim N(0, \text{popularity\_sigma}^2)`; the popularity
  written to ``items.csv`` (and used by the logging policy) is the lognormal, Zipf-like
  skewed share :math:`\mathrm{pop}_i = e^{b_i} / \sum_j e^{b_j}`.
* Category transitions :math:`T \in \mathbb{R}^{C \times C}`: each category :math:`c`
  has ``len(followup_weights)`` preferred follow-up categories (distinct, never
  :math:`c` itself, chosen at random); :math:`T[c, f_k] = \text{followup\_weights}[k]`
  and every other entry is 0. The sequential affinity of item :math:`i` after the last
  clicked item :math:`l` is :math:`\mathrm{trans}(l, i) = T[c(l), c(i)]` (0 when there
  is no click yet).
* Post-click funnel, per item: :math:`q^{cart}_i = \sigma(\mathrm{logit}(\text{cart\_prob})
  + \text{funnel\_noise} \cdot \eta_i)` and :math:`q^{buy}_i = \sigma(\mathrm{logit}
  (\text{buy\_prob}) + \text{funnel\_noise} \cdot \eta'_i)`, :math:`\eta, \eta' \sim N(0, 1)`.

Users
-----
* Category interests :math:`\theta_u \sim \mathrm{Dirichlet}(\text{dirichlet\_alpha}
  \cdot 1_C)` (small alpha: a few favourite categories), long-term vector
  :math:`u^{long}_u = \sum_c \theta_{uc} \mu_c`.
* History :math:`h = (h_1, \dots, h_n)`: the user's **clicked** items (a click is any
  event with ``value >= 1``), oldest first, over all sessions. Only the last
  ``history_window`` = :math:`W` clicks matter; the age of :math:`h_k` is
  :math:`a_k = n - k` (0 for the most recent click) and entries with :math:`a_k \ge W`
  are ignored.
* Effective preference (taste drifts towards what was just clicked):

  .. math::
      u^{eff}_u(h) = (1 - \rho)\, u^{long}_u + \rho\, \frac{\sum_k \lambda^{a_k} v_{h_k}}
      {\sum_k \lambda^{a_k}}, \qquad u^{eff}_u(\varnothing) = u^{long}_u,

  with :math:`\rho` = ``drift`` and :math:`\lambda` = ``recency_decay``.
* Satiation (repeated similar items tire the user; it recovers as other clicks push the
  similar ones back, at rate :math:`\gamma` = ``satiation_decay``):

  .. math::
      \mathrm{sat}(h, i) = \sum_k \gamma^{a_k} \big( [c(h_k) = c(i)]
      + \kappa\, [h_k = i] \big),

  with :math:`\kappa` = ``repeat_penalty`` (re-showing a recently clicked item costs more
  than showing another item of its category).

True click probability
----------------------

.. math::
    P(\mathrm{click} \mid u, h, i) = \sigma\big(w_0 + w_1 \langle u^{eff}_u(h), v_i \rangle
    + w_2\, b_i + w_3\, \mathrm{trans}(h_n, i) - w_4\, \mathrm{sat}(h, i)\big)

with :math:`w_0..w_4` = ``w_intercept, w_preference, w_popularity, w_transition,
w_satiation``. :meth:`GroundTruth.click_probability` evaluates it, batched.

Logging (the platform that produced ``events.csv``)
-----------------------------------------------------
All users start at step 0, each at its own time. At every step, each user that has not
churned is shown ONE item drawn from the logging policy

.. math::
    \pi_0(i \mid h) = a_{pop}\, \mathrm{pop}_i
    + a_{cat}\, \frac{[c(i) = c(h_n)]}{|\{j : c(j) = c(h_n)\}|}
    + \frac{a_{uni}}{M}

(``log_popularity``, ``log_same_category``, ``log_uniform``; they sum to 1). Before the
user's first click the same-category share goes to the uniform part:
:math:`\pi_0(i \mid \varnothing) = a_{pop} \mathrm{pop}_i + (a_{cat} + a_{uni}) / M`.
``pscore`` is :math:`\pi_0` of the shown item (see :meth:`GroundTruth.logging_propensity`).

The user views the item and clicks with the true probability; after a click the item is
added to cart with probability :math:`q^{cart}_i`, and after a cart purchased with
probability :math:`q^{buy}_i`. One row per shown item, with the deepest stage reached:

========== ===== ============================
behaviour  value meaning
========== ===== ============================
view       0     impression without click
click      1     clicked, not carted
cart       2     carted, not purchased
purchase   3     purchased
========== ===== ============================

Sessions, exit and churn:

* ``misses`` = consecutive non-click steps in the current session, counted after the
  step's outcome (0 right after a click; reset to 0 when a session starts).
* After every step the user ends the session with
  :math:`P(\mathrm{exit}) = \sigma(e_0 + e_1 \cdot \mathrm{misses})` (``exit_intercept``,
  ``exit_slope``; :meth:`GroundTruth.exit_probability`).
* After a session ends the user churns (never returns) with
  :math:`P(\mathrm{churn}) = \sigma(k_0 + k_1 \cdot r)`, :math:`r` = the session's share of
  non-click steps (``churn_intercept``, ``churn_slope``; :meth:`GroundTruth.churn_probability`);
  otherwise a new session starts. The click history (and so satiation) carries over.
* A user's log is truncated after ``max_events_per_user`` events (counted in ``synth.json``
  as ``n_truncated``; the truncated last session did not end by exit).
* Timestamps (integer seconds): each user starts at ``start_ts + U{0, start_spread_s - 1}``;
  inside a session consecutive events are ``U{gap_min_s, gap_max_s}`` seconds apart; a new
  session starts ``session_gap_min_s + Exp(mean = session_gap_mean_s)`` seconds (floored)
  after the previous event.

Files (:func:`write_synthetic`)
-------------------------------
* ``events.csv`` -- ``user,item,ts,behaviour,value,session,pscore``; raw integer ids
  ``0..N-1`` / ``0..M-1``; ``session`` is a global session id numbered by (user, session
  order); sorted by user then ts; ``pscore`` with 10 significant digits.
* ``items.csv`` -- ``item,category,popularity`` (popularity = :math:`\mathrm{pop}_i`).
* ``truth.npz`` -- every ground-truth array and parameter, the config as JSON, and the
  format version; :meth:`GroundTruth.load` restores it.
* ``synth.json`` -- format version, config, model parameters and summary counts.

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

Example::

    >>> from seqrec.data.synthetic import SynthConfig, generate
    >>> log = generate(SynthConfig(n_users=50, n_items=60, n_categories=6, seed=1))
    >>> list(log.events.columns)
    ['user', 'item', 'ts', 'behaviour', 'value', 'session', 'pscore']
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy.special import expit

from seqrec.infra.errors import CheckpointError, SeqrecError

__all__ = [
    "FORMAT_VERSION",
    "BEHAVIOURS",
    "SynthConfig",
    "GroundTruth",
    "LogitTerms",
    "SyntheticLog",
    "generate",
    "write_synthetic",
]

FORMAT_VERSION = 1
"""Version of the files written by :func:`write_synthetic` (``synth.json``, ``truth.npz``)."""

BEHAVIOURS: tuple[str, ...] = ("view", "click", "cart", "purchase")
"""Behaviour names; the index is the event's ``value``."""

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed zip member time: byte-identical truth.npz


class LogitTerms(NamedTuple):
    """The terms of the true click logit (:meth:`GroundTruth.logit_terms`), each ``(B,)`` or ``(B, K)``."""

    preference: np.ndarray
    """<u_eff(h), v_i>."""
    popularity: np.ndarray
    """b_i."""
    transition: np.ndarray
    """trans(h_n, i) = T[c(h_n), c(i)] (0 without history)."""
    satiation: np.ndarray
    """sat(h, i) (the repeat penalty included)."""


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
    funnel_noise: float = 0.5
    """Std of the item-specific cart/purchase logit offsets."""
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
    max_events_per_user: int = 200
    """Truncate each user's log after this many events (the number of time steps)."""
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

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> SeqrecError:
            return SeqrecError(f"SynthConfig.{name}={getattr(self, name)!r}: {why}")

        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "followup_weights":
                continue
            if f.type in ("int", int):
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                    raise bad(f.name, "must be an integer")
            elif isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise bad(f.name, "must be a number")
            elif not math.isfinite(float(v)):
                raise bad(f.name, "must be finite")
        object.__setattr__(self, "followup_weights", tuple(float(x) for x in self.followup_weights))

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
        for name in ("item_noise", "popularity_sigma", "funnel_noise", "repeat_penalty", "w_satiation",
                     "session_gap_mean_s"):
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
        total = self.log_popularity + self.log_same_category + self.log_uniform
        if abs(total - 1.0) > 1e-9:
            raise bad("log_uniform", f"log_popularity + log_same_category + log_uniform = {total:g}, must be 1")
        if self.log_uniform + self.log_same_category <= 0:
            raise bad("log_uniform", "log_uniform + log_same_category must be > 0 so every item can be shown")
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
        """The config as a JSON-ready dict (``followup_weights`` as a list)."""
        d = dataclasses.asdict(self)
        d["followup_weights"] = list(self.followup_weights)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthConfig:
        """Rebuild a config from :meth:`to_dict`; unknown keys raise :class:`SeqrecError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SeqrecError(f"SynthConfig: unknown field(s) {', '.join(unknown)}")
        d = dict(d)
        if "followup_weights" in d:
            d["followup_weights"] = tuple(d["followup_weights"])
        return cls(**d)


# ---------------------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------------------

_ARRAYS: dict[str, tuple[str, str]] = {
    # name: (dtype kind, shape spec)
    "centroids": ("f", "C,d"),
    "categories": ("i", "M"),
    "item_vectors": ("f", "M,d"),
    "item_bias": ("f", "M"),
    "popularity": ("f", "M"),
    "transition": ("f", "C,C"),
    "user_interests": ("f", "N,C"),
    "user_vectors": ("f", "N,d"),
    "cart_prob": ("f", "M"),
    "buy_prob": ("f", "M"),
}


@dataclass(frozen=True, eq=False, repr=False)
class GroundTruth:
    """All parameters of the generative user model, and its exact probabilities.

    Build with :meth:`from_config` (regenerate from a seed) or :meth:`load` (from a folder
    written by :func:`write_synthetic`). Scalar parameters live in :attr:`config`.

    Shapes: ``centroids (C, d)``, ``categories (M,)``, ``item_vectors (M, d)``,
    ``item_bias (M,)``, ``popularity (M,)``, ``transition (C, C)``,
    ``user_interests (N, C)``, ``user_vectors (N, d)``, ``cart_prob (M,)``, ``buy_prob (M,)``.
    """

    config: SynthConfig
    centroids: np.ndarray
    categories: np.ndarray
    item_vectors: np.ndarray
    item_bias: np.ndarray
    popularity: np.ndarray
    transition: np.ndarray
    user_interests: np.ndarray
    user_vectors: np.ndarray
    cart_prob: np.ndarray
    buy_prob: np.ndarray
    _cat_sizes: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        for name, (kind, _) in _ARRAYS.items():
            a = np.array(getattr(self, name), dtype=np.int64 if kind == "i" else np.float64)  # own, read-only copy
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        object.__setattr__(self, "_cat_sizes", np.bincount(self.categories, minlength=self.n_categories))

    def __repr__(self) -> str:
        return (f"GroundTruth(n_users={self.n_users}, n_items={self.n_items}, "
                f"n_categories={self.n_categories}, seed={self.config.seed})")

    @property
    def n_users(self) -> int:
        return int(self.user_vectors.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_vectors.shape[0])

    @property
    def n_categories(self) -> int:
        return int(self.centroids.shape[0])

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_config(cls, cfg: SynthConfig) -> GroundTruth:
        """Draw the ground-truth parameters for ``cfg`` (the same ones :func:`generate` uses).

        Only the parameter stream of the seed is used, so this is cheap and does not simulate the log.
        """
        rng = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(2)[0])
        N, M, C, d = cfg.n_users, cfg.n_items, cfg.n_categories, cfg.dim

        centroids = rng.standard_normal((C, d))
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)

        shares = rng.dirichlet(np.full(C, cfg.category_concentration))
        rest = rng.choice(C, size=M - C, p=shares)
        categories = rng.permutation(np.concatenate([np.arange(C), rest])).astype(np.int64)

        noise = rng.standard_normal((M, d)) * (cfg.item_noise / math.sqrt(d))
        item_vectors = centroids[categories] + noise

        item_bias = rng.standard_normal(M) * cfg.popularity_sigma
        e = np.exp(item_bias - item_bias.max())
        popularity = e / e.sum()

        n_f = len(cfg.followup_weights)
        transition = np.zeros((C, C))
        if n_f:
            # follow-ups of c: n_f distinct categories != c, via a random permutation of the others
            keys = rng.random((C, C))
            keys[np.arange(C), np.arange(C)] = np.inf
            follow = np.argsort(keys, axis=1, kind="stable")[:, :n_f]
            transition[np.arange(C)[:, None], follow] = np.asarray(cfg.followup_weights)[None, :]

        user_interests = rng.dirichlet(np.full(C, cfg.dirichlet_alpha), size=N)
        user_vectors = user_interests @ centroids

        base_cart = math.log(cfg.cart_prob / (1 - cfg.cart_prob))
        base_buy = math.log(cfg.buy_prob / (1 - cfg.buy_prob))
        cart_prob = expit(base_cart + cfg.funnel_noise * rng.standard_normal(M))
        buy_prob = expit(base_buy + cfg.funnel_noise * rng.standard_normal(M))

        return cls(config=cfg, centroids=centroids, categories=categories, item_vectors=item_vectors,
                   item_bias=item_bias, popularity=popularity, transition=transition,
                   user_interests=user_interests, user_vectors=user_vectors,
                   cart_prob=cart_prob, buy_prob=buy_prob)

    # -- input checks ---------------------------------------------------------------------

    @staticmethod
    def _int_array(x: Any, name: str, ndim: tuple[int, ...]) -> np.ndarray:
        a = np.asarray(x)
        if a.dtype.kind not in "iu" and not (a.size == 0 and a.dtype.kind == "f"):
            raise SeqrecError(f"{name} must be an integer array, got dtype {a.dtype}")
        if a.ndim not in ndim:
            raise SeqrecError(f"{name} must have {' or '.join(map(str, ndim))} dimension(s), got shape {a.shape}")
        return a.astype(np.int64, copy=False)

    def _check_range(self, a: np.ndarray, name: str, low: int, high: int) -> None:
        if a.size and (a.min() < low or a.max() >= high):
            bad = a[(a < low) | (a >= high)][0]
            raise SeqrecError(f"{name} has value {int(bad)} outside [{low}, {high - 1}]")

    def _check_inputs(self, users: Any, histories: Any, items: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        users = self._int_array(users, "users", (1,))
        histories = self._int_array(histories, "histories", (2,))
        items = self._int_array(items, "items", (1, 2))
        B = users.shape[0]
        if histories.shape[0] != B or items.shape[0] != B:
            raise SeqrecError(f"batch sizes differ: users {users.shape}, histories {histories.shape}, "
                              f"items {items.shape} (all need the same first dimension)")
        self._check_range(users, "users", 0, self.n_users)
        self._check_range(histories, "histories", -1, self.n_items)
        self._check_range(items, "items", 0, self.n_items)
        return users, histories, items

    # -- the model --------------------------------------------------------------------------

    def _history_terms(self, histories: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-row history summary: (valid mask, clean ids, ages, last clicked item or -1)."""
        valid = histories >= 0
        age = np.cumsum(valid[:, ::-1], axis=1)[:, ::-1] - 1  # valid entries to the right
        valid &= age < self.config.history_window
        h = np.where(valid, histories, 0)
        B = histories.shape[0]
        if histories.shape[1]:
            pos = np.argmax(valid & (age == 0), axis=1)
            last = np.where(valid.any(axis=1), h[np.arange(B), pos], -1)
        else:
            last = np.full(B, -1, dtype=np.int64)
        return valid, h, age, last

    def click_logits(self, users: Any, histories: Any, items: Any) -> np.ndarray:
        """The click logit (the argument of the sigmoid); same arguments as :meth:`click_probability`."""
        users, histories, items = self._check_inputs(users, histories, items)
        return self._logits(users, histories, items)

    def _logits(self, users: np.ndarray, histories: np.ndarray, items: np.ndarray) -> np.ndarray:
        cfg = self.config
        pref, bias, trans, sat = self._terms(users, histories, items)
        return (cfg.w_intercept + cfg.w_preference * pref + cfg.w_popularity * bias
                + cfg.w_transition * trans - cfg.w_satiation * sat)

    def _terms(self, users: np.ndarray, histories: np.ndarray,
               items: np.ndarray) -> tuple[np.ndarray, ...]:
        """The logit terms <u_eff, v_i>, b_i, trans(last, i), sat(h, i), each shaped like ``items``."""
        cfg = self.config
        squeeze = items.ndim == 1
        it = items[:, None] if squeeze else items  # (B, K)
        B, K = it.shape
        M, C = self.n_items, self.n_categories
        valid, h, age, last = self._history_terms(histories)
        has = last >= 0
        agef = age.astype(np.float64)

        # preference: u_eff = (1 - rho) u_long + rho * recency-weighted mean of clicked vectors
        u_long = self.user_vectors[users]  # (B, d)
        rec = np.where(valid, cfg.recency_decay ** agef, 0.0)  # (B, L)
        z = rec.sum(axis=1)
        u_hist = np.einsum("bl,bld->bd", rec, self.item_vectors[h]) / np.where(has, z, 1.0)[:, None]
        u_eff = np.where(has[:, None], (1 - cfg.drift) * u_long + cfg.drift * u_hist, u_long)
        pref = np.einsum("bd,bkd->bk", u_eff, self.item_vectors[it])

        # sequential affinity of the candidate's category after the last click's category
        cat_it = self.categories[it]
        trans = np.where(has[:, None], self.transition[self.categories[np.maximum(last, 0)]][
            np.arange(B)[:, None], cat_it], 0.0)

        # satiation: gamma^age per clicked entry, aggregated per (row, category) and per (row, item)
        g = np.where(valid, cfg.satiation_decay ** agef, 0.0)
        rows = np.broadcast_to(np.arange(B)[:, None], h.shape)
        sat_cat = np.bincount((rows * C + self.categories[h]).ravel(), weights=g.ravel(),
                              minlength=B * C).reshape(B, C)
        sat = sat_cat[np.arange(B)[:, None], cat_it]
        if cfg.repeat_penalty:
            # same-item term: only rows x items present in the history can be nonzero
            key_h = (rows * M + h)[valid]
            if key_h.size:
                uniq, inv = np.unique(key_h, return_inverse=True)
                w_item = np.bincount(inv, weights=g[valid], minlength=uniq.size)
                key_i = (np.arange(B)[:, None] * M + it).ravel()
                idx = np.clip(np.searchsorted(uniq, key_i), 0, uniq.size - 1)
                rep = np.where(uniq[idx] == key_i, w_item[idx], 0.0).reshape(B, K)
                sat = sat + cfg.repeat_penalty * rep

        terms = (pref, self.item_bias[it], trans, sat)
        return tuple(t[:, 0] for t in terms) if squeeze else terms  # type: ignore[return-value]

    def click_probability(self, users: Any, histories: Any, items: Any) -> np.ndarray:
        """True P(click | user, history of clicked items, item), batched.

        :param users: user indices, shape ``(B,)``.
        :param histories: clicked items, oldest first, ``-1`` = padding (left), shape ``(B, L)``;
            any ``L`` (0 allowed); only the last ``history_window`` clicks count.
        :param items: candidate items, shape ``(B,)`` or ``(B, K)``.
        :return: probabilities in (0, 1), shape ``(B,)`` or ``(B, K)`` like ``items``.
        """
        users, histories, items = self._check_inputs(users, histories, items)
        return expit(self._logits(users, histories, items))

    def logit_terms(self, users: Any, histories: Any, items: Any) -> LogitTerms:
        """The click logit's four terms before their weights, each shaped like ``items``.

        ``w_intercept + w_preference * preference + w_popularity * popularity
        + w_transition * transition - w_satiation * satiation`` is :meth:`click_logits`;
        used to check how well a fitted model recovers each effect. Same arguments as
        :meth:`click_probability`.
        """
        users, histories, items = self._check_inputs(users, histories, items)
        return LogitTerms(*self._terms(users, histories, items))

    def satiation(self, histories: Any, items: Any) -> np.ndarray:
        """sat(h, i) from the module docstring (before the weight w4), shaped like ``items``.

        :param histories: clicked items, oldest first, ``-1`` = padding, shape ``(B, L)``.
        :param items: shape ``(B,)`` or ``(B, K)``.
        """
        histories = self._int_array(histories, "histories", (2,))
        items = self._int_array(items, "items", (1, 2))
        users = np.zeros(histories.shape[0], dtype=np.int64)
        users, histories, items = self._check_inputs(users, histories, items)
        return self._terms(users, histories, items)[3]

    def logging_propensity(self, histories: Any, items: Any) -> np.ndarray:
        """Probability that the logging policy shows ``items`` after ``histories`` (the ``pscore``).

        :param histories: clicked items, oldest first, ``-1`` = padding, shape ``(B, L)``.
        :param items: shape ``(B,)`` or ``(B, K)``.
        :return: same shape as ``items``; sums to 1 over the whole catalogue.
        """
        histories = self._int_array(histories, "histories", (2,))
        items = self._int_array(items, "items", (1, 2))
        if histories.shape[0] != items.shape[0]:
            raise SeqrecError(f"batch sizes differ: histories {histories.shape}, items {items.shape}")
        self._check_range(histories, "histories", -1, self.n_items)
        self._check_range(items, "items", 0, self.n_items)
        last = self._history_terms(histories)[3]
        return self._propensity(last, items)

    def _propensity(self, last: np.ndarray, items: np.ndarray) -> np.ndarray:
        cfg = self.config
        M = self.n_items
        has = last >= 0
        lc = self.categories[np.maximum(last, 0)]
        if items.ndim == 2:
            has, lc = has[:, None], lc[:, None]
        same = has & (self.categories[items] == lc)
        p_cat = np.where(same, cfg.log_same_category / self._cat_sizes[lc], 0.0)
        p_uni = np.where(has, cfg.log_uniform, cfg.log_uniform + cfg.log_same_category) / M
        return cfg.log_popularity * self.popularity[items] + p_cat + p_uni

    def exit_probability(self, misses: Any) -> np.ndarray:
        """P(session ends after a step) = sigmoid(e0 + e1 * misses); ``misses`` any int shape."""
        m = np.asarray(misses)
        if m.dtype.kind not in "iu":
            raise SeqrecError(f"misses must be an integer array, got dtype {m.dtype}")
        if m.size and m.min() < 0:
            raise SeqrecError(f"misses has negative value {int(m.min())}")
        return expit(self.config.exit_intercept + self.config.exit_slope * m)

    def churn_probability(self, miss_rate: Any) -> np.ndarray:
        """P(user never returns after a session) = sigmoid(k0 + k1 * miss_rate), miss_rate in [0, 1]."""
        r = np.asarray(miss_rate, dtype=np.float64)
        if r.size and (np.nanmin(r) < 0 or np.nanmax(r) > 1 or np.isnan(r).any()):
            raise SeqrecError("miss_rate must be in [0, 1]")
        return expit(self.config.churn_intercept + self.config.churn_slope * r)

    # -- persistence ----------------------------------------------------------------------

    def _save_npz(self, path: Path) -> None:
        """Write truth.npz deterministically (fixed zip member times, stored, sorted order)."""
        members: dict[str, np.ndarray] = {name: np.ascontiguousarray(getattr(self, name)) for name in _ARRAYS}
        members["format_version"] = np.asarray(FORMAT_VERSION, dtype=np.int64)
        members["config_json"] = np.asarray(json.dumps(self.config.to_dict(), sort_keys=True))
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
            for name in sorted(members):
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                buf = io.BytesIO()
                np.lib.format.write_array(buf, members[name], allow_pickle=False)
                zf.writestr(info, buf.getvalue())

    @classmethod
    def load(cls, directory: str | Path) -> GroundTruth:
        """Restore the ground truth from a folder written by :func:`write_synthetic`.

        Raises :class:`~seqrec.infra.errors.CheckpointError` (a one-line
        :class:`SeqrecError`) when ``truth.npz`` is missing, corrupted or of another version.
        """
        directory = Path(directory)
        path = directory / "truth.npz" if directory.suffix != ".npz" else directory
        if not path.is_file():
            raise CheckpointError(f"{path}: missing; write it with `seqrec data synth --out {path.parent}`")
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except Exception as exc:  # zip/npy parse errors come in many types
            raise CheckpointError(f"{path}: corrupted or not a seqrec truth file "
                                  f"({type(exc).__name__}: {_one_line(exc)})") from None
        missing = sorted(({"format_version", "config_json"} | set(_ARRAYS)) - set(data))
        if missing:
            raise CheckpointError(f"{path}: corrupted, missing array(s) {', '.join(missing)}")
        version = int(data["format_version"])
        if version != FORMAT_VERSION:
            raise CheckpointError(f"{path}: format version {version}, this seqrec reads {FORMAT_VERSION}; "
                                  f"regenerate with `seqrec data synth`")
        try:
            cfg = SynthConfig.from_dict(json.loads(str(data["config_json"])))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: corrupted config ({_one_line(exc)})") from None
        dims = {"N": cfg.n_users, "M": cfg.n_items, "C": cfg.n_categories, "d": cfg.dim}
        arrays = {}
        for name, (kind, spec) in _ARRAYS.items():
            a = data[name]
            shape = tuple(dims[s] for s in spec.split(","))
            if a.shape != shape or a.dtype.kind != kind:
                raise CheckpointError(f"{path}: corrupted, {name} has shape {a.shape} dtype {a.dtype}, "
                                      f"expected {shape} kind {kind!r}")
            if kind == "f" and not np.isfinite(a).all():
                raise CheckpointError(f"{path}: corrupted, {name} has non-finite values")
            arrays[name] = a
        if arrays["categories"].min() < 0 or arrays["categories"].max() >= cfg.n_categories:
            raise CheckpointError(f"{path}: corrupted, categories outside [0, {cfg.n_categories - 1}]")
        return cls(config=cfg, **arrays)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# ---------------------------------------------------------------------------------------
# Logging simulation
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SyntheticLog:
    """An in-memory synthetic dataset: what :func:`write_synthetic` writes."""

    truth: GroundTruth
    """The model that generated the log."""
    events: pd.DataFrame
    """``user,item,ts,behaviour,value,session,pscore`` sorted by user then ts."""
    items: pd.DataFrame
    """``item,category,popularity`` for every item."""
    summary: dict[str, Any]
    """Summary counts (also in ``synth.json``)."""


def generate(cfg: SynthConfig | None = None) -> SyntheticLog:
    """Simulate the logging platform under the documented user model (see the module docstring)."""
    cfg = SynthConfig() if cfg is None else cfg
    truth = GroundTruth.from_config(cfg)
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(2)[1])
    N, M, C, W = cfg.n_users, cfg.n_items, cfg.n_categories, cfg.history_window

    # items grouped by category, for the same-category logging draw
    by_cat = np.argsort(truth.categories, kind="stable")
    cat_size = truth._cat_sizes
    cat_start = np.concatenate([[0], np.cumsum(cat_size)[:-1]])
    pop_cdf = np.cumsum(truth.popularity)
    pop_cdf /= pop_cdf[-1]
    a_pop, a_cat = cfg.log_popularity, cfg.log_same_category

    # per-user state
    hist = np.full((N, W), -1, dtype=np.int64)  # last W clicks, left-padded
    last = np.full(N, -1, dtype=np.int64)
    alive = np.ones(N, dtype=bool)
    misses = np.zeros(N, dtype=np.int64)
    sess_steps = np.zeros(N, dtype=np.int64)
    sess_miss = np.zeros(N, dtype=np.int64)
    sess_idx = np.zeros(N, dtype=np.int64)
    ts = cfg.start_ts + rng.integers(0, cfg.start_spread_s, size=N)

    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "item", "ts", "value", "sess", "pscore")}
    n_churned = 0
    for _step in range(cfg.max_events_per_user):
        # one fixed-size draw per quantity per step keeps the stream independent of who is alive
        u_comp, u_pop, u_cat = rng.random(N), rng.random(N), rng.random(N)
        uni_item = rng.integers(0, M, size=N)
        u_click, u_cart, u_buy, u_exit, u_churn = (rng.random(N) for _ in range(5))
        gap_in = rng.integers(cfg.gap_min_s, cfg.gap_max_s + 1, size=N)
        gap_out = cfg.session_gap_min_s + np.floor(rng.exponential(cfg.session_gap_mean_s, size=N)).astype(np.int64)

        act = np.flatnonzero(alive)
        if act.size == 0:
            break
        la = last[act]
        has = la >= 0
        # logging policy: popularity / same category as last click / uniform
        pop_item = np.minimum(np.searchsorted(pop_cdf, u_pop[act], side="right"), M - 1)
        lc = truth.categories[np.maximum(la, 0)]
        cat_item = by_cat[cat_start[lc] + np.minimum((u_cat[act] * cat_size[lc]).astype(np.int64), cat_size[lc] - 1)]
        uc = u_comp[act]
        shown = np.where(uc < a_pop, pop_item,
                         np.where(has & (uc < a_pop + a_cat), cat_item, uni_item[act]))
        pscore = truth._propensity(la, shown)

        # user response
        p = expit(truth._logits(act, hist[act], shown))
        click = u_click[act] < p
        cart = click & (u_cart[act] < truth.cart_prob[shown])
        buy = cart & (u_buy[act] < truth.buy_prob[shown])
        value = click.astype(np.int64) + cart + buy

        cols["user"].append(act)
        cols["item"].append(shown)
        cols["ts"].append(ts[act].copy())
        cols["value"].append(value)
        cols["sess"].append(sess_idx[act].copy())
        cols["pscore"].append(pscore)

        # state update: clicks enter the history
        ck = act[click]
        hist[ck, :-1] = hist[ck, 1:]
        hist[ck, -1] = shown[click]
        last[ck] = shown[click]
        misses[act] = np.where(click, 0, misses[act] + 1)
        sess_steps[act] += 1
        sess_miss[act] += ~click

        # exit, then churn or a new session
        ex = u_exit[act] < truth.exit_probability(misses[act])
        ea = act[ex]
        churn = u_churn[ea] < truth.churn_probability(sess_miss[ea] / sess_steps[ea])
        alive[ea[churn]] = False
        n_churned += int(churn.sum())
        back = ea[~churn]
        sess_idx[back] += 1
        misses[ea] = 0
        sess_steps[ea] = 0
        sess_miss[ea] = 0
        ts[act] += np.where(ex, gap_out[act], gap_in[act])

    user = np.concatenate(cols["user"])
    order = np.argsort(user, kind="stable")  # steps are in time order per user
    user = user[order]
    item = np.concatenate(cols["item"])[order]
    value = np.concatenate(cols["value"])[order]
    sess_local = np.concatenate(cols["sess"])[order]
    n_sess_user = np.zeros(N, dtype=np.int64)
    np.maximum.at(n_sess_user, user, sess_local + 1)
    sess_offset = np.concatenate([[0], np.cumsum(n_sess_user)[:-1]])
    events = pd.DataFrame({
        "user": user,
        "item": item,
        "ts": np.concatenate(cols["ts"])[order],
        "behaviour": np.asarray(BEHAVIOURS, dtype=object)[value],
        "value": value,
        "session": sess_offset[user] + sess_local,
        "pscore": np.concatenate(cols["pscore"])[order],
    })
    items = pd.DataFrame({"item": np.arange(M), "category": truth.categories, "popularity": truth.popularity})

    per_user = np.bincount(user, minlength=N)
    counts = np.bincount(value, minlength=4)
    n_events = int(user.size)
    summary = {
        "n_users": N,
        "n_items": M,
        "n_items_shown": int(np.unique(item).size),
        "n_events": n_events,
        "n_sessions": int(n_sess_user.sum()),
        "behaviour_counts": {b: int(c) for b, c in zip(BEHAVIOURS, counts)},
        "click_rate": round(float((value >= 1).mean()), 6),
        "mean_events_per_user": round(n_events / N, 6),
        "median_events_per_user": float(np.median(per_user)),
        "mean_session_length": round(n_events / int(n_sess_user.sum()), 6),
        "n_churned": n_churned,
        "n_truncated": int((per_user == cfg.max_events_per_user).sum()),
    }
    return SyntheticLog(truth=truth, events=events, items=items, summary=summary)


def _model_parameters(cfg: SynthConfig) -> dict[str, Any]:
    """The documented scalar parameters, by the names the module docstring uses."""
    return {
        "click_model": "P(click) = sigmoid(w0 + w1*<u_eff,v_i> + w2*b_i + w3*T[cat(last),cat(i)] - w4*sat(h,i))",
        "u_eff": "(1-rho)*u_long + rho*sum_k lambda^age_k v_hk / sum_k lambda^age_k",
        "satiation": "sum_k gamma^age_k * ([cat(h_k)==cat(i)] + kappa*[h_k==i]), last W clicks",
        "exit": "sigmoid(e0 + e1*misses)",
        "churn": "sigmoid(k0 + k1*session_miss_rate)",
        "logging_policy": "a_pop*pop_i + a_cat*[cat(i)==cat(last)]/|cat| + a_uni/M (a_cat -> uniform before a click)",
        "w0": cfg.w_intercept, "w1": cfg.w_preference, "w2": cfg.w_popularity,
        "w3": cfg.w_transition, "w4": cfg.w_satiation,
        "rho": cfg.drift, "lambda": cfg.recency_decay, "gamma": cfg.satiation_decay,
        "kappa": cfg.repeat_penalty, "W": cfg.history_window,
        "e0": cfg.exit_intercept, "e1": cfg.exit_slope,
        "k0": cfg.churn_intercept, "k1": cfg.churn_slope,
        "a_pop": cfg.log_popularity, "a_cat": cfg.log_same_category, "a_uni": cfg.log_uniform,
        "behaviour_values": {b: v for v, b in enumerate(BEHAVIOURS)},
    }


def write_synthetic(out: str | Path, cfg: SynthConfig | None = None) -> Path:
    """Generate the synthetic dataset and write it to the folder ``out``; returns ``out``.

    Writes ``events.csv``, ``items.csv``, ``truth.npz`` and ``synth.json`` into a temporary
    sibling folder, then moves it into place with ``os.replace``. An existing ``out`` is
    replaced only if it is empty or a previous synthetic output (has ``synth.json``).
    """
    cfg = SynthConfig() if cfg is None else cfg
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SeqrecError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "synth.json").is_file():
        raise SeqrecError(f"{out}: folder is not empty and holds no synth.json; refusing to overwrite it")
    log = generate(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        log.events.to_csv(tmp / "events.csv", index=False, float_format="%.10g", lineterminator="\n")
        log.items.to_csv(tmp / "items.csv", index=False, float_format="%.10g", lineterminator="\n")
        log.truth._save_npz(tmp / "truth.npz")
        meta = {
            "format_version": FORMAT_VERSION,
            "generator": "seqrec.data.synthetic",
            "config": cfg.to_dict(),
            "model": _model_parameters(cfg),
            "files": ["events.csv", "items.csv", "truth.npz", "synth.json"],
            "summary": log.summary,
        }
        (tmp / "synth.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "d")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
