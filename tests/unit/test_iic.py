"""IIC on planted clusters and digits: recovery, pairing modes, sub-head choice, the
over-clustering switch, and the defaults against k-means."""

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
    # the kept sub-head has the lowest whole-set loss, computed once training ends
    assert model.subhead_losses_.shape == (5,)
    assert model.best_subhead_ == int(np.argmin(model.subhead_losses_))
    assert len(main[-1]["subhead_losses"]) == 5
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


def test_subhead_loss_on_all_rows_matches_the_loss_by_hand(blobs):
    X, _ = blobs
    model = IIC(4, epochs=10, n_subheads=3, random_state=1, device="cpu").fit(X)
    net = model.module_
    Z = torch.from_numpy(((X - model.mean_) / model.scale_).astype(np.float32))
    found = torch.from_numpy(neighbour_table((X - model.mean_) / model.scale_, 5))
    with torch.no_grad():
        h = net["backbone"](Z)
        by_hand = [np.mean([iic_loss(sub(h), sub(h[found[:, j]]), entropy_weight=2.0).item()
                            for j in range(5)]) for sub in net["main"]]
    np.testing.assert_allclose(model.subhead_losses_, by_hand, rtol=1e-4)


def test_self_probe_selection_keeps_the_best_scored_subhead(blobs):
    X, _ = blobs
    model = IIC(4, epochs=6, n_subheads=3, subhead_selection="self_probe", random_state=0,
                device="cpu").fit(X)
    assert model.subhead_scores_.shape == (3,)
    assert model.best_subhead_ == int(np.nanargmax(model.subhead_scores_))
    np.testing.assert_array_equal(model.labels_, model.predict(X))


def test_noise_pairing_scores_subheads_on_a_noise_view(blobs):
    X, _ = blobs
    model = IIC(4, epochs=10, pairing="noise", random_state=0, device="cpu").fit(X)
    assert np.isfinite(model.subhead_losses_).all()
    assert model.best_subhead_ == int(np.argmin(model.subhead_losses_))


def test_overcluster_factor_zero_trains_the_main_head_only(blobs):
    X, y = blobs
    model = IIC(4, overcluster_factor=0, epochs=10, random_state=0, device="cpu").fit(X)
    assert {h["head"] for h in model.history_} == {"main"}
    assert "over" not in model.module_
    assert adjusted_rand_score(y, model.labels_) > 0.9


@pytest.mark.parametrize("params", [dict(subhead_selection="labels"),
                                    dict(overcluster_factor=-1), dict(lr=0.0)])
def test_bad_parameters_are_refused(blobs, params):
    with pytest.raises(ValueError):
        IIC(**{"n_clusters": 4, **params}).fit(blobs[0][:50])


def test_defaults_beat_kmeans_on_digits():
    """Issue 19's target at the defaults: 50 epochs at lr 1e-3 reached 0.665 NMI, under
    k-means' 0.743; the defaults reach 0.835 ± 0.031 over 5 seeds (0.841 at seed 0)."""
    from sklearn.datasets import load_digits
    from sklearn.metrics import normalized_mutual_info_score as nmi

    from actclust.reporters import KMeans

    X, y = load_digits(return_X_y=True)
    iic = IIC(10, random_state=0, device="cpu").fit(X)
    kmeans = KMeans(10, n_init=10, random_state=0).fit(X)
    assert nmi(y, iic.labels_) > nmi(y, kmeans.labels_) + 0.03
