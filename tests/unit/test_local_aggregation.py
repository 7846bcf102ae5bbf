"""Local Aggregation on planted clusters: the losses, the close-neighbour mask, the memory
bank, recovery, the embedding, reproducibility, save/load, store layers and parameter
checks."""

import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from actclust.errors import ActclustError
from actclust.reporters import capabilities
from actclust.reporters._local_aggregation import (BankStep, bank_clusters, bank_rows,
                                                   close_in_background, init_bank,
                                                   instance_loss, la_loss, resolve_count,
                                                   spectral_labels)
from actclust.reporters.local_aggregation import LocalAggregation

SMALL = dict(hidden=(32,), embed_dim=16, ir_epochs=2, epochs=8, n_init=3, random_state=0,
             device="cpu")


@pytest.fixture(scope="module")
def fitted(close_blobs):
    X, _ = close_blobs
    return LocalAggregation(5, **SMALL).fit(X[:500])


def test_registered_as_a_trained_streaming_clusterer():
    caps = capabilities("local_aggregation")
    assert (caps.kind, caps.cost, caps.streams, caps.k_param) == \
        ("clusterer", "trained", True, "n_clusters")
    assert caps.savable and caps.gpu and caps.seeded


def test_la_loss_is_the_close_share_of_the_background():
    rng = np.random.default_rng(0)
    dots = rng.uniform(-1, 1, (6, 9))
    close = rng.random((6, 9)) < 0.4
    close[:, 0] = True  # every row has one close neighbour
    weights = np.exp(dots / 0.07)
    by_hand = np.minimum(-np.log((weights * close).sum(1) / weights.sum(1)), -np.log(1e-7))
    got = la_loss(torch.tensor(dots), torch.tensor(close), 0.07)
    np.testing.assert_allclose(got.numpy(), by_hand, rtol=1e-9)
    # everything close: nothing to gain; nothing close: the authors' clamp at -log 1e-7
    assert la_loss(torch.tensor(dots), torch.ones(6, 9, dtype=bool)).abs().max() < 1e-6
    far = la_loss(torch.tensor(dots), torch.zeros(6, 9, dtype=bool))
    np.testing.assert_allclose(far.numpy(), -np.log(1e-7), rtol=1e-6)


def test_instance_loss_is_the_softmax_over_the_whole_bank():
    dots = torch.tensor([[0.9, 0.1, -0.2], [0.0, 0.5, 0.5]], dtype=torch.float64)
    idx = torch.tensor([0, 2])
    by_hand = -torch.log_softmax(dots / 0.07, 1)[[0, 1], [0, 2]]
    np.testing.assert_allclose(instance_loss(dots, idx, 0.07).numpy(), by_hand.numpy(),
                               rtol=1e-6)
    # it is Local Aggregation's loss with the whole bank as background, the row alone close
    close = torch.nn.functional.one_hot(idx, 3).bool()
    np.testing.assert_allclose(la_loss(dots, close, 0.07).numpy(), by_hand.numpy(),
                               rtol=1e-5)


def test_close_neighbours_share_a_cluster_in_any_run():
    labels = torch.tensor([[0, 0, 1, 1, 2], [0, 1, 1, 0, 0]])
    idx, background = torch.tensor([0, 4]), torch.tensor([[1, 2, 3], [0, 2, 3]])
    close = close_in_background(labels, idx, background)
    # row 0: row 1 by run 0, row 3 by run 1; row 4: rows 0 and 3 by run 1
    assert close.tolist() == [[True, False, True], [True, False, True]]


