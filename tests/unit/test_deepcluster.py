"""DeepCluster on planted clusters: recovery, history, over-clustering, reproducibility."""

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from actclust.reporters import DeepCluster


def test_recovers_planted_clusters_and_records_stability(blobs):
    X, y = blobs
    model = DeepCluster(4, epochs=10, random_state=0, device="cpu").fit(X)
    assert adjusted_rand_score(y, model.labels_) > 0.95
    assert len(model.history_) == 10 and np.isnan(model.history_[0]["nmi_previous"])
    assert model.history_[-1]["nmi_previous"] > 0.9
    np.testing.assert_array_equal(model.predict(X), model.labels_)


def test_over_clustering_is_supported(blobs):
    X, y = blobs
    model = DeepCluster(40, epochs=5, random_state=0, device="cpu").fit(X)
    assert len(np.unique(model.labels_)) > 30
    # over-clusters nest inside the planted clusters
    assert normalized_mutual_info_score(model.labels_, y) > 0.5
    purity = sum(np.bincount(y[model.labels_ == c]).max() for c in np.unique(model.labels_))
    assert purity / len(y) > 0.95
