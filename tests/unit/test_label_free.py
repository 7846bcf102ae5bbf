"""Label-free scores and the neighbour search: kNN purity, self-probe accuracy, balance."""

import math
import warnings

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits, make_blobs

from actclust.errors import ActclustError
from actclust.label_free import (cluster_balance, knn_purity, nearest_neighbors,
                                 self_probe_accuracy)
from tests.unit.test_store import make_store


def blobs(n=600, centers=4, d=8, std=0.5, seed=0):
    # centres far apart relative to the spread: every neighbour shares the blob
    X, y = make_blobs(n_samples=n, centers=centers, n_features=d, cluster_std=std,
                      center_box=(-20, 20), random_state=seed)
    return X.astype(np.float32), y


class FakeLayer:
    """What knn_purity needs of a store layer: shape, iter_batches, row indexing, store."""

    def __init__(self, X, labels=None):
        self.X, self.shape, self.batches = X, X.shape, []
        self.store = type("Store", (), {"labels": lambda _, name: labels[name]})()

    def __len__(self):
        return len(self.X)

    def iter_batches(self, batch_size=4096, dtype=None):
        for start in range(0, len(self.X), batch_size):
            self.batches.append(batch_size)
            yield self.X[start:start + batch_size]

    def __getitem__(self, rows):
        return self.X[rows]


# ---------------------------------------------------------------- neighbours


def test_neighbours_exclude_the_row_itself_and_are_sorted():
    X, _ = blobs(200)
    indices, scores = nearest_neighbors(X, k=5)
    assert indices.shape == scores.shape == (200, 5)
    assert not (indices == np.arange(200)[:, None]).any()
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # cosine similarity, nearest first
    # the same neighbours as a brute-force cosine search
    Z = X / np.linalg.norm(X, axis=1, keepdims=True)
    sims = Z @ Z.T
    np.fill_diagonal(sims, -np.inf)
    brute = np.argsort(-sims, axis=1)[:, :5]
    assert np.mean(np.sort(brute, 1) == np.sort(indices, 1)) > 0.99


def test_euclidean_neighbours_return_distances():
    X = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    indices, dist = nearest_neighbors(X, k=1, metric="euclidean")
    assert indices.ravel().tolist() == [1, 0, 1]
    np.testing.assert_allclose(dist.ravel(), [5.0, 5.0, math.hypot(7, 4)], rtol=1e-5)


def test_duplicate_rows_still_drop_only_themselves():
    X = np.ones((6, 3), dtype=np.float32)  # all identical: self may come back anywhere
    indices, _ = nearest_neighbors(X, k=5)
    for i, row in enumerate(indices):
        assert sorted(row.tolist()) == [j for j in range(6) if j != i]


# ---------------------------------------------------------------- kNN purity


def test_purity_is_one_on_separated_blobs_and_chance_on_random_labels():
    X, y = blobs(800, centers=4)
    assert knn_purity(X, y, k=10) == 1.0
    assert knn_purity(X, y, k=10, metric="euclidean") == 1.0
    random_labels = np.random.default_rng(0).integers(0, 4, len(X))
    assert abs(knn_purity(X, random_labels, k=10) - 0.25) < 0.03


def test_per_row_purity_and_unlabelled_rows():
    X, y = blobs(300, centers=3)
    labels = y.astype(object)
    labels[:30] = None
    score, per_row = knn_purity(X, labels, k=5, return_per_row=True)
    assert np.isnan(per_row[:30]).all() and np.isfinite(per_row[30:]).all()
    assert score == pytest.approx(per_row[30:].mean())
    # unlabelled rows are dropped before the search: were they kept as neighbours, they
    # would share no one's label and purity would fall below 1
    assert score == 1.0


def test_purity_of_digits_pixels_matches_the_measured_value():
    X, y = load_digits(return_X_y=True)
    assert knn_purity(X, y, k=20) == pytest.approx(0.937, abs=0.005)


