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


def consensus_cells(X, n_clusters: int, runs: int, seed: int) -> np.ndarray:
    """The cell of each row: two rows share a cell when every one of ``runs`` k-means runs
    (``n_clusters`` clusters, one start each, seeds ``seed, seed + 1, ...``) puts them in
    one cluster. Cells are numbered ``0 .. n_cells - 1``.

    Example:
        >>> X = np.array([[0.0], [0.1], [9.0], [9.1]])
        >>> consensus_cells(X, 2, runs=3, seed=0).tolist() in ([0, 0, 1, 1], [1, 1, 0, 0])
        True
    """
    from .kmeans import KMeans

    labels = np.stack([KMeans(n_clusters, random_state=(seed + run) % 2**31).fit(X).labels_
                       for run in range(runs)], axis=1)
    return np.unique(labels, axis=0, return_inverse=True)[1].reshape(-1)


def cell_partners(cells: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` partners of each row drawn at random (with replacement) from the other rows of
    its cell: rows x ``k`` indices. A row alone in its cell is its own partner.

    Example:
        >>> cell_partners(np.array([0, 0, 1]), 2, np.random.default_rng(0)).tolist()
        [[1, 1], [0, 0], [2, 2]]
    """
    cells = np.asarray(cells)
    order = np.argsort(cells, kind="stable")
    sizes = np.bincount(cells)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    position = np.empty(len(cells), dtype=np.int64)
    position[order] = np.arange(len(cells)) - starts[cells[order]]
    size = sizes[cells][:, None]
    # an offset among the size - 1 others, stepped over the row's own place in the cell
    offset = np.floor(rng.random((len(cells), k)) * np.maximum(size - 1, 1)).astype(np.int64)
    offset += (offset >= position[:, None]) & (size > 1)
    offset = np.where(size > 1, offset, position[:, None])
    return order[starts[cells][:, None] + offset]
