"""Every knob of the user simulator, as one frozen dataclass passed explicitly.

:class:`SimulatorConfig` is what :func:`seqrec.simulators.simulator.fit_simulator` reads;
it is stored in the checkpoint, so a loaded simulator knows how it was fitted. Values that
a log cannot identify (slate examination, idle-step satiation decay, the exit slope of a
log without non-click events, the repeat penalty of a log without repeats) are documented
defaults here, and the fidelity report says which ones were used.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from seqrec.infra.configs import from_dict as config_from_dict
from seqrec.infra.devices import DEVICE_CHOICES, check_device_name
from seqrec.infra.errors import SeqrecError

Calibration = Literal["temperature", "isotonic"]
Debias = Literal["none", "ips", "snips"]
DEBIAS_METHODS: tuple[str, ...] = get_args(Debias)
"""The values of ``SimulatorConfig.debias`` (the CLI's ``--debias``)."""


@dataclass(frozen=True)
class SimulatorConfig:
    """How the simulator is fitted and how its dynamics behave (defaults fit ML-100K in ~1 min)."""

    # -- response (click) model ------------------------------------------------------------
    dim: int = 32
    """Embedding size of the factorisation response model (the first candidate, see ``dim_search``)."""
    dim_search: tuple[int, ...] = (4,)
    """Further embedding sizes fitted besides ``dim``; the size whose model has the lowest
    calibrated held-out log-loss is kept (empty: fit ``dim`` only). The right capacity
    depends on the log: on the synthetic default 32 dimensions of id embeddings overfit,
    while ML-100K needs them. Each candidate costs one more fit."""
    max_history: int = 50
    """L: clicked items kept in a simulated user's history (and seen by the response model)."""
    epochs: int = 10
    """Training epochs (the cosine schedule spans them); the epoch with the best held-out
    log-loss is kept."""
    patience: int = 3
    """Stop after this many epochs without a better validation log-loss."""
    batch_size: int = 512
    """Training rows (one target event each, with its sampled negatives) per step."""
    max_seconds: float | None = None
    """Optional wall-clock budget of the response-model fit, shared by the sizes of
    ``dim_search``: each size's epochs draw a random subset of the rows sized so that
    ``BUDGET_EPOCHS`` epochs fit in its share (:mod:`seqrec.infra.budget`); the fit info
    records the rows per epoch used."""
    examples_per_epoch: int | None = None
    """At most this many training rows per epoch, a fresh random subset each epoch (None: all)."""
    device: str = "cpu"
    """Where the response model trains: ``auto | cpu | cuda | cuda:N`` (:mod:`seqrec.infra.devices`);
    rows, negatives and calibration stay on the CPU, and the fitted simulator is returned on the CPU."""
    lr: float = 1e-2
    """Adam learning rate (cosine-annealed to 0 over ``epochs``)."""
    prior_std_user: float = 0.3
    """Gaussian prior std of each user-embedding coordinate (MAP fit: the penalty is
    ``sum(theta**2 / std**2) / (2 * n_rows)`` added to the mean loss; smaller = more shrinkage)."""
    prior_std_item: float = 0.3
    """Prior std of the item id embedding ``q`` (the candidate side)."""
    prior_std_item_context: float = 0.3
    """Prior std of the item id embeddings ``x, r, s`` (history and transition roles): small,
    so that these roles rest mostly on side features unless the log says otherwise."""
    prior_std_item_bias: float = 1.0
    """Prior std of the per-item bias."""
    prior_std_features: float = 3.0
    """Prior std of the side-feature map and of the feature-level transition / affinity matrices."""
    min_id_events: int = 5
    """Items and users with fewer training events than this get no id embedding of their own:
    their vectors come from side features, popularity and the history alone. An id seen once
    or twice is memorised, not learned: on a 50k-item log (2 events per item) the id
    embeddings overfit within one epoch and the model fell below the popularity baseline."""
    n_negatives: int = 10
    """Items sampled per training row from items the user never interacted with (label 0)."""
    sampled_negative_weight: float | None = None
    """Loss weight of a sampled negative. ``None``: 1 for logs without real negatives, 0 for
    logs with impressions (there the real negatives identify P(click | shown), while a
    random unshown item may well be clicked if shown: on the synthetic default a random
    item's true P(click) averages 0.25, so labelling it 0 biases the model)."""
    negative_behaviours: tuple[str, ...] = ("view", "impression", "exposure", "show", "skip", "dislike", "negative")
    """Behaviour names that mean *shown but not clicked* (real negatives). Every other
    behaviour is a click; the first is ignored when the log has no such behaviour."""
    eval_negatives: int = 4
    """Logs without real negatives: sampled never-touched items per held-out positive, for
    calibration (validation split) and the fidelity report (test split). The calibrated
    P(click) of such a log means P(positive | one real next item among this many random ones)."""
    base_click_rate: float | None = 0.05
    """Logs without impressions (ratings, click streams): P(click) of a random item the user
    never touched, averaged over logged states. Such a log cannot identify it — it holds
    what users chose, not what they were shown and passed over — so it is *set* here, and
    the fitted model only ranks items around it (the fidelity report says so). 0.05: one in
    twenty random suggestions taken, so a policy that knows the user earns clearly more than
    one that does not. ``None``: keep the rate implied by the 1 : ``eval_negatives``
    calibration protocol (about 1/(1 + eval_negatives); before session 6, the only behaviour).
    Logs with impressions learn their rate and ignore this."""
    holdout_fraction: float = 0.1
    """Logs with real negatives: share of the train events held out at random for early
    stopping and calibration. (Their validation split, each user's second-last event, is
    selected by the outcome: users tend to leave after non-clicks, so its click rate is far
    below the log's.) Logs without real negatives use the validation split."""
    calibration: Calibration = "temperature"
    """``temperature``: logit -> a * logit + b (a > 0) fitted on the validation split;
    ``isotonic``: monotone piecewise-linear map fitted there."""
    seed: int = 0
    """Seed of initialisation, negative sampling and shuffling (same seed: same simulator)."""
    debias: Debias = "none"
    """Correct the response model's fit for the logging policy's exposure bias
    (:mod:`seqrec.simulators.exposure`): ``none`` (every logged event weighs 1, the fit
    of before this option), ``ips`` (each logged event weighted by its inverse exposure
    propensity relative to the training rows' harmonic mean, clipped above at
    ``debias_max_weight``), ``snips`` (those weights divided by their batch mean).
    Propensities: the log's ``pscore`` column when it has one, else an item-popularity
    exposure model fitted on the training rows, ``(n_i + 1) / (N + M)``. The held-out
    impressions that early-stop and calibrate the fit carry the same weights, so the
    calibrated P(click) targets uniform random exposure rather than the logged click rate."""
    debias_max_weight: float = 10.0
    """Upper clip of the IPS weights (weights below 1 are kept). Clipping bounds the variance
    a few rarely shown events would add, at the price of under-correcting them; the fidelity
    report records the share of training rows clipped and the effective sample size."""

    # -- satiation -------------------------------------------------------------------------
    similarity_threshold: float = 0.5
    """Two items are *similar* when the cosine of their side features (learned item
    embeddings when the log has none) is at least this; similarity counts as that cosine."""
    idle_satiation_decay: float = 1.0
    """Extra decay of satiation per step *without* a click (the fitted decay applies per
    click; 1.0 = satiation recovers only as new clicks push old ones back, as in the
    synthetic generator). Not identifiable from a log without impressions."""
    default_repeat_penalty: float = 3.0
    """Logit penalty per (decayed) recent click of the very same item, used when the log has
    too few repeat events to fit it (ratings logs never repeat an item)."""
    min_repeat_events: int = 50
    """Fit the repeat penalty only when the training rows hold at least this many repeats."""

    # -- exit model ------------------------------------------------------------------------
    session_gap_s: int = 1800
    """Logs without a session column: a gap longer than this (seconds) starts a new session."""
    default_exit_slope: float = 0.3
    """Exit-logit increase per consecutive unrewarded step, used when the log has no
    non-click events (then only the intercept is fitted, from session lengths)."""
    max_misses: int = 50
    """Misses are clipped at this value when fitting the exit model."""

    # -- slates ----------------------------------------------------------------------------
    examination_decay: float = 0.8
    """Cascade model: position j (0-based) of a slate is examined with probability
    ``examination_decay ** j`` (given no click above it). Logs of single items cannot fit it."""

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> SeqrecError:
            return SeqrecError(f"SimulatorConfig.{name}={getattr(self, name)!r}: {why}")

        for name in ("dim", "max_history", "epochs", "batch_size", "patience", "eval_negatives"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, "must be an integer >= 1")
        for name in ("n_negatives", "seed", "session_gap_s", "max_misses", "min_repeat_events", "min_id_events"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise bad(name, "must be an integer >= 0")
        for name in ("lr", "default_repeat_penalty", "default_exit_slope"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise bad(name, "must be a finite number >= 0")
        if self.lr <= 0:
            raise bad("lr", "must be > 0")
        if not isinstance(self.device, str):
            raise bad("device", f"must be {DEVICE_CHOICES}")
        try:
            check_device_name(self.device)
        except SeqrecError:
            raise bad("device", f"must be {DEVICE_CHOICES}") from None
        if self.max_seconds is not None and not (isinstance(self.max_seconds, (int, float)) and self.max_seconds > 0):
            raise bad("max_seconds", "must be None or > 0")
        if self.examples_per_epoch is not None and (isinstance(self.examples_per_epoch, bool) or not isinstance(self.examples_per_epoch, int) or self.examples_per_epoch < 1):
            raise bad("examples_per_epoch", "must be None or an integer >= 1")
        for name in ("prior_std_user", "prior_std_item", "prior_std_item_context", "prior_std_item_bias", "prior_std_features"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise bad(name, "must be a finite number > 0")
        if self.sampled_negative_weight is not None and not (0 <= self.sampled_negative_weight <= 10):
            raise bad("sampled_negative_weight", "must be None or in [0, 10]")
        if self.base_click_rate is not None and not 0.0 < self.base_click_rate < 1.0:
            raise bad("base_click_rate", "must be None or in (0, 1)")
        if not 0.0 < self.holdout_fraction < 0.5:
            raise bad("holdout_fraction", "must be in (0, 0.5)")
        if self.calibration not in ("temperature", "isotonic"):
            raise bad("calibration", "must be 'temperature' or 'isotonic'")
        if self.debias not in DEBIAS_METHODS:
            raise bad("debias", f"must be one of {', '.join(DEBIAS_METHODS)}")
        if isinstance(self.debias_max_weight, bool) or not isinstance(self.debias_max_weight, (int, float)) or not (
                math.isfinite(self.debias_max_weight) and self.debias_max_weight >= 1):
            raise bad("debias_max_weight", "must be a finite number >= 1")
        if not -1.0 <= self.similarity_threshold <= 1.0:
            raise bad("similarity_threshold", "must be a cosine in [-1, 1]")
        for name in ("idle_satiation_decay", "examination_decay"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise bad(name, "must be in (0, 1]")
        object.__setattr__(self, "negative_behaviours", tuple(str(b) for b in self.negative_behaviours))
        if isinstance(self.dim_search, (str, bytes)) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in self.dim_search):
            raise bad("dim_search", "must be a sequence of integers >= 1")
        object.__setattr__(self, "dim_search", tuple(self.dim_search))

    @property
    def dims(self) -> tuple[int, ...]:
        """The embedding sizes fitted, in order: ``dim``, then ``dim_search`` (repeats dropped)."""
        return tuple(dict.fromkeys((self.dim, *self.dim_search)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists); :meth:`from_dict` inverts it."""
        d = dataclasses.asdict(self)
        d["negative_behaviours"] = list(self.negative_behaviours)
        d["dim_search"] = list(self.dim_search)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SimulatorConfig":
        """Rebuild from :meth:`to_dict`; unknown keys raise :class:`SeqrecError`."""
        return config_from_dict(cls, d, tuple_fields=("negative_behaviours", "dim_search"))
