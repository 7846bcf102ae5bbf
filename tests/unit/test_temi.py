"""TEMI on planted clusters: the loss, pair weight, cluster-size EMA, teacher EMA, head
choice, recovery, prediction on new rows, save/load, parameter checks and store layers."""

import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from actclust.reporters import TEMI, capabilities, load_reporter
from actclust.reporters.temi import _EMAStep, pair_weight, temi_loss, update_prior

SMALL = dict(n_heads=2, hidden=32, bottleneck=16, random_state=0, device="cpu")


@pytest.fixture(scope="module")
def fitted(close_blobs):
    X, _ = close_blobs
    return TEMI(5, epochs=30, batch_size=64, **SMALL).fit(X[:500])


def test_registered_as_a_trained_streaming_clusterer():
    caps = capabilities("temi")
    assert (caps.kind, caps.cost, caps.streams, caps.k_param) == \
        ("clusterer", "trained", True, "n_clusters")
    assert caps.savable and caps.gpu and caps.seeded


def test_loss_is_the_tempered_pointwise_mutual_information():
    uniform = torch.full((4,), 0.25)
    eye = torch.eye(4)
    np.testing.assert_allclose(temi_loss(eye, eye, uniform).numpy(), -np.log(4), rtol=1e-6)
    # disagreeing sides: nothing shared, the loss is unbounded
    assert torch.isinf(temi_loss(eye, eye[[1, 2, 3, 0]], uniform)).all()
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(3), 5), rng.dirichlet(np.ones(3), 5)
    prior = np.array([0.5, 0.3, 0.2])
    by_hand = -np.log(((p * q) ** 0.6 / prior).sum(1))
    got = temi_loss(torch.tensor(p), torch.tensor(q), torch.tensor(prior), beta=0.6)
    np.testing.assert_allclose(got.numpy(), by_hand, rtol=1e-10)
    # a rarer cluster (smaller prior) earns more for the same agreement
    rare = temi_loss(eye[:1], eye[:1], torch.tensor([0.1, 0.3, 0.3, 0.3]))
    common = temi_loss(eye[:1], eye[:1], torch.tensor([0.7, 0.1, 0.1, 0.1]))
    assert rare.item() < common.item()


def test_pair_weight_is_the_teachers_agreement_averaged_over_heads():
    same, other = torch.eye(3)[None], torch.eye(3)[[1, 2, 0]][None]
    np.testing.assert_allclose(pair_weight(same, same).numpy(), 1.0)
    np.testing.assert_allclose(pair_weight(same, other).numpy(), 0.0)
    # one head agrees, the other does not: the mean
    np.testing.assert_allclose(pair_weight(torch.cat([same, same]),
                                           torch.cat([same, other])).numpy(), 0.5)
    soft = torch.full((1, 2, 4), 0.25)
    np.testing.assert_allclose(pair_weight(soft, soft).numpy(), 0.25)


def test_prior_is_an_ema_of_the_batch_mean_over_both_views():
    prior = torch.full((2, 1, 2), 0.5)
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]],
                      [[0.0, 1.0]] * 4])
    once = update_prior(prior, q, 0.9)
    np.testing.assert_allclose(once.numpy(), [[[0.525, 0.475]], [[0.45, 0.55]]], rtol=1e-6)
    for _ in range(300):
        prior = update_prior(prior, q, 0.9)
    np.testing.assert_allclose(prior.numpy(), q.mean(1, keepdim=True).numpy(), atol=1e-6)


def test_teacher_follows_the_student_by_ema():
    student, teacher = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    before = [p.detach().clone() for p in teacher.parameters()]
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    step = _EMAStep(opt, student, teacher, 0.75, lambda s: 0.1)
    step.zero_grad()
    student(torch.ones(3, 2)).sum().backward()
    step.step()
    for s, t, t0 in zip(student.parameters(), teacher.parameters(), before):
        np.testing.assert_allclose(t.detach().numpy(), (0.75 * t0 + 0.25 * s.detach()).numpy(),
                                   rtol=1e-6)
    assert step.count == 1


