"""Linear probes, grouped splits and Hewitt & Liang control tasks."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from actclust.errors import ActclustError
from actclust.probes import (LinearProbe, ProbeInputError, control_labels, grouped_split,
                             probe_scores)


@pytest.fixture(autouse=True)
def one_blas_thread():
    """These problems are tiny: on a busy shared machine, extra BLAS threads only spin
    against each other (measured: the leak test took 2.6 s instead of 0.2 s)."""
    with threadpool_limits(1):
        yield


# A small C search: these tests are about the scores, not the search (which has its own).
FAST = LinearProbe(Cs=(0.1, 1.0), cv=3)


def separable(n_docs=40, rows_per_doc=5, dim=8, seed=0):
    """Three classes, each shifted 4 units along its own axis; rows grouped in documents."""
    rng = np.random.default_rng(seed)
    n = n_docs * rows_per_doc
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, dim))
    X[np.arange(n), y] += 4.0
    docs = np.repeat(np.arange(n_docs), rows_per_doc)
    return X, np.array(["det", "noun", "verb"])[y], docs


def group_offsets(n_groups=80, rows_per_group=4, dim=100, seed=0):
    """Each group has its own random offset and one label: a probe can tell the label of a
    group it has seen by recognising the group, but nothing carries over to new groups."""
    rng = np.random.default_rng(seed)
    offsets = rng.normal(size=(n_groups, dim))
    group_label = rng.permutation(np.arange(n_groups) % 2)
    groups = np.repeat(np.arange(n_groups), rows_per_group)
    X = offsets[groups] + 0.1 * rng.normal(size=(len(groups), dim))
    return X, group_label[groups], groups


# --------------------------------------------------------------------------- probe_scores

def test_separable_features_give_high_accuracy_and_selectivity():
    X, y, docs = separable()
    words = np.random.default_rng(1).integers(0, 15, len(y))  # types shared across docs
    s = probe_scores(X, y, groups=docs, types=words, probe=FAST)
    assert s["probe_accuracy"] >= 0.95
    assert s["control_accuracy"] <= 0.6  # X says nothing about the words
    assert s["selectivity"] >= 0.4
    assert s["probe_accuracy"] > s["majority_baseline"] + 0.4
    assert s["n_train"] + s["n_test"] == len(y) and s["C"] in (0.1, 1.0)


def test_random_features_are_at_chance_with_no_selectivity():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 10))
    y = rng.integers(0, 2, 400)
    s = probe_scores(X, y, groups=np.arange(400) // 4, probe=FAST)
    assert abs(s["probe_accuracy"] - 0.5) < 0.15
    assert abs(s["control_accuracy"] - 0.5) < 0.15
    assert abs(s["selectivity"]) < 0.2


def test_features_that_only_encode_the_type_give_no_selectivity():
    # Hewitt & Liang's point: if X identifies the word type and the label is a function of
    # the type, a probe scores high on the real task AND on the control task.
    rng = np.random.default_rng(0)
    n, n_types = 400, 20
    types = rng.integers(0, n_types, n)
    X = np.eye(n_types)[types] * 3.0 + 0.3 * rng.normal(size=(n, n_types))
    y = rng.permutation(np.arange(n_types) % 2)[types]
    s = probe_scores(X, y, groups=np.arange(n) // 5, types=types, probe=FAST)
    assert s["probe_accuracy"] >= 0.9 and s["control_accuracy"] >= 0.9
    assert abs(s["selectivity"]) < 0.1


def test_no_groups_no_types_means_a_random_split_and_shuffled_labels():
    X, y, _ = separable()
    s = probe_scores(X, y, probe=FAST)
    assert s["probe_accuracy"] >= 0.95
    assert s["control_accuracy"] < 0.6  # shuffled labels: nothing to learn
    assert s["n_test"] == 50


# --------------------------------------------------------------------------- leaks

def test_grouping_stops_the_probe_from_scoring_by_recognising_groups():
    X, y, groups = group_offsets()
    leaky = probe_scores(X, y, probe=FAST)                   # a group on both sides
    grouped = probe_scores(X, y, groups=groups, probe=FAST)  # whole groups held out
    assert leaky["probe_accuracy"] >= 0.9
    assert abs(grouped["probe_accuracy"] - 0.5) < 0.2
    # The same inside the C search: ungrouped folds reward recognising groups.
    cv_leaky = clone(FAST).fit(X, y).cv_scores_
    cv_grouped = clone(FAST).fit(X, y, groups=groups).cv_scores_
    assert cv_leaky.max() >= 0.9
    assert cv_grouped.max() < 0.7


def test_grouped_cv_folds_never_share_a_group(monkeypatch):
    seen = []
    import actclust.probes.linear as probes

    real = probes.GridSearchCV

    def spy(estimator, param_grid, **kwargs):
        seen.extend(kwargs["cv"])
        return real(estimator, param_grid, **kwargs)

    monkeypatch.setattr(probes, "GridSearchCV", spy)
    X, y, docs = separable(n_docs=12)
    LinearProbe(Cs=(1.0,), cv=4).fit(X, y, groups=docs)
    assert len(seen) == 4
    for train, test in seen:
        assert not set(docs[train]) & set(docs[test])


def test_grouped_split_never_shares_a_group():
    rng = np.random.default_rng(0)
    groups = np.array([f"doc{g}" for g in np.repeat(np.arange(30), rng.integers(1, 8, 30))])
    for seed in range(5):
        train, test = grouped_split(groups, test_size=0.25, random_state=seed)
        assert not set(groups[train]) & set(groups[test])
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(groups)))
        assert len(set(groups[test])) == 8  # ceil(0.25 * 30) groups
    a, b = grouped_split(groups, random_state=1), grouped_split(groups, random_state=1)
    assert np.array_equal(a[1], b[1])


# --------------------------------------------------------------------------- control labels

def test_control_labels_are_constant_within_a_type_and_keep_the_distribution():
    rng = np.random.default_rng(0)
    n = 6000
    y = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    types = rng.integers(0, 3000, n)
    ctrl = control_labels(y, types, random_state=0)
    per_type = pd.DataFrame({"t": types, "c": ctrl}).groupby("t")["c"]
    assert (per_type.nunique() == 1).all()
    assert per_type.first().nunique() == 3  # types get different labels
    share = pd.Series(ctrl).value_counts(normalize=True)
    assert abs(share["a"] - 0.5) < 0.04 and abs(share["b"] - 0.3) < 0.04
    assert abs(share["c"] - 0.2) < 0.04
    # no relation to the real label: agreement as for independent draws (.5²+.3²+.2²)
    assert abs(np.mean(ctrl == y) - 0.38) < 0.04
    assert ctrl.dtype == y.dtype
    assert np.array_equal(ctrl, control_labels(y, types, random_state=0))
    assert not np.array_equal(ctrl, control_labels(y, types, random_state=1))


def test_control_labels_without_types_shuffle_the_labels():
    y = np.repeat([0, 1, 2], [10, 20, 30])
    ctrl = control_labels(y, None, random_state=0)
    assert np.array_equal(np.sort(ctrl), y) and not np.array_equal(ctrl, y)


# --------------------------------------------------------------------------- the estimator

def test_torch_tensors_and_float16_give_the_same_probe():
    X, y, _ = separable()
    codes = pd.factorize(y, sort=True)[0]
    ref = LinearProbe(C=1.0).fit(X, codes)
    tensor = LinearProbe(C=1.0).fit(torch.tensor(X, dtype=torch.float64), torch.tensor(codes))
    assert np.allclose(ref.coef_, tensor.coef_)
    assert np.array_equal(tensor.predict(torch.tensor(X, dtype=torch.bfloat16)),
                          ref.predict(X.astype(np.float32)))  # bf16 rounding changes nothing here
    half = LinearProbe(C=1.0).fit(X.astype(np.float16), codes)
    assert half.score(X, codes) >= 0.95


def test_coef_is_in_input_space_and_constant_columns_are_fine():
    X, y, _ = separable()
    X = np.hstack([X, np.zeros((len(X), 1)), np.full((len(X), 1), 5.0)])
    probe = LinearProbe(C=1.0).fit(X, y)
    assert np.isfinite(probe.coef_).all() and np.allclose(probe.coef_[:, -2:], 0)
    assert np.allclose(probe.decision_function(X), X @ probe.coef_.T + probe.intercept_)
    assert list(probe.classes_) == ["det", "noun", "verb"] and probe.n_features_in_ == 10
    raw = LinearProbe(C=1.0, standardize=False).fit(X, y)
    assert np.allclose(raw.decision_function(X), X @ raw.coef_.T + raw.intercept_)


def test_clone_and_sklearn_tools_work():
    probe = LinearProbe(C=0.5, Cs=(1, 2), cv=3, max_iter=50, standardize=False,
                        random_state=7)
    copy = clone(probe)
    assert copy.get_params() == probe.get_params() and copy is not probe
    X, y, _ = separable(n_docs=12)
    probe.fit(X, y)
    assert not hasattr(clone(probe), "pipeline_")
    assert cross_val_score(LinearProbe(C=1.0), X, y, cv=3).min() >= 0.9


@parametrize_with_checks([LinearProbe(C=1.0)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------- errors

def test_errors_say_what_is_wrong():
    X, y, docs = separable(n_docs=8)
    with pytest.raises(ActclustError, match="only one class"):
        LinearProbe().fit(X, np.zeros(len(X)))
    bad = X.copy()
    bad[[1, 5, 9], 2] = np.nan
    bad[5, 0] = np.inf
    bad[20, 3] = -np.inf
    with pytest.raises(ActclustError, match="4 of 40 rows with NaN or inf"):
        LinearProbe().fit(bad, y)
    with pytest.raises(ActclustError, match="4 of 40 rows"):
        probe_scores(bad, y, groups=docs)
    with pytest.raises(ActclustError, match="39 values but X has 40 rows"):
        LinearProbe().fit(X, y[:-1])
    with pytest.raises(ActclustError, match="1 missing"):
        LinearProbe().fit(X, np.where(np.arange(40) == 3, None, y))
    with pytest.raises(ActclustError, match="2D array"):
        LinearProbe().fit(X[:, 0], y)
    with pytest.raises(ActclustError, match="at least 2 groups"):
        grouped_split(np.zeros(10))
    with pytest.raises(ActclustError, match="only one group"):
        LinearProbe().fit(X, y, groups=np.zeros(len(X)))
    with pytest.raises(ActclustError, match="Cs must be"):
        LinearProbe(Cs=(1.0, -1.0)).fit(X, y)
    with pytest.raises(NotFittedError):
        LinearProbe().predict(X)
    with pytest.raises(ActclustError, match="X has 3 features, but LinearProbe is expecting 8"):
        LinearProbe(C=1.0).fit(X, y).predict(X[:, :3])
    assert issubclass(ProbeInputError, ValueError)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_grouped_split_draws_what_group_shuffle_split_draws(seed):
    from sklearn.model_selection import GroupShuffleSplit

    groups = np.random.default_rng(seed).integers(0, 37, 500)
    train, test = grouped_split(groups, test_size=0.25, random_state=seed)
    n_test = int(np.ceil(0.25 * len(np.unique(groups))))
    codes = pd.factorize(groups)[0]  # groups are numbered in order of appearance first
    ref_train, ref_test = next(GroupShuffleSplit(1, test_size=n_test, random_state=seed)
                               .split(np.zeros((500, 1)), groups=codes))
    np.testing.assert_array_equal(train, np.sort(ref_train))
    np.testing.assert_array_equal(test, np.sort(ref_test))
