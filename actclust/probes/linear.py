"""Linear probes and control tasks: what a supervised linear readout finds in one layer.

A probe is only evidence that a layer *encodes* a property if it beats two baselines:

* the **majority baseline**, predicting the most common training label for everything;
* the **control task** of Hewitt & Liang (2019, "Designing and Interpreting Probes with
  Control Tasks"): every *type* (a token string, a word, a template) gets a random label,
  the same for all its occurrences. A probe that scores well on the control task can
  memorise types, so its accuracy on the real task says less about the representation.
  **Selectivity** = probe accuracy - control accuracy.

Splits are *grouped*: rows of one document (or template) never sit on both sides of a
train/test split or of a cross-validation fold, because rows of one group share features
(position, neighbouring words, the sentence frame) that a probe can use to recognise the
group instead of the property.

:func:`probe_scores` gives the numbers the comparison table records for one (layer, label).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(["a", "b"], 60)
    >>> X = rng.normal(size=(120, 4)) + (y == "b")[:, None] * 3.0
    >>> docs = np.arange(120) // 4                      # 30 documents of 4 rows
    >>> scores = probe_scores(X, y, groups=docs)
    >>> scores["probe_accuracy"] > 0.9, scores["selectivity"] > 0.3
    (True, True)
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

from .._util.codes import factorize
from ..errors import ActclustError

__all__ = ["LinearProbe", "ProbeInputError", "grouped_split", "control_labels", "probe_scores"]


# --------------------------------------------------------------------------- inputs

class ProbeInputError(ActclustError, ValueError):
    """Bad input to a probe: an :class:`ActclustError` that is also a ``ValueError``.

    It is a ``ValueError`` so scikit-learn tools (``GridSearchCV``, ``check_estimator``)
    see the kind of error they expect; the CLI prints it like any ``ActclustError``.

    Example:
        >>> import numpy as np
        >>> try:
        ...     LinearProbe(C=1.0).fit(np.array([[0.0], [np.nan], [1.0]]), [0, 1, 1])
        ... except ProbeInputError as err:
        ...     print(str(err).split(";")[0])
        X has 1 of 3 rows with NaN or inf values (first at row 1)
    """


def _as_features(X, what: str = "X") -> np.ndarray:
    """X (array, torch tensor, store layer view, list) as a finite 2-D float array."""
    if hasattr(X, "detach") and hasattr(X, "cpu"):  # a torch tensor, on any device
        X = X.detach().cpu()
        if X.dtype.is_floating_point and X.dtype.itemsize < 4:  # numpy has no bfloat16
            X = X.float()
        X = X.numpy()
    elif not sp.issparse(X):
        X = np.asarray(X)  # store layer views, memory maps, lists
    if not sp.issparse(X) and X.ndim == 2 and X.dtype.kind == "f":
        finite = np.isfinite(X).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise ProbeInputError(
                f"{what} has {len(bad)} of {len(X)} rows with NaN or inf values (first at "
                f"row {bad[0]}); drop or fill those rows before probing")
    try:  # scikit-learn's own checks and messages for the rest (1-D, sparse, strings, empty)
        return check_array(X, dtype=(np.float64, np.float32), input_name=what)
    except ValueError as err:  # a TypeError (e.g. a dict in X) stays what it is
        raise ProbeInputError(str(err)) from None


def _as_labels(y, n_rows: int, what: str = "y") -> np.ndarray:
    """Labels (array, list, Series, torch tensor) as a 1-D array of ``n_rows`` values."""
    if y is None:
        raise ProbeInputError("LinearProbe requires y to be passed, but the target y is None")
    if hasattr(y, "detach") and hasattr(y, "cpu"):
        y = y.detach().cpu().numpy()
    try:
        y = column_or_1d(np.asarray(y), warn=True)
    except ValueError as err:
        raise ProbeInputError(f"{what}: {err}") from None
    if len(y) != n_rows:
        raise ProbeInputError(f"{what} has {len(y)} values but X has {n_rows} rows")
    missing = pd.isna(y)
    if missing.any():
        raise ProbeInputError(f"{what} has {int(missing.sum())} missing values (NaN/None); "
                              f"drop those rows, e.g. X[mask], {what}[mask]")
    return y


def _check_two_classes(y: np.ndarray, where: str = "y") -> None:
    classes = pd.unique(y)
    if len(classes) < 2:
        shown = repr(classes[0]) if len(classes) else "none"
        raise ProbeInputError(f"{where} has only one class ({shown}); a probe needs labels "
                              f"of at least two classes")


def _fitted_features(probe, X, fitted_attribute: str) -> np.ndarray:
    """``X`` checked for a fitted probe: features as in :func:`_as_features`, as many as
    the probe was fitted on."""
    check_is_fitted(probe, fitted_attribute)
    X = _as_features(X)
    if X.shape[1] != probe.n_features_in_:
        raise ProbeInputError(f"X has {X.shape[1]} features, but {type(probe).__name__} is "
                              f"expecting {probe.n_features_in_} features as input")
    return X


def _group_codes(groups, n_rows: int, what: str = "groups") -> np.ndarray:
    """Integer codes 0..k-1 for any hashable group values (strings, ints, mixed)."""
    values = _as_labels(groups, n_rows, what)
    return factorize(values)[0]


# --------------------------------------------------------------------------- the probe

class LinearProbe(ClassifierMixin, BaseEstimator):
    """A linear probe: standardise, then multinomial logistic regression.

    When ``C`` is None the inverse regularisation strength is chosen by ``cv``-fold
    cross-validation over ``Cs`` (accuracy; a tie goes to the first of ``Cs``, so list
    them from the strongest regularisation up). If :meth:`fit` gets ``groups`` the folds are
    grouped (:class:`~sklearn.model_selection.GroupKFold`): rows of one document or
    template never sit on both sides of a fold, so the chosen ``C`` is not rewarded for
    recognising documents. Without groups the folds are stratified and shuffled.

    Args:
        C: inverse regularisation strength; None picks it from ``Cs`` by cross-validation.
        Cs: candidate values of ``C``.
        cv: number of folds (fewer when there are fewer groups, or fewer rows per class).
        max_iter: iterations of the lbfgs solver.
        standardize: scale every feature to zero mean and unit variance first
            (constant features are left at zero, not divided by zero).
        random_state: seeds the shuffled folds (ungrouped cross-validation).

    Attributes:
        classes_: the labels, sorted.
        C_: the ``C`` used (chosen or given).
        cv_scores_: mean cross-validated accuracy for each of ``Cs`` (None when ``C`` is set).
        coef_: weights in the *input* space, ``(n_classes, n_features)`` or
            ``(1, n_features)`` for two classes: ``X @ coef_.T + intercept_`` equals
            :meth:`decision_function`, so a row of ``coef_`` is a direction in activation
            space, comparable with cluster centroids.
        intercept_: the matching intercepts.
        n_features_in_: number of features seen in :meth:`fit`.
        n_iter_: solver iterations of the final fit.
        pipeline_: the fitted scikit-learn Pipeline (``scale`` -> ``logreg``).

    ``X`` may be a numpy array, a torch tensor or a store layer view.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> y = np.repeat([0, 1, 2], 20)
        >>> X = rng.normal(size=(60, 5)) + np.eye(5)[y] * 4.0
        >>> probe = LinearProbe(Cs=(0.1, 1.0), cv=3).fit(X, y, groups=np.arange(60) // 3)
        >>> probe.score(X, y), probe.C_ in (0.1, 1.0), probe.coef_.shape
        (1.0, True, (3, 5))
    """

    _parameter_constraints: dict = {
        "C": [Interval(Real, 0, None, closed="neither"), None],
        "Cs": ["array-like"],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "standardize": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(self, C: Optional[float] = None, Cs=(0.01, 0.1, 1, 10), cv: int = 5,
                 max_iter: int = 1000, standardize: bool = True, random_state=0):
        self.C = C
        self.Cs = Cs
        self.cv = cv
        self.max_iter = max_iter
        self.standardize = standardize
        self.random_state = random_state

    def _make_pipeline(self, C: float) -> Pipeline:
        scale = StandardScaler() if self.standardize else "passthrough"
        logreg = LogisticRegression(C=C, max_iter=self.max_iter,
                                    random_state=self.random_state)
        return Pipeline([("scale", scale), ("logreg", logreg)])

    def _folds(self, y: np.ndarray, groups) -> list:
        """The cross-validation folds, as a list of (train, test) row indices."""
        y_codes, _ = pd.factorize(y)  # any label type: strings, ints stored as objects
        dummy = np.zeros((len(y), 1))
        if groups is not None:
            codes = _group_codes(groups, len(y))
            n_groups = int(codes.max()) + 1
            if n_groups < 2:
                raise ProbeInputError("groups has only one group; grouped cross-validation "
                                      "needs at least two (or set C to skip it)")
            splitter = GroupKFold(n_splits=min(self.cv, n_groups))
            return list(splitter.split(dummy, y_codes, codes))
        smallest = int(np.bincount(y_codes).min())
        if smallest >= 2:
            splitter = StratifiedKFold(n_splits=min(self.cv, smallest), shuffle=True,
                                       random_state=self.random_state)
        else:  # a class with a single row cannot be stratified: plain shuffled folds
            splitter = KFold(n_splits=min(self.cv, len(y)), shuffle=True,
                             random_state=self.random_state)
        return list(splitter.split(dummy, y_codes))

    def fit(self, X, y, groups=None):
        """Fit the probe; ``groups`` (one id per row) makes the C search's folds grouped.

        ``groups`` is only used to choose ``C``; with ``C`` set it is ignored.

        Example:
            >>> import numpy as np
            >>> X = np.array([[0.0], [0.1], [1.0], [1.1]])
            >>> LinearProbe(C=10.0).fit(X, ["no", "no", "yes", "yes"]).predict([[0.9]])
            array(['yes'], dtype='<U3')
        """
        self._validate_params()
        X = _as_features(X)
        y = _as_labels(y, len(X))
        _check_two_classes(y)
        Cs = [float(c) for c in np.atleast_1d(np.asarray(self.Cs, dtype=float))]
        if self.C is None and (not Cs or min(Cs) <= 0):
            raise ProbeInputError(f"Cs must be a non-empty list of positive values, got "
                                  f"{self.Cs!r}")
        if self.C is not None:
            self.pipeline_ = self._make_pipeline(float(self.C)).fit(X, y)
            self.C_ = float(self.C)
            self.cv_scores_ = None
        else:
            search = GridSearchCV(self._make_pipeline(Cs[0]), {"logreg__C": Cs},
                                  scoring="accuracy", cv=self._folds(y, groups), refit=True)
            search.fit(X, y)
            self.pipeline_ = search.best_estimator_
            self.C_ = float(search.best_params_["logreg__C"])
            self.cv_scores_ = np.asarray(search.cv_results_["mean_test_score"], dtype=float)
        logreg = self.pipeline_.named_steps["logreg"]
        self.classes_ = logreg.classes_
        self.n_features_in_ = X.shape[1]
        self.n_iter_ = logreg.n_iter_
        coef, intercept = logreg.coef_, logreg.intercept_
        if self.standardize:  # fold the scaler into the weights: input-space directions
            scaler = self.pipeline_.named_steps["scale"]
            coef = coef / scaler.scale_
            intercept = intercept - coef @ scaler.mean_
        self.coef_, self.intercept_ = coef, intercept
        return self

    def _checked(self, X) -> np.ndarray:
        return _fitted_features(self, X, "pipeline_")

    def predict(self, X) -> np.ndarray:
        """The predicted label of every row.

        Example:
            >>> import numpy as np
            >>> X = np.array([[-2.0], [-1.0], [1.0], [2.0]])
            >>> probe = LinearProbe(C=1.0).fit(X, [0, 0, 1, 1])
            >>> probe.predict(np.array([[-3.0], [3.0]]))
            array([0, 1])
        """
        X = self._checked(X)
        return self.pipeline_.predict(X)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, one column per entry of ``classes_``.

        Example:
            >>> import numpy as np
            >>> X = np.array([[-2.0], [-1.0], [1.0], [2.0]])
            >>> probe = LinearProbe(C=1.0).fit(X, [0, 0, 1, 1])
            >>> probe.predict_proba(np.array([[0.0]])).round(2)
            array([[0.5, 0.5]])
        """
        X = self._checked(X)
        return self.pipeline_.predict_proba(X)

    def decision_function(self, X) -> np.ndarray:
        """Logits: ``X @ coef_.T + intercept_`` (one column for two classes).

        Example:
            >>> import numpy as np
            >>> X = np.array([[-2.0], [-1.0], [1.0], [2.0]])
            >>> probe = LinearProbe(C=1.0).fit(X, [0, 0, 1, 1])
            >>> logits = X @ probe.coef_[0] + probe.intercept_
            >>> bool(np.allclose(probe.decision_function(X), logits))
            True
        """
        X = self._checked(X)
        return self.pipeline_.decision_function(X)


# --------------------------------------------------------------------------- splits and controls

def grouped_split(groups, test_size: float = 0.25, random_state=0):
    """Row indices ``(train_idx, test_idx)`` such that no group is on both sides.

    ``test_size`` is the fraction of *groups* (not rows) held out, rounded up to at least
    one group; each side keeps at least one group.

    Example:
        >>> docs = [0, 0, 1, 1, 2, 2, 3, 3]
        >>> train, test = grouped_split(docs, test_size=0.25)
        >>> len(test), set(docs[i] for i in train) & set(docs[i] for i in test)
        (2, set())
    """
    codes = _group_codes(groups, len(groups))
    test = held_out_rows(codes, test_size, random_state)
    return np.flatnonzero(~test), np.flatnonzero(test)


def held_out_rows(codes: np.ndarray, test_size: float, random_state=0) -> np.ndarray:
    """:func:`grouped_split` on group codes ``0..k-1``, as a boolean mask of the test rows.

    It makes GroupShuffleSplit's own draw (a permutation of the groups, the first
    ``n_test`` held out) without its per-row intermediate arrays, so ten million rows
    cost a byte each.
    """
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    if n_groups < 2:
        raise ProbeInputError(f"grouped_split needs at least 2 groups, got {n_groups}")
    if not 0 < test_size < 1:
        raise ProbeInputError(f"test_size must be between 0 and 1, got {test_size}")
    n_test = min(max(int(np.ceil(test_size * n_groups)), 1), n_groups - 1)
    held_out = np.zeros(n_groups, bool)
    held_out[check_random_state(random_state).permutation(n_groups)[:n_test]] = True
    return held_out[codes]


def control_labels(y, groups_or_types, random_state=0) -> np.ndarray:
    """Control-task labels (Hewitt & Liang, 2019): one random label per type.

    Every distinct value of ``groups_or_types`` (a token string, a word, a template, a
    document) is given a label drawn independently from the empirical label distribution
    of ``y`` (label frequencies over rows), and every row of that type carries it. The
    control task so keeps the type structure of the data (rows of one type agree, just as
    a word's part of speech rarely changes) but has no relation to the property itself:
    a probe can only solve it by memorising types. The row-level label distribution is
    kept approximately (exactly in expectation; closer with more types).

    With ``groups_or_types=None`` every row is its own type; the control is then a random
    permutation of ``y``, which keeps the label distribution exactly.

    Example:
        >>> y = ["N", "V", "N", "N", "V", "N"]
        >>> words = ["cat", "run", "cat", "dog", "run", "dog"]
        >>> ctrl = control_labels(y, words, random_state=1)
        >>> ctrl[0] == ctrl[2], ctrl[1] == ctrl[4], set(ctrl) <= {"N", "V"}
        (True, True, True)
    """
    y = _as_labels(y, len(y))
    if groups_or_types is None:
        return y[np.random.default_rng(random_state).permutation(len(y))]
    codes = _group_codes(groups_or_types, len(y), "groups_or_types")
    label_codes, labels = factorize(y)
    out = np.asarray(labels)[control_codes(label_codes, len(labels), codes, random_state)]
    return out.astype(y.dtype, copy=False)


def control_codes(label_codes: np.ndarray, n_labels: int, type_codes: np.ndarray,
                  random_state=0) -> np.ndarray:
    """:func:`control_labels` on codes: one label code per type, drawn from the label
    frequencies of the rows with a known label (code >= 0), spread to every row."""
    rng = np.random.default_rng(random_state)
    counts = np.bincount(label_codes[label_codes >= 0], minlength=n_labels)
    n_types = int(type_codes.max()) + 1 if len(type_codes) else 0
    per_type = rng.choice(n_labels, size=n_types, p=counts / counts.sum())
    return per_type[type_codes].astype(label_codes.dtype, copy=False)


# --------------------------------------------------------------------------- the table row

def probe_scores(X, y, groups=None, types=None, random_state=0, test_size: float = 0.25,
                 probe: Optional[LinearProbe] = None) -> dict:
    """Probe, control task and baseline on a grouped train/test split of one layer.

    1. Split rows with :func:`grouped_split` on ``groups`` (each row its own group when
       None, i.e. a plain random split).
    2. Fit a :class:`LinearProbe` (a clone of ``probe`` if given) on the training rows,
       choosing ``C`` by cross-validation grouped by ``groups``; score it on the test rows.
    3. Build control labels with :func:`control_labels` from ``types`` (defaulting to
       ``groups``; if both are None, from the rows themselves, i.e. the control labels are
       simply *shuffled labels*), fit the same probe with the same ``C`` on them, score it
       on the test rows' control labels.

    Note that when the types are the groups (the default), no test type was seen in
    training, so the control probe has nothing to memorise and cannot beat chance by
    construction. The control measures memorisation capacity best when types cross the
    split, e.g. ``types`` = the token string and ``groups`` = the document.

    Returns:
        ``{"probe_accuracy", "control_accuracy", "selectivity" (probe - control),
        "majority_baseline" (test accuracy of the most common training label), "C",
        "n_train", "n_test"}``.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(80, 3))
        >>> y = np.where(X[:, 0] > 0, "pos", "neg")
        >>> s = probe_scores(X, y, groups=np.arange(80) // 4)
        >>> s["n_train"] + s["n_test"], s["probe_accuracy"] > s["majority_baseline"]
        (80, True)
    """
    X = _as_features(X)
    y = _as_labels(y, len(X))
    _check_two_classes(y)
    row_groups = _group_codes(groups, len(X)) if groups is not None else np.arange(len(X))
    train, test = grouped_split(row_groups, test_size=test_size, random_state=random_state)
    _check_two_classes(y[train], "the training split")

    template = LinearProbe(random_state=random_state) if probe is None else probe
    model = clone(template).fit(X[train], y[train],
                                groups=row_groups[train] if groups is not None else None)
    probe_acc = float(model.score(X[test], y[test]))

    ctrl_types = types if types is not None else groups
    ctrl = control_labels(y, ctrl_types, random_state=random_state)
    if len(pd.unique(ctrl[train])) < 2:
        control_acc = float(np.mean(ctrl[test] == ctrl[train][0]))  # nothing to learn
    else:
        control = clone(template).set_params(C=model.C_).fit(X[train], ctrl[train])
        control_acc = float(control.score(X[test], ctrl[test]))

    majority = pd.Series(y[train]).value_counts().index[0]
    return {
        "probe_accuracy": probe_acc,
        "control_accuracy": control_acc,
        "selectivity": probe_acc - control_acc,
        "majority_baseline": float(np.mean(y[test] == majority)),
        "C": float(model.C_),
        "n_train": int(len(train)),
        "n_test": int(len(test)),
    }
