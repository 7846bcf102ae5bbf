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


def test_linear_heads_on_the_rows_themselves(blobs):
    X, y = blobs  # hidden=(): no backbone layer, so no backbone parameters either
    model = IIC(4, hidden=(), epochs=20, random_state=0, device="cpu").fit(X)
    assert adjusted_rand_score(y, model.labels_) > 0.9


def test_consensus_cells_and_their_partners():
    from actclust.reporters._pairs import cell_partners, consensus_cells

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 0.1, (30, 2)) for c in ([0, 0], [5, 0], [0, 5])])
    cells = consensus_cells(X, 3, runs=4, seed=0)
    assert len(set(cells)) == 3 and all(len(set(cells[i:i + 30])) == 1 for i in (0, 30, 60))
    cells = np.array([0, 0, 0, 1, 1, 2])
    partners = cell_partners(cells, 50, rng)
    assert partners.shape == (6, 50) and (cells[partners] == cells[:, None]).all()
    assert (partners[:5] != np.arange(5)[:, None]).all()  # never itself while others exist
    assert (partners[5] == 5).all()  # alone in its cell
    assert set(partners[0]) == {1, 2}


def test_kmeans_pairing_pairs_rows_of_one_consensus_cell(blobs):
    X, y = blobs
    model = IIC(4, pairing="kmeans", pair_runs=3, epochs=30, random_state=0,
                device="cpu").fit(X)
    assert model.n_pair_cells_ >= 4
    assert adjusted_rand_score(y, model.labels_) > 0.9


def test_pair_components_finds_neighbours_in_the_whitened_leading_components():
    """Clusters in two low-variance columns, one loud noise column: nearest neighbours
    in the raw rows follow the noise; in the 3 whitened components they share a cluster
    (measured: 0.28 and 1.00 of the pairs)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 100)
    centres = np.array([[0, 0], [0, 4], [4, 0], [4, 4]])
    X = np.hstack([centres[y] + rng.normal(0, 0.4, (400, 2)), rng.normal(0, 2000, (400, 1))])
    raw = IIC(4, epochs=1, random_state=0, device="cpu")
    whitened = IIC(4, pair_components=3, epochs=1, random_state=0, device="cpu")
    share = [np.mean(y[m._partners(X, 0, rng)] == y[:, None]) for m in (raw, whitened)]
    assert share[0] < 0.6 and share[1] > 0.9


@pytest.mark.parametrize("params", [dict(subhead_selection="labels"),
                                    dict(overcluster_factor=-1), dict(lr=0.0),
                                    dict(pairing="cells"), dict(pair_runs=0),
                                    dict(pair_clusters=1), dict(pair_components=0)])
def test_bad_parameters_are_refused(blobs, params):
    with pytest.raises(ValueError):
        IIC(**{"n_clusters": 4, **params}).fit(blobs[0][:50])


@pytest.mark.slow
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
