"""k-means on faiss, as a scikit-learn estimator."""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._base import (CLUSTERER_CONSTRAINTS, DEVICE, MEMORY_BUDGET, Interval, StrOptions,
                    check_data, check_n_clusters, fit_context, is_layer_view, iter_rows,
                    register, seed_from, warn_constant_columns, warn_fewer_clusters)


def _faiss():
    import faiss

    return faiss


def use_gpu(device: str) -> bool:
    """Whether faiss should train on GPUs: ``"auto"`` when faiss sees one; any CUDA
    device name (checked by ``actclust._util.devices.resolve_device``) requires one.
    faiss' k-means spreads over the GPUs it sees, so an index only says "a GPU"
    (``CUDA_VISIBLE_DEVICES`` chooses which)."""
    faiss = _faiss()
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if device == "auto":
        return gpus > 0
    if device == "cpu":
        return False
    from .._util.devices import resolve_device

    if not resolve_device(device).startswith("cuda"):
        return False
    if gpus == 0:
        from ..errors import ActclustError

        raise ActclustError(f"device={device!r} asked for, but faiss sees no GPU (install "
                            "faiss-gpu, or use device='cpu')")
    return True


# Rows per centre the seeding samples. 32 (64 before) still beats scikit-learn's inertia
# on ``benchmarks/kmeans.py`` (0.993 of it) at half the seeding cost; on digits, digits-mlp
# and MiniLM block 3 and 5 features (k = classes and 64, 5 seeds) its inertia is within
# 0.7% of 64's on average and NMI within the spread over seeds.
INIT_SAMPLE_PER_CENTROID = 32


