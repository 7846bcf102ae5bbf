"""PCA: in memory, or in one streamed pass when a store layer exceeds the memory budget."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA as SkPCA
from sklearn.utils.validation import check_is_fitted

from ._base import (MEMORY_BUDGET, Interval, check_data, check_finite_rows, fit_context,
                    is_layer_view, iter_rows, register)


@register("pca", kind="transformer", streams=True)
class PCA(TransformerMixin, BaseEstimator):
    """Principal components of activations (scikit-learn's PCA or IncrementalPCA).

    Data that fits ``memory_budget_gb`` gets scikit-learn's PCA. A store layer beyond it
    is streamed once in batches of ``batch_size`` rows, accumulating the covariance (exact,
    not an approximation), and never loaded whole; ``incremental_`` is True when the layer
    was streamed.

    Parameters:
        n_components: components to keep (``None``: all).
        whiten: scale components to unit variance.
        memory_budget_gb: above this size a store layer is streamed.
        batch_size: rows per batch when streaming.
        random_state: for the randomized solver scikit-learn may pick.

    Example:
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(200, 5)) * [10, 5, 1, 1, 1]
        >>> pca = PCA(2, random_state=0).fit(X)
        >>> pca.explained_variance_ratio_.round(2)
        array([0.76, 0.21])
    """

    _parameter_constraints = {
        "n_components": [None, Interval(Integral, 1, None, closed="left")],
        "whiten": ["boolean"],
        "memory_budget_gb": MEMORY_BUDGET,
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_components=None, *, whiten=False, memory_budget_gb=2.0,
                 batch_size=16384, random_state=None):
        self.n_components = n_components
        self.whiten = whiten
        self.memory_budget_gb = memory_budget_gb
        self.batch_size = batch_size
        self.random_state = random_state

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit on ``X`` (array, tensor or store layer); ``y`` is ignored."""
        if is_layer_view(X) and np.prod(X.shape) * 4 > self.memory_budget_gb * 2**30:
            self._fit_incremental(X)
        else:
            X = check_data(self, X)
            self.model_ = SkPCA(self.n_components, whiten=self.whiten,
                                random_state=self.random_state).fit(X)
            self.incremental_ = False
        for name in ("components_", "explained_variance_", "explained_variance_ratio_",
                     "singular_values_", "mean_", "n_components_", "noise_variance_"):
            setattr(self, name, getattr(self.model_, name))
        return self

    def _fit_incremental(self, view) -> None:
        """Exact PCA in one streamed pass: accumulate the scatter matrix in float64.

        For activation widths (hundreds to a few thousand) a d x d scatter matrix is small,
        and one GEMM per batch is several times faster than IncrementalPCA's SVD per batch.
        Rows are shifted by the first batch's mean before accumulating, for stability.
        """
        d = int(view.shape[1])
        self.n_features_in_ = d
        shift, total, scatter, n = None, np.zeros(d), np.zeros((d, d)), 0
        for X in iter_rows(view, self.batch_size):
            check_finite_rows(X)
            X = X.astype(np.float64)
            if shift is None:
                shift = X.mean(0)
            X -= shift
            total += X.sum(0)
            scatter += X.T @ X
            n += len(X)
        mean_shifted = total / n
        cov = (scatter - n * np.outer(mean_shifted, mean_shifted)) / max(n - 1, 1)
        eigvals, eigvecs = np.linalg.eigh(cov)
        order = np.argsort(eigvals)[::-1]
        eigvals, eigvecs = np.maximum(eigvals[order], 0), eigvecs[:, order]
        k = self.n_components or d
        # A fitted scikit-learn PCA, so transform/inverse_transform behave identically.
        model = SkPCA(k, whiten=self.whiten)
        model.n_features_in_, model.n_samples_ = d, n
        model.mean_ = shift + mean_shifted
        model.components_ = _fix_signs(eigvecs[:, :k].T)
        model.n_components_ = k
        model.explained_variance_ = eigvals[:k]
        model.explained_variance_ratio_ = eigvals[:k] / eigvals.sum()
        model.singular_values_ = np.sqrt(eigvals[:k] * max(n - 1, 1))
        model.noise_variance_ = float(eigvals[k:].mean()) if k < d else 0.0
        self.model_, self.incremental_ = model, True

    def transform(self, X):
        """Project onto the components (a store layer is projected batch by batch)."""
        check_is_fitted(self)
        if is_layer_view(X):
            return np.concatenate([self.model_.transform(b)
                                   for b in iter_rows(X, self.batch_size)])
        return self.model_.transform(check_data(self, X, reset=False))

    def inverse_transform(self, X):
        check_is_fitted(self)
        return self.model_.inverse_transform(X)


def _fix_signs(components: np.ndarray) -> np.ndarray:
    """Make the largest-magnitude entry of each component positive (a stable sign)."""
    signs = np.sign(components[np.arange(len(components)),
                                np.abs(components).argmax(1)])
    return components * np.where(signs == 0, 1, signs)[:, None]
