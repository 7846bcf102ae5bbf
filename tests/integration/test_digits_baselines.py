"""Classical baselines on load_digits: pixels and a trained network's activations."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

import actclust
from actclust.compare import compare, summarize
from actclust.metrics import cluster_scores
from actclust.reporters import GMM, Agglomerative, KMeans

BASELINES = {
    "kmeans": lambda: KMeans(10, n_init=5, random_state=0),
    "gmm": lambda: GMM(10, covariance_type="diag", pca_components=30, n_init=3,
                       random_state=0),
    "agglomerative": lambda: Agglomerative(10, linkage="ward"),
}


@pytest.mark.parametrize("name", BASELINES)
def test_baselines_find_digit_classes_in_pixels(name):
    digits = load_digits()
    found = BASELINES[name]().fit(digits.data / 16.0).labels_
    scores = cluster_scores(digits.target, found)
    assert scores["nmi"] > 0.6 and scores["accuracy"] > 0.6, scores


def test_trained_network_layers_cluster_digits_better_than_pixels(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTCLUST_CACHE", str(tmp_path / "cache"))
    store = actclust.capture("digits-mlp", "digits", ["fc1", "relu2"], out=tmp_path / "s",
                             progress=False)
    table = compare(store, "digit", reporters=["kmeans"], seeds=3, probes=False,
                    progress=False)
    nmi = summarize(table).query("metric == 'nmi'").set_index("layer")["mean"]
    pixels = np.mean([cluster_scores(load_digits().target,
                                     KMeans(10, random_state=s).fit(load_digits().data / 16.0)
                                     .labels_)["nmi"] for s in range(3)])
    assert nmi["relu2"] > pixels + 0.05 and nmi["relu2"] > nmi["fc1"]
