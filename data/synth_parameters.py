r"""The random draw of the synthetic model's parameters: the catalogue and the users.

:func:`draw_parameters` is what :meth:`GroundTruth.from_config
<seqrec.data.ground_truth.GroundTruth.from_config>` builds the ground truth from. It uses
only the parameter stream of the seed, ``np.random.SeedSequence(seed).spawn(2)[0]`` (the
logging simulation of :mod:`seqrec.data.synthetic` uses the other), so it is cheap and does
not simulate the log. Notation as in :mod:`seqrec.data.ground_truth`.

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
  skewed share :math:`\mathrm{pop}_i = e^{b_i} / \sum_j e^{b_j}`. With
  ``popularity_zipf`` :math:`= s > 0` instead: ranks :math:`r` = a random permutation of
  :math:`1..M`, :math:`b_i = -s (\log r_i - \overline{\log r})`, so :math:`\mathrm{pop}_i
  = r_i^{-s} / \sum_j j^{-s}` is exactly Zipf (a heavy head, a long flat tail).
* Category transitions :math:`T \in \mathbb{R}^{C \times C}`: each category :math:`c`
  has ``len(followup_weights)`` preferred follow-up categories (distinct, never
  :math:`c` itself, chosen at random); :math:`T[c, f_k] = \text{followup\_weights}[k]`
  and every other entry is 0. The sequential affinity of item :math:`i` after the last
  clicked item :math:`l` is :math:`\mathrm{trans}(l, i) = T[c(l), c(i)]` (0 when there
  is no click yet).
* Post-click funnel, per item: :math:`q^{cart}_i = \sigma(\mathrm{logit}(\text{cart\_prob})
  + \text{funnel\_noise} \cdot \eta_i)` and :math:`q^{buy}_i = \sigma(\mathrm{logit}
  (\text{buy\_prob}) + \text{funnel\_noise} \cdot \eta'_i)`, :math:`\eta, \eta' \sim N(0, 1)`;
  with ``fav_prob`` > 0 also :math:`q^{fav}_i = \sigma(\mathrm{logit}(\text{fav\_prob})
  + \text{funnel\_noise} \cdot \eta''_i)`, drawn last (0 for every item otherwise).

Users
-----
* Category interests :math:`\theta_u \sim \mathrm{Dirichlet}(\text{dirichlet\_alpha}
  \cdot 1_C)` (small alpha: a few favourite categories), long-term vector
  :math:`u^{long}_u = \sum_c \theta_{uc} \mu_c`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

from seqrec.data.synth_config import SynthConfig

__all__ = ["draw_parameters"]


def draw_parameters(cfg: SynthConfig) -> dict[str, np.ndarray]:
    """Draw the ground-truth arrays for ``cfg`` (module docstring), by :class:`GroundTruth` field name.

    :return: ``centroids (C, d)``, ``categories (M,)``, ``item_vectors (M, d)``,
        ``item_bias (M,)``, ``popularity (M,)``, ``transition (C, C)``,
        ``user_interests (N, C)``, ``user_vectors (N, d)``, ``cart_prob (M,)``, ``buy_prob (M,)``,
        and ``fav_prob (M,)`` when ``cfg.fav_prob`` > 0.
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

    if cfg.popularity_zipf > 0:
        log_rank = np.log(rng.permutation(M) + 1.0)
        item_bias = -cfg.popularity_zipf * (log_rank - log_rank.mean())
    else:
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

    def stage_prob(typical: float) -> np.ndarray:  # item-specific around `typical` on the logit scale
        return expit(math.log(typical / (1 - typical)) + cfg.funnel_noise * rng.standard_normal(M))

    params = {"centroids": centroids, "categories": categories, "item_vectors": item_vectors,
              "item_bias": item_bias, "popularity": popularity, "transition": transition,
              "user_interests": user_interests, "user_vectors": user_vectors,
              "cart_prob": stage_prob(cfg.cart_prob), "buy_prob": stage_prob(cfg.buy_prob)}
    if cfg.fav_prob > 0:
        params["fav_prob"] = stage_prob(cfg.fav_prob)
    return params
