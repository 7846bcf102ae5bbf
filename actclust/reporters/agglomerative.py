"""Hierarchical (agglomerative) clustering, with k-means pre-clustering for large inputs."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import AgglomerativeClustering
from sklearn.utils.validation import check_is_fitted

from ._base import (CLUSTERER_CONSTRAINTS, Interval, StrOptions, check_data, check_n_clusters,
                    fit_context, register, seed_from)


@register("agglomerative", cost="quadratic")
class Agglomerative(ClusterMixin, BaseEstimator):
    """Agglomerative clustering (scikit-learn) with Ward, average, complete or single linkage.

    Exact agglomerative clustering needs O(n^2) memory. Above ``max_points`` rows this
    reporter first over-clusters with :class:`~actclust.reporters.KMeans` into
    ``max_points`` centroids and merges those centroids hierarchically; every row takes its
    centroid's cluster. That is an approximation: the merge sees centroids, not rows
    (``precluster_`` says whether it happened).

    ``linkage_`` is a SciPy linkage matrix (``scipy.cluster.hierarchy.dendrogram`` draws
    it) over the points that were merged: the rows, or the k-means centroids.
    ``predict`` assigns new rows to the nearest cluster mean.

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> X, y = make_blobs(200, centers=3, random_state=0)
        >>> agg = Agglomerative(3).fit(X)
        >>> agg.linkage_.shape, len(set(agg.labels_))
        ((199, 4), 3)
    """

    _parameter_constraints = {
        **CLUSTERER_CONSTRAINTS,
        "linkage": [StrOptions({"ward", "average", "complete", "single"})],
        "max_points": [Interval(Integral, 2, None, closed="left")],
    }

    def __init__(self, n_clusters=8, *, linkage="ward", max_points=5000, random_state=None):
        self.n_clusters = n_clusters
        self.linkage = linkage
        self.max_points = max_points
        self.random_state = random_state

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Cluster ``X`` (array, tensor or store layer); ``y`` is ignored."""
        X = check_data(self, X)
        check_n_clusters(self, len(X), self.n_clusters)
        points, owner = X, None
        self.precluster_ = len(X) > self.max_points
        if self.precluster_:
            from .kmeans import KMeans

            km = KMeans(self.max_points, random_state=seed_from(self.random_state)).fit(X)
            points, owner = km.cluster_centers_.astype(X.dtype), km.labels_
        model = AgglomerativeClustering(self.n_clusters, linkage=self.linkage,
                                        compute_distances=True).fit(points)
        self.linkage_ = _scipy_linkage(model)
        merged = model.labels_
        self.labels_ = merged if owner is None else merged[owner]
        self.cluster_means_ = np.stack([X[self.labels_ == c].mean(0)
                                        for c in range(self.n_clusters)])
        return self

    def predict(self, X):
        """Nearest cluster mean for each row (agglomerative itself has no predict)."""
        check_is_fitted(self)
        X = check_data(self, X, reset=False)
        means = self.cluster_means_
        d = -2 * X @ means.T + (means**2).sum(1)[None, :]  # |x|^2 is the same for every mean
        return d.argmin(1)


def _scipy_linkage(model) -> np.ndarray:
    """scikit-learn's children_/distances_ as a SciPy linkage matrix (with merge sizes)."""
    n = len(model.labels_)
    counts = np.zeros(len(model.children_))
    for i, (a, b) in enumerate(model.children_):
        counts[i] = sum(1 if c < n else counts[c - n] for c in (a, b))
    # Ward distances from scikit-learn can tie or dip by rounding; scipy wants monotone.
    distances = np.maximum.accumulate(model.distances_)
    return np.column_stack([model.children_, distances, counts]).astype(float)