def greedy_kmeans_pp(X: np.ndarray, k: int, rng: np.random.Generator,
                     sample: int | None = None) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; scikit-learn's variant).

    Each new centre is the best of ``2 + log k`` candidates drawn with probability
    proportional to the squared distance to the nearest centre so far. It runs on a random
    ``sample`` of rows in float32 BLAS: faiss' own k-means++ and random seeding both left
    Lloyd in poor local minima on well-separated data (inertia 10-20% above scikit-learn's
    on ``benchmarks/kmeans.py``), while greedy seeding on 32 rows per centre
    (:data:`INIT_SAMPLE_PER_CENTROID`) matched it. Non-greedy k-means++ (one candidate)
    is no cheaper way there: 15-20% above.

    Example:
        >>> X = np.random.default_rng(0).normal(size=(500, 4)).astype(np.float32)
        >>> greedy_kmeans_pp(X, 5, np.random.default_rng(0)).shape
        (5, 4)
    """
    if sample is not None and sample < len(X):
        X = X[np.sort(rng.choice(len(X), size=sample, replace=False))]
    n = len(X)
    trials = 2 + int(np.log(k))
    sq = np.einsum("ij,ij->i", X, X)
    centers = np.empty((k, X.shape[1]), np.float32)
    first = rng.integers(n)
    centers[0] = X[first]
    closest = np.maximum(sq - 2 * X @ X[first] + sq[first], 0)
    for c in range(1, k):
        # Draws proportional to ``closest`` by one cumulative sum and a binary search:
        # ``rng.choice(p=...)`` checks and normalises ``p`` in several passes per centre.
        cum = np.cumsum(closest, dtype=np.float64)
        if cum[-1] <= 0:  # fewer distinct rows than centres: reuse rows
            candidates = rng.integers(n, size=trials)
        else:
            candidates = np.minimum(
                np.searchsorted(cum, rng.random(trials) * cum[-1], side="right"), n - 1)
        # Squared distances to the candidates, in place (no n x trials temporaries).
        dist = X @ X[candidates].T
        dist *= -2
        dist += sq[:, None]
        dist += sq[candidates]
        np.maximum(dist, 0, out=dist)
        np.minimum(dist, closest[:, None], out=dist)
        best = dist.sum(0).argmin()
        closest = dist[:, best].copy()
        centers[c] = X[candidates[best]]
    return centers


def _whitening(X: np.ndarray, n_components: int, owner) -> tuple:
    """PCA-whitening as ``x @ A.T + b``, over the directions that actually vary.

    Constant columns (dead units) are left out and eigenvalues get a small floor, so a
    direction without spread is not divided by zero.
    """
    varying = warn_constant_columns(X, owner)
    mean = X.mean(0)
    cov = np.cov(X[:, varying].astype(np.float64), rowvar=False).reshape(
        int(varying.sum()), int(varying.sum()))
    eigvals, eigvecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1][:min(n_components, int(varying.sum()))]
    floor = 1e-6 * max(float(eigvals.max()), 1e-12)
    A = np.zeros((len(order), X.shape[1]))
    A[:, varying] = (eigvecs[:, order] / np.sqrt(np.maximum(eigvals[order], 0) + floor)).T
    return A.astype(np.float32), (-A @ mean).astype(np.float32)


@register("kmeans", streams=True)
class KMeans(ClusterMixin, TransformerMixin, BaseEstimator):
    """k-means clustering on faiss (``faiss.Kmeans``), with the DeepCluster preprocessing.

    Parameters:
        n_clusters: number of clusters, at least 2.
        n_init: independent runs (seeding + Lloyd); the lowest objective wins.
        max_iter: Lloyd iterations per run at most (faiss ``niter``; faiss stops earlier once
            assignments stop changing).
        init: ``"k-means++"``: greedy k-means++ seeding as in scikit-learn, on a sample of
            32 rows per centre (see :func:`greedy_kmeans_pp`); ``"random"``: faiss' default,
            faster, often a worse local minimum.
        spherical: cosine k-means: rows and centroids are L2-normalised.
        whiten_components: if set, PCA-whiten to this many dimensions (constant columns
            left out) and L2-normalise
            before clustering, the DeepCluster recipe (Caron et al. 2018, 256 dims there).
            ``cluster_centers_`` then live in that whitened space.
        max_points_per_centroid: Lloyd's iterations run on a random sample of at most this
            many rows per centre (faiss' own default, 256), then every row is assigned;
            faiss would subsample silently, here ``n_train_points_`` records how many rows
            trained. ``None`` trains on every row that fits the memory budget.
        memory_budget_gb: a store layer larger than this is not loaded: k-means trains on a
            random sample of rows that fits, then assigns every row in batches.
        batch_size: rows per batch when assigning a streamed layer.
        device: ``"auto"`` uses a GPU when faiss-gpu sees one; ``"cuda"`` (or
            ``"cuda:N"``) requires one; ``"cpu"`` never uses one.
        random_state: seeds faiss; the same seed gives the same clustering.

    Attributes:
        cluster_centers_: the centres, in the clustering space.
        labels_: centre of each row (every row, not only the training sample).
        inertia_: sum of squared distances of every row to its centre, in the clustering
            space.
        n_iter_: Lloyd iterations of the kept run.
        n_train_points_: rows Lloyd's iterations ran on.
        objective_: faiss' objective after each iteration of the kept run.

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> X, y = make_blobs(300, centers=3, random_state=0)
        >>> km = KMeans(3, random_state=0).fit(X)
        >>> km.cluster_centers_.shape, len(set(km.labels_))
        ((3, 2), 3)
    """

    _parameter_constraints = {
        **CLUSTERER_CONSTRAINTS,
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"k-means++", "random"})],
        "spherical": ["boolean"],
        "whiten_components": [None, Interval(Integral, 1, None, closed="left")],
        "max_points_per_centroid": [None, Interval(Integral, 1, None, closed="left")],
        "memory_budget_gb": MEMORY_BUDGET,
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": DEVICE,
        "verbose": ["verbose"],
    }

    def __init__(self, n_clusters=8, *, n_init=1, max_iter=50, init="k-means++",
                 spherical=False, whiten_components=None, max_points_per_centroid=256,
                 memory_budget_gb=2.0, batch_size=65536, device="auto", random_state=None,
                 verbose=False):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.init = init
        self.spherical = spherical
        self.whiten_components = whiten_components
        self.max_points_per_centroid = max_points_per_centroid
        self.memory_budget_gb = memory_budget_gb
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Cluster ``X`` (array, tensor or store layer); ``y`` is ignored."""
        seed = seed_from(self.random_state)
        train, streamed = self._training_rows(X, seed)
        check_n_clusters(self, len(train), self.n_clusters)
        train = self._fit_preprocessing(train)
        km = self._train_faiss(train, seed)
        self.cluster_centers_ = km.centroids.astype(np.float32)
        self.objective_ = np.asarray(km.obj)
        self.n_iter_ = max(1, len(self.objective_))  # iterations of the run that was kept
        labels, sq_dist = self._assign_all(X if streamed else train, preprocessed=not streamed)
        self.labels_ = labels
        self.inertia_ = float(sq_dist.sum())
        warn_fewer_clusters(self, labels, self.n_clusters,
                            "the data may hold duplicate points")
        return self

    def _training_rows(self, X, seed):
        """All rows, or for a store layer beyond the memory budget, a random sample."""
        if is_layer_view(X) and X.shape[0] * np.prod(X.shape[1:]) * 4 > \
                self.memory_budget_gb * 2**30:
            n = X.shape[0]
            fit_rows = int(self.memory_budget_gb * 2**30 // (4 * np.prod(X.shape[1:])))
            cap = min(n, fit_rows, self.n_clusters * (self.max_points_per_centroid or n))
            idx = np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))
            return check_data(self, X[idx]), True
        return check_data(self, X), False

    def _fit_preprocessing(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float32)
        self.whitening_ = None
        if self.whiten_components is not None:
            self.whitening_ = _whitening(X, self.whiten_components, self)
        return self._preprocess(X)

    def _preprocess(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float32)
        if self.whitening_ is not None:
            A, b = self.whitening_
            X = X @ A.T + b
        if self.spherical or self.whitening_ is not None:
            norms = np.linalg.norm(X, axis=1, keepdims=True)
            X = X / np.maximum(norms, 1e-12)
        return np.ascontiguousarray(X, dtype=np.float32)

    def _train_faiss(self, X: np.ndarray, seed: int):
        """``n_init`` runs of Lloyd's algorithm on faiss; the lowest objective wins."""
        faiss = _faiss()
        per_centroid = self.max_points_per_centroid or math.ceil(len(X) / self.n_clusters) + 1
        rng = np.random.default_rng(seed)
        best = None
        for run in range(self.n_init):
            km = faiss.Kmeans(X.shape[1], self.n_clusters, niter=self.max_iter, nredo=1,
                              seed=seed + run, spherical=bool(self.spherical),
                              verbose=bool(self.verbose),
                              max_points_per_centroid=int(per_centroid),
                              min_points_per_centroid=1, gpu=use_gpu(self.device))
            init = None
            if self.init == "k-means++":
                init = greedy_kmeans_pp(X, self.n_clusters, rng,
                                        sample=INIT_SAMPLE_PER_CENTROID * self.n_clusters)
            km.train(X, init_centroids=init)
            if best is None or km.obj[-1] < best.obj[-1]:
                best = km
        self.n_train_points_ = min(len(X), int(per_centroid) * self.n_clusters)
        return best

    def _index(self):
        faiss = _faiss()
        d = self.cluster_centers_.shape[1]
        index = faiss.IndexFlatL2(d)
        index.add(self.cluster_centers_)
        return index

    def _assign_all(self, X, preprocessed: bool):
        """Nearest centre and squared distance for every row, in batches."""
        index = self._index()
        labels, dists = [], []
        rows = [X] if preprocessed else iter_rows(X, self.batch_size)
        for batch in rows:
            batch = batch if preprocessed else self._preprocess(batch)
            for start in range(0, len(batch), self.batch_size):
                D, I = index.search(batch[start:start + self.batch_size], 1)
                labels.append(I[:, 0])
                dists.append(np.maximum(D[:, 0], 0))
        return np.concatenate(labels).astype(np.int64), np.concatenate(dists)

    def _checked(self, X):
        check_is_fitted(self)
        if is_layer_view(X):
            if X.shape[1:] != (self.n_features_in_,):
                check_data(self, X[:1], reset=False)  # raises the usual feature-count error
            return X, False
        return self._preprocess(check_data(self, X, reset=False)), True

    def predict(self, X):
        """Index of the nearest cluster centre for each row."""
        X, ready = self._checked(X)
        return self._assign_all(X, preprocessed=ready)[0]

    def transform(self, X):
        """Euclidean distance of each row to every centre (in the clustering space)."""
        X, ready = self._checked(X)
        out = []
        centers = self.cluster_centers_.astype(np.float64)
        c2 = (centers**2).sum(1)
        for batch in ([X] if ready else iter_rows(X, self.batch_size)):
            batch = (batch if ready else self._preprocess(batch)).astype(np.float64)
            sq = (batch**2).sum(1)[:, None] - 2 * batch @ centers.T + c2[None, :]
            out.append(np.sqrt(np.maximum(sq, 0)))
        return np.concatenate(out)

    def score(self, X, y=None):
        """Opposite of the inertia of ``X`` under the fitted centres (higher is better)."""
        X, ready = self._checked(X)
        return -float(self._assign_all(X, preprocessed=ready)[1].sum())
