"""Cluster memberships for the dashboard, in memory that does not grow with clusters x rows.

One streamed pass over the layer keeps, per row, its distance to its own cluster's mean
(and its own cluster's probability for a reporter with ``predict_proba``); the membership
of any other (row, cluster) pair is computed when a page shows it. The histograms of every
cluster come from the same pass on a small layer, and from a second pass, with bin edges
taken from a seeded sample of rows, on a large one.
"""

from __future__ import annotations

import numpy as np

BATCH_BYTES = 2 ** 27  # float64 rows per pass step: ~128 MB whatever the width
EXACT_CELLS = 2 ** 25  # rows x clusters kept whole (128 MB of float32): exact histograms
RANGE_SAMPLE = 200_000  # rows whose distances set a large layer's histogram range
BINS = 40
DISTANCE_KIND = "closeness to the cluster mean (share of its rows lying farther out)"
PROBA_KIND = "assignment probability (predict_proba)"


def batches(view):
    """``(start, float64 rows)`` over the layer; a store layer is read with
    ``iter_batches``, which keeps about one batch of its memory map resident."""
    step = max(1, BATCH_BYTES // (8 * int(np.prod(view.shape[1:]))))
    if hasattr(view, "iter_batches"):
        start = 0
        for X in view.iter_batches(step):
            yield start, np.asarray(X, dtype=np.float64)
            start += len(X)
        return
    for start in range(0, len(view), step):
        yield start, np.asarray(view[start:start + step], dtype=np.float64)


def means(view, codes, k) -> np.ndarray:
    sums = np.zeros((k, view.shape[1]))
    for start, X in batches(view):
        part = codes[start:start + len(X)]
        for c in np.unique(part):  # k masked sums: np.add.at is far slower on wide rows
            sums[c] += X[part == c].sum(0)
    return sums / np.bincount(codes, minlength=k)[:, None]


def _distances(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    d2 = np.einsum("ij,ij->i", X, X)[:, None] - 2 * X @ centres.T + \
        np.einsum("ij,ij->i", centres, centres)[None, :]
    return np.sqrt(np.maximum(d2, 0)).astype(np.float32)


def _proba(reporter, X: np.ndarray, k: int):
    try:
        p = np.asarray(reporter.predict_proba(X.astype(np.float32)))
    except Exception:  # a reporter whose proba needs other input: use distances
        return None
    return p.astype(np.float32) if p.shape == (len(X), k) else None


class Memberships:
    """How strongly rows belong to clusters (see the dashboard's module docstring).

    Attributes:
        kind: :data:`PROBA_KIND` or :data:`DISTANCE_KIND`.
        own: per row, its membership of its own cluster.
        histograms: per cluster, ``(bin edges, member counts, other rows' counts)`` of
            the probability of the cluster or the distance to its mean.
    """

    def __init__(self, view, reporter, centres: np.ndarray, codes: np.ndarray, k: int,
                 seed: int = 0):
        self.view, self.centres, self.codes, self.k = view, centres, codes, k
        self.reporter = reporter if hasattr(reporter, "predict_proba") else None
        n = len(view)
        exact = n * k <= EXACT_CELLS
        kept_rows = np.arange(n) if exact else np.sort(
            np.random.default_rng(seed).choice(n, min(RANGE_SAMPLE, n), replace=False))
        own_dist = np.empty(n, np.float32)
        own_proba = np.empty(n, np.float32) if self.reporter is not None else None
        kept_d = np.empty((len(kept_rows), k), np.float32)
        kept_p = np.empty((len(kept_rows), k), np.float32) if own_proba is not None else None
        low = np.full(k, np.inf, np.float32)
        for start, X in batches(view):
            stop = start + len(X)
            d = _distances(X, centres)
            mine = codes[start:stop]
            own_dist[start:stop] = d[np.arange(len(X)), mine]
            low = np.minimum(low, d.min(0))
            lo, hi = np.searchsorted(kept_rows, [start, stop])
            kept_d[lo:hi] = d[kept_rows[lo:hi] - start]
            if own_proba is not None:
                p = _proba(self.reporter, X, k)
                if p is None:
                    own_proba = kept_p = self.reporter = None
                else:
                    own_proba[start:stop] = p[np.arange(len(X)), mine]
                    kept_p[lo:hi] = p[kept_rows[lo:hi] - start]
        self.kind = PROBA_KIND if own_proba is not None else DISTANCE_KIND
        # Rank against the cluster's own rows: scale-free, unlike raw distances in 384-D
        # where a member and an outsider can be almost equally far from the mean.
        order = np.argsort(codes, kind="stable")
        starts = np.searchsorted(codes[order], np.arange(k + 1))
        self._own_sorted = [np.sort(own_dist[order[starts[c]:starts[c + 1]]])
                            for c in range(k)]
        self._own_dist, self._own_proba = own_dist, own_proba
        self.own = own_proba if own_proba is not None else \
            self.of_cluster_rows(own_dist)
        values = kept_p if own_proba is not None else kept_d
        if self.kind == PROBA_KIND:
            edges = [np.linspace(0.0, 1.0, BINS + 1)] * k
        else:
            # the whole layer's smallest distance, and its 99.5 % quantile: exact on a small
            # layer, from a seeded sample of rows on a large one
            edges = []
            for c in range(k):
                top = float(np.quantile(values[:, c], 0.995)) if len(values) else 1.0
                edges.append(np.linspace(float(low[c]), top if top > low[c] else
                                         float(low[c]) + 1, BINS + 1))
        self.edges = edges
        if exact:
            self.histograms = [self._counts(values[:, c], codes == c, edges[c])
                               for c in range(k)]
        else:
            self.histograms = self._streamed_histograms()

    def of_cluster_rows(self, own_dist: np.ndarray) -> np.ndarray:
        """Distance memberships of rows in their own clusters (``own_dist`` per row)."""
        out = np.empty(len(own_dist), np.float32)
        for c in range(self.k):
            rows = np.flatnonzero(self.codes == c)
            own = self._own_sorted[c]
            out[rows] = 1 - np.searchsorted(own, own_dist[rows], side="left") / len(own)
        return out

    def ranked(self, c: int, members: np.ndarray) -> np.ndarray:
        """``members`` of cluster ``c``, highest membership first (ties by row number)."""
        if self._own_proba is not None:
            return members[np.lexsort((members, -self._own_proba[members]))]
        return members[np.lexsort((members, self._own_dist[members]))]

    def of(self, rows: np.ndarray) -> np.ndarray:
        """Memberships of ``rows`` (sorted, unique) in every cluster: ``len(rows) x k``."""
        X = np.asarray(self.view[rows], dtype=np.float64) if len(rows) else \
            np.zeros((0, self.view.shape[1]))
        if self._own_proba is not None:
            p = _proba(self.reporter, X, self.k)
            if p is not None:
                return p
        d = _distances(X, self.centres)
        out = np.empty_like(d)
        for c in range(self.k):
            own = self._own_sorted[c]
            out[:, c] = 1 - np.searchsorted(own, d[:, c], side="left") / len(own)
        return out

    @staticmethod
    def _counts(values, inside, edges):
        lo, hi = edges[0], edges[-1]
        members, _ = np.histogram(np.clip(values[inside], lo, hi), edges)
        others, _ = np.histogram(np.clip(values[~inside], lo, hi), edges)
        return edges, members, others

    def _streamed_histograms(self) -> list:
        k = self.k
        counts = np.zeros((k, 2, BINS), np.int64)  # [cluster, member?, bin]
        lows = np.array([e[0] for e in self.edges])
        widths = np.array([(e[-1] - e[0]) / BINS for e in self.edges])
        for start, X in batches(self.view):
            values = None
            if self.kind == PROBA_KIND:
                values = _proba(self.reporter, X, k)
            if values is None:
                values = _distances(X, self.centres)
            # np.histogram's bins: [e_i, e_i+1), the last one closed; clipped to the range
            bins = np.clip(((values - lows) / widths).astype(np.int64), 0, BINS - 1)
            member = (self.codes[start:start + len(X)][:, None] == np.arange(k)[None, :])
            flat = (np.arange(k)[None, :] * 2 + member) * BINS + bins
            counts += np.bincount(flat.ravel(), minlength=k * 2 * BINS).reshape(k, 2, BINS)
        return [(self.edges[c], counts[c, 1], counts[c, 0]) for c in range(k)]
