"""Candidate retrieval by inner product: exact for small catalogues, IVF beyond.

The ``candidates`` action mode retrieves K items per step for each user. Scoring the
whole catalogue costs O(n_items) per step; an inverted-file index makes it
O(sqrt(n_items)): k-means cuts the catalogue into ``4·sqrt(n)`` lists, balanced so that no
list holds more than ``1.25×`` the mean (overflowing items move to their next-nearest
centroid), stored as contiguous blocks; a query scores the centroids, then the items of
the ``n_probe`` best lists. So step time barely grows from 1k to 1M items.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _nearest_centroids(x: Tensor, centroids: Tensor, r: int, chunk: int = 65536) -> tuple[Tensor, Tensor]:
    """The ``r`` nearest centroids of each row of ``x``: (distances, indices), each (n, r)."""
    d, i = zip(*(torch.topk(torch.cdist(c, centroids), r, dim=1, largest=False) for c in x.split(chunk)))
    return torch.cat(d), torch.cat(i)


def balanced_lists(items: Tensor, centroids: Tensor, cap: int, rounds: int = 10) -> Tensor:
    """Assign items to centroids with at most ``cap`` items per list (vectorised rounds:
    the farthest overflowing members move to their next-nearest centroid).

    :return: (n_lists, width) item ids, -1 padding; ``width`` is ``cap`` unless some items
        overflow every one of their ``rounds`` nearest lists.
    """
    n, n_lists = items.shape[0], centroids.shape[0]
    dist, near = _nearest_centroids(items, centroids, min(rounds, n_lists))
    choice = torch.zeros(n, dtype=torch.long)
    rows = torch.arange(n)
    for _ in range(near.shape[1]):
        assign, d = near[rows, choice], dist[rows, choice]
        order = torch.argsort(assign * (d.max() + 1) + d)  # by list, nearest first
        counts = torch.bincount(assign, minlength=n_lists)
        rank = torch.empty(n, dtype=torch.long)
        rank[order] = torch.arange(n) - (torch.cumsum(counts, 0) - counts)[assign[order]]
        over = rank >= cap
        if not over.any() or (choice[over] == near.shape[1] - 1).all():
            break
        choice[over] = (choice[over] + 1).clamp(max=near.shape[1] - 1)
    width = int(rank.max()) + 1  # items still overflowing after every round widen their list: none is dropped
    lists = torch.full((n_lists, width), -1, dtype=torch.long)
    lists[assign, rank] = rows
    return lists


class InnerProductIndex:
    """Top-K items by ``<query, item>``.

    :param items: item embeddings, shape (n_items, d).
    :param exact_below: catalogues up to this size are scored exactly.
    :param n_probe: IVF lists scanned per query.
    :param seed: k-means initialisation seed.

    Shapes: ``search(queries (B, d), k) -> (B, k)`` item ids, best first: always ``k``
    valid, distinct ids (``k <= n_items``). A query whose probed lists hold fewer than ``k``
    items (a small cluster) is answered by exact scoring instead, so no padding slot ever
    reaches the caller.
    """

    def __init__(self, items: Tensor, exact_below: int = 4096, n_probe: int = 3, seed: int = 0, kmeans_iters: int = 8):
        self.items = items.float().contiguous()
        n = items.shape[0]
        self.exact = n <= exact_below
        if self.exact:
            return
        g = torch.Generator().manual_seed(seed)
        n_lists = int(math.ceil(4 * math.sqrt(n)))
        sample = self.items[torch.randperm(n, generator=g)[: min(n, 32 * n_lists)]]
        centroids = sample[torch.randperm(sample.shape[0], generator=g)[:n_lists]].clone()
        for _ in range(kmeans_iters):  # Lloyd's iterations on the sample
            assign = _nearest_centroids(sample, centroids, 1)[1][:, 0]
            sums = torch.zeros_like(centroids).index_add_(0, assign, sample)
            counts = torch.bincount(assign, minlength=n_lists).unsqueeze(1)
            centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        self.lists = balanced_lists(self.items, centroids, cap=int(math.ceil(1.25 * n / n_lists)))
        self.blocks = torch.where((self.lists >= 0)[..., None], self.items[self.lists.clamp(min=0)], 0.0)  # (n_lists, cap, d)
        self.centroids, self.n_probe = centroids, min(n_probe, n_lists)

    def search(self, queries: Tensor, k: int) -> Tensor:
        """The ``k`` items with the highest inner product with each query, shape (B, k)."""
        if not 1 <= k <= self.items.shape[0]:
            raise ValueError(f"cannot retrieve {k} distinct items from a catalogue of {self.items.shape[0]}")
        if self.exact:
            return self._exact(queries, k)
        probe = torch.topk(queries @ self.centroids.T, self.n_probe, dim=1).indices  # (B, P)
        scores = torch.einsum("bd,bpcd->bpc", queries, self.blocks[probe]).flatten(1)  # (B, P * cap)
        cand = self.lists[probe].flatten(1)
        scores = scores.masked_fill(cand < 0, float("-inf"))
        if cand.shape[1] < k:  # the probed lists cannot hold k items: every query goes exact
            return self._exact(queries, k)
        best, top = torch.topk(scores, k, dim=1)
        found = torch.gather(cand, 1, top)
        short = torch.isinf(best[:, -1])  # a padding slot made the top k: too few items in the probed lists
        if short.any():
            found[short] = self._exact(queries[short], k)
        return found

    def _exact(self, queries: Tensor, k: int) -> Tensor:
        """Top-``k`` by scoring every item: ``(B, k)``."""
        return torch.topk(queries @ self.items.T, k, dim=1).indices