def test_memory_bank_starts_normalised_and_moves_by_momentum():
    bank = init_bank(50, 8, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(bank.norm(dim=1).numpy(), 1, rtol=1e-6)
    v = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    idx = torch.tensor([4, 7, 9])
    new = bank_rows(bank, idx, v, 0.5)
    expected = torch.nn.functional.normalize(bank[idx] + v, dim=1)
    np.testing.assert_allclose(new.numpy(), expected.numpy(), rtol=1e-6)
    np.testing.assert_allclose(bank_rows(bank, idx, v, 0.0).numpy(), v.numpy(), rtol=1e-6)
    # the bank is written only after the optimiser's step
    net = torch.nn.Linear(2, 1)
    step = BankStep(torch.optim.SGD(net.parameters(), lr=0.1), bank)
    step.pending = (idx, new)
    before = bank.clone()
    step.zero_grad()
    net(torch.ones(1, 2)).sum().backward()
    np.testing.assert_array_equal(bank.numpy(), before.numpy())
    step.step()
    np.testing.assert_array_equal(bank[idx].numpy(), new.numpy())
    assert step.pending is None


def test_bank_clusters_and_counts():
    bank = np.vstack([np.eye(4)[i % 4] + 0.01 * i for i in range(40)]).astype(np.float32)
    labels = bank_clusters(bank, 4, runs=2, seed=0)
    assert labels.shape == (2, 40)
    for run in labels:  # four tight groups, found by every run
        assert len(set(zip(run, np.arange(40) % 4))) == 4
    assert resolve_count(0.25, 40) == 10 and resolve_count(7, 40) == 7
    assert resolve_count(100, 40) == 40 and resolve_count(1e-6, 40) == 1


def test_recovers_planted_clusters_and_predicts_new_rows(close_blobs, fitted):
    X, y = close_blobs
    assert normalized_mutual_info_score(y[:500], fitted.labels_) > 0.9
    # spectral labels_; predict places rows by the clusters' mean embeddings
    assert np.mean(fitted.predict(X[:500]) == fitted.labels_) > 0.95
    assert normalized_mutual_info_score(y[500:], fitted.predict(X[500:])) > 0.9
    embedding = fitted.transform(X[:7])
    assert embedding.shape == (7, 16)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1, rtol=1e-5)
    assert fitted.cluster_centers_.shape == (5, 16)
    assert (fitted.n_background_, fitted.n_centroids_) == (150, 5)  # 0.3 x 500; n_clusters
    stages = [h["stage"] for h in fitted.history_]
    assert stages == ["ir"] * 2 + ["la"] * 8 and fitted.n_iter_ == 10
    la = fitted.history_[2:]
    assert all(h["clustered"] for h in la) and all(0 < h["close"] <= 1 for h in la)
    assert la[-1]["loss"] < la[0]["loss"]


def test_spectral_labels_separate_rings_that_kmeans_cuts():
    from sklearn.datasets import make_circles
    from sklearn.metrics import adjusted_rand_score

    from actclust.reporters import KMeans

    X, y = make_circles(400, factor=0.4, noise=0.03, random_state=0)
    assert adjusted_rand_score(y, spectral_labels(X, 2, 10, n_init=3, seed=0)) > 0.95
    assert adjusted_rand_score(y, KMeans(2, n_init=3, random_state=0).fit(X).labels_) < 0.2


def test_final_kmeans_predicts_its_own_labels(close_blobs):
    X, y = close_blobs
    model = LocalAggregation(5, **SMALL, final="kmeans").fit(X[:500])
    assert normalized_mutual_info_score(y[:500], model.labels_) > 0.9
    np.testing.assert_array_equal(model.predict(X[:500]), model.labels_)
    np.testing.assert_array_equal(model.cluster_centers_, model.kmeans_.cluster_centers_)


def test_final_spectral_clusters_the_embedding_graph(close_blobs):
    from sklearn.metrics import adjusted_rand_score

    X, y = close_blobs
    model = LocalAggregation(5, **SMALL, n_neighbors=8).fit(X[:500])  # final="spectral"
    embedding = model.transform(X[:500])
    # the same partition (ids may permute: eigenvector signs follow float rounding)
    again = spectral_labels(embedding, 5, 8, 3, 0)
    assert adjusted_rand_score(model.labels_, again) > 0.99
    assert not hasattr(model, "kmeans_")
    assert normalized_mutual_info_score(y[:500], model.labels_) > 0.9
    np.testing.assert_allclose(np.linalg.norm(model.cluster_centers_, axis=1), 1, rtol=1e-5)
    # new rows go to the cluster with the nearest normalised mean embedding
    np.testing.assert_array_equal(model.predict(X[500:]),
                                  (model.transform(X[500:]) @ model.cluster_centers_.T)
                                  .argmax(1))
    assert np.mean(model.predict(X[:500]) == model.labels_) > 0.95


