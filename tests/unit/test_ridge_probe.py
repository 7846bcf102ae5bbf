"""The streamed ridge probe: exact against scikit-learn, streamed equals in memory, bounded
memory, grouped splits and the control task kept."""

import tracemalloc

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler

from actclust.errors import ActclustError
from actclust.probes import (IN_MEMORY_MAX_VALUES, LinearProbe, ProbeInputError, RidgeProbe,
                             layer_probe_scores, probe_for, ridge_probe_scores)
from actclust.store import from_arrays


def _classes(n=600, d=6, k=3, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = rng.normal(size=(n, d)) + 1.5 * np.eye(d)[y % d] + offset
    return X, y


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_ridge_equals_scikit_learn_ridge_on_standardised_one_hot_targets(offset):
    X, y = _classes(offset=offset)
    X[:, 5] *= 30.0  # unequal scales: the penalty must apply to standardised weights
    probe = RidgeProbe(alpha=0.1, batch_size=37).fit(X, y)
    Z = StandardScaler().fit_transform(X)
    reference = Ridge(alpha=0.1 * len(X)).fit(Z, np.eye(3)[y]).predict(Z)
    # The batches' X^T X is summed in float32 around a shift: a mean of 1e4 must not cost
    # the precision a naive sum of squares would lose.
    assert np.abs(probe.decision_function(X) - reference).max() < 1e-4


def test_batching_does_not_change_the_fit():
    X, y = _classes()
    one = RidgeProbe(alpha=1.0, batch_size=len(X)).fit(X, y)
    many = RidgeProbe(alpha=1.0, batch_size=7).fit(X, y)
    np.testing.assert_allclose(one.coef_, many.coef_, rtol=1e-4, atol=1e-6)


def test_cv_scores_are_the_held_out_accuracy_of_each_fold_model():
    X, y = _classes(n=300, seed=3)
    groups = np.arange(300) // 6
    alphas = (10.0, 0.1, 0.001)
    probe = RidgeProbe(alphas=alphas, cv=3).fit(X, y, groups=groups)
    folds = list(GroupKFold(n_splits=3).split(X, y, pd.factorize(groups)[0]))
    for i, alpha in enumerate(alphas):
        right = sum((RidgeProbe(alpha=alpha).fit(X[tr], y[tr]).predict(X[te]) == y[te]).sum()
                    for tr, te in folds)
        assert probe.cv_scores_[i] == pytest.approx(right / len(X))
    assert probe.alpha_ == alphas[int(np.argmax(probe.cv_scores_))]


def test_a_tie_goes_to_the_strongest_penalty():
    X = np.repeat([[0.0], [10.0]], 50, axis=0)
    y = np.repeat(["a", "b"], 50)
    probe = RidgeProbe(alphas=(1.0, 0.1, 0.01), cv=5).fit(X, y)
    assert probe.alpha_ == 1.0 and np.all(probe.cv_scores_ == 1.0)


@pytest.fixture(scope="module")
def token_like_store(tmp_path_factory):
    """20,000 token-like rows: the label is linear in the activations; each of 24 token
    types has its own random offset, so a linear probe can memorise the types."""
    rng = np.random.default_rng(0)
    n, d = 20_000, 32
    doc = np.arange(n) // 50
    token = rng.integers(0, 24, n)
    label = np.where(rng.random(n) < 0.5, "x", "y")
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:, 0] += np.where(label == "x", 2.0, -2.0)
    X[:, 1:] += 1.5 * rng.normal(size=(24, d - 1)).astype(np.float32)[token]
    rows = pd.DataFrame({"doc_id": doc, "position": np.arange(n) % 50,
                         "token": [f"t{t}" for t in token], "label": label})
    path = tmp_path_factory.mktemp("ridge") / "store"
    return from_arrays(path, {"h": X}, rows, shard_rows=6_000, progress=False)


def test_streaming_a_store_layer_equals_the_array(token_like_store):
    view = token_like_store.layer("h")
    y, groups = token_like_store.labels("label"), token_like_store.labels("doc_id")
    types = token_like_store.labels("token")
    streamed = ridge_probe_scores(view, y, groups=groups, types=types, random_state=1,
                                  probe=RidgeProbe(batch_size=3_000))
    in_memory = ridge_probe_scores(view.to_numpy(), y, groups=groups, types=types,
                                   random_state=1)
    assert streamed == pytest.approx(in_memory, abs=1e-12)
    assert streamed["probe_accuracy"] > 0.95


