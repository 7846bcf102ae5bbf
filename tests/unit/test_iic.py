"""IIC on planted clusters: recovery, pairing modes, sub-head choice, reproducibility."""

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from actclust.reporters import IIC
from actclust.reporters.iic import iic_loss, neighbour_table


def test_recovers_planted_clusters_with_neighbour_pairs(blobs):
    X, y = blobs
    model = IIC(4, epochs=30, random_state=0, device="cpu").fit(X)
    assert adjusted_rand_score(y, model.labels_) > 0.95
    heads = [h["head"] for h in model.history_]
    assert heads[:4] == ["main", "over", "main", "over"]
    main = [h for h in model.history_ if h["head"] == "main"]
    assert model.best_subhead_ == int(np.argmin(main[-1]["subhead_losses"]))
    assert main[-1]["nmi_previous"] > 0.9 and not main[-1]["degenerate"]
    np.testing.assert_allclose(model.predict_proba(X[:3]).sum(1), 1, rtol=1e-5)


@pytest.mark.parametrize("pairing", ["noise", "both"])
def test_other_pairings_find_most_of_the_structure(blobs, pairing):
    from sklearn.metrics import normalized_mutual_info_score

    X, y = blobs
    model = IIC(4, epochs=30, pairing=pairing, random_state=0, device="cpu").fit(X)
    assert normalized_mutual_info_score(y, model.labels_) > 0.7  # measured 0.86


def test_loss_is_negative_mutual_information():
    eye = torch.eye(3).repeat(10, 1)  # perfectly paired, uniform over 3 clusters
    np.testing.assert_allclose(iic_loss(eye, eye).item(), -np.log(3), rtol=1e-5)
    uniform = torch.full((30, 3), 1 / 3)
    assert abs(iic_loss(uniform, uniform).item()) < 1e-6


def test_neighbour_table_excludes_the_row_itself():
    X = np.array([[0.0], [1.0], [10.0], [11.0]])
    np.testing.assert_array_equal(neighbour_table(X, 1).ravel(), [1, 0, 3, 2])