def test_kmeans_every_and_counts_as_shares(close_blobs):
    X, _ = close_blobs
    model = LocalAggregation(5, **{**SMALL, "epochs": 4, "ir_epochs": 0}, kmeans_every=3,
                             n_background=40, n_centroids=0.02).fit(X)
    assert [h["clustered"] for h in model.history_] == [True, False, False, True]
    assert (model.n_background_, model.n_centroids_) == (40, 12)


def test_dropout_view_recovers_planted_clusters(close_blobs):
    X, y = close_blobs
    model = LocalAggregation(5, **SMALL, perturb="dropout", noise_scale=0.2).fit(X)
    assert normalized_mutual_info_score(y, model.labels_) > 0.9


def test_same_seed_same_labels_and_another_seed_differs(close_blobs):
    X, _ = close_blobs
    params = {**SMALL, "epochs": 2, "ir_epochs": 1}
    a = LocalAggregation(5, **params).fit(X)
    b = LocalAggregation(5, **params).fit(X)
    c = LocalAggregation(5, **{**params, "random_state": 1}).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    assert not np.array_equal(a.transform(X), c.transform(X))


@pytest.mark.parametrize("params", [dict(n_clusters=1), dict(embed_dim=0), dict(epochs=0),
                                    dict(ir_epochs=-1), dict(n_background=0),
                                    dict(n_background=1.5), dict(n_centroids=0),
                                    dict(n_kmeans=0), dict(kmeans_every=0),
                                    dict(temperature=0), dict(bank_momentum=1.0),
                                    dict(batch_size=1), dict(optimizer="lbfgs"),
                                    dict(lr=0), dict(perturb="flip"), dict(noise_scale=-0.1),
                                    dict(n_init=0), dict(standardize="yes"),
                                    dict(final="ward"), dict(n_neighbors=1)])
def test_bad_parameters_are_refused(close_blobs, params):
    with pytest.raises(ValueError):
        LocalAggregation(**{"n_clusters": 3, "device": "cpu", **params}).fit(close_blobs[0][:50])


def test_predict_and_transform_before_fit_say_not_fitted(close_blobs):
    from sklearn.exceptions import NotFittedError

    for method in ("predict", "transform"):
        with pytest.raises(NotFittedError):
            getattr(LocalAggregation(3), method)(close_blobs[0][:5])


def test_dropout_of_one_and_too_few_rows_are_refused(close_blobs):
    with pytest.raises(ActclustError, match="below 1"):
        LocalAggregation(3, perturb="dropout", noise_scale=1.0, device="cpu").fit(close_blobs[0])
    with pytest.raises(ActclustError, match="at least 5 rows"):
        LocalAggregation(5, device="cpu").fit(close_blobs[0][:4])


def test_spectral_refuses_a_graph_in_pieces_and_the_fit_falls_back_to_kmeans():
    import warnings

    from actclust.reporters._local_aggregation import spectral_labels

    rng = np.random.default_rng(0)
    # many exact copies of a few rows (as repeated tokens embed): their neighbours are
    # each other, so the graph has several components
    E = np.repeat(rng.normal(size=(6, 4)), 20, axis=0).astype(np.float32)
    assert spectral_labels(E, 3, 10, n_init=2, seed=0) is None
    X = np.repeat(rng.normal(size=(6, 8)), 20, axis=0).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = LocalAggregation(3, hidden=(8,), embed_dim=4, ir_epochs=1, epochs=2, n_init=2,
                                 noise_scale=0.0, random_state=0, device="cpu").fit(X)
    assert model.final_ == "kmeans" and hasattr(model, "kmeans_")
    assert any("falls into more than 3 pieces" in str(w.message) for w in caught)
    np.testing.assert_array_equal(model.predict(X), model.kmeans_.predict(model.transform(X)))
