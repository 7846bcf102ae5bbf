"""Scores that need no ground truth: neighbour structure, linear readability, balance.

:func:`knn_purity` is a *diagnostic*: it takes labels, but no clustering, and says how often
a row's nearest neighbours share its label. Methods that pull neighbour pairs together
(SCAN, TEMI) can only beat k-means where that share is high. :func:`nearest_neighbors`
is the neighbour search behind it, for the reporters that train on neighbour pairs.

:func:`self_probe_accuracy` and :func:`cluster_balance` score a clustering from the
clustering and the activations alone, so they can choose the number of clusters, a head
or a hyper-parameter without labels: the cross-validated accuracy of a linear classifier
trained on the clusters themselves (the generalisation score of TURTLE, Gadetsky et al.
2024), and the normalised entropy of the cluster sizes.

Neighbours are searched with faiss: exactly (``IndexFlatIP`` on L2-normalised rows for
cosine, ``IndexFlatL2`` for euclidean) up to ``exact_max_rows`` rows (50,000), with an
inverted-file index (``IndexIVFFlat``) above: ``nlist = 4 * sqrt(n)`` lists (at most
``n / 64``), coarse centroids trained on a seeded sample of ``40 * nlist`` rows, and
``nprobe = max(64, nlist // 16)`` lists probed per query. Recall of the 20 nearest
neighbours against the exact search, on low-dimensional mixtures embedded in more
dimensions, two cores: 80,000 x 384 (nlist 1,131, nprobe 70) 0.9998 in 24 s against
32 s exact; 300,000 x 64 (nlist 2,190, nprobe 136) 0.9999 in 63 s against 172 s exact,
where nprobe 64 gave 0.998 in 34 s and nprobe 32 0.991 in 21 s. Pass ``nprobe`` to trade
recall for time.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from .errors import ActclustError

__all__ = ["nearest_neighbors", "knn_purity", "self_probe_accuracy", "cluster_balance"]

METRICS = ("cosine", "euclidean")
EXACT_MAX_ROWS = 50_000
SELF_PROBE_MAX_ROWS = 20_000


# ---------------------------------------------------------------- input checking


def _is_layer(X) -> bool:
    """A store layer (or anything that streams like one)."""
    return hasattr(X, "iter_batches") and hasattr(X, "shape") and not isinstance(X, np.ndarray)


def _as_matrix(X, what: str = "X") -> np.ndarray:
    """X (array, list, torch tensor, store layer) as a finite 2-D float32 array."""
    if hasattr(X, "detach") and hasattr(X, "cpu"):  # a torch tensor, on any device
        X = X.detach().cpu().float().numpy()
    try:
        X = np.asarray(X)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ActclustError(f"{what} could not be read as an array: {err}") from None
    if X.ndim != 2:
        raise ActclustError(f"{what} must be 2-D (rows x features), got shape {X.shape}")
    if X.dtype.kind not in "fiub":
        raise ActclustError(f"{what} must hold numbers, got dtype {X.dtype}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    _check_finite(X, what)
    return X


def _check_finite(X: np.ndarray, what: str, offset: int = 0) -> None:
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        first = offset + int(np.flatnonzero(~finite)[0])
        raise ActclustError(f"{what} has rows with NaN or inf values (first at row {first}); "
                            "drop or fill those rows first")


def _shape(X) -> tuple[int, int]:
    shape = tuple(X.shape)
    if len(shape) != 2:
        raise ActclustError(f"X must be 2-D (rows x features), got shape {shape}")
    return int(shape[0]), int(shape[1])


def _as_labels(values, n_rows, what: str) -> np.ndarray:
    """1-D labels of any hashable values; ``n_rows=None`` skips the length check."""
    if isinstance(values, (str, bytes)):
        raise ActclustError(f"{what} must be a sequence of labels, not a single string")
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        values = values.detach().cpu().numpy()
    try:
        # An object array keeps every label as given (a list of tuples stays 1-D).
        arr = np.fromiter(values, dtype=object, count=len(values)) \
            if isinstance(values, (list, tuple)) else np.asarray(values)
    except (TypeError, ValueError) as err:
        raise ActclustError(f"{what} could not be read as an array: {err}") from None
    if arr.ndim != 1:
        raise ActclustError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if n_rows is not None and len(arr) != n_rows:
        raise ActclustError(f"{what} has {len(arr)} values but X has {n_rows} rows; "
                            "they must be the same length")
    return arr


def _check_int(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ActclustError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_seed(random_state) -> int:
    if random_state is None:
        return 0
    return _check_int(random_state, "random_state", 0)


# ---------------------------------------------------------------- neighbour search


def _faiss():
    import faiss

    return faiss


def _batches(X, batch_size: int, keep: np.ndarray | None):
    """(first row, float32 rows) of X in order, rows outside ``keep`` dropped."""
    n = _shape(X)[0]
    if _is_layer(X):
        start = 0
        for batch in X.iter_batches(batch_size, dtype=np.float32):
            rows = np.ascontiguousarray(batch, dtype=np.float32)
            _check_finite(rows, "X", start)
            stop = start + len(rows)
            if keep is not None:
                rows = np.ascontiguousarray(rows[keep[start:stop]])
            yield start, rows
            start = stop
    else:
        for start in range(0, n, batch_size):
            rows = X[start:start + batch_size]
            if keep is not None:
                rows = np.ascontiguousarray(rows[keep[start:start + batch_size]])
            yield start, rows


def _prepared(rows: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        rows = rows.copy()  # normalize_L2 works in place; never touch the caller's array
        _faiss().normalize_L2(rows)
    return rows


def _ivf_sizes(n: int, nlist, nprobe) -> tuple[int, int]:
    nlist = _check_int(nlist, "nlist", 1) if nlist is not None else \
        max(1, min(int(4 * math.sqrt(n)), n // 64))
    nprobe = _check_int(nprobe, "nprobe", 1) if nprobe is not None else max(64, nlist // 16)
    return nlist, min(nprobe, nlist)


def _build_index(X, n: int, d: int, metric: str, seed: int, exact_max_rows: int,
                 nlist, nprobe, batch_size: int, keep):
    faiss = _faiss()
    flat = faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
    if n <= exact_max_rows:
        index = flat
    else:
        nlist, nprobe = _ivf_sizes(n, nlist, nprobe)
        kind = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
        index = faiss.IndexIVFFlat(flat, d, nlist, kind)
        index.cp.seed = seed
        # faiss asks for at least 39 training rows a list; more only costs time.
        n_train = min(n, 40 * nlist)
        chosen = np.sort(np.random.default_rng(seed).choice(n, n_train, replace=False))
        index.train(_prepared(_take(X, chosen, keep), metric))
        index.nprobe = nprobe
    for _, rows in _batches(X, batch_size, keep):
        if len(rows):
            index.add(_prepared(rows, metric))
    return index


def _take(X, chosen: np.ndarray, keep) -> np.ndarray:
    """Rows ``chosen`` (positions among the kept rows) of X, as float32."""
    rows = chosen if keep is None else np.flatnonzero(keep)[chosen]
    out = np.ascontiguousarray(X[rows], dtype=np.float32)
    if _is_layer(X):
        _check_finite(out, "X")
    return out


def _search(index, X, k: int, metric: str, batch_size: int, keep):
    """Per batch of queries: (positions among the kept rows, neighbour positions, scores),
    each query's own row removed from its neighbours."""
    position = 0
    for _, rows in _batches(X, batch_size, keep):
        if not len(rows):
            continue
        queries = _prepared(rows, metric)
        scores, found = index.search(queries, k + 1)
        short = (found < 0).any(axis=1)
        if short.any():  # the probed IVF lists held fewer than k + 1 rows: probe them all
            nprobe, index.nprobe = index.nprobe, index.nlist
            scores[short], found[short] = index.search(queries[short], k + 1)
            index.nprobe = nprobe
        own = np.arange(position, position + len(rows))
        is_self = found == own[:, None]
        # A row's own index is usually first but may sit anywhere among exact duplicates;
        # where it was not returned (IVF), the (k+1)-th neighbour is the one dropped.
        is_self[~is_self.any(axis=1), k] = True
        keep_mask = ~is_self
        found = found[keep_mask].reshape(len(rows), k)
        scores = scores[keep_mask].reshape(len(rows), k)
        if metric == "euclidean":
            scores = np.sqrt(np.maximum(scores, 0.0))
        yield own, found, scores
        position += len(rows)


