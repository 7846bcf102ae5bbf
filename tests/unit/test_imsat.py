"""IMSAT on planted clusters: the entropies, the smoothness term (VAT and RPT), the radii,
batch norm in the perturbed passes, recovery, reproducibility, save/load, store layers
and parameter checks."""

import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from actclust.errors import ActclustError
from actclust.label_free import nearest_neighbors
from actclust.reporters import capabilities, load_reporter
from actclust.reporters.imsat import (IMSAT, _network_classes, entropies, kl_rows,
                                      smoothness_loss)

SMALL = dict(hidden=(64,), batch_size=100, random_state=0, device="cpu")


@pytest.fixture(scope="module")
def fitted(close_blobs):
    X, _ = close_blobs
    return IMSAT(5, epochs=30, **SMALL).fit(X[:500])


def test_registered_as_a_trained_streaming_clusterer():
    caps = capabilities("imsat")
    assert (caps.kind, caps.cost, caps.streams, caps.k_param) == \
        ("clusterer", "trained", True, "n_clusters")
    assert caps.savable and caps.gpu and caps.seeded


def test_entropies_of_rows_and_of_the_batch_mean():
    sure = torch.eye(4) * 50  # confident and balanced: H(p) = 0, H(mean p) = log 4
    h, marginal = entropies(sure)
    assert h.item() == pytest.approx(0.0, abs=1e-6)
    assert marginal.item() == pytest.approx(np.log(4), abs=1e-6)
    collapsed = torch.tensor([[50.0, 0, 0, 0]] * 4)  # confident, one cluster: no information
    assert entropies(collapsed)[1].item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.zeros(3, 4)  # unsure rows: both entropies are log 4
    np.testing.assert_allclose([v.item() for v in entropies(uniform)], np.log(4), rtol=1e-6)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 3))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    by_hand = (-(p * np.log(p + 1e-8)).sum(1).mean(),
               -(p.mean(0) * np.log(p.mean(0) + 1e-8)).sum())
    np.testing.assert_allclose([v.item() for v in entropies(torch.tensor(logits))], by_hand,
                               rtol=1e-6)


def test_kl_is_zero_on_itself_and_positive_elsewhere():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    p = torch.softmax(logits, 1)
    assert kl_rows(p, logits).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_rows(p, logits[[1, 2, 3, 4, 0]]).item() > 0.01


def test_vat_finds_a_more_damaging_direction_than_a_random_one():
    # a linear classifier on 20 dims: the adversarial direction is the weight difference
    torch.manual_seed(0)
    w = torch.randn(20, 2)

    def net(x, update_stats=True):
        return x @ w

    x = torch.randn(200, 20)
    p = torch.softmax(net(x), 1).detach()
    radius = torch.full((200,), 0.5)
    gen = torch.Generator().manual_seed(1)
    vat = smoothness_loss(net, x, p, radius, "vat", xi=1.0, generator=gen)
    rpt = smoothness_loss(net, x, p, radius, "rpt", generator=gen)
    assert vat.item() > 3 * rpt.item() > 0
    # a zero radius moves nothing, whatever the direction
    assert smoothness_loss(net, x, p, torch.zeros(200), "vat",
                           generator=gen).item() == pytest.approx(0.0, abs=1e-6)


def test_perturbed_passes_leave_the_running_statistics_alone():
    net = _network_classes()["IMSATNet"](4, (8,), 3).train()
    x = torch.randn(10, 4) * 3 + 1
    before = net.norms[0].running_mean.clone()
    a = net(x, update_stats=False)
    np.testing.assert_array_equal(net.norms[0].running_mean.numpy(), before.numpy())
    b = net(x)  # the same batch statistics normalise both passes
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-7)
    assert not np.allclose(net.norms[0].running_mean.numpy(), before.numpy())


def test_last_layer_starts_near_uniform():
    net = _network_classes()["IMSATNet"](16, (64, 64), 5).eval()
    p = torch.softmax(net(torch.randn(50, 16)), 1)
    assert (p - 0.2).abs().max().item() < 0.01


def test_radius_is_a_share_of_the_tenth_neighbour_distance(close_blobs, fitted):
    X, _ = close_blobs
    scaled = (X[:500].astype(np.float32) - fitted.mean_) / fitted.scale_
    distances = nearest_neighbors(scaled, k=10, metric="euclidean")[1][:, 9]
    np.testing.assert_allclose(fitted.radius_, 0.25 * distances, rtol=1e-5)
    tiny = IMSAT(2, hidden=(4,), epochs=1, eps_scale=0.5, random_state=0,
                 device="cpu").fit(X[:4])
    assert tiny.radius_.shape == (4,) and (tiny.radius_ > 0).all()  # the 3rd neighbour


def test_recovers_planted_clusters_and_predicts_new_rows(close_blobs, fitted):
    X, y = close_blobs
    assert normalized_mutual_info_score(y[:500], fitted.labels_) > 0.9
    np.testing.assert_array_equal(fitted.predict(X[:500]), fitted.labels_)
    assert normalized_mutual_info_score(y[500:], fitted.predict(X[500:])) > 0.9
    np.testing.assert_allclose(fitted.predict_proba(X[:4]).sum(1), 1, rtol=1e-5)
    assert fitted.n_iter_ == 30 == len(fitted.history_)
    first, last = fitted.history_[0], fitted.history_[-1]
    assert last["loss"] < first["loss"]
    assert last["entropy"] < first["entropy"]  # confident
    assert last["marginal_entropy"] > 0.9 * np.log(5)  # balanced


def test_rpt_recovers_planted_clusters_too(close_blobs):
    X, y = close_blobs
    model = IMSAT(5, perturbation="rpt", epochs=30, **SMALL).fit(X)
    assert normalized_mutual_info_score(y, model.labels_) > 0.9


def test_same_seed_same_labels_and_another_seed_differs(close_blobs):
    X, _ = close_blobs

    def make(seed):
        return IMSAT(5, hidden=(16,), epochs=2, random_state=seed, device="cpu").fit(X)

    a, b, c = make(1), make(1), make(2)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))


def test_save_load_round_trip_predicts_identically(close_blobs, fitted, tmp_path):
    X, _ = close_blobs
    path = fitted.save(tmp_path / "imsat.safetensors")
    loaded = load_reporter(path)
    assert type(loaded) is IMSAT
    assert loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(loaded.radius_, fitted.radius_)
    np.testing.assert_array_equal(loaded.module_.norms[0].running_var.numpy(),
                                  fitted.module_.norms[0].running_var.numpy())


@pytest.mark.parametrize("params", [dict(n_clusters=1), dict(perturbation="adversarial"),
                                    dict(lam=-0.1), dict(mu=-1), dict(eps_scale=-0.5),
                                    dict(n_neighbors=0), dict(xi=0.0),
                                    dict(power_iterations=0), dict(epochs=0),
                                    dict(batch_size=1), dict(lr=0), dict(standardize="yes"),
                                    dict(hidden=3)])
def test_bad_parameters_are_refused(close_blobs, params):
    with pytest.raises(ValueError):
        IMSAT(**{"n_clusters": 3, "device": "cpu", **params}).fit(close_blobs[0][:50])


def test_bad_hidden_widths_are_refused_with_a_one_line_error(close_blobs):
    with pytest.raises(ActclustError, match="hidden"):
        IMSAT(3, hidden=(8, 0), device="cpu").fit(close_blobs[0][:50])
