"""Sufficient statistics of a linear least-squares probe, accumulated over batches.

Ridge regression on one-hot labels needs only, per part of the rows, the row count, the
sum of rows, the scatter ``X^T X`` and, for each label set, ``Y^T X`` and the class counts.
Those add up over batches and over parts, so one pass over a layer of any size (each row
assigned to a part: a cross-validation fold, the test split, or none) gives every model the
probe and its penalty search need, exactly; a second pass scores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


def batches(X, batch_size: int):
    """``(start, float32 rows)`` over an array, a memory map or a store layer view.

    A store layer streams through its memory maps (each batch released once read), so a
    pass keeps about one batch resident whatever the layer's size.
    """
    if hasattr(X, "iter_batches"):
        start = 0
        for block in X.iter_batches(batch_size, dtype=np.float32):
            yield start, block
            start += len(block)
        return
    for start in range(0, len(X), batch_size):
        yield start, np.asarray(X[start:start + batch_size], dtype=np.float32)


@dataclass
class PartStats:
    """Statistics of one part of the rows, for ``n_targets`` label sets of ``n_classes``."""

    n_features: int
    n_classes: list
    n: int = 0
    total: np.ndarray = None
    scatter: np.ndarray = None
    cross: list = field(default_factory=list)  # per label set: (n_classes, n_features)
    counts: list = field(default_factory=list)  # per label set: (n_classes,)

    def __post_init__(self):
        d = self.n_features
        self.total = np.zeros(d)
        self.scatter = np.zeros((d, d))
        self.cross = [np.zeros((c, d)) for c in self.n_classes]
        self.counts = [np.zeros(c) for c in self.n_classes]

    def add(self, X: np.ndarray, codes: list) -> None:
        """Add rows ``X`` (float32, already shifted) whose labels are ``codes``."""
        self.n += len(X)
        self.total += X.sum(axis=0, dtype=np.float64)
        self.scatter += X.T @ X  # X.T @ X of one buffer is a symmetric rank-k BLAS call
        for t, y in enumerate(codes):
            onehot = sp.csr_matrix((np.ones(len(y), np.float32), (y, np.arange(len(y)))),
                                   shape=(self.n_classes[t], len(y)))
            self.cross[t] += onehot @ X
            self.counts[t] += np.bincount(y, minlength=self.n_classes[t])

    def __iadd__(self, other: "PartStats") -> "PartStats":
        self.n += other.n
        self.total += other.total
        self.scatter += other.scatter
        for t in range(len(self.cross)):
            self.cross[t] += other.cross[t]
            self.counts[t] += other.counts[t]
        return self


def accumulate(X, part: np.ndarray, codes: list, n_parts: int, n_classes: list,
               batch_size: int, shift: np.ndarray, bar=None) -> list:
    """One pass: the :class:`PartStats` of parts ``0..n_parts-1`` (rows of part -1 are
    skipped). ``codes`` are integer label codes, one array per label set, aligned with X."""
    d = len(shift)
    stats = [PartStats(d, n_classes) for _ in range(n_parts)]
    for start, block in batches(X, batch_size):
        stop = start + len(block)
        block = block - shift  # near-centred rows keep X^T X accurate under a large mean
        here = part[start:stop]
        for p in np.unique(here):
            if p < 0:
                continue
            rows = here == p
            stats[p].add(block[rows], [c[start:stop][rows] for c in codes])
        if bar is not None:
            bar.update(len(block))
    return stats


def combined(stats: list, parts) -> PartStats:
    """The statistics of the union of ``parts``."""
    first = stats[0]
    out = PartStats(first.n_features, first.n_classes)
    for p in parts:
        out += stats[p]
    return out


def ridge_solutions(s: PartStats, target: int, alphas, seen=None) -> tuple:
    """Weights and intercepts of ridge on standardised features, one per alpha.

    Minimises ``mean ||Y - Z V - b||^2 + alpha ||V||^2`` over standardised rows ``Z``
    (each feature scaled to unit variance on these rows; constant features are left
    unscaled), then folds the scaling back: returns ``W`` of shape
    ``(len(alphas), n_features, n_classes)`` and ``b`` of shape ``(len(alphas),
    n_classes)`` in the input space of the statistics (shifted rows). Classes absent from
    these rows get a score of -inf so they are never predicted.
    """
    n = max(s.n, 1)
    mean = s.total / n
    cov = s.scatter / n - np.outer(mean, mean)
    scale = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    scale[scale <= 1e-12 * max(scale.max(), 1.0)] = 1.0
    corr = cov / np.outer(scale, scale)
    eigval, eigvec = np.linalg.eigh((corr + corr.T) / 2)
    eigval = np.clip(eigval, 0.0, None)
    ybar = s.counts[target] / n
    rhs = (s.cross[target].T / n - np.outer(mean, ybar)) / scale[:, None]
    projected = eigvec.T @ rhs
    W = np.stack([eigvec @ (projected / (eigval + a)[:, None]) for a in alphas])
    W /= scale[None, :, None]
    b = ybar[None, :] - np.einsum("d,adc->ac", mean, W)
    absent = s.counts[target] == 0
    b[:, absent] = -np.inf
    return W, b


def count_correct(X, part: np.ndarray, codes: list, models: dict, batch_size: int,
                  shift: np.ndarray, bar=None) -> dict:
    """Second pass: for each ``(part, target) -> (W, b)`` in ``models``, how many rows of
    that part each alpha's model labels correctly (an array of one count per alpha)."""
    correct = {key: np.zeros(len(W), np.int64) for key, (W, b) in models.items()}
    stacked = {key: (W.transpose(1, 0, 2).reshape(W.shape[1], -1), b.reshape(-1), W.shape)
               for key, (W, b) in models.items()}
    for start, block in batches(X, batch_size):
        stop = start + len(block)
        block = block - shift  # a new array: the batch may be the caller's or read-only
        here = part[start:stop]
        for p in np.unique(here):
            keys = [key for key in stacked if key[0] == p]
            if p < 0 or not keys:
                continue
            rows = here == p
            Xp = block[rows]
            for key in keys:
                flat, bias, (n_alphas, _, n_classes) = stacked[key]
                scores = (Xp @ flat.astype(np.float32) + bias.astype(np.float32))
                predicted = scores.reshape(len(Xp), n_alphas, n_classes).argmax(axis=2)
                truth = codes[key[1]][start:stop][rows]
                correct[key] += (predicted == truth[:, None]).sum(axis=0)
        if bar is not None:
            bar.update(len(block))
    return correct
