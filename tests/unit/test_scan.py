"""SCAN on planted clusters: recovery, head choice, self-labelling, reproducibility,
save/load, parameter checks and store layers."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import normalized_mutual_info_score

from actclust.errors import ActclustError
from actclust.reporters import SCAN, capabilities, load_reporter
from actclust.reporters.scan import scan_loss

SMALL = dict(random_state=0, device="cpu")


@pytest.fixture(scope="module")
def blobs():
    # close enough that a bad head or a collapsed one shows, far enough to be found
    return make_blobs(500, centers=5, n_features=16, cluster_std=2.0, random_state=3)


@pytest.fixture(scope="module")
def fitted(blobs):
    return SCAN(5, hidden=(32,), n_heads=4, epochs=30, **SMALL).fit(blobs[0])


def test_registered_as_a_trained_streaming_clusterer():
    caps = capabilities("scan")
    assert (caps.kind, caps.cost, caps.streams, caps.k_param) == \
        ("clusterer", "trained", True, "n_clusters")
    assert caps.savable and caps.gpu and caps.seeded


def test_recovers_planted_clusters(blobs, fitted):
    X, y = blobs
    assert normalized_mutual_info_score(y, fitted.labels_) > 0.9
    np.testing.assert_array_equal(fitted.predict(X), fitted.labels_)
    np.testing.assert_allclose(fitted.predict_proba(X[:4]).sum(1), 1, rtol=1e-5)
    assert fitted.n_iter_ == 30 == len(fitted.history_)
    assert all(h["stage"] == "scan" and len(h["head_losses"]) == 4 for h in fitted.history_)
    # the head kept is the one with the lowest loss on every row and all its neighbours
    assert fitted.best_head_ == int(np.argmin(fitted.head_losses_))
    assert fitted.history_[-1]["loss"] < fitted.history_[0]["loss"]


def test_linear_heads_recover_planted_clusters(blobs):
    X, y = blobs
    model = SCAN(5, n_heads=3, epochs=40, **SMALL).fit(X)
    assert normalized_mutual_info_score(y, model.labels_) > 0.9


def test_self_labelling_trains_on_confident_rows(blobs):
    X, y = blobs
    model = SCAN(5, hidden=(32,), n_heads=4, epochs=60, self_label=True,
                 self_label_epochs=5, self_label_lr=1e-3, **SMALL).fit(X)
    stages = [h["stage"] for h in model.history_]
    assert stages == ["scan"] * 60 + ["self_label"] * 5
    assert 0.1 < model.confident_share_ <= 1
    assert all(0.1 < h["confident"] <= 1 for h in model.history_[60:])
    assert normalized_mutual_info_score(y, model.labels_) > 0.9
    dropout = SCAN(5, hidden=(32,), n_heads=4, epochs=60, self_label=True,
                   self_label_epochs=3, perturb="dropout", **SMALL).fit(X)
    assert normalized_mutual_info_score(y, dropout.labels_) > 0.9


def test_same_seed_same_labels_and_another_seed_differs(blobs):
    X, _ = blobs
    def make(seed):
        return SCAN(5, hidden=(16,), n_heads=2, epochs=3, random_state=seed,
                    device="cpu").fit(X)

    a, b, c = make(1), make(1), make(2)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))


def test_save_load_round_trip_predicts_identically(blobs, fitted, tmp_path):
    X, _ = blobs
    path = fitted.save(tmp_path / "scan.safetensors")
    loaded = SCAN.load(path)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.best_head_ == fitted.best_head_
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(loaded.labels_, fitted.labels_)
    assert type(load_reporter(path)) is SCAN


def test_loss_rewards_consistent_confident_balanced_assignments():
    eye = torch.eye(4).repeat(5, 1)
    np.testing.assert_allclose(scan_loss(eye, eye, 1.0).item(), -np.log(4), rtol=1e-5)
    one = torch.zeros(20, 4)
    one[:, 0] = 1  # everything in one cluster: consistent but unbalanced
    assert scan_loss(one, one, 5.0).item() > scan_loss(eye, eye, 5.0).item()
    uniform = torch.full((20, 4), 0.25)  # balanced but unsure: -log(1/4) - 5 log 4
    np.testing.assert_allclose(scan_loss(uniform, uniform, 5.0).item(), -4 * np.log(4),
                               rtol=1e-5)


@pytest.mark.parametrize("params", [dict(n_clusters=1), dict(n_heads=0), dict(epochs=0),
                                    dict(confidence=1.0), dict(perturb="flip"),
                                    dict(batch_size=1), dict(entropy_weight=-1.0),
                                    dict(n_neighbors=0), dict(pair_filter="labels"),
                                    dict(filter_runs=0), dict(filter_agreement=0.0)])
def test_bad_parameters_are_refused(blobs, params):
    with pytest.raises(ValueError):
        SCAN(**{"n_clusters": 3, **params}).fit(blobs[0][:50])


def test_pair_filter_keeps_neighbours_every_kmeans_run_co_assigns(blobs):
    from actclust.reporters import KMeans

    X, y = blobs
    X = X.copy()
    X[:250] += 3.0  # push two planted clusters together: some neighbour pairs now cross
    model = SCAN(5, hidden=(32,), n_heads=2, epochs=20, pair_filter="kmeans", filter_runs=3,
                 **SMALL)
    found = np.tile(np.arange(1, 11), (len(X), 1)) + np.arange(len(X))[:, None]
    found %= len(X)  # an arbitrary neighbour list, some pairs across clusters
    pool = model._co_assigned_pool(X, np.hstack([np.arange(len(X))[:, None], found]), seed=0)
    runs = [KMeans(5, random_state=r).fit(X).labels_ for r in range(3)]
    assert pool.shape == (len(X), 11) and (pool[:, 0] == np.arange(len(X))).all()
    for run in runs:  # every entry left is the anchor or co-assigned with it in every run
        assert (run[pool] == run[pool[:, :1]]).all()
    assert 0 < model.kept_pairs_ < 1
    fitted = model.fit(X)
    assert normalized_mutual_info_score(y, fitted.labels_) > 0.8


def test_more_clusters_than_rows_is_refused():
    with pytest.raises(ActclustError, match="at least 5 rows"):
        SCAN(5, device="cpu").fit(np.random.default_rng(0).normal(size=(4, 3)))


def test_fewer_clusters_than_asked_warns():
    X = np.repeat(np.eye(3, 6), 20, axis=0) + \
        np.random.default_rng(0).normal(0, 0.01, (60, 6))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # no entropy term: nothing keeps the clusters apart, so some stay empty
        SCAN(8, entropy_weight=0.0, n_heads=1, epochs=20, **SMALL).fit(X)
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)


def test_a_torch_tensor_gives_the_array_labels(blobs):
    X = blobs[0][:200].astype(np.float32)

    def make():
        return SCAN(3, hidden=(16,), n_heads=2, epochs=4, **SMALL)

    np.testing.assert_array_equal(make().fit(torch.from_numpy(X)).labels_,
                                  make().fit(X).labels_)
