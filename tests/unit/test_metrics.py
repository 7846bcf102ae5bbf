"""Cluster and probe metrics against hand-computed values (never against scikit-learn
called again), plus invariances and the errors users see."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from actclust.errors import ActclustError
from actclust.metrics import (
    ari,
    auroc,
    cluster_accuracy,
    cluster_matching,
    cluster_scores,
    contingency,
    homogeneity_completeness_v_measure,
    nmi,
    purity,
    v_measure,
)

CLUSTER_METRICS = [cluster_accuracy, nmi, ari, purity, v_measure]


def labels_from_table(table, classes="ABC"):
    """Rows (true, pred) realizing a clusters x classes count table, shuffled."""
    true, pred = [], []
    for cluster, row in enumerate(table):
        for cls, count in zip(classes, row):
            true += [cls] * count
            pred += [cluster] * count
    order = np.random.default_rng(0).permutation(len(true))
    return [true[i] for i in order], [pred[i] for i in order]


# A table where taking the largest cell first (0->A, 5) loses: the best one-to-one
# matching is 0->B, 1->A, 2->C = 4 + 4 + 3 = 11 of 18.
GREEDY_LOSES = [[5, 4, 0],
                [4, 0, 1],
                [0, 1, 3]]


# ---------------------------------------------------------------- contingency


def test_contingency_counts_sorted_and_named():
    true, pred = labels_from_table(GREEDY_LOSES)
    table = contingency(true, pred)
    assert table.index.name == "cluster" and table.columns.name == "class"
    assert list(table.index) == [0, 1, 2] and list(table.columns) == ["A", "B", "C"]
    np.testing.assert_array_equal(table.to_numpy(), GREEDY_LOSES)


def test_contingency_sorts_unsorted_labels():
    table = contingency(["z", "a", "m"], [9, 3, 5])
    assert list(table.columns) == ["a", "m", "z"] and list(table.index) == [3, 5, 9]
    np.testing.assert_array_equal(table.to_numpy(), np.eye(3, dtype=int))


def test_contingency_mixed_label_types():
    table = contingency([1, "a", 1, "a"], [True, False, True, True])
    assert list(table.columns) == [1, "a"]       # int before str: sorted by type name
    assert list(table.index) == [False, True]
    np.testing.assert_array_equal(table.to_numpy(), [[0, 1], [2, 1]])


# ---------------------------------------------------------------- accuracy and matching


def test_accuracy_square_greedy_would_lose():
    true, pred = labels_from_table(GREEDY_LOSES)
    assert cluster_accuracy(true, pred) == pytest.approx(11 / 18)
    assert cluster_matching(true, pred) == {0: "B", 1: "A", 2: "C"}


def test_accuracy_more_clusters_than_classes():
    # Clusters 2 and 3 both hold class C; only one can be matched, the other's 2 rows are
    # errors: (3 + 3 + 2) / 10.
    true, pred = labels_from_table([[3, 0, 0], [0, 3, 0], [0, 0, 2], [0, 0, 2]])
    assert cluster_accuracy(true, pred) == pytest.approx(0.8)
    matching = cluster_matching(true, pred)
    assert len(matching) == 3 and matching[0] == "A" and matching[1] == "B"
    assert [c for c in (2, 3) if c in matching] in ([2], [3])
    assert matching.get(2, matching.get(3)) == "C"


def test_accuracy_fewer_clusters_than_classes():
    # 0->A (3) + 1->B (3) = 6 beats 0->A + 1->C (5) and 0->B + 1->C (4).
    true, pred = labels_from_table([[3, 2, 0], [0, 3, 2]])
    assert cluster_accuracy(true, pred) == pytest.approx(0.6)
    assert cluster_matching(true, pred) == {0: "A", 1: "B"}


def test_accuracy_single_cluster_is_majority_fraction():
    assert cluster_accuracy(list("AABBBC"), [0] * 6) == pytest.approx(3 / 6)


# ---------------------------------------------------------------- purity


def test_purity_by_hand():
    true, pred = labels_from_table(GREEDY_LOSES)
    assert purity(true, pred) == pytest.approx((5 + 4 + 3) / 18)


def test_purity_rises_trivially_with_more_clusters():
    true, pred = labels_from_table([[3, 0, 0], [0, 3, 0], [0, 0, 2], [0, 0, 2]])
    assert purity(true, pred) == 1.0
    assert purity(list("AABBC"), range(5)) == 1.0


# ---------------------------------------------------------------- information scores


def entropy(probs):
    return -sum(p * math.log(p) for p in probs if p > 0)


# true = [0, 0, 1, 1], pred = [0, 0, 0, 1]: joint cells (t0,p0)=1/2, (t1,p0)=1/4, (t1,p1)=1/4
SMALL_TRUE, SMALL_PRED = [0, 0, 1, 1], [0, 0, 0, 1]
H_TRUE = entropy([1 / 2, 1 / 2])
H_PRED = entropy([3 / 4, 1 / 4])
MI = (1 / 2 * math.log((1 / 2) / (1 / 2 * 3 / 4))
      + 1 / 4 * math.log((1 / 4) / (1 / 2 * 3 / 4))
      + 1 / 4 * math.log((1 / 4) / (1 / 2 * 1 / 4)))


@pytest.mark.parametrize("method, norm", [
    ("arithmetic", (H_TRUE + H_PRED) / 2),
    ("geometric", math.sqrt(H_TRUE * H_PRED)),
    ("min", min(H_TRUE, H_PRED)),
    ("max", max(H_TRUE, H_PRED)),
])
def test_nmi_from_entropies(method, norm):
    assert nmi(SMALL_TRUE, SMALL_PRED, average_method=method) == pytest.approx(MI / norm)


def test_nmi_default_is_arithmetic():
    assert nmi(SMALL_TRUE, SMALL_PRED) == pytest.approx(MI / ((H_TRUE + H_PRED) / 2))


def test_homogeneity_completeness_v_measure_by_hand():
    # H(true | pred): pred 0 (3/4 of rows) holds true 2:1; pred 1 is pure.
    h = 1 - (3 / 4 * entropy([2 / 3, 1 / 3])) / H_TRUE
    # H(pred | true): true 0 is all pred 0; true 1 splits 1:1.
    c = 1 - (1 / 2 * math.log(2)) / H_PRED
    v = 2 * h * c / (h + c)
    assert homogeneity_completeness_v_measure(SMALL_TRUE, SMALL_PRED) == pytest.approx((h, c, v))
    assert v_measure(SMALL_TRUE, SMALL_PRED) == pytest.approx(v)
    # V-measure is NMI with the arithmetic average.
    assert v == pytest.approx(MI / ((H_TRUE + H_PRED) / 2))


def test_ari_by_hand_is_zero():
    # sum C(n_ij, 2) = 1; sum C(a_i, 2) = 2; sum C(b_j, 2) = 3; C(4, 2) = 6
    # expected = 2 * 3 / 6 = 1, max = (2 + 3) / 2, ARI = (1 - 1) / (2.5 - 1) = 0
    assert ari(SMALL_TRUE, SMALL_PRED) == pytest.approx(0.0, abs=1e-12)


def test_ari_identical_partitions():
    labels = [0, 1, 2, 0, 1, 2, 2]
    assert ari(labels, labels) == 1.0


def test_ari_can_be_negative():
    # Every pair the truth joins, the clustering splits, and vice versa.
    assert ari([0, 0, 1, 1], [0, 1, 0, 1]) < 0


# ---------------------------------------------------------------- perfect, worst, invariance


def test_perfect_clustering_scores_one():
    true = ["cat"] * 3 + ["dog"] * 3 + ["eel"] * 2
    pred = [7] * 3 + [2] * 3 + [5] * 2
    for metric in CLUSTER_METRICS:
        assert metric(true, pred) == pytest.approx(1.0), metric.__name__


def test_uninformative_clustering():
    true = [0, 0, 1, 1, 2, 2]
    one_cluster = [0] * 6
    assert cluster_accuracy(true, one_cluster) == pytest.approx(1 / 3)
    assert purity(true, one_cluster) == pytest.approx(1 / 3)
    assert nmi(true, one_cluster) == pytest.approx(0.0, abs=1e-12)
    assert ari(true, one_cluster) == pytest.approx(0.0, abs=1e-12)
    assert v_measure(true, one_cluster) == pytest.approx(0.0, abs=1e-12)


def test_permutation_invariance():
    true, pred = labels_from_table(GREEDY_LOSES)
    renamed_pred = [{0: "k2", 1: "k0", 2: "k1"}[p] for p in pred]
    renamed_true = [{"A": 3, "B": 1, "C": 2}[t] for t in true]
    base = cluster_scores(true, pred)
    assert cluster_scores(renamed_true, renamed_pred) == pytest.approx(base)
    assert cluster_matching(renamed_true, renamed_pred) == {"k2": 1, "k0": 3, "k1": 2}


def test_row_order_invariance():
    true, pred = labels_from_table(GREEDY_LOSES)
    order = np.random.default_rng(1).permutation(len(true))
    shuffled = cluster_scores([true[i] for i in order], [pred[i] for i in order])
    assert shuffled == pytest.approx(cluster_scores(true, pred))


def test_string_and_bool_labels():
    assert cluster_accuracy(["x", "y", "y"], ["p", "q", "q"]) == 1.0
    assert cluster_accuracy([True, False, False], ["p", "q", "q"]) == 1.0


def test_array_likes_agree():
    true, pred = labels_from_table(GREEDY_LOSES)
    expected = cluster_scores(true, pred)
    assert cluster_scores(np.array(true), np.array(pred)) == pytest.approx(expected)
    assert cluster_scores(pd.Series(true, index=range(100, 118)),
                          pd.Series(pred).astype("category")) == pytest.approx(expected)
    assert cluster_scores(tuple(true), iter(pred)) == pytest.approx(expected)


def test_cluster_scores_keys_and_values():
    true, pred = labels_from_table(GREEDY_LOSES)
    scores = cluster_scores(true, pred)
    assert list(scores) == ["accuracy", "nmi", "ari", "purity", "v_measure"]
    assert all(type(v) is float for v in scores.values())
    assert scores == pytest.approx({
        "accuracy": cluster_accuracy(true, pred), "nmi": nmi(true, pred),
        "ari": ari(true, pred), "purity": purity(true, pred),
        "v_measure": v_measure(true, pred)})


# ---------------------------------------------------------------- unlabelled rows


@pytest.mark.parametrize("missing", [None, float("nan"), pd.NA])
def test_missing_true_labels_are_dropped(missing):
    true = ["A", missing, "A", "B", missing]
    pred = [0, 1, 0, 1, 0]
    assert contingency(true, pred).to_numpy().sum() == 3
    assert cluster_scores(true, pred) == cluster_scores(["A", "A", "B"], [0, 0, 1])


def test_missing_in_float_array_is_dropped():
    assert cluster_accuracy(np.array([0.0, np.nan, 1.0]), [0, 0, 1]) == 1.0


# ---------------------------------------------------------------- auroc


def test_auroc_by_hand():
    # Positive scores 0.35, 0.8 vs negative 0.1, 0.4: 3 of 4 pairs ranked right.
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], pos_label=0) == pytest.approx(0.25)


def test_auroc_positive_is_sorted_last():
    scores = [0.1, 0.4, 0.35, 0.8]
    assert auroc(["no", "no", "yes", "yes"], scores) == pytest.approx(0.75)
    assert auroc([False, False, True, True], scores) == pytest.approx(0.75)
    assert auroc(["yes", "yes", "no", "no"], scores, pos_label="yes") == pytest.approx(0.25)


def test_auroc_ties_count_half():
    assert auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)


def test_auroc_drops_unlabelled_rows():
    assert auroc([0, None, 0, 1, np.nan, 1], [0.1, 9.0, 0.4, 0.35, -9.0, 0.8]) \
        == pytest.approx(0.75)


def test_auroc_errors():
    with pytest.raises(ActclustError, match=r"1 classes.*both classes"):
        auroc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ActclustError, match=r"3 classes \('a', 'b', 'c'\).*binary"):
        auroc(["a", "b", "c"], [0.1, 0.2, 0.3])
    with pytest.raises(ActclustError, match=r"pos_label 2 is not one of the classes 0, 1"):
        auroc([0, 1], [0.1, 0.2], pos_label=2)
    with pytest.raises(ActclustError, match=r"scores has 1 non-finite"):
        auroc([0, 1, 1], [0.1, np.nan, 0.3])
    with pytest.raises(ActclustError, match=r"scores must be numbers"):
        auroc([0, 1], ["low", "high"])
    with pytest.raises(ActclustError, match=r"labels_true has 2 rows but scores has 3"):
        auroc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ActclustError, match=r"one-dimensional.*\(2, 2\)"):
        auroc([0, 1], np.ones((2, 2)))


# ---------------------------------------------------------------- input errors


@pytest.mark.parametrize("metric", CLUSTER_METRICS + [contingency, cluster_matching,
                                                      cluster_scores])
def test_length_mismatch_names_both_lengths(metric):
    with pytest.raises(ActclustError, match=r"labels_true has 5 rows but labels_pred has 4"):
        metric([0, 1, 0, 1, 0], [0, 1, 0, 1])


@pytest.mark.parametrize("metric", CLUSTER_METRICS + [contingency, cluster_scores])
def test_empty_input(metric):
    with pytest.raises(ActclustError, match="empty"):
        metric([], [])


def test_all_rows_unlabelled():
    with pytest.raises(ActclustError, match=r"all 2 rows of labels_true are missing"):
        cluster_accuracy([None, np.nan], [0, 1])


def test_missing_prediction_is_an_error():
    with pytest.raises(ActclustError, match=r"labels_pred has 1 missing"):
        cluster_accuracy([0, 1, 1], [0, None, 1])
    # ... but not on a row that is dropped as unlabelled anyway.
    assert cluster_accuracy([0, None, 1], [0, None, 1]) == 1.0


def test_bad_shapes_and_types():
    with pytest.raises(ActclustError, match=r"labels_pred must be one-dimensional"):
        cluster_accuracy([0, 1], np.zeros((2, 1)))
    with pytest.raises(ActclustError, match=r"not a single string"):
        cluster_accuracy("abc", [0, 1, 2])
    with pytest.raises(ActclustError, match=r"labels_true must be a sequence.*int"):
        cluster_accuracy(3, [0])


def test_unknown_nmi_average():
    with pytest.raises(ActclustError, match=r"unknown average_method 'mean'.*arithmetic"):
        nmi([0, 1], [0, 1], average_method="mean")
