"""Choosing the number of clusters without labels (actclust.selection)."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from actclust.errors import ActclustError
from actclust.reporters import GMM, KMeans
from actclust.selection import KChoice, choose_n_clusters, fit_clusters, stability


def test_stability_is_the_mean_pairwise_ari():
    same = [0, 0, 1, 1, 2, 2]
    assert stability([same, [5, 5, 7, 7, 9, 9]]) == 1.0
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 3, 300) for _ in range(3)]
    assert abs(stability(noise)) < 0.05
    assert stability([same, same, [0, 1, 0, 1, 0, 1]]) == pytest.approx((1 + 2 * -0.25) / 3,
                                                                           abs=0.2)
    with pytest.raises(ActclustError, match="two clusterings"):
        stability([same])


@pytest.mark.parametrize("centers", [3, 5])
def test_the_planted_number_is_the_stable_one(centers):
    X, _ = make_blobs(400, centers=centers, n_features=6, cluster_std=0.8, random_state=3)
    choice = choose_n_clusters("kmeans", X, candidates=[2, 3, 4, 5, 6, 8], seeds=[0, 1, 2])
    assert isinstance(choice, KChoice) and choice.n_clusters == centers
    assert list(choice.scores["n_clusters"]) == [2, 3, 4, 5, 6, 8]
    assert choice.stability == choice.scores["stability"].max()
    assert len(choice.fits) == 3 and all(len(found) == 400 for found, _ in choice.fits)
    # the fits kept are the ones a direct fit gives
    again, _ = fit_clusters(KMeans(), X, centers, seed=1)
    np.testing.assert_array_equal(choice.fits[1][0], again)


def test_an_estimator_and_a_fit_function_are_accepted():
    X, _ = make_blobs(200, centers=3, n_features=4, random_state=0)
    assert choose_n_clusters(GMM(), X, candidates=[2, 3, 6], seeds=[0, 1]).n_clusters == 3
    calls = []

    def fit(k, seed):
        calls.append((k, seed))
        return np.arange(20) % k, 0.0  # identical across seeds: every k is stable

    choice = choose_n_clusters(fit, candidates=[4, 2], seeds=[0, 1])
    assert choice.n_clusters == 4  # as stable as the coarser: the finer is kept
    assert calls == [(2, 0), (2, 1), (4, 0), (4, 1)]


def test_bad_arguments_are_refused():
    X, _ = make_blobs(50, centers=2, random_state=0)
    with pytest.raises(ActclustError, match="at least 2 seeds"):
        choose_n_clusters("kmeans", X, seeds=[0])
    with pytest.raises(ActclustError, match="integers >= 2"):
        choose_n_clusters("kmeans", X, candidates=[1, 3])
    with pytest.raises(ActclustError, match="integers >= 2"):
        choose_n_clusters("kmeans", X, candidates=[])
    with pytest.raises(ActclustError, match="needs the rows X"):
        choose_n_clusters("kmeans")