def _checked_search_args(X, k, metric, random_state, exact_max_rows, batch_size):
    if metric not in METRICS:
        raise ActclustError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if not _is_layer(X):
        X = _as_matrix(X)
    n, d = _shape(X)
    k = _check_int(k, "k", 1)
    seed = _check_seed(random_state)
    exact_max_rows = _check_int(exact_max_rows, "exact_max_rows", 0)
    batch_size = _check_int(batch_size, "batch_size", 1)
    return X, n, d, k, seed, exact_max_rows, batch_size


def nearest_neighbors(X, k: int = 20, metric: str = "cosine", random_state=0,
                      exact_max_rows: int = EXACT_MAX_ROWS, nlist=None, nprobe=None,
                      batch_size: int = 8192):
    """The ``k`` nearest neighbours of every row of ``X``, the row itself excluded.

    ``metric="cosine"`` searches L2-normalised rows by inner product (all-zero rows stay
    zero and are equally far from everything); ``"euclidean"`` uses the squared L2
    distance. Up to ``exact_max_rows`` rows the search is exact; above, an IVF index is
    built (see the module docstring for ``nlist`` and ``nprobe``; pass them to override),
    trained on a sample drawn from ``random_state``. ``X`` may be an array, a torch tensor
    or a store layer (``store.layer(name)``), which is streamed in batches of
    ``batch_size`` rows, twice: once into the index, once as queries.

    Returns ``(indices, scores)``, both ``(n_rows, k)``, nearest first: row numbers of
    ``X`` and cosine similarities (cosine) or distances (euclidean).

    Example:
        >>> X = [[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]
        >>> indices, scores = nearest_neighbors(X, k=1)
        >>> indices.ravel().tolist()
        [1, 0, 3, 2]
    """
    X, n, d, k, seed, exact_max_rows, batch_size = _checked_search_args(
        X, k, metric, random_state, exact_max_rows, batch_size)
    if k >= n:
        raise ActclustError(f"k={k} neighbours asked for, but X has only {n} rows; "
                            f"use k <= {n - 1}")
    index = _build_index(X, n, d, metric, seed, exact_max_rows, nlist, nprobe, batch_size,
                         None)
    indices = np.empty((n, k), dtype=np.int64)
    scores = np.empty((n, k), dtype=np.float32)
    for own, found, found_scores in _search(index, X, k, metric, batch_size, None):
        indices[own], scores[own] = found, found_scores
    return indices, scores