def test_store_layer_is_streamed_and_label_column_looked_up():
    X, y = blobs(500)
    layer = FakeLayer(X, {"topic": y})
    assert knn_purity(layer, "topic", k=5, batch_size=128) == knn_purity(X, y, k=5)
    assert layer.batches and set(layer.batches) == {128}  # streamed, never whole


def test_a_real_store_layer_of_several_shards(tmp_path):
    store, data = make_store(tmp_path / "s", n_docs=40, rows_per_doc=3, shard_docs=7, dim=6)
    layer = store.layer("blocks.1.hook_out")
    topic = store.labels("topic")
    expected = knn_purity(data["blocks.1.hook_out"], topic, k=4)
    assert knn_purity(layer, "topic", k=4, batch_size=25) == expected
    assert knn_purity(layer, "topic", k=4, exact_max_rows=10, batch_size=25) == \
        pytest.approx(expected, abs=0.02)
    clusters = np.arange(120) % 3
    assert self_probe_accuracy(layer, clusters) == \
        self_probe_accuracy(data["blocks.1.hook_out"], clusters)


def test_ivf_above_the_threshold_agrees_with_exact():
    X, y = blobs(6000, centers=10, d=16, std=12.0, seed=1)  # overlapping: purity 0.91
    exact = knn_purity(X, y, k=20)
    approx = knn_purity(X, y, k=20, exact_max_rows=1000)
    assert 0.5 < exact < 0.99
    assert abs(approx - exact) < 0.01
    exact_nn, _ = nearest_neighbors(X, k=20)
    ivf_nn, _ = nearest_neighbors(X, k=20, exact_max_rows=1000)
    one_probe, _ = nearest_neighbors(X, k=20, exact_max_rows=1000, nprobe=1)

    def recall(found):
        return np.mean([len(np.intersect1d(a, b)) / 20 for a, b in zip(exact_nn, found)])

    assert recall(ivf_nn) > 0.97
    assert recall(one_probe) < recall(ivf_nn)  # the IVF path was really taken
    assert not (one_probe == np.arange(6000)[:, None]).any()


def test_ivf_is_deterministic_in_random_state():
    X, y = blobs(3000, centers=6, d=8, std=3.0)
    a = nearest_neighbors(X, k=10, exact_max_rows=100, nprobe=2, random_state=3)[0]
    b = nearest_neighbors(X, k=10, exact_max_rows=100, nprobe=2, random_state=3)[0]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, message", [
    (dict(metric="manhattan"), "unknown metric"),
    (dict(k=0), "k must be an integer"),
    (dict(k=50), "k=50 neighbours"),
    (dict(random_state=-1), "random_state"),
])
def test_bad_purity_arguments(kwargs, message):
    X, y = blobs(40)
    with pytest.raises(ActclustError, match=message):
        knn_purity(X, y, **kwargs)


def test_bad_purity_inputs():
    X, y = blobs(40)
    with pytest.raises(ActclustError, match="same length"):
        knn_purity(X, y[:-1])
    with pytest.raises(ActclustError, match="2-D"):
        knn_purity(X[:, 0], y)
    bad = X.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ActclustError, match="first at row 7"):
        knn_purity(bad, y)
    with pytest.raises(ActclustError, match="single string"):
        knn_purity(X, "topic")  # a column name needs a store layer
    with pytest.raises(ActclustError, match="labelled"):
        knn_purity(X, [None] * 38 + [1, 2], k=2)


# ---------------------------------------------------------------- self-probe accuracy


def test_self_probe_is_high_for_kmeans_on_blobs_and_chance_for_random_clusters():
    X, _ = blobs(600, centers=4, std=1.0)
    clusters = KMeans(4, n_init=10, random_state=0).fit_predict(X)
    assert self_probe_accuracy(X, clusters) > 0.98
    random_clusters = np.random.default_rng(0).integers(0, 4, len(X))
    assert self_probe_accuracy(X, random_clusters) < 0.4


def test_self_probe_single_cluster_is_nan_with_a_warning():
    X, _ = blobs(100)
    with pytest.warns(UserWarning, match="single cluster"):
        assert math.isnan(self_probe_accuracy(X, np.zeros(100)))


