r"""The ground truth of the synthetic dataset: the user model's parameters and its exact probabilities.

:class:`GroundTruth` keeps every parameter of the model that produced the log (saved as
``truth.npz`` by :func:`~seqrec.data.synthetic.write_synthetic`), so a fitted user
simulator can be scored against the *true* click probability, and a policy's true value
can be computed. How the parameters are drawn from the seed (catalogue, user interests):
:mod:`seqrec.data.synth_parameters`; the logging policy: :mod:`seqrec.data.logging_policy`;
when exit and churn apply: :mod:`seqrec.data.synthetic`. Everything is vectorised numpy,
batched over (user, history, item).

Notation: :math:`\sigma(x) = 1 / (1 + e^{-x})`; :math:`N` users, :math:`M` items,
:math:`C` categories, dimension :math:`d`; names in ``code`` and in ``\text{...}`` are
:class:`~seqrec.data.synth_config.SynthConfig` fields.

History, preference and satiation
---------------------------------
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
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy.special import expit

from seqrec.data.logging_policy import LoggingPolicy
from seqrec.data.synth_config import SynthConfig
from seqrec.data.synth_parameters import draw_parameters
from seqrec.infra.errors import CheckpointError, SeqrecError

__all__ = ["FORMAT_VERSION", "GroundTruth", "LogitTerms"]

FORMAT_VERSION = 1
"""Version of the files written by :func:`~seqrec.data.synthetic.write_synthetic` (``synth.json``, ``truth.npz``)."""

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
_FAV_ARRAY = {"fav_prob": ("f", "M")}  # saved and required only when config.fav_prob > 0


def _array_specs(cfg: SynthConfig) -> dict[str, tuple[str, str]]:
    """The arrays of ``truth.npz`` for ``cfg`` (the default files hold no ``fav_prob``)."""
    return {**_ARRAYS, **_FAV_ARRAY} if cfg.fav_prob > 0 else _ARRAYS


@dataclass(frozen=True, eq=False, repr=False)
class GroundTruth:
    """All parameters of the generative user model, and its exact probabilities.

    Build with :meth:`from_config` (regenerate from a seed) or :meth:`load` (from a folder
    written by :func:`~seqrec.data.synthetic.write_synthetic`). Scalar parameters live in :attr:`config`.

    Shapes: ``centroids (C, d)``, ``categories (M,)``, ``item_vectors (M, d)``,
    ``item_bias (M,)``, ``popularity (M,)``, ``transition (C, C)``,
    ``user_interests (N, C)``, ``user_vectors (N, d)``, ``cart_prob (M,)``, ``buy_prob (M,)``,
    ``fav_prob (M,)`` (required when ``config.fav_prob`` > 0; zeros without a fav stage).
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
    fav_prob: np.ndarray | None = None
    """P(fav | click, no cart) per item; zeros when the config has no fav stage."""
    logging_policy: LoggingPolicy = field(init=False)
    """The logging policy that showed the items of the log (its ``pscore``)."""

    def __post_init__(self) -> None:
        if self.fav_prob is None:
            if self.config.fav_prob > 0:
                raise SeqrecError(f"GroundTruth: fav_prob array needed (config.fav_prob={self.config.fav_prob:g})")
            object.__setattr__(self, "fav_prob", np.zeros(np.shape(self.item_vectors)[0]))
        for name, (kind, _) in {**_ARRAYS, **_FAV_ARRAY}.items():
            a = np.array(getattr(self, name), dtype=np.int64 if kind == "i" else np.float64)  # own, read-only copy
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        object.__setattr__(self, "logging_policy", LoggingPolicy(self.config, self.categories, self.popularity))

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
        """Draw the ground-truth parameters for ``cfg`` (the same ones
        :func:`~seqrec.data.synthetic.generate` uses).

        Only the parameter stream of the seed is used
        (:func:`~seqrec.data.synth_parameters.draw_parameters`), so this is cheap and does not
        simulate the log.
        """
        return cls(config=cfg, **draw_parameters(cfg))

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

        u_eff = self._u_eff(users, valid, h, agef, has)
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

    def _u_eff(self, users: np.ndarray, valid: np.ndarray, h: np.ndarray, agef: np.ndarray, has: np.ndarray) -> np.ndarray:
        """u_eff = (1 - rho) u_long + rho * recency-weighted mean of clicked vectors, shape (B, d)."""
        cfg = self.config
        u_long = self.user_vectors[users]  # (B, d)
        rec = np.where(valid, cfg.recency_decay ** agef, 0.0)  # (B, L)
        z = rec.sum(axis=1)
        u_hist = np.einsum("bl,bld->bd", rec, self.item_vectors[h]) / np.where(has, z, 1.0)[:, None]
        return np.where(has[:, None], (1 - cfg.drift) * u_long + cfg.drift * u_hist, u_long)

    def _catalogue_logits(self, users: np.ndarray, histories: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The true click logit of every item of the catalogue per row, and the rows' last clicks.

        The terms of :meth:`_terms` for ``items = arange(M)`` in every row, computed as one
        ``(B, d) @ (d, M)`` product and gathers instead of ``(B, M, d)`` item vectors.
        :return: ``(logits (B, M), last (B,))``.
        """
        cfg = self.config
        B, M, C = histories.shape[0], self.n_items, self.n_categories
        valid, h, age, last = self._history_terms(histories)
        has = last >= 0
        agef = age.astype(np.float64)
        pref = self._u_eff(users, valid, h, agef, has) @ self.item_vectors.T
        trans = np.where(has[:, None], self.transition[self.categories[np.maximum(last, 0)]][:, self.categories], 0.0)
        g = np.where(valid, cfg.satiation_decay ** agef, 0.0)
        rows = np.broadcast_to(np.arange(B)[:, None], h.shape)
        sat_cat = np.bincount((rows * C + self.categories[h]).ravel(), weights=g.ravel(), minlength=B * C).reshape(B, C)
        sat = sat_cat[:, self.categories]
        if cfg.repeat_penalty:
            sat += cfg.repeat_penalty * np.bincount((rows * M + h)[valid], weights=g[valid], minlength=B * M).reshape(B, M)
        logits = (cfg.w_intercept + cfg.w_preference * pref + cfg.w_popularity * self.item_bias[None, :]
                  + cfg.w_transition * trans - cfg.w_satiation * sat)  # fmt: skip
        return logits, last

    def _exposure(self, users: np.ndarray, histories: np.ndarray) -> np.ndarray:
        """The logging policy's distribution over the catalogue per row, shape (B, M) (no checks)."""
        logits, last = self._catalogue_logits(users, histories)
        return self.logging_policy.tilted(last, logits, self.config.exposure_bias)

    def exposure_probabilities(self, users: Any, histories: Any) -> np.ndarray:
        """The logging policy pi_S(. | u, h) over the whole catalogue (:mod:`seqrec.data.logging_policy`).

        :param users: shape ``(B,)``; :param histories: clicked items, ``-1`` = padding, ``(B, L)``.
        :return: shape ``(B, M)``, rows sum to 1; pi_0 when ``exposure_bias`` = 0.
        """
        users, histories, _ = self._check_inputs(users, histories, np.zeros(np.shape(users)[:1], np.int64))
        if self.config.exposure_bias == 0:
            return self.logging_policy.distribution(self._history_terms(histories)[3])
        return self._exposure(users, histories)

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

    def logging_propensity(self, histories: Any, items: Any, users: Any = None) -> np.ndarray:
        """Probability that the logging policy shows ``items`` after ``histories`` (the ``pscore``).

        :param histories: clicked items, oldest first, ``-1`` = padding, shape ``(B, L)``.
        :param items: shape ``(B,)`` or ``(B, K)``.
        :param users: shape ``(B,)``; needed when ``exposure_bias`` > 0 (the policy then
            depends on the user's true P(click)), ignored otherwise.
        :return: same shape as ``items``; sums to 1 over the whole catalogue.
        """
        histories = self._int_array(histories, "histories", (2,))
        items = self._int_array(items, "items", (1, 2))
        if histories.shape[0] != items.shape[0]:
            raise SeqrecError(f"batch sizes differ: histories {histories.shape}, items {items.shape}")
        self._check_range(histories, "histories", -1, self.n_items)
        self._check_range(items, "items", 0, self.n_items)
        if self.config.exposure_bias > 0:
            if users is None:
                raise SeqrecError(f"logging_propensity needs users: the logging policy depends on the user "
                                  f"(exposure_bias={self.config.exposure_bias:g})")  # fmt: skip
            full = self.exposure_probabilities(users, histories)
            rows = np.arange(items.shape[0])
            return full[rows, items] if items.ndim == 1 else full[rows[:, None], items]
        last = self._history_terms(histories)[3]
        return self.logging_policy.propensity(last, items)

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

    def save(self, path: str | Path) -> None:
        """Write ``truth.npz`` to ``path`` deterministically (fixed zip member times, stored,
        sorted order); :meth:`load` reads it back."""
        members: dict[str, np.ndarray] = {name: np.ascontiguousarray(getattr(self, name))
                                          for name in _array_specs(self.config)}
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
    def of_log(cls, data: str | Path) -> GroundTruth | None:
        """The truth behind the log at ``data`` (a folder, or a file in it) when it is a synthetic
        dataset folder (holds ``truth.npz``); None for any other log."""
        data = Path(data)
        folder = data if data.is_dir() else data.parent
        return cls.load(folder) if (folder / "truth.npz").is_file() else None

    @classmethod
    def load(cls, directory: str | Path) -> GroundTruth:
        """Restore the ground truth from a folder written by :func:`~seqrec.data.synthetic.write_synthetic`.

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
        for name, (kind, spec) in _array_specs(cfg).items():
            if name not in data:
                raise CheckpointError(f"{path}: corrupted, missing array {name}")
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