def knn_purity(X, labels, k: int = 20, metric: str = "cosine", random_state=0,
               exact_max_rows: int = EXACT_MAX_ROWS, nlist=None, nprobe=None,
               batch_size: int = 8192, return_per_row: bool = False):
    """Mean share of a row's ``k`` nearest neighbours (itself excluded) that share its label.

    It says whether neighbour pairs carry the label: SCAN-like methods, which pull a row
    and its neighbours into one cluster, can only beat k-means where this is high. Chance
    level is about ``sum_c p_c**2`` (``1/C`` for ``C`` balanced classes).

    Rows whose label is missing (NaN/None) are dropped before the search, so neighbours
    are found among the labelled rows only. ``labels`` may be a column name when ``X`` is a
    store layer. The search is :func:`nearest_neighbors` (cosine on L2-normalised rows by
    default; exact up to ``exact_max_rows`` rows, IVF above), streaming a store layer in
    batches. With ``return_per_row=True`` the result is ``(score, per_row)``, ``per_row``
    holding each row's share (NaN on unlabelled rows).

    Example:
        >>> X = [[1.0, 0.0], [0.9, 0.1], [0.8, 0.3], [0.0, 1.0], [0.1, 0.9], [0.3, 0.8]]
        >>> knn_purity(X, ["a", "a", "a", "b", "b", "b"], k=2)
        1.0
        >>> score, per_row = knn_purity(X, ["a", "a", "b", "b", "b", "a"], k=1,
        ...                             return_per_row=True)
        >>> round(score, 4), per_row.tolist()
        (0.6667, [1.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    """
    X, n, d, k, seed, exact_max_rows, batch_size = _checked_search_args(
        X, k, metric, random_state, exact_max_rows, batch_size)
    if isinstance(labels, str) and _is_layer(X) and hasattr(X, "store"):
        labels = X.store.labels(labels)
    labels = _as_labels(labels, n, "labels")
    codes, _ = pd.factorize(labels)  # missing labels get -1
    labelled = codes >= 0
    n_labelled = int(labelled.sum())
    if n_labelled <= k:
        raise ActclustError(f"k={k} neighbours asked for, but only {n_labelled} of {n} rows "
                            f"are labelled; use k <= {max(n_labelled - 1, 0)}")
    keep = None if n_labelled == n else labelled
    codes = codes[labelled]
    index = _build_index(X, n_labelled, d, metric, seed, exact_max_rows, nlist, nprobe,
                         batch_size, keep)
    share = np.empty(n_labelled, dtype=np.float64)
    for own, found, _ in _search(index, X, k, metric, batch_size, keep):
        share[own] = (codes[found] == codes[own][:, None]).mean(axis=1)
    score = float(share.mean())
    if not return_per_row:
        return score
    per_row = np.full(n, np.nan)
    per_row[labelled] = share
    return score, per_row


