"""DAC on planted clusters: label features, pair selection, the loss, the threshold
schedule, recovery, seeded neighbour pairs, reproducibility, save/load, parameter checks
and store layers."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.metrics import normalized_mutual_info_score

from actclust.errors import ActclustError
from actclust.reporters import capabilities
from actclust.reporters.dac import DAC, dac_loss, label_features, pair_targets, thresholds

SMALL = dict(hidden=(32,), epochs=15, random_state=0, device="cpu")


@pytest.fixture(scope="module")
def blobs():
    # close enough that a collapsed or a random partition shows, far enough to be found
    # (with random_state=3 and DAC's seed 0, two blobs share a cluster and one is split:
    # the self-labelling keeps the partition its first epochs found)
    return make_blobs(600, centers=5, n_features=16, cluster_std=2.0, random_state=0)


@pytest.fixture(scope="module")
def fitted(blobs):
    X, _ = blobs
    return DAC(5, batch_size=128, **SMALL).fit(X[:500])


def test_registered_as_a_trained_streaming_clusterer():
    caps = capabilities("dac")
    assert (caps.kind, caps.cost, caps.streams, caps.k_param) == \
        ("clusterer", "trained", True, "n_clusters")
    assert caps.savable and caps.gpu and caps.seeded


def test_label_features_are_normalised_probabilities():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    z = label_features(logits)
    np.testing.assert_allclose(z.norm(dim=1).numpy(), 1, rtol=1e-6)
    p = torch.softmax(logits, 1)
    np.testing.assert_allclose((z @ z.T).numpy(),
                               (p @ p.T / torch.outer(p.norm(dim=1), p.norm(dim=1))).numpy(),
                               rtol=1e-5)
    # all entries positive: two rows are never further apart than orthogonal
    assert (z @ z.T).min() > 0


def test_pairs_between_the_thresholds_and_the_diagonal_are_left_out():
    sim = torch.tensor([[1.0, 0.99, 0.5, 0.1],
                        [0.99, 1.0, 0.85, 0.3],
                        [0.5, 0.85, 1.0, 0.96],
                        [0.1, 0.3, 0.96, 1.0]])
    target, selected = pair_targets(sim, upper=0.95, lower=0.4)
    expected = (sim > 0.95) | (sim < 0.4)
    expected.fill_diagonal_(False)
    np.testing.assert_array_equal(selected.numpy(), expected.numpy())
    np.testing.assert_array_equal(target[selected].numpy(), (sim[selected] > 0.95).numpy())
    assert not selected[0, 2] and not selected[1, 2]  # 0.5 and 0.85: undecided


def test_loss_is_the_binary_cross_entropy_of_the_selected_pairs():
    sim = torch.tensor([[1.0, 0.8, 0.3], [0.8, 1.0, 0.6], [0.3, 0.6, 1.0]])
    target = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    selected = torch.tensor([[False, True, True], [True, False, False],
                             [True, False, False]])
    by_hand = -(2 * np.log(0.8) + 2 * np.log(0.7)) / 4
    assert dac_loss(sim, target, selected).item() == pytest.approx(by_hand, rel=1e-6)
    # nothing selected: zero, and still differentiable
    sim.requires_grad_(True)
    zero = dac_loss(sim, target, torch.zeros(3, 3, dtype=torch.bool))
    zero.backward()
    assert zero.item() == 0 and sim.grad is not None
    # a certain, wrong pair is clamped, not infinite
    assert np.isfinite(dac_loss(torch.zeros(2, 2), torch.ones(2, 2),
                                ~torch.eye(2, dtype=torch.bool)).item())


def test_thresholds_move_toward_each_other_and_meet_at_the_end():
    schedule = thresholds(0.99, 0.8, 10)
    upper, lower = schedule[:, 0], schedule[:, 1]
    assert upper[0] == 0.99 and lower[0] == 0.8
    assert (np.diff(upper) < 0).all() and (np.diff(lower) > 0).all()
    assert (upper > lower).all()
    step = 0.19 / 20
    # one more step and they would meet: the authors' stopping rule u < l
    assert upper[-1] - step == pytest.approx(lower[-1] + step)


def test_recovers_planted_clusters_and_predicts_new_rows(blobs, fitted):
    X, y = blobs
    assert normalized_mutual_info_score(y[:500], fitted.labels_) > 0.9
    np.testing.assert_array_equal(fitted.predict(X[:500]), fitted.labels_)
    assert normalized_mutual_info_score(y[500:], fitted.predict(X[500:])) > 0.9
    proba = fitted.predict_proba(X[:4])
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    np.testing.assert_array_equal(proba.argmax(1), fitted.labels_[:4])
    history = fitted.history_
    assert fitted.n_iter_ == 15 == len(history)
    assert history[0]["upper"] == 0.99 and history[0]["lower"] == 0.8
    assert all(a["upper"] > b["upper"] and a["lower"] < b["lower"]
               for a, b in zip(history, history[1:]))
    assert all(0 <= h["selected"] <= 1 and 0 <= h["similar"] <= 1 for h in history)
    # trained, the label features are near one-hot: almost every pair is decided, and
    # about one in five is similar (five balanced clusters)
    assert history[-1]["selected"] > 0.9
    assert 0.1 < history[-1]["similar"] < 0.35


def test_seeded_neighbour_pairs(blobs):
    X, y = blobs
    model = DAC(5, n_neighbors=10, **SMALL).fit(X)
    assert normalized_mutual_info_score(y, model.labels_) > 0.9


def test_same_seed_same_labels_and_another_seed_differs(blobs):
    X, _ = blobs

    def make(seed, **kw):
        return DAC(5, hidden=(16,), epochs=2, random_state=seed, device="cpu", **kw).fit(X)

    a, b, c = make(1), make(1), make(2)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))
    d, e = make(1, perturb="dropout"), make(1, perturb="dropout")
    np.testing.assert_array_equal(d.predict_proba(X), e.predict_proba(X))
    assert not np.array_equal(a.predict_proba(X), d.predict_proba(X))


@pytest.mark.parametrize("params", [dict(n_clusters=1), dict(epochs=0), dict(inner_epochs=0),
                                    dict(batch_size=1), dict(upper=1.5), dict(lower=-0.1),
                                    dict(lr=0), dict(consistency_weight=-1),
                                    dict(perturb="blur"), dict(noise_scale=2.0),
                                    dict(n_neighbors=-1), dict(neighbor_weight=-0.5),
                                    dict(logit_norm="yes"), dict(hidden=16)])
def test_bad_parameters_are_refused(blobs, params):
    with pytest.raises(ValueError):
        DAC(**{"n_clusters": 3, "device": "cpu", **params}).fit(blobs[0][:50])


def test_thresholds_in_the_wrong_order_are_refused(blobs):
    with pytest.raises(ActclustError, match="lower < upper"):
        DAC(3, upper=0.5, lower=0.9, device="cpu").fit(blobs[0][:50])
