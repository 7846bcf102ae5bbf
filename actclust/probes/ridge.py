"""The streamed probe: ridge regression on one-hot labels, exact from two passes.

For a layer too large for memory (ten million token rows of 384 floats is 15 GB) a
logistic regression cannot be fitted in memory, and a minibatch one needs many passes.
A least-squares probe can: its solution depends on the rows only through sums that add
up over batches (:mod:`._stats`), so one pass gives, for every cross-validation fold and
for the final training set, the exact ridge solution for every penalty, and a second pass
counts how many held-out rows each labels correctly. On one-hot targets with a shared
intercept this is the multi-class least-squares classifier; for two classes its direction
is Fisher's linear discriminant (LDA), shrunk towards the identity by the penalty.

Memory is one batch of rows plus ``d x d`` floats per fold; label, group and control codes
take a few bytes per row.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(["a", "b", "c"], 100)
    >>> X = rng.normal(size=(300, 8)) + 6.0 * np.eye(8)[np.repeat([0, 1, 2], 100)]
    >>> probe = RidgeProbe(alphas=(1.0, 0.01), cv=3).fit(X, y)
    >>> round(probe.score(X, y), 2), probe.coef_.shape
    (1.0, (3, 8))
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Optional

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval

from .._util.codes import factorize
from . import _stats
from .linear import (ProbeInputError, _as_features, _as_labels, _check_two_classes,
                     _fitted_features, _group_codes, control_codes,
                     held_out_rows)

__all__ = ["RidgeProbe", "ridge_probe_scores", "DEFAULT_ALPHAS"]

# From the strongest penalty down: a tie in cross-validated accuracy goes to the first.
DEFAULT_ALPHAS = (10.0, 1.0, 0.1, 0.01, 0.001, 0.0001)
BATCH_ROWS = 65_536


def _is_layer(X) -> bool:
    return hasattr(X, "iter_batches") and hasattr(X, "shape")


def _features(X):
    """A store layer as it is (streamed); anything else as a checked float array."""
    if _is_layer(X):
        if len(X.shape) != 2 or X.shape[0] == 0:
            raise ProbeInputError(f"a probe needs a non-empty 2-D layer, got shape {X.shape}")
        return X
    return _as_features(X)


def _shift(X) -> np.ndarray:
    """A rough centre (the mean of the first rows), subtracted before accumulating so
    ``X^T X`` keeps its precision when activations have a large mean."""
    head = np.asarray(X[:min(len(X), 4096)], dtype=np.float64)
    if not np.isfinite(head).all():
        raise ProbeInputError("X has NaN or inf values in its first rows; drop or fill "
                              "them before probing")
    return head.mean(axis=0).astype(np.float32)


def _fold_of(y_codes: np.ndarray, group_codes: Optional[np.ndarray], cv: int,
             seed: int) -> np.ndarray:
    """Fold ``0..k-1`` of each row, in a byte a row.

    With groups, scikit-learn's GroupKFold assignment (the largest group first, each to the
    lightest fold), so the folds are those :class:`LinearProbe` searches; without, rows of
    each class are shuffled and dealt to the folds in turn (stratified).
    """
    if group_codes is not None:
        n_groups = int(group_codes.max()) + 1 if len(group_codes) else 0
        if n_groups < 2:
            raise ProbeInputError("the training rows have only one group; grouped "
                                  "cross-validation needs at least two (or set alpha)")
        k = min(cv, n_groups)
        sizes = np.bincount(group_codes, minlength=n_groups)
        order = np.argsort(sizes, kind="stable")[::-1]
        load, fold_of_group = np.zeros(k), np.zeros(n_groups, np.int8)
        for group in order:  # one step per group, not per row
            lightest = int(np.argmin(load))
            load[lightest] += sizes[group]
            fold_of_group[group] = lightest
        return fold_of_group[group_codes]
    smallest = int(np.bincount(y_codes).min()) if len(y_codes) else 0
    k = min(cv, smallest) if smallest >= 2 else min(cv, len(y_codes))
    shuffled = np.random.default_rng(seed).permutation(len(y_codes))
    by_class = shuffled[np.argsort(y_codes[shuffled], kind="stable")]
    fold = np.empty(len(y_codes), np.int8)
    fold[by_class] = np.arange(len(y_codes)) % k
    return fold


class RidgeProbe(ClassifierMixin, BaseEstimator):
    """A linear probe fitted in bounded memory: ridge regression on one-hot labels.

    Features are standardised (zero mean, unit variance; constant ones left unscaled) and
    the penalty ``alpha`` applies to the standardised weights, so one grid of ``alphas``
    suits any layer. When ``alpha`` is None it is chosen by ``cv``-fold cross-validated
    accuracy (folds grouped by ``groups`` when given, else stratified), a tie going to the
    first of ``alphas`` (list them from the strongest penalty down). Fitting reads ``X``
    twice when choosing ``alpha`` and once otherwise; ``X`` may be an array, a torch
    tensor or a store layer view, which is streamed in batches of ``batch_size`` rows.

    Args:
        alpha: the penalty; None chooses it from ``alphas``.
        alphas: candidate penalties.
        cv: number of cross-validation folds.
        batch_size: rows per batch when streaming.
        random_state: seeds the shuffled folds (ungrouped cross-validation).

    Attributes:
        classes_: the labels, sorted.
        alpha_: the penalty used.
        cv_scores_: cross-validated accuracy for each of ``alphas`` (None when ``alpha`` set).
        coef_: ``(n_classes, n_features)`` weights in the input space, so
            ``X @ coef_.T + intercept_`` equals :meth:`decision_function` (one score per
            class, also for two classes).
        intercept_: ``(n_classes,)``.
        n_features_in_: number of features seen in :meth:`fit`.

    Example:
        >>> import numpy as np
        >>> X = np.array([[0.0], [0.2], [1.0], [1.2]])
        >>> RidgeProbe(alpha=0.01).fit(X, ["no", "no", "yes", "yes"]).predict([[0.9]])
        array(['yes'], dtype='<U3')
    """

    _parameter_constraints: dict = {
        "alpha": [Interval(Real, 0, None, closed="neither"), None],
        "alphas": ["array-like"],
        "cv": [Interval(Integral, 2, 100, closed="both")],  # fold ids are one byte a row
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, alpha: Optional[float] = None, alphas=DEFAULT_ALPHAS, cv: int = 5,
                 batch_size: int = BATCH_ROWS, random_state=0):
        self.alpha = alpha
        self.alphas = alphas
        self.cv = cv
        self.batch_size = batch_size
        self.random_state = random_state

    def _alphas(self) -> list:
        if self.alpha is not None:
            return [float(self.alpha)]
        alphas = [float(a) for a in np.atleast_1d(np.asarray(self.alphas, dtype=float))]
        if not alphas or min(alphas) <= 0:
            raise ProbeInputError(f"alphas must be a non-empty list of positive values, got "
                                  f"{self.alphas!r}")
        return alphas

    def fit(self, X, y, groups=None):
        """Fit the probe; ``groups`` (one id per row) makes the penalty search's folds grouped.

        Example:
            >>> import numpy as np
            >>> rng = np.random.default_rng(1)
            >>> X = rng.normal(size=(200, 3))
            >>> probe = RidgeProbe().fit(X, X[:, 0] > 0, groups=np.arange(200) // 5)
            >>> probe.alpha_ in DEFAULT_ALPHAS, probe.score(X, X[:, 0] > 0) > 0.9
            (True, True)
        """
        self._validate_params()
        X = _features(X)
        y = _as_labels(y, len(X))
        alphas = self._alphas()
        y_codes, classes = _sorted_codes(y)
        _check_two_classes(classes)
        seed = self.random_state if isinstance(self.random_state, Integral) else 0
        group_codes = _group_codes(groups, len(y)) if groups is not None else None
        part = np.zeros(len(y), np.int8) if self.alpha is not None else \
            _fold_of(y_codes, group_codes, self.cv, seed)
        fitted = _fit(X, part, [y_codes], [len(classes)], alphas, self.batch_size,
                      choose=self.alpha is None)
        self.alpha_, self.cv_scores_ = fitted["alpha"], fitted["cv_scores"]
        W, b, shift = fitted["W"][0], fitted["b"][0], fitted["shift"]
        self.classes_ = classes
        self.coef_ = W.T.copy()
        self.intercept_ = b - shift.astype(np.float64) @ W
        self.n_features_in_ = X.shape[1]
        return self

    def decision_function(self, X) -> np.ndarray:
        """One score per class: ``X @ coef_.T + intercept_``."""
        X = _fitted_features(self, X, "coef_")
        return X @ self.coef_.T + self.intercept_

    def predict(self, X) -> np.ndarray:
        """The class with the highest score for every row."""
        return self.classes_[self.decision_function(X).argmax(axis=1)]


def _sorted_codes(y: np.ndarray) -> tuple:
    codes, classes = factorize(y, sort=True)
    return codes, np.asarray(classes, dtype=object) if y.dtype == object else classes


def _fit(X, part, codes, n_classes, alphas, batch_size, choose: bool, extra=None,
         bar=None) -> dict:
    """Accumulate per-part statistics (parts: CV folds, then any ``extra`` part such as a
    test split), choose alpha by CV accuracy when ``choose``, and solve the final model on
    all fold parts for every label set. Returns the final weights per label set, the
    chosen alpha, CV scores and the statistics."""
    shift = _shift(X)
    n_folds = int(part.max()) + 1 if extra is None else extra
    n_parts = int(part.max()) + 1
    stats = _stats.accumulate(X, part, codes, n_parts, n_classes, batch_size, shift, bar)
    if not all(np.isfinite(s.scatter).all() for s in stats):
        raise ProbeInputError("X has NaN or inf values; drop or fill those rows before "
                              "probing")
    cv_scores, best = None, 0
    if choose:
        models = {}
        for f in range(n_folds):
            train = _stats.combined(stats, [g for g in range(n_folds) if g != f])
            models[(f, 0)] = _stats.ridge_solutions(train, 0, alphas)
        correct = _stats.count_correct(X, part, codes, models, batch_size, shift, bar)
        held_out = sum(stats[f].n for f in range(n_folds))
        cv_scores = sum(correct.values()) / max(held_out, 1)
        best = int(np.argmax(cv_scores))  # the first maximum: the strongest such penalty
    train = _stats.combined(stats, range(n_folds))
    solved = [_stats.ridge_solutions(train, t, [alphas[best]]) for t in range(len(codes))]
    return {"alpha": alphas[best], "cv_scores": cv_scores, "shift": shift,
            "W": [W[0] for W, _ in solved], "b": [b[0] for _, b in solved],
            "stats": stats}


def ridge_probe_scores(X, y, groups=None, types=None, random_state=0,
                       test_size: float = 0.25, probe: Optional[RidgeProbe] = None,
                       progress: bool = False) -> dict:
    """:func:`~actclust.probes.probe_scores` for the streamed probe, in bounded memory.

    The same grouped train/test split, control task (one random label per type) and
    majority baseline as the logistic probe; the probe, its penalty search and the control
    probe (with the probe's penalty) come from one pass of statistics over the layer and
    one pass of scoring, whatever its size. Rows whose label is missing are left out.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(400, 6))
        >>> y = np.where(X[:, 0] > 0, "pos", "neg")
        >>> s = ridge_probe_scores(X, y, groups=np.arange(400) // 4)
        >>> s["probe_accuracy"] > 0.9, s["n_train"] + s["n_test"]
        (True, 400)
    """
    from .._progress import tqdm

    template = probe if probe is not None else RidgeProbe(random_state=random_state)
    X = _features(X)
    y_codes, classes = _label_codes(y, len(X))
    known = y_codes >= 0
    _check_two_classes(classes)
    n_classes = len(classes)
    group_codes = None if groups is None else _group_codes(groups, len(X))
    split_codes = group_codes if group_codes is None or known.all() else \
        factorize(group_codes[known])[0]
    test = np.zeros(len(X), bool)
    if split_codes is None:  # every row its own group
        test[known] = held_out_rows(np.arange(int(known.sum())), test_size, random_state)
    else:
        test[known] = held_out_rows(split_codes, test_size, random_state)
    train = known & ~test
    train_counts = np.bincount(y_codes[train], minlength=n_classes)
    _check_two_classes(classes[train_counts > 0], "the training split")

    if types is None and groups is None:  # every row its own type: shuffled labels
        ctrl_codes = y_codes.copy()
        ctrl_codes[known] = y_codes[known][
            np.random.default_rng(random_state).permutation(int(known.sum()))]
    else:
        type_codes = group_codes if types is None else _group_codes(types, len(X), "types")
        ctrl_codes = control_codes(y_codes, n_classes, type_codes, random_state)
        ctrl_codes[~known] = -1

    alphas = template._alphas()
    choose = template.alpha is None
    part = np.full(len(X), -1, np.int8)
    if choose:
        train_groups = None if group_codes is None else factorize(group_codes[train])[0]
        part[train] = _fold_of(y_codes[train], train_groups, template.cv, random_state)
        n_folds = int(part.max()) + 1
    else:
        part[train], n_folds = 0, 1
    part[test] = n_folds
    bar = tqdm(total=(3 if choose else 2) * len(X), disable=not progress, desc="probe",
               unit="row", unit_scale=True)
    fitted = _fit(X, part, [y_codes, ctrl_codes], [n_classes, n_classes], alphas,
                  template.batch_size, choose=choose, extra=n_folds, bar=bar)
    models = {(n_folds, 0): _one(fitted, 0), (n_folds, 1): _one(fitted, 1)}
    correct = _stats.count_correct(X, part, [y_codes, ctrl_codes], models,
                                   template.batch_size, fitted["shift"], bar)
    bar.close()
    n_test = int(test.sum())
    probe_acc = float(correct[(n_folds, 0)][0]) / n_test
    ctrl_train = np.bincount(ctrl_codes[train], minlength=n_classes)
    if (ctrl_train > 0).sum() < 2:  # one control class in training: nothing to learn
        control_acc = float(np.mean(ctrl_codes[test] == int(np.argmax(ctrl_train))))
    else:
        control_acc = float(correct[(n_folds, 1)][0]) / n_test
    majority = _majority(y_codes[train], train_counts)
    return {
        "probe_accuracy": probe_acc,
        "control_accuracy": control_acc,
        "selectivity": probe_acc - control_acc,
        "majority_baseline": float(np.mean(y_codes[test] == majority)),
        "alpha": float(fitted["alpha"]),
        "n_train": int(train.sum()),
        "n_test": n_test,
    }


def _majority(train_codes: np.ndarray, counts: np.ndarray) -> int:
    """The most common training label; a tie goes to the one seen first, as
    ``value_counts`` (the logistic probe's baseline) breaks it."""
    best = np.flatnonzero(counts == counts.max())
    if len(best) == 1:
        return int(best[0])
    return int(min(best, key=lambda c: int(np.argmax(train_codes == c))))


def _label_codes(y, n_rows: int) -> tuple:
    """Sorted codes of labels that may be missing (-1), checked like the probe's labels."""
    if hasattr(y, "detach") and hasattr(y, "cpu"):
        y = y.detach().cpu().numpy()
    y = np.asarray(y) if isinstance(y, (np.ndarray, pd.Series, pd.Index)) \
        else np.asarray(y, dtype=object)
    if y.ndim != 1:
        raise ProbeInputError(f"y must be one label per row, got shape {y.shape}")
    if len(y) != n_rows:
        raise ProbeInputError(f"y has {len(y)} values but X has {n_rows} rows")
    codes, classes = factorize(y, sort=True)
    if not (codes >= 0).any():
        raise ProbeInputError("y has no known labels")
    return codes, classes


def _one(fitted: dict, target: int) -> tuple:
    return fitted["W"][target][None], fitted["b"][target][None]