def test_self_probe_subsamples_and_is_deterministic():
    X, _ = blobs(3000, centers=5, d=8, std=6.0)
    clusters = KMeans(5, n_init=3, random_state=0).fit_predict(X)
    a = self_probe_accuracy(X, clusters, max_rows=500, random_state=1)
    b = self_probe_accuracy(X, clusters, max_rows=500, random_state=1)
    c = self_probe_accuracy(X, clusters, max_rows=500, random_state=2)
    assert a == b and a != c  # another seed draws another subsample and other folds


def test_self_probe_tiny_clusters_count_as_errors():
    X, _ = blobs(100, centers=2)
    clusters = np.zeros(100, dtype=int)
    clusters[0] = 1  # a singleton: never in the training folds of its own fold
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no stray scikit-learn warnings either
        score = self_probe_accuracy(X, clusters)
    assert score == pytest.approx(0.99)


def test_self_probe_with_every_cluster_smaller_than_cv_uses_fewer_folds():
    X, _ = blobs(9, centers=3)
    clusters = np.repeat([0, 1, 2], 3)  # 3 rows a cluster: 3 folds, not 5
    assert 0 <= self_probe_accuracy(X, clusters) <= 1
    with pytest.warns(UserWarning, match="single row"):
        assert math.isnan(self_probe_accuracy(X, np.arange(9)))


def test_self_probe_reads_a_store_layer():
    X, _ = blobs(300)
    clusters = KMeans(4, n_init=3, random_state=0).fit_predict(X)
    assert self_probe_accuracy(FakeLayer(X), clusters) == self_probe_accuracy(X, clusters)


@pytest.mark.parametrize("kwargs, message", [
    (dict(cv=1), "cv must be"), (dict(C=0), "C must be"), (dict(max_rows=1), "max_rows"),
])
def test_bad_self_probe_arguments(kwargs, message):
    X, y = blobs(40)
    with pytest.raises(ActclustError, match=message):
        self_probe_accuracy(X, y, **kwargs)


def test_bad_self_probe_inputs():
    X, y = blobs(40)
    with pytest.raises(ActclustError, match="same length"):
        self_probe_accuracy(X, y[:10])
    with pytest.raises(ActclustError, match="missing"):
        self_probe_accuracy(X, [None] + list(y[1:]))
    with pytest.raises(ActclustError, match="fewer than cv"):
        self_probe_accuracy(X[:3], y[:3])


# ---------------------------------------------------------------- balance


@pytest.mark.parametrize("clusters, n_clusters, expected", [
    ([0, 1, 2, 3] * 5, None, 1.0),
    ([0] * 10, None, 0.0),
    ([0] * 10, 5, 0.0),
    (["a", "a", "b", "b"], 4, 0.5),             # two of four clusters left empty
    ([0] * 9 + [1], None, (-(0.9 * math.log(0.9) + 0.1 * math.log(0.1))) / math.log(2)),
    ([0, 0, 1, 2], None, (-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))) / math.log(3)),
])
def test_balance_on_known_partitions(clusters, n_clusters, expected):
    assert cluster_balance(clusters, n_clusters) == pytest.approx(expected)


def test_balance_falls_as_one_cluster_takes_over():
    values = [cluster_balance([0] * big + [1] * 10 + [2] * 10) for big in (10, 50, 500)]
    assert values[0] == pytest.approx(1.0) and values[0] > values[1] > values[2] > 0


@pytest.mark.parametrize("clusters, n_clusters, message", [
    ([], None, "empty"),
    ([0, 1, 2], 2, "n_clusters >= 3"),
    ([0, 1], 0, "n_clusters must be"),
    ([0, None], None, "missing"),
    ("abc", None, "single string"),
    (np.array([[0, 1], [1, 0]]), None, "one-dimensional"),
])
def test_bad_balance_inputs(clusters, n_clusters, message):
    with pytest.raises(ActclustError, match=message):
        cluster_balance(clusters, n_clusters)
