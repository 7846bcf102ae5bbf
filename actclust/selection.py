"""Choosing the number of clusters without labels: the number the seeds agree on.

A clustering worth reading is one the method finds again from another start. For each
candidate number of clusters a reporter is fitted with several seeds, and the candidate
whose fits agree most (mean adjusted Rand index over the pairs of seeds) is kept; of those
within ``tolerance`` (0.01) of the best, the largest, since merging two true clusters is
often as reproducible as finding them.

Why not TURTLE's score (the cross-validated accuracy of a linear probe trained on the
clusters, :func:`~actclust.label_free.self_probe_accuracy`)? It compares settings at a
fixed number of clusters well, but across numbers it is nearly flat and favours the
fewest: k-means on ``load_digits`` pixels scores 0.993 at k = 2 and 0.966 at k = 10 (NMI
0.35 and 0.74), and on MiniLM block 5 of the bundled topics 0.979 at k = 2 and 0.969 at
k = 10 (NMI 0.01 and 0.78). Agreement between seeds peaks at k = 10 on digits (mean ARI
0.78; 15: 0.77, so 15 is chosen, the labelled best: NMI 0.76) and at 20 on MiniLM block 5
(0.65; 0.37 at k = 2), where the labelled best is 10-15.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .errors import ActclustError

DEFAULT_CANDIDATES = (2, 3, 4, 5, 6, 8, 10, 12, 15, 20)


@dataclass
class KChoice:
    """The outcome of :func:`choose_n_clusters`.

    Attributes:
        n_clusters: the chosen number of clusters.
        stability: its mean pairwise adjusted Rand index between seeds.
        scores: one row per candidate: ``n_clusters``, ``stability``, ``fit_seconds``
            (mean per fit).
        fits: at the chosen number, ``(clusters, seconds)`` of each seed, in seed order.
    """

    n_clusters: int
    stability: float
    scores: pd.DataFrame
    fits: list = field(repr=False)


def stability(clusterings: Sequence[np.ndarray]) -> float:
    """Mean adjusted Rand index over every pair of clusterings of the same rows.

    Example:
        >>> stability([[0, 0, 1, 1], [1, 1, 0, 0]])  # the same split, renamed
        1.0
        >>> round(stability([[0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 2, 2], [0, 1, 2, 0, 1, 2]]), 3)
        0.167
    """
    from sklearn.metrics import adjusted_rand_score

    pairs = list(itertools.combinations(clusterings, 2))
    if not pairs:
        raise ActclustError("stability needs at least two clusterings (two seeds)")
    return float(np.mean([adjusted_rand_score(a, b) for a, b in pairs]))


def choose_n_clusters(reporter, X=None, candidates: Sequence[int] = DEFAULT_CANDIDATES,
                      seeds: Sequence[int] = (0, 1, 2), tolerance: float = 0.01) -> KChoice:
    """The number of clusters whose fits agree most across seeds; no labels are used.

    Args:
        reporter: a registered clustering reporter's name or an unfitted estimator; or a
            function ``fit(k, seed) -> (clusters, seconds)`` (then ``X`` is not used).
        X: the rows: an array, tensor or store layer.
        candidates: numbers of clusters to try (each at least 2).
        seeds: random states; at least two.
        tolerance: among the numbers whose stability is within ``tolerance`` of the best,
            the largest is chosen.

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> X, _ = make_blobs(300, centers=4, n_features=5, random_state=0)
        >>> choose_n_clusters("kmeans", X, candidates=[2, 3, 4, 6, 8]).n_clusters
        4
    """
    candidates, seeds = check_choice(candidates, seeds)
    fit = reporter if callable(reporter) and not hasattr(reporter, "fit") \
        else _fitter(reporter, X)
    rows, fits = [], {}
    for k in candidates:
        fits[k] = [fit(k, seed) for seed in seeds]
        rows.append({"n_clusters": k,
                     "stability": stability([found for found, _ in fits[k]]),
                     "fit_seconds": float(np.mean([s for _, s in fits[k]]))})
    scores = pd.DataFrame(rows)
    stable = scores["stability"].to_numpy()
    # the finest clustering as reproducible as the best: a coarser one that merges true
    # clusters is often just as stable (two of three blobs that lie close)
    best = int(np.flatnonzero(stable >= stable.max() - tolerance)[-1])
    k = int(scores["n_clusters"].iloc[best])
    return KChoice(k, float(scores["stability"].iloc[best]), scores, fits[k])


def check_choice(candidates, seeds) -> tuple[list, list]:
    """The candidates, sorted and unique, and the seeds, or a one-line error: each
    candidate an integer >= 2, at least two seeds.

    Example:
        >>> check_choice([10, 3, 10], range(2))
        ([3, 10], [0, 1])
    """
    seeds, candidates = list(seeds), list(candidates)
    if len(seeds) < 2:
        raise ActclustError("choosing the number of clusters by agreement between seeds "
                            "needs at least 2 seeds")
    if not candidates or any(isinstance(k, bool) or not isinstance(k, (int, np.integer))
                             or k < 2 for k in candidates):
        raise ActclustError(f"candidate numbers of clusters must be integers >= 2, got "
                            f"{candidates!r}")
    return sorted(set(int(k) for k in candidates)), seeds


def fit_clusters(base, X, k: int, seed: int) -> tuple[np.ndarray, float]:
    """Fit a clone of the estimator ``base`` with ``k`` clusters and ``seed`` on ``X``;
    returns its clusters and the seconds the fit took.

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> from actclust.reporters import KMeans
        >>> X, _ = make_blobs(60, centers=3, random_state=0)
        >>> clusters, seconds = fit_clusters(KMeans(), X, 3, seed=0)
        >>> len(set(clusters.tolist()))
        3
    """
    from sklearn.base import clone

    from .reporters import configure

    est = configure(clone(base), n_clusters=k, seed=seed)
    start = time.perf_counter()
    est.fit(X)
    return np.asarray(est.labels_), time.perf_counter() - start


def _fitter(reporter, X) -> Callable:
    from .reporters import get_reporter

    if X is None:
        raise ActclustError("choose_n_clusters needs the rows X to fit the reporter on")
    base = get_reporter(reporter)() if isinstance(reporter, str) else reporter
    return lambda k, seed: fit_clusters(base, X, k, seed)
