"""Gaussian mixtures (scikit-learn), with optional PCA first and BIC/AIC to choose k."""

from __future__ import annotations

from numbers import Integral, Real

import pandas as pd
from sklearn.base import BaseEstimator, ClusterMixin, clone
from sklearn.decomposition import PCA as SkPCA
from sklearn.mixture import GaussianMixture
from sklearn.utils.validation import check_is_fitted

from ._base import (CLUSTERER_CONSTRAINTS, Interval, StrOptions, check_data, check_n_clusters,
                    fit_context, register)


@register("gmm")
class GMM(ClusterMixin, BaseEstimator):
    """A Gaussian mixture over activations: soft clusters with ``predict_proba``.

    Full covariances in the 384 dimensions of a MiniLM layer need many rows per
    component; ``pca_components`` reduces the dimension first (recommended for token
    layers), and ``covariance_type="diag"`` is the cheap alternative.

    Parameters:
        n_clusters: mixture components, at least 2.
        covariance_type: ``"full"``, ``"diag"``, ``"tied"`` or ``"spherical"``.
        pca_components: if set, fit on this many principal components.
        n_init: initialisations; the best likelihood is kept.
        max_iter: EM iterations at most, as in scikit-learn's GaussianMixture.
        tol: convergence threshold, as in scikit-learn.
        reg_covar: added to the covariances' diagonals, as in scikit-learn.
        random_state: seeds initialisation.

    Attributes:
        labels_: component of each training row.
        means_: component means (in PCA space when ``pca_components`` is set).
        weights_: mixture weights.
        converged_: whether EM converged.
        n_iter_: EM iterations of the best initialisation.
        bic_: BIC on the training rows.
        aic_: AIC on the training rows.
        pca_: the fitted scikit-learn PCA, or None.

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> X, _ = make_blobs(300, centers=[[0, 0], [10, 10], [-10, 10]], random_state=0)
        >>> gmm = GMM(3, random_state=0).fit(X)
        >>> gmm.predict_proba(X[:2]).shape, gmm.bic_ < GMM(2, random_state=0).fit(X).bic_
        ((2, 3), True)
    """

    _parameter_constraints = {
        **CLUSTERER_CONSTRAINTS,
        "covariance_type": [StrOptions({"full", "diag", "tied", "spherical"})],
        "pca_components": [None, Interval(Integral, 1, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "reg_covar": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, n_clusters=8, *, covariance_type="full", pca_components=None,
                 n_init=1, max_iter=200, tol=1e-3, reg_covar=1e-6, random_state=None):
        self.n_clusters = n_clusters
        self.covariance_type = covariance_type
        self.pca_components = pca_components
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.random_state = random_state

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the mixture on ``X`` (array, tensor or store layer); ``y`` is ignored."""
        X = check_data(self, X)
        check_n_clusters(self, len(X), self.n_clusters)
        self.pca_ = None
        if self.pca_components is not None:
            n = min(self.pca_components, X.shape[1], len(X))
            self.pca_ = SkPCA(n, random_state=self.random_state).fit(X)
        Z = self._reduce(X)
        self.mixture_ = GaussianMixture(
            self.n_clusters, covariance_type=self.covariance_type, n_init=self.n_init,
            max_iter=self.max_iter, tol=self.tol, reg_covar=self.reg_covar,
            random_state=self.random_state).fit(Z)
        self.labels_ = self.mixture_.predict(Z)
        self.means_ = self.mixture_.means_
        self.weights_ = self.mixture_.weights_
        self.converged_ = self.mixture_.converged_
        self.n_iter_ = self.mixture_.n_iter_
        self.bic_ = float(self.mixture_.bic(Z))
        self.aic_ = float(self.mixture_.aic(Z))
        return self

    def _reduce(self, X):
        return X if self.pca_ is None else self.pca_.transform(X)

    def _checked(self, X):
        check_is_fitted(self)
        return self._reduce(check_data(self, X, reset=False))

    def predict(self, X):
        """Most probable component of each row."""
        Z = self._checked(X)
        return self.mixture_.predict(Z)

    def predict_proba(self, X):
        """Posterior probability of each component, one row per input row."""
        Z = self._checked(X)
        return self.mixture_.predict_proba(Z)

    def score(self, X, y=None):
        """Mean log-likelihood per row."""
        Z = self._checked(X)
        return float(self.mixture_.score(Z))

    def bic(self, X):
        Z = self._checked(X)
        return float(self.mixture_.bic(Z))

    def aic(self, X):
        Z = self._checked(X)
        return float(self.mixture_.aic(Z))


def select_k(X, ks, criterion: str = "bic", **params) -> pd.DataFrame:
    """Fit a :class:`GMM` for each k and tabulate BIC and AIC (lower is better).

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> X, _ = make_blobs(400, centers=4, random_state=1)
        >>> table = select_k(X, [2, 3, 4, 6], random_state=0)
        >>> int(table.loc[table["bic"].idxmin(), "k"])
        4
    """
    if criterion not in ("bic", "aic"):
        raise ValueError(f"criterion must be 'bic' or 'aic', got {criterion!r}")
    base = GMM(**params)
    rows = []
    for k in ks:
        model = clone(base).set_params(n_clusters=int(k)).fit(X)
        rows.append({"k": int(k), "bic": model.bic_, "aic": model.aic_,
                     "converged": model.converged_})
    table = pd.DataFrame(rows)
    table["best"] = table[criterion] == table[criterion].min()
    return table