# ---------------------------------------------------------------- clustering scores


def self_probe_accuracy(X, clusters, cv: int = 5, random_state=0,
                        max_rows: int = SELF_PROBE_MAX_ROWS, C: float = 1.0,
                        max_iter: int = 1000) -> float:
    """Cross-validated accuracy of a linear classifier trained on the clusters themselves.

    TURTLE's generalisation score (Gadetsky et al. 2024): a clustering that a linear
    probe can learn from some rows and predict on others is one a linear read-out of the
    activations supports, so higher is better, with no labels involved. The classifier
    is scikit-learn's ``LogisticRegression(C=C)`` on standardised inputs, scored on
    ``cv`` stratified folds (shuffled, seeded by ``random_state``); the score is the mean
    fold accuracy. Above ``max_rows`` rows a seeded random subsample of ``max_rows`` rows
    is scored (20,000 by default): 20,000 x 384 rows in 30 clusters take about 12 s on two
cores.

    A clustering with a single cluster is trivially predictable and says nothing: it
    scores NaN with a warning, so ``np.nanargmax`` over candidates never picks it. A
    cluster smaller than ``cv`` cannot sit in every training fold; its held-out rows then
    count as errors, which is the penalty such a cluster deserves.

    ``X`` may be an array, a torch tensor or a store layer (only the sampled rows are
    read). ``clusters`` are any hashable labels, one per row, none missing.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X = np.vstack([rng.normal(0, 1, (40, 5)), rng.normal(8, 1, (40, 5))])
        >>> self_probe_accuracy(X, [0] * 40 + [1] * 40)
        1.0
        >>> round(self_probe_accuracy(X, rng.integers(0, 2, 80)), 1) < 0.8
        True
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if not _is_layer(X):
        X = _as_matrix(X)
    n = _shape(X)[0]
    cv = _check_int(cv, "cv", 2)
    seed = _check_seed(random_state)
    max_rows = _check_int(max_rows, "max_rows", 2)
    max_iter = _check_int(max_iter, "max_iter", 1)
    if isinstance(C, bool) or not isinstance(C, (int, float)) or not C > 0:
        raise ActclustError(f"C must be a positive number, got {C!r}")
    clusters = _as_labels(clusters, n, "clusters")
    codes, uniques = pd.factorize(clusters)
    if (codes < 0).any():
        raise ActclustError(f"clusters has {int((codes < 0).sum())} missing values "
                            "(NaN/None); every row needs a cluster")
    if n < cv:
        raise ActclustError(f"X has {n} rows, fewer than cv={cv} folds; use a smaller cv")
    if len(uniques) < 2:
        warnings.warn("self_probe_accuracy: the clustering has a single cluster, which any "
                      "classifier predicts trivially; scored NaN", UserWarning, stacklevel=2)
        return float("nan")

    rng = np.random.default_rng(seed)
    if n > max_rows:
        rows = np.sort(rng.choice(n, max_rows, replace=False))
        X, codes = _take(X, rows, None), codes[rows]
    elif _is_layer(X):
        X = _take(X, np.arange(n), None)
    # stratified folds need a cluster with cv rows; with fewer, as many folds as it has
    cv = min(cv, int(np.bincount(codes).max()))
    if cv < 2:
        warnings.warn("self_probe_accuracy: every cluster is a single row, so no row can "
                      "be predicted from others; scored NaN", UserWarning, stacklevel=2)
        return float("nan")
    folds = StratifiedKFold(cv, shuffle=True, random_state=seed)
    accuracies = []
    with warnings.catch_warnings():
        # StratifiedKFold warns about clusters smaller than cv (handled, see above), and
        # lbfgs about the iteration cap (a score, not a model to keep, needs no more).
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        warnings.filterwarnings("ignore", message=".*lbfgs failed to converge.*")
        # many small clusters on few rows: scikit-learn suspects a regression target
        warnings.filterwarnings("ignore", message=".*number of unique classes is greater.*")
        for train, test in folds.split(X, codes):
            classes = np.unique(codes[train])
            if len(classes) == 1:  # a fold without the rare cluster(s) at all
                predicted = np.full(len(test), classes[0])
            else:
                probe = make_pipeline(StandardScaler(),
                                      LogisticRegression(C=C, max_iter=max_iter))
                predicted = probe.fit(X[train], codes[train]).predict(X[test])
            accuracies.append(float(np.mean(predicted == codes[test])))
    return float(np.mean(accuracies))


def cluster_balance(clusters, n_clusters=None) -> float:
    """Normalised entropy of the cluster sizes: 1 for equal sizes, 0 for one cluster.

    ``H(sizes / n) / log(K)`` with ``K`` the number of distinct clusters, or
    ``n_clusters`` when given, so that clusters a reporter was asked for but left empty
    count against it (``n_clusters`` must be at least the number of distinct clusters).
    ``K = 1`` scores 0. Missing cluster values (NaN/None) are an error.

    Example:
        >>> cluster_balance([0, 0, 1, 1])
        1.0
        >>> cluster_balance([0, 0, 1, 1], n_clusters=4)
        0.5
        >>> cluster_balance(["a", "a", "a"])
        0.0
    """
    if not hasattr(clusters, "__len__"):
        clusters = list(clusters) if hasattr(clusters, "__iter__") else clusters
    clusters = _as_labels(clusters, None, "clusters")
    if len(clusters) == 0:
        raise ActclustError("clusters is empty: nothing to score")
    codes, uniques = pd.factorize(clusters)
    if (codes < 0).any():
        raise ActclustError(f"clusters has {int((codes < 0).sum())} missing values "
                            "(NaN/None); every row needs a cluster")
    n_found = len(uniques)
    if n_clusters is None:
        n_clusters = n_found
    else:
        n_clusters = _check_int(n_clusters, "n_clusters", 1)
        if n_clusters < n_found:
            raise ActclustError(f"clusters holds {n_found} distinct clusters but n_clusters "
                                f"is {n_clusters}; pass n_clusters >= {n_found} or None")
    if n_clusters == 1:
        return 0.0
    p = np.bincount(codes) / len(codes)
    entropy = float(-(p * np.log(p)).sum())
    return float(min(max(entropy / math.log(n_clusters), 0.0), 1.0))