def test_the_control_task_memorises_types_that_cross_the_split(token_like_store):
    view = token_like_store.layer("h")
    y, groups = token_like_store.labels("label"), token_like_store.labels("doc_id")
    crossing = ridge_probe_scores(view, y, groups=groups,
                                  types=token_like_store.labels("token"))
    # Types = documents: no test type was seen in training, so nothing to memorise.
    unseen = ridge_probe_scores(view, y, groups=groups)
    assert crossing["control_accuracy"] > 0.7
    assert abs(unseen["control_accuracy"] - 0.5) < 0.05
    assert crossing["selectivity"] < unseen["selectivity"]


def test_a_streamed_pass_keeps_about_one_batch_in_memory(tmp_path):
    n, d = 200_000, 64
    X = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    y = np.where(X[:, 0] > 0, "a", "b")
    store = from_arrays(tmp_path / "s", {"h": X}, pd.DataFrame({"doc_id": np.arange(n),
                                                                "y": y}), progress=False)
    view, labels = store.layer("h"), store.labels("y")
    del X
    tracemalloc.start()
    scores = ridge_probe_scores(view, labels, probe=RidgeProbe(batch_size=4_096))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert scores["probe_accuracy"] > 0.95
    # The layer is 51 MB; the pass holds a batch (1 MB), d x d statistics and row codes.
    assert peak < 0.25 * n * d * 4


def test_rows_without_a_label_are_left_out():
    X, y = _classes(n=400)
    labels = y.astype(object)
    labels[::4] = None
    scores = ridge_probe_scores(X, labels, groups=np.arange(400) // 5)
    assert scores["n_train"] + scores["n_test"] == 300


def test_grouped_split_holds_out_whole_groups():
    # Each group has its own offset and one label: recognising groups solves a leaky split.
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 10)
    X = rng.normal(size=(40, 64))[groups] * 3 + rng.normal(size=(400, 64)) * 0.1
    y = np.repeat(rng.permutation(np.repeat(["a", "b"], 20)), 10)
    leaky = ridge_probe_scores(X, y)
    grouped = ridge_probe_scores(X, y, groups=groups)
    assert leaky["probe_accuracy"] > 0.9
    assert grouped["probe_accuracy"] < 0.8


def test_the_auto_choice_streams_only_above_the_memory_threshold():
    assert isinstance(probe_for("auto", IN_MEMORY_MAX_VALUES // 384, 384), LinearProbe)
    assert isinstance(probe_for(None, IN_MEMORY_MAX_VALUES // 384 + 1, 384), RidgeProbe)
    given = RidgeProbe(alpha=3.0)
    assert probe_for(given, 10, 10) is given
    with pytest.raises(ActclustError, match="probe must be one of"):
        probe_for("svm", 10, 10)


def test_layer_probe_scores_gives_both_probes_the_same_rows(token_like_store):
    view = token_like_store.layer("h")
    y = token_like_store.labels("label").astype(object)
    y[:1000] = None
    kwargs = dict(groups=token_like_store.labels("doc_id"), random_state=2)
    ridge = layer_probe_scores(view, y, probe="ridge", **kwargs)
    logistic = layer_probe_scores(view, y, probe=LinearProbe(C=1.0), **kwargs)
    assert ridge["n_test"] == logistic["n_test"] and ridge["n_train"] == logistic["n_train"]
    assert abs(ridge["probe_accuracy"] - logistic["probe_accuracy"]) < 0.03


def test_bad_input_is_one_clear_error():
    X, y = _classes(n=50)
    with pytest.raises(ProbeInputError, match="only one class"):
        RidgeProbe().fit(X, np.zeros(50))
    with pytest.raises(ProbeInputError, match="alphas must be"):
        RidgeProbe(alphas=()).fit(X, y)
    with pytest.raises(ProbeInputError, match="has 49 values"):
        ridge_probe_scores(X, y[:49])
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ProbeInputError, match="NaN"):
        RidgeProbe(alpha=1.0).fit(bad, y)
    with pytest.raises(ProbeInputError, match="expecting 6 features"):
        RidgeProbe(alpha=1.0).fit(X, y).predict(X[:, :3])


def test_a_non_finite_row_deep_in_a_streamed_layer_is_one_clear_error(tmp_path):
    X, y = _classes(n=6_000)
    store = from_arrays(tmp_path / "s", {"h": X.astype(np.float32)},
                        pd.DataFrame({"doc_id": np.arange(6_000)}), progress=False)
    shard = np.load(next((tmp_path / "s" / "layers").rglob("*.npy")), mmap_mode="r+")
    shard[4_500, 2] = np.inf  # damage on disk, past the first rows the probe checks up front
    shard.flush()
    with pytest.raises(ProbeInputError, match="NaN or inf"):
        RidgeProbe(alpha=1.0, batch_size=1_000).fit(store.layer("h"), y)
