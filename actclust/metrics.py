"""Scores that compare a clustering with ground-truth labels, and a probe's scores with
binary labels.

Every function takes label array-likes (lists, numpy arrays, pandas Series, CPU tensors) of
any hashable labels: ints, strings, bools, even a mix. Rows whose ``labels_true`` is missing
(``None``, ``NaN``, ``pd.NA``) are *unlabelled*: they are dropped, together with the matching
predictions, before anything is counted, so a label column that covers only some rows of a
store can be scored as it is. Predicted labels must all be present.

Labels are sorted wherever they are listed; labels of mixed types that Python cannot compare
sort by type name, then by text.

The public functions check their input once and hand integer codes to the private cores, so
:func:`cluster_scores` encodes and counts the rows once for the whole set.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm

from ._util.codes import factorize
from .errors import ActclustError

__all__ = [
    "contingency", "cluster_accuracy", "cluster_matching", "nmi", "ari", "purity",
    "v_measure", "homogeneity_completeness_v_measure", "auroc", "cluster_scores",
]

NMI_AVERAGES = ("arithmetic", "geometric", "min", "max")


class _Encoded(NamedTuple):
    true: np.ndarray      # int codes into ``classes``
    pred: np.ndarray      # int codes into ``clusters``
    classes: list
    clusters: list


# ---------------------------------------------------------------- input checking


def _as_1d(values, name: str) -> np.ndarray:
    if isinstance(values, (str, bytes)):
        raise ActclustError(f"{name} must be a sequence of labels, not a single string")
    if isinstance(values, np.ndarray) or hasattr(values, "__array__"):
        try:
            arr = np.asarray(values)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ActclustError(f"{name} could not be read as an array: {err}") from err
    else:
        try:
            items = list(values)
        except TypeError:
            raise ActclustError(
                f"{name} must be a sequence of labels, got {type(values).__name__}") from None
        # An object array keeps every label as given: np.asarray([1, "a"]) would turn 1
        # into "1", and a list of tuples into a 2-D array.
        arr = np.fromiter(items, dtype=object, count=len(items))
    if arr.ndim != 1:
        raise ActclustError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _check_pair(labels_true, other, other_name: str):
    """Both as 1-D arrays of equal length, rows with a missing true label dropped."""
    true = _as_1d(labels_true, "labels_true")
    other = _as_1d(other, other_name)
    if len(true) != len(other):
        raise ActclustError(
            f"labels_true has {len(true)} rows but {other_name} has {len(other)}; "
            "they must be the same length")
    if len(true) == 0:
        raise ActclustError(f"labels_true and {other_name} are empty: nothing to score")
    labelled = ~pd.isna(true)
    if not labelled.any():
        raise ActclustError(
            f"all {len(true)} rows of labels_true are missing (NaN/None): nothing to score")
    if not labelled.all():
        true, other = true[labelled], other[labelled]
    return true, other


def _sorted_order(uniques: list) -> list:
    try:
        return sorted(range(len(uniques)), key=uniques.__getitem__)
    except TypeError:
        return sorted(range(len(uniques)),
                      key=lambda i: (type(uniques[i]).__name__, str(uniques[i])))


def _encode(values: np.ndarray):
    """Integer codes and the sorted distinct labels they index."""
    # factorize hashes instead of sorting, so it is fast on millions of token rows and
    # works on object arrays of mixed types; only the few distinct labels get sorted. It
    # codes a chunk at a time: pandas sizes its hash table by the rows, not the labels.
    codes, uniques = factorize(values)
    uniques = uniques.tolist()   # numpy scalars -> Python scalars, for dict keys and printing
    order = _sorted_order(uniques)
    rank = np.empty(len(order), dtype=codes.dtype)
    rank[order] = np.arange(len(order))
    return rank[codes], [uniques[i] for i in order]


def _prepare(labels_true, labels_pred) -> _Encoded:
    true, pred = _check_pair(labels_true, labels_pred, "labels_pred")
    n_missing = int(pd.isna(pred).sum())
    if n_missing:
        raise ActclustError(
            f"labels_pred has {n_missing} missing values (NaN/None) on labelled rows; "
            "every row needs a cluster (drop those rows from both inputs to score the rest)")
    true_codes, classes = _encode(true)
    pred_codes, clusters = _encode(pred)
    return _Encoded(true_codes, pred_codes, classes, clusters)


# ---------------------------------------------------------------- cores on codes


def _table(enc: _Encoded) -> np.ndarray:
    """Counts, clusters x classes."""
    n_classes = len(enc.classes)
    cells = np.bincount(enc.pred * n_classes + enc.true,
                        minlength=len(enc.clusters) * n_classes)
    return cells.reshape(len(enc.clusters), n_classes)


def _matching(table: np.ndarray):
    # maximize=True on the counts directly; a rectangular table matches min(k, c) pairs,
    # which is what lets extra clusters (or extra classes) stay unmatched.
    return linear_sum_assignment(table, maximize=True)


def _accuracy(table: np.ndarray) -> float:
    rows, cols = _matching(table)
    return float(table[rows, cols].sum() / table.sum())


def _purity(table: np.ndarray) -> float:
    return float(table.max(axis=1).sum() / table.sum())


# NMI, ARI and the V-measure are functions of the contingency table alone: computed from
# it, as scikit-learn computes them, they cost nothing per row (scikit-learn's own
# functions rebuild the table with a sort of every row, each: 10 s and 650 MB for ten
# million token rows).

def _entropy(counts: np.ndarray) -> float:
    counts = counts[counts > 0].astype(np.float64)
    if counts.size <= 1:
        return 0.0
    total = counts.sum()
    return float(-np.sum((counts / total) * (np.log(counts) - np.log(total))))


def _mutual_info(table: np.ndarray) -> float:
    return float(skm.mutual_info_score(None, None, contingency=table.astype(np.float64)))


def _nmi(table: np.ndarray, average_method: str) -> float:
    n_clusters, n_classes = table.shape
    if n_classes == n_clusters == 1 or n_classes == n_clusters == 0:
        return 1.0  # neither labelling splits the rows: a perfect match, as scikit-learn
    mi = _mutual_info(table)
    if mi == 0:
        return 0.0
    h_true, h_pred = _entropy(table.sum(axis=0)), _entropy(table.sum(axis=1))
    normalizer = {"arithmetic": (h_true + h_pred) / 2, "geometric": np.sqrt(h_true * h_pred),
                  "min": min(h_true, h_pred), "max": max(h_true, h_pred)}[average_method]
    return float(mi / normalizer)


def _ari(table: np.ndarray) -> float:
    cont = table.T.astype(np.int64)  # classes x clusters, as scikit-learn counts pairs
    n = int(cont.sum())
    per_class, per_cluster = cont.sum(axis=1), cont.sum(axis=0)
    squares = int((cont.astype(object) ** 2).sum())  # Python ints: no overflow
    fp = int((cont @ per_cluster).astype(object).sum()) - squares
    fn = int((cont.T @ per_class).astype(object).sum()) - squares
    tp = squares - n
    tn = n * n - fp - fn - squares
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def _hcv(table: np.ndarray) -> tuple[float, float, float]:
    if table.sum() == 0:
        return 1.0, 1.0, 1.0
    h_true, h_pred = _entropy(table.sum(axis=0)), _entropy(table.sum(axis=1))
    mi = _mutual_info(table)
    homogeneity = mi / h_true if h_true else 1.0
    completeness = mi / h_pred if h_pred else 1.0
    if homogeneity + completeness == 0.0:
        return float(homogeneity), float(completeness), 0.0
    v = 2 * homogeneity * completeness / (homogeneity + completeness)
    return float(homogeneity), float(completeness), float(v)


# ---------------------------------------------------------------- public API


def contingency(labels_true, labels_pred) -> pd.DataFrame:
    """Counts of rows per (predicted cluster, true class).

    Rows are the predicted clusters, columns the true classes, both sorted. Rows whose
    ``labels_true`` is missing (NaN/None) are dropped.

    Example:
        >>> contingency(["cat", "cat", "dog", "dog", None], [1, 0, 0, 0, 1])
        class    cat  dog
        cluster
        0          1    2
        1          1    0
    """
    enc = _prepare(labels_true, labels_pred)
    return pd.DataFrame(_table(enc),
                        index=pd.Index(enc.clusters, name="cluster"),
                        columns=pd.Index(enc.classes, name="class"))


def cluster_accuracy(labels_true, labels_pred) -> float:
    """Fraction of rows on the best one-to-one matching of clusters to classes.

    The matching maximizes the matched counts (the Hungarian algorithm on the contingency
    table, see :func:`cluster_matching`). With more clusters than classes the extra clusters
    stay unmatched and all their rows count as errors; with fewer, the unmatched classes'
    rows do. Rows whose ``labels_true`` is missing (NaN/None) are dropped.

    Example:
        >>> cluster_accuracy(["a", "a", "b", "b", "c"], [2, 2, 0, 0, 0])
        0.8
    """
    return _accuracy(_table(_prepare(labels_true, labels_pred)))


def cluster_matching(labels_true, labels_pred) -> dict:
    """The matching :func:`cluster_accuracy` scores: ``{cluster: class}``.

    Keys are in sorted cluster order. Clusters left unmatched (more clusters than classes)
    are absent; with at most as many clusters as classes every cluster is present, even one
    whose matched class it shares no rows with. Rows whose ``labels_true`` is missing
    (NaN/None) are dropped.

    Example:
        >>> cluster_matching(["a", "a", "b", "b", "c"], [2, 2, 0, 0, 0])
        {0: 'b', 2: 'a'}
    """
    enc = _prepare(labels_true, labels_pred)
    rows, cols = _matching(_table(enc))
    return {enc.clusters[r]: enc.classes[c] for r, c in zip(rows, cols)}


def nmi(labels_true, labels_pred, average_method: str = "arithmetic") -> float:
    """Normalized mutual information, ``I(true; pred) / mean(H(true), H(pred))``.

    The default ``average_method="arithmetic"`` divides by the arithmetic mean of the two
    entropies: scikit-learn's default and what the DEC and IIC papers report. ``"geometric"``,
    ``"min"`` and ``"max"`` are the other normalizations. Computed by scikit-learn; two
    single-label partitions score 1.0. Rows whose ``labels_true`` is missing (NaN/None) are
    dropped.

    Example:
        >>> nmi(["x", "x", "y", "y"], [1, 1, 0, 0])
        1.0
    """
    if average_method not in NMI_AVERAGES:
        raise ActclustError(f"unknown average_method {average_method!r}; "
                            f"choose one of {', '.join(NMI_AVERAGES)}")
    return _nmi(_table(_prepare(labels_true, labels_pred)), average_method)


def ari(labels_true, labels_pred) -> float:
    """Adjusted Rand index (scikit-learn): 1 for identical partitions, about 0 for random.

    It can be negative, when the partitions agree less than chance. Rows whose
    ``labels_true`` is missing (NaN/None) are dropped.

    Example:
        >>> ari([0, 0, 1, 1], ["b", "b", "a", "a"])
        1.0
    """
    return _ari(_table(_prepare(labels_true, labels_pred)))


def purity(labels_true, labels_pred) -> float:
    """Fraction of rows whose class is their cluster's majority class.

    Each cluster votes its majority class, and several clusters may vote the same one, so
    purity rises trivially with the number of clusters (one cluster per row scores 1.0);
    compare it only between clusterings with the same number of clusters, or use
    :func:`cluster_accuracy`. Rows whose ``labels_true`` is missing (NaN/None) are dropped.

    Example:
        >>> purity(["a", "a", "b", "b", "c"], [2, 2, 0, 0, 0])
        0.8
        >>> purity(["a", "a", "b", "b", "c"], [0, 1, 2, 3, 4])
        1.0
    """
    return _purity(_table(_prepare(labels_true, labels_pred)))


def homogeneity_completeness_v_measure(labels_true, labels_pred) -> tuple[float, float, float]:
    """Homogeneity, completeness and V-measure (scikit-learn), in that order.

    Homogeneity is 1 when each cluster holds a single class, completeness is 1 when each
    class sits in a single cluster, and the V-measure is their harmonic mean (equal to
    :func:`nmi` with the arithmetic average). Rows whose ``labels_true`` is missing
    (NaN/None) are dropped.

    Example:
        >>> h, c, v = homogeneity_completeness_v_measure(["a", "a", "b", "b"], [0, 1, 2, 3])
        >>> round(h, 4), round(c, 4), round(v, 4)
        (1.0, 0.5, 0.6667)
    """
    return _hcv(_table(_prepare(labels_true, labels_pred)))


def v_measure(labels_true, labels_pred) -> float:
    """V-measure: the harmonic mean of homogeneity and completeness.

    See :func:`homogeneity_completeness_v_measure` for all three. Rows whose
    ``labels_true`` is missing (NaN/None) are dropped.

    Example:
        >>> round(v_measure(["a", "a", "b", "b"], [0, 1, 2, 3]), 4)
        0.6667
    """
    return _hcv(_table(_prepare(labels_true, labels_pred)))[2]


def auroc(labels_true, scores, pos_label=None) -> float:
    """Area under the ROC curve of ``scores`` for a binary label.

    ``labels_true`` must hold exactly two classes (any hashable labels); higher scores
    should mean ``pos_label``, which defaults to the class that sorts last (1 of 0/1, True
    of False, "yes" of "no"). Ties count half. Rows whose ``labels_true`` is missing
    (NaN/None) are dropped; ``scores`` must be finite numbers.

    Example:
        >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
        >>> auroc(["no", "no", "yes", "yes"], [0.1, 0.4, 0.35, 0.8], pos_label="no")
        0.25
    """
    true, scores = _check_pair(labels_true, scores, "scores")
    try:
        scores = scores.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise ActclustError(f"scores must be numbers: {err}") from None
    n_bad = int((~np.isfinite(scores)).sum())
    if n_bad:
        raise ActclustError(f"scores has {n_bad} non-finite values (NaN/inf) on labelled rows")
    codes, classes = _encode(true)
    if len(classes) != 2:
        shown = ", ".join(map(repr, classes[:10])) + (", ..." if len(classes) > 10 else "")
        why = ("AUROC needs both classes present" if len(classes) == 1
               else "AUROC needs a binary label")
        raise ActclustError(f"labels_true has {len(classes)} classes ({shown}); {why}")
    if pos_label is None:
        positive = codes == 1
    elif pos_label in classes:
        positive = codes == classes.index(pos_label)
    else:
        raise ActclustError(f"pos_label {pos_label!r} is not one of the classes "
                            f"{classes[0]!r}, {classes[1]!r}")
    return float(skm.roc_auc_score(positive, scores))


def cluster_scores(labels_true, labels_pred) -> dict[str, float]:
    """The scores the comparison table reports: accuracy, nmi, ari, purity, v_measure.

    Same as calling :func:`cluster_accuracy`, :func:`nmi` (arithmetic), :func:`ari`,
    :func:`purity` and :func:`v_measure`, but the labels are checked and counted once. Rows
    whose ``labels_true`` is missing (NaN/None) are dropped.

    Example:
        >>> cluster_scores(["a", "a", "b", "b"], [1, 1, 0, 0])
        {'accuracy': 1.0, 'nmi': 1.0, 'ari': 1.0, 'purity': 1.0, 'v_measure': 1.0}
    """
    enc = _prepare(labels_true, labels_pred)
    table = _table(enc)
    return {
        "accuracy": _accuracy(table),
        "nmi": _nmi(table, "arithmetic"),
        "ari": _ari(table),
        "purity": _purity(table),
        "v_measure": _hcv(table)[2],
    }
