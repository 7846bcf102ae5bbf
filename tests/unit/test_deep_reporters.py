"""DEC and IDEC on small planted data: recovery, reproducibility, history, divergence
(store layers: test_streaming.py; the trainer itself: test_trainer.py; files:
test_reporter_files.py)."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from actclust.errors import ActclustError
from actclust.reporters import DEC, IDEC
from actclust.reporters._trainer import TrainingDiverged

SMALL = dict(hidden=(32,), embed_dim=4, pretrain="end-to-end", pretrain_epochs=25, n_init=5,
             device="cpu")


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(400, centers=4, n_features=12, cluster_std=1.0, random_state=7)


@pytest.mark.parametrize("cls", [DEC, IDEC])
def test_recovers_planted_clusters_and_records_history(cls, blobs):
    X, y = blobs
    model = cls(4, random_state=0, **SMALL).fit(X)
    assert adjusted_rand_score(y, model.labels_) > 0.95
    phases = [h["phase"] for h in model.history_]
    assert phases.count("pretrain") == 25 and "cluster" in phases
    clustering = [h for h in model.history_ if h["phase"] == "cluster"]
    assert all({"delta_label", "largest_cluster", "degenerate"} <= set(h) for h in clustering)
    assert clustering[-1].get("stop") or len(clustering) == model.max_updates
    assert not any(h["degenerate"] for h in clustering)
    # the centres live in the module, where the trainer restores them from
    np.testing.assert_array_equal(model.module_.centers.detach().numpy(),
                                  model.cluster_centers_)
    proba = model.predict_proba(X[:5])
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    np.testing.assert_array_equal(proba.argmax(1), model.labels_[:5])


def test_layerwise_pretraining_runs_each_layer(blobs):
    X, y = blobs
    model = DEC(4, hidden=(16, 16), embed_dim=4, pretrain="layerwise", pretrain_epochs=10,
                n_init=3, random_state=0, device="cpu").fit(X)
    phases = {h["phase"] for h in model.history_}
    assert {"pretrain layer 0", "pretrain layer 1", "pretrain layer 2", "pretrain"} <= phases
    assert adjusted_rand_score(y, model.labels_) > 0.9


def test_divergence_names_the_epoch_and_suggests_a_lower_rate(blobs):
    X, _ = blobs
    with pytest.raises(TrainingDiverged, match=r"epoch \d+.*Lower the learning rate \(now 1e\+06\)"):
        DEC(4, hidden=(32,), embed_dim=4, pretrain="end-to-end", pretrain_epochs=5,
            pretrain_lr=1e6, n_init=1, random_state=0, device="cpu").fit(X * 1e3)


def test_fewer_rows_than_clusters():
    with pytest.raises(ActclustError, match="n_clusters=12 needs at least 12 rows"):
        DEC(12, **SMALL).fit(np.random.default_rng(0).normal(size=(8, 3)))


# -- the alternatives to the paper's 10-d autoencoder: pretrain="none", init="input",
# -- a wider embedding -------------------------------------------------------------------

AE = dict(hidden=(32,), pretrain="end-to-end", pretrain_epochs=25, n_init=5, device="cpu")
NONE = dict(pretrain="none", n_init=5, device="cpu")


@pytest.mark.parametrize("cls, params", [
    (DEC, NONE), (IDEC, NONE), (DEC, {**NONE, "embed_dim": 3}),
    (DEC, {**AE, "embed_dim": 4, "init": "input"}),
    (IDEC, {**AE, "embed_dim": 4, "init": "input"}),
    (DEC, {**AE, "embed_dim": 32}),
], ids=["dec-none", "idec-none", "dec-none-3d", "dec-input", "idec-input", "dec-wide"])
def test_each_option_recovers_planted_clusters_reproducibly(cls, params, blobs):
    X, y = blobs
    first = cls(4, random_state=3, **params).fit(X)
    assert adjusted_rand_score(y, first.labels_) > 0.95
    again = cls(4, random_state=3, **params).fit(X)
    np.testing.assert_array_equal(first.labels_, again.labels_)
    np.testing.assert_array_equal(first.cluster_centers_, again.cluster_centers_)
    np.testing.assert_array_equal(first.predict(X), first.labels_)


@pytest.mark.parametrize("cls", [DEC, IDEC])
def test_pretrain_none_trains_no_autoencoder(cls, blobs):
    X, _ = blobs
    model = cls(4, pretrain="none", embed_dim=5, n_init=3, random_state=0,
                device="cpu").fit(X)
    assert not any(h["phase"].startswith("pretrain") for h in model.history_)
    assert {h["phase"] for h in model.history_} == {"cluster"}
    encoder = model.module_["encoder"]
    assert len(encoder) == 1 and tuple(encoder[0].weight.shape) == (5, X.shape[1])
    if cls is DEC:  # nothing to reconstruct: no decoder at all
        assert "decoder" not in model.module_
        assert not any(name.startswith("decoder") for name in model.module_.state_dict())
    else:  # IDEC reconstructs through the transpose of the map
        assert tuple(model.module_["decoder"][0].weight.shape) == (X.shape[1], 5)
    assert model.transform(X[:3]).shape == (3, 5) and model.cluster_centers_.shape == (4, 5)


def test_pretrain_none_starts_from_the_principal_axes(blobs):
    from sklearn.decomposition import PCA

    X, _ = blobs
    # one update at a vanishing learning rate leaves the map where it started
    model = DEC(4, pretrain="none", embed_dim=3, lr=1e-12, max_updates=1, n_init=2,
                random_state=0, device="cpu").fit(X)
    weight = model.module_["encoder"][0].weight.detach().numpy()
    axes = PCA(3).fit(X).components_
    np.testing.assert_allclose(np.abs((weight * axes).sum(1)), 1, atol=1e-4)
    np.testing.assert_allclose(model.transform(X), (X - X.mean(0)) @ axes.T / model.scale_
                               * np.sign((weight * axes).sum(1)), atol=1e-3)


def test_pretrain_none_embedding_is_at_most_the_input_width(blobs):
    X, _ = blobs
    model = DEC(4, pretrain="none", embed_dim=100, n_init=2, random_state=0,
                device="cpu").fit(X)
    assert model.cluster_centers_.shape == (4, X.shape[1])
    # before training, the full-width map is a rotation of the scaled rows
    start = DEC(4, pretrain="none", embed_dim=100, lr=1e-12, max_updates=1, n_init=2,
                random_state=0, device="cpu").fit(X)
    w = start.module_["encoder"][0].weight.detach().numpy()
    np.testing.assert_allclose(w @ w.T, np.eye(X.shape[1]), atol=1e-4)


def test_init_input_takes_centres_from_kmeans_on_the_rows(blobs):
    from sklearn.metrics import adjusted_rand_score as ari

    from actclust.reporters import KMeans
    from actclust.reporters._base import seed_from

    X, _ = blobs
    # an untrained encoder and a vanishing learning rate: the centres stay where they
    # were put, so they can be compared with k-means on the rows
    params = dict(hidden=(16,), embed_dim=2, pretrain_epochs=0, lr=1e-12, max_updates=1,
                  n_init=3, random_state=5, device="cpu")
    model = DEC(4, init="input", **params).fit(X)
    km = KMeans(4, n_init=3, random_state=seed_from(5), device="cpu",
                max_points_per_centroid=None).fit(X)
    z = model.transform(X)
    expected = np.stack([z[km.labels_ == j].mean(0) for j in range(4)])
    np.testing.assert_allclose(model.cluster_centers_, expected, rtol=1e-4, atol=1e-5)
    # ... which the k-means of the (random) embedding does not give
    other = DEC(4, init="embedding", **params).fit(X)
    assert not np.allclose(other.cluster_centers_, expected, atol=1e-3)
    assert ari(km.labels_, model.labels_) >= ari(km.labels_, other.labels_)


@pytest.mark.parametrize("params, message", [
    (dict(pretrain="pca"), "'pretrain' parameter of DEC must be a str among"),
    (dict(init="kmeans"), "'init' parameter of DEC must be a str among"),
    (dict(embed_dim=0), "'embed_dim' parameter of DEC must be None or an int"),
])
def test_invalid_options_are_refused(params, message, blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match=message):
        DEC(4, **params).fit(X)