def test_recovers_planted_clusters_and_predicts_new_rows(close_blobs, fitted):
    X, y = close_blobs
    assert normalized_mutual_info_score(y[:500], fitted.labels_) > 0.9
    np.testing.assert_array_equal(fitted.predict(X[:500]), fitted.labels_)
    assert normalized_mutual_info_score(y[500:], fitted.predict(X[500:])) > 0.9
    np.testing.assert_allclose(fitted.predict_proba(X[:4]).sum(1), 1, rtol=1e-5)
    assert fitted.n_iter_ == 30 == len(fitted.history_)
    assert all(len(h["head_losses"]) == 2 and 0 < h["weight"] <= 1 for h in fitted.history_)
    assert fitted.history_[-1]["weight"] > fitted.history_[0]["weight"]  # the teacher agrees
    # the cluster sizes the loss divides by: a distribution per head, near 1/5 here
    prior = fitted.module_.prior.numpy()
    np.testing.assert_allclose(prior.sum(-1), 1, rtol=1e-5)
    assert np.abs(prior - 0.2).max() < 0.1


def test_the_head_kept_has_the_lowest_last_epoch_loss(fitted):
    np.testing.assert_allclose(fitted.head_losses_, fitted.history_[-1]["head_losses"])
    assert fitted.best_head_ == int(np.argmin(fitted.head_losses_))
    assert fitted.history_[-1]["loss"] == min(fitted.history_[-1]["head_losses"])


def test_teacher_momentum_and_frozen_last_layer(close_blobs):
    X, _ = close_blobs
    copy = TEMI(5, epochs=3, teacher_momentum=0.0, freeze_last_layer=3, **SMALL).fit(X)
    for (name, s), t in zip(copy.module_.student.named_parameters(),
                            copy.module_.teacher.parameters()):
        np.testing.assert_array_equal(s.detach().numpy(), t.detach().numpy(), err_msg=name)
    # frozen for every epoch, the last layer's gain stays at its initial 1
    np.testing.assert_array_equal(copy.module_.student.g.detach().numpy(), 1.0)
    trained = TEMI(5, epochs=3, freeze_last_layer=1, **SMALL).fit(X)
    assert not np.allclose(trained.module_.student.g.detach().numpy(), 1.0)


def test_pair_filter_keeps_agreeing_pairs(close_blobs):
    X, y = close_blobs
    model = TEMI(5, epochs=20, batch_size=64, pair_filter="kmeans", filter_runs=3, **SMALL).fit(X)
    assert 0.5 < model.kept_pairs_ <= 1.0
    assert normalized_mutual_info_score(y, model.labels_) > 0.9
    assert TEMI(5, epochs=1, **SMALL).fit(X).kept_pairs_ == 1.0


def test_same_seed_same_labels_and_another_seed_differs(close_blobs):
    X, _ = close_blobs

    def make(seed):
        return TEMI(5, n_heads=2, hidden=16, bottleneck=8, epochs=2, random_state=seed,
                    device="cpu").fit(X)

    a, b, c = make(1), make(1), make(2)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))


def test_save_load_round_trip_predicts_identically(close_blobs, fitted, tmp_path):
    X, _ = close_blobs
    path = fitted.save(tmp_path / "temi.safetensors")
    loaded = TEMI.load(path)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.best_head_ == fitted.best_head_
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(loaded.module_.prior.numpy(), fitted.module_.prior.numpy())
    assert type(load_reporter(path)) is TEMI


@pytest.mark.parametrize("params", [dict(n_clusters=1), dict(n_heads=0), dict(epochs=0),
                                    dict(beta=0.0), dict(temperature=0),
                                    dict(teacher_momentum=1.5), dict(prior_momentum=-0.1),
                                    dict(batch_size=0), dict(n_neighbors=0),
                                    dict(pair_filter="labels"), dict(filter_runs=0), dict(weighted="yes"),
                                    dict(hidden=(32,))])
def test_bad_parameters_are_refused(close_blobs, params):
    with pytest.raises(ValueError):
        TEMI(**{"n_clusters": 3, "device": "cpu", **params}).fit(close_blobs[0][:50])


