"""TURTLE: the outer loss, the inner classifiers, planted clusters in one and several
spaces, new rows, store layers loaded or streamed, save/load and bad input."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.metrics import normalized_mutual_info_score as nmi

from actclust.errors import ActclustError
from actclust.reporters import TURTLE, capabilities, load_reporter
from actclust.reporters._turtle_parts import (_encoder, _inner_fit, _one_head, as_spaces,
                                             head_losses, task_labels, turtle_loss)
from actclust.store.reader import LayerView
from tests.unit.test_store import LAYERS, make_store

SMALL = dict(random_state=0, device="cpu")
FAST = dict(lr=1e-2, inner_lr=1e-2, **SMALL)  # small problems need few, larger steps


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(400, centers=4, n_features=10, cluster_std=1.5, random_state=3)


@pytest.fixture(scope="module")
def fitted(blobs):
    X, _ = blobs
    return TURTLE(4, steps=150, **FAST).fit(X[:300])


@pytest.fixture(scope="module")
def two_views():
    """Four planted clusters seen by two spaces, each with its own, stronger nuisance
    partition (independent of the clusters and of the other space's)."""
    rng = np.random.default_rng(0)
    n = 400
    truth = rng.integers(0, 4, n)
    spaces = []
    for _ in range(2):
        nuisance = rng.integers(0, 4, n)
        shared = rng.normal(0, 6, (4, 6))[truth]
        own = rng.normal(0, 12, (4, 6))[nuisance]
        spaces.append(np.hstack([shared, own]) + rng.normal(0, 1, (n, 12)))
    return spaces, truth


def test_registered_as_a_trained_streaming_clusterer():
    caps = capabilities("turtle")
    assert (caps.kind, caps.cost, caps.streams, caps.k_param) == \
        ("clusterer", "trained", True, "n_clusters")
    assert caps.savable and caps.gpu and caps.seeded


def test_outer_loss_on_hand_made_tensors():
    labels = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.25, 0.25]])
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [0.5, 0.5, 3.0], [1.0, 1.0, 1.0]])
    ce = -(labels * torch.log_softmax(logits, 1)).sum(1).mean()
    mean = labels.mean(0)
    entropy = -(mean * mean.log()).sum()
    got = turtle_loss([logits, logits], labels, [labels], gamma=2.0)
    np.testing.assert_allclose(got.item(), 2 * ce.item() - 2 * entropy.item(), rtol=1e-6)
    # the hypergradient reaches the labels, never the inner classifiers' logits
    logits.requires_grad_(True)
    soft = labels.clone().requires_grad_(True)
    turtle_loss([logits], soft, [soft], gamma=1.0).backward()
    assert logits.grad is None and soft.grad.abs().sum() > 0
    one = torch.zeros(4, 3)
    one[:, 0] = 1  # one cluster: perfectly fitted, but no entropy
    assert turtle_loss([50 * one], one, [one], 10.0) > turtle_loss(
        [50 * torch.eye(3)], torch.eye(3), [torch.eye(3)], 10.0)


