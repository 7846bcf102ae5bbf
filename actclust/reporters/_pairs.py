"""Neighbour pairs that k-means agrees with: the pair filter SCAN and TEMI share.

Where a layer's nearest neighbours often carry another label (MiniLM topics: neighbours
share the sentence template as often as the topic), a pair that k-means runs keep in one
cluster is more often a true pair: Local Aggregation's "close neighbours" (Zhuang et al.
2019) are the rows that share a k-means cluster with the anchor.
"""

from __future__ import annotations

import numpy as np


def kmeans_agreement(X, found: np.ndarray, n_clusters: int, runs: int,
                     seed: int) -> np.ndarray:
    """For each mined pair ``(i, found[i, j])``, the share of ``runs`` k-means runs
    (``n_clusters`` clusters, seeds ``seed, seed + 1, ...``) that put both in one cluster.

    Example:
        >>> X = np.array([[0.0], [0.1], [0.2], [9.0], [9.1], [9.2]])
        >>> found = np.array([[1, 3], [0, 4], [1, 5], [4, 0], [3, 1], [4, 2]])
        >>> kmeans_agreement(X, found, 2, runs=2, seed=0)  # the first pair of each is near
        array([[1., 0.],
               [1., 0.],
               [1., 0.],
               [1., 0.],
               [1., 0.],
               [1., 0.]])
    """
    from .kmeans import KMeans

    agree = np.zeros(found.shape, dtype=np.float64)
    for run in range(runs):
        labels = KMeans(n_clusters, random_state=(seed + run) % 2**31).fit(X).labels_
        agree += labels[found] == labels[:, None]
    return agree / runs