def test_inner_classifiers_take_torch_adam_steps():
    g = torch.Generator().manual_seed(0)
    z, labels = torch.randn(50, 7, generator=g), torch.softmax(torch.randn(50, 3, generator=g), 1)
    linear = torch.nn.Linear(7, 3)
    weights = [[linear.weight.detach().clone(), linear.bias.detach().clone()]]
    opt = torch.optim.Adam(linear.parameters(), lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(linear(z), labels).backward()
        opt.step()
    _inner_fit([z], labels, weights, steps=5, lr=1e-2)
    np.testing.assert_allclose(weights[0][0], linear.weight.detach(), atol=1e-5)
    np.testing.assert_allclose(weights[0][1], linear.bias.detach(), atol=1e-5)


def test_stacked_heads_are_independent_problems_in_one_product():
    """Three heads trained in one batched product take the same steps as three
    single-head problems: the inner classifiers, the labelling and the outer loss."""
    torch.manual_seed(0)
    heads, clusters = 3, 4
    encoder = _encoder((7,), clusters, heads)
    z = torch.randn(40, 7)
    labels, per_space = task_labels(encoder, [z])
    assert labels.shape == (heads, 40, clusters)
    W, b = torch.randn(heads * clusters, 7), torch.randn(heads * clusters)
    stacked = [[W.clone(), b.clone()]]
    _inner_fit([z], labels.detach(), stacked, steps=4, lr=1e-2)
    losses = head_losses([(z @ stacked[0][0].T + stacked[0][1]).view(40, heads, clusters)
                          .transpose(0, 1)], labels, per_space, gamma=3.0)
    for h in range(heads):
        one = _one_head(encoder, h)
        alone_labels, alone_space = task_labels(one, [z])
        torch.testing.assert_close(alone_labels, labels[h])
        part = slice(h * clusters, (h + 1) * clusters)
        single = [[W[part].clone(), b[part].clone()]]
        _inner_fit([z], alone_labels.detach(), single, steps=4, lr=1e-2)
        torch.testing.assert_close(single[0][0], stacked[0][0][part])
        logits = z @ single[0][0].T + single[0][1]
        torch.testing.assert_close(turtle_loss([logits], alone_labels, alone_space, 3.0),
                                   losses[h])


def test_several_heads_keep_the_lowest_loss_one(blobs, tmp_path):
    X, y = blobs
    model = TURTLE(4, n_heads=3, steps=150, **FAST).fit(X[:300])
    assert model.head_losses_.shape == (3,)
    assert model.best_head_ == int(np.argmin(model.history_[-1]["head_losses"]))
    assert model.module_[0]["v"].shape == (4, 10)  # one head kept, saved like any other
    np.testing.assert_array_equal(model.predict(X[:300]), model.labels_)
    assert nmi(y[:300], model.labels_) > 0.95
    loaded = TURTLE.load(model.save(tmp_path / "heads.safetensors"))
    np.testing.assert_array_equal(loaded.predict(X[300:]), model.predict(X[300:]))
    single = TURTLE(4, steps=150, **FAST).fit(X[:300])
    assert single.head_losses_.shape == (1,) and single.best_head_ == 0


def test_recovers_planted_blobs_and_predicts_new_rows(blobs, fitted):
    X, y = blobs
    assert nmi(y[:300], fitted.labels_) > 0.95
    np.testing.assert_array_equal(fitted.predict(X[:300]), fitted.labels_)
    assert nmi(y[300:], fitted.predict(X[300:])) > 0.95  # rows it never saw
    np.testing.assert_allclose(fitted.predict_proba(X[:5]).sum(1), 1, rtol=1e-5)
    assert fitted.n_iter_ == 150 and [h["step"] for h in fitted.history_] == [100, 150]
    assert fitted.n_spaces_ == 1 and fitted.space_dims_ == (10,)
    assert fitted.history_[-1]["loss"] < fitted.history_[0]["loss"]


def test_several_spaces_find_what_they_share(two_views):
    spaces, truth = two_views
    alone = [TURTLE(4, steps=300, **FAST).fit(space).labels_ for space in spaces]
    joint = TURTLE(4, steps=300, **FAST).fit(spaces)
    # each space alone mixes in its own, stronger nuisance partition; only the clusters
    # both spaces share are predictable from each
    assert all(nmi(truth, labels) < 0.6 for labels in alone)
    assert nmi(truth, joint.labels_) > 0.9
    assert joint.n_spaces_ == 2 and joint.space_dims_ == (12, 12)
    assert joint.n_features_in_ == 24 and len(joint.mean_) == 2
    np.testing.assert_array_equal(joint.predict(tuple(spaces)), joint.labels_)


def test_same_seed_same_labels_tensors_and_lists_of_one(blobs):
    X, _ = blobs
    a = TURTLE(4, steps=20, **SMALL).fit(X)
    np.testing.assert_array_equal(TURTLE(4, steps=20, **SMALL).fit(torch.from_numpy(X))
                                  .predict_proba(X), a.predict_proba(X))
    one = TURTLE(4, steps=20, **SMALL).fit([X])
    np.testing.assert_array_equal(one.labels_, a.labels_)
    np.testing.assert_array_equal(one.predict([X]), a.predict(X))
    other = TURTLE(4, steps=20, random_state=1, device="cpu").fit(X)
    assert not np.array_equal(other.predict_proba(X), a.predict_proba(X))


def test_as_spaces_tells_a_list_of_rows_from_a_list_of_spaces():
    assert as_spaces([[1.0, 2.0], [3.0, 4.0]])[1] is False
    assert as_spaces((np.zeros((3, 2)), torch.zeros(3, 4)))[1] is True


@pytest.mark.parametrize("several", [False, True])
def test_save_load_round_trip(blobs, two_views, fitted, several, tmp_path):
    model = TURTLE(4, steps=30, **SMALL).fit(two_views[0]) if several else fitted
    X = two_views[0] if several else blobs[0]
    path = model.save(tmp_path / "turtle.safetensors")
    loaded = TURTLE.load(path)
    assert loaded.get_params() == model.get_params()
    assert loaded.space_dims_ == model.space_dims_
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.labels_, model.labels_)
    assert type(load_reporter(path)) is TURTLE
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict(X), model.predict(X))


def test_save_load_round_trip_of_several_spaces(two_views, tmp_path):
    spaces, _ = two_views
    model = TURTLE(4, steps=30, **SMALL).fit([spaces[0], spaces[1][:, :5]])
    loaded = TURTLE.load(model.save(tmp_path / "two.safetensors"))
    assert loaded.space_dims_ == (12, 5) and isinstance(loaded.mean_, list)
    np.testing.assert_array_equal(loaded.predict_proba([spaces[0], spaces[1][:, :5]]),
                                  model.predict_proba([spaces[0], spaces[1][:, :5]]))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("turtle") / "s", n_docs=60, rows_per_doc=5,
                      shard_docs=25, dim=6)


def refuse(*args, **kwargs):
    raise AssertionError("the whole layer was loaded")


def test_store_layers_give_the_array_labels_loaded_or_streamed(store, monkeypatch):
    store, data = store
    arrays = [data[name] for name in LAYERS[:2]]
    views = [store.layer(name) for name in LAYERS[:2]]

    def make(budget, **kw):
        return TURTLE(3, steps=20, memory_budget_gb=budget, **SMALL, **kw)

    in_memory = make(2.0).fit(arrays)
    np.testing.assert_array_equal(make(2.0).fit(views).labels_, in_memory.labels_)
    single = make(2.0, batch_size=64).fit(arrays[0])  # batches of rows, not all of them
    monkeypatch.setattr(LayerView, "to_numpy", refuse)
    monkeypatch.setattr(LayerView, "__array__", refuse)
    streamed = make(1e-9).fit(views)
    np.testing.assert_array_equal(streamed.labels_, in_memory.labels_)
    np.testing.assert_array_equal(streamed.predict(views), in_memory.predict(arrays))
    np.testing.assert_array_equal(make(1e-9, batch_size=64).fit(views[0]).labels_,
                                  single.labels_)


def test_bad_input_is_refused(blobs, fitted):
    X, _ = blobs
    with pytest.raises(ActclustError, match="different numbers of rows"):
        TURTLE(3, **SMALL).fit([X, X[:-1]])
    with pytest.raises(ActclustError, match="empty list"):
        TURTLE(3, **SMALL).fit([])
    with pytest.raises(ActclustError, match="fitted on 1"):
        fitted.predict([X, X])
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X[:, :5])
    two = TURTLE(3, steps=5, **SMALL).fit([X, X[:, :4]])
    with pytest.raises(ActclustError, match="expecting 4 features"):
        two.predict([X, X])
    bad = X.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ActclustError, match="NaN or inf"):
        TURTLE(3, **SMALL).fit([X, bad])
    with pytest.raises(ActclustError, match="at least 5 rows"):
        TURTLE(5, **SMALL).fit(X[:4])


@pytest.mark.parametrize("params", [dict(n_clusters=1), dict(steps=0), dict(inner_steps=0),
                                    dict(gamma=-1.0), dict(batch_size=1), dict(lr=0.0),
                                    dict(warm_start="yes")])
def test_bad_parameters_are_refused(blobs, params):
    with pytest.raises(ValueError):
        TURTLE(**{"n_clusters": 3, **params}).fit(blobs[0][:50])
