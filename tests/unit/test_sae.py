"""The TopK sparse autoencoder: planted directions recovered, k = 1 against k-means, the
geometric median, unit decoder directions, dead latents and AuxK, same seed, files,
streaming from a store layer, and parameter errors."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from actclust.errors import ActclustError
from actclust.metrics import nmi
from actclust.reporters import KMeans, capabilities, load_reporter
from actclust.reporters._sae_parts import BatchLoss, geometric_median, network_classes
from actclust.reporters.sae import SparseAutoencoder
from actclust.store.reader import LayerView
from tests.unit.test_store import make_store

SMALL = dict(random_state=0, device="cpu")


def planted(n=2000, d=32, n_dirs=10, active=2, noise=0.02, seed=0):
    """Rows that are non-negative combinations of ``active`` of ``n_dirs`` random unit
    directions, plus an offset and a little noise; returns the rows and the directions."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(n_dirs, d))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    weights = np.zeros((n, n_dirs))
    for row in weights:
        row[rng.choice(n_dirs, active, replace=False)] = rng.uniform(0.5, 2.0, active)
    X = weights @ directions + noise * rng.normal(size=(n, d)) + rng.normal(size=d)
    return X.astype(np.float32), directions


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def fitted(data):
    return SparseAutoencoder(20, k=2, **SMALL).fit(data[0])


def best_cosines(sae, directions):
    return (directions @ sae.W_dec_.T).max(1)


def test_registered_as_a_trained_streaming_transformer():
    caps = capabilities("sae")
    assert (caps.kind, caps.cost, caps.streams, caps.savable, caps.gpu) == \
        ("transformer", "trained", True, True, True)
    assert caps.k_param is None


def test_recovers_the_planted_directions(data, fitted):
    # Each planted direction has a decoder direction within cos 0.9 after the default 50
    # epochs (the worst is 0.99). Cut to 5 epochs (40 steps) the same fit is far from it
    # (measured: the worst 0.2-0.3): the threshold separates trained from untrained.
    X, directions = data
    assert best_cosines(fitted, directions).min() > 0.9
    short = SparseAutoencoder(20, k=2, epochs=5, **SMALL).fit(X)
    assert best_cosines(short, directions).min() < 0.9
    assert fitted.fvu_ < short.fvu_


def test_codes_are_k_sparse_and_rebuild_the_rows(data, fitted):
    X = data[0]
    codes = fitted.transform(X)
    assert codes.shape == (len(X), 20) and codes.dtype == np.float32
    assert (codes >= 0).all() and ((codes != 0).sum(1) <= 2).all()
    rebuilt = fitted.reconstruct(X)
    np.testing.assert_allclose(fitted.inverse_transform(codes), rebuilt, atol=1e-4)
    np.testing.assert_allclose(codes @ fitted.W_dec_ + fitted.b_pre_, rebuilt, atol=1e-4)
    # the fitted weights are in input units: the encoder formula gives the codes
    pre = (X - fitted.b_pre_) @ fitted.W_enc_ + fitted.b_enc_
    top = np.argsort(-pre, axis=1)[:, :2]
    np.testing.assert_allclose(np.take_along_axis(codes, top, 1),
                               np.maximum(np.take_along_axis(pre, top, 1), 0), atol=1e-3)
    found = fitted.metrics(X)
    assert found == pytest.approx({"l0": fitted.l0_, "fvu": fitted.fvu_,
                                   "dead_fraction": fitted.dead_fraction_})
    expected_fvu = ((X - rebuilt) ** 2).sum() / ((X - X.mean(0)) ** 2).sum()
    assert found["fvu"] == pytest.approx(expected_fvu, rel=1e-3)
    assert found["l0"] == pytest.approx((codes != 0).sum(1).mean())


def test_decoder_directions_have_unit_norm(fitted):
    np.testing.assert_allclose(np.linalg.norm(fitted.W_dec_, axis=1), 1.0, atol=1e-5)


def test_history_records_loss_fvu_and_dead_share(fitted):
    assert fitted.n_iter_ == len(fitted.history_) == 50
    assert set(fitted.history_[0]) >= {"epoch", "loss", "fvu", "dead", "aux"}
    assert fitted.history_[-1]["fvu"] < fitted.history_[0]["fvu"]


def test_k1_partition_is_close_to_kmeans():
    # clusters in distinct directions from the data's centre: each k = 1 latent takes
    # one cluster, its decoder direction pointing at the cluster's centre
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 20))
    centres = 8 * centres / np.linalg.norm(centres, axis=1, keepdims=True)
    X, _ = make_blobs(600, centers=centres, n_features=20, random_state=0)
    sae = SparseAutoencoder(5, k=1, epochs=100, batch_size=64, **SMALL).fit(X)
    km = KMeans(5, n_init=10, random_state=0).fit(X)
    assert nmi(km.labels_, sae.predict_feature(X)) > 0.9
    towards = km.cluster_centers_ - sae.b_pre_
    towards /= np.linalg.norm(towards, axis=1, keepdims=True)
    assert (towards @ sae.W_dec_.T).max(1).min() > 0.95


def test_geometric_median_ignores_outliers():
    rng = np.random.default_rng(0)
    centre = np.array([3.0, -2.0, 1.0])
    inliers = centre + 0.1 * rng.normal(size=(90, 3))
    outliers = centre + 50 + rng.normal(size=(10, 3))
    X = np.r_[inliers, outliers]
    median = geometric_median(X)
    assert np.linalg.norm(median - centre) < 0.1
    assert np.linalg.norm(X.mean(0) - centre) > 5
    # it minimises the summed distance: no nudge lowers it
    cost = lambda m: np.linalg.norm(X - m, axis=1).sum()  # noqa: E731
    assert all(cost(median) <= cost(median + step) for step in 0.01 * np.eye(3))


def test_pre_encoder_bias_starts_at_the_geometric_median(data):
    X = data[0]
    sae = SparseAutoencoder(20, k=2, epochs=1, lr=1e-12, **SMALL).fit(X)
    np.testing.assert_allclose(sae.b_pre_, geometric_median(X), atol=1e-3)


def test_dead_latents_are_counted(data):
    # 64 latents for 10 planted directions: many never fire
    sae = SparseAutoencoder(64, k=2, epochs=20, **SMALL).fit(data[0])
    assert 0 < sae.dead_fraction_ < 1
    never = (sae.transform(data[0]) == 0).all(0).mean()
    assert sae.dead_fraction_ == pytest.approx(never)
    assert sae.history_[-1]["dead"] > 0


def _net_and_batch(aux_coef):
    torch.manual_seed(0)
    net = network_classes()["SAENet"](6, 8)
    net.init_from(1, np.zeros(6), torch.Generator().manual_seed(0))
    x = torch.randn(32, 6)
    with torch.no_grad():  # latents 4-7 win every row's top 1; 0-3 stay positive, unused
        net.b_enc.copy_(torch.tensor([1.0] * 4 + [10.0] * 4))
    net.last_fired[:4] = 100  # latents 0-3 are dead
    loss = BatchLoss(net, k=1, k_aux=4, aux_coef=aux_coef, dead_after=50, total_var=6.0)
    return net, x, loss


def test_auxk_trains_only_dead_latents_on_the_residual():
    net, x, loss = _net_and_batch(0.0)
    plain = loss(x)
    plain.backward()
    idle = net.W_dec.grad.abs().sum(1) == 0  # neither in the top 1 of any row
    net, x, loss = _net_and_batch(1 / 32)
    with_aux = loss(x)
    with_aux.backward()
    assert with_aux > plain and loss.record()["aux"] > 0
    dead = torch.arange(8) < 4
    # only dead latents gain a gradient from AuxK; latents that stayed idle get none
    assert (net.W_dec.grad.abs().sum(1)[idle & ~dead] == 0).all()
    assert (net.W_dec.grad.abs().sum(1)[dead] > 0).all()
    assert (net.b_enc.grad[dead] != 0).all()
    # the latents that fired in the batch count from zero again; the dead ones go on
    assert (net.last_fired[~dead] == 0).all() and (net.last_fired[dead] == 132).all()


def test_no_dead_latent_no_auxk(data):
    sae = SparseAutoencoder(20, k=2, epochs=3, dead_after=10**9, **SMALL).fit(data[0])
    assert all(record["aux"] == 0 for record in sae.history_)


def test_same_seed_same_codes_and_another_seed_differs(data):
    X = data[0][:500]
    make = lambda seed: SparseAutoencoder(12, k=2, epochs=3, random_state=seed,  # noqa: E731
                                          device="cpu").fit(X)
    np.testing.assert_array_equal(make(1).transform(X), make(1).transform(X))
    assert not np.array_equal(make(1).W_dec_, make(2).W_dec_)


def test_top_rows_are_each_latents_largest_activations(data, fitted):
    X = data[0]
    codes = fitted.transform(X)
    tops = fitted.top_rows(X, n_rows=7)
    assert len(tops) == fitted.n_latents_
    for j, rows in enumerate(tops):
        column = codes[:, j]
        assert len(rows) == min(7, int((column > 0).sum()))
        assert (np.diff(column[rows]) <= 0).all() and (column[rows] > 0).all()
        if len(rows):
            assert column[rows[-1]] >= np.sort(column)[-len(rows)]
    floor = float(np.median(codes.max(0)))  # above half the latents' largest activation
    high = fitted.top_rows(X, n_rows=7, min_activation=floor)
    for j, (rows, kept) in enumerate(zip(tops, high)):
        np.testing.assert_array_equal(kept, rows[codes[rows, j] > floor])
    assert sum(map(len, high)) < sum(map(len, tops))


def test_save_load_round_trip(data, fitted, tmp_path):
    X = data[0]
    path = fitted.save(tmp_path / "sae.safetensors")
    loaded = load_reporter(path)
    assert type(loaded) is SparseAutoencoder
    assert loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(loaded.transform(X), fitted.transform(X))
    np.testing.assert_array_equal(loaded.W_dec_, fitted.W_dec_)
    assert (loaded.l0_, loaded.fvu_, loaded.k_) == (fitted.l0_, fitted.fvu_, fitted.k_)


def test_streamed_store_layer_gives_the_array_codes(tmp_path, monkeypatch):
    store, arrays = make_store(tmp_path / "s", n_docs=60, rows_per_doc=5, shard_docs=25,
                               dim=6)
    X, view = arrays["blocks.0.hook_out"], store.layer("blocks.0.hook_out")
    make = lambda budget: SparseAutoencoder(12, k=3, epochs=4, memory_budget_gb=budget,  # noqa: E731
                                            **SMALL)
    in_memory = make(2.0).fit(X)
    np.testing.assert_array_equal(make(2.0).fit(view).transform(X), in_memory.transform(X))

    def refuse(*args, **kwargs):
        raise AssertionError("the whole layer was loaded")

    monkeypatch.setattr(LayerView, "to_numpy", refuse)
    monkeypatch.setattr(LayerView, "__array__", refuse)
    streamed = make(1e-9).fit(view)
    np.testing.assert_array_equal(streamed.transform(view), in_memory.transform(X))
    assert streamed.metrics(view) == pytest.approx(in_memory.metrics(X))
    for a, b in zip(streamed.top_rows(view, 5), in_memory.top_rows(X, 5)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("params", [dict(n_latents=0), dict(k=0), dict(k_aux=-1),
                                    dict(aux_coef=-0.1), dict(dead_after=0), dict(lr=0),
                                    dict(epochs=0), dict(batch_size=0), dict(normalize=1)])
def test_bad_parameters_are_refused(data, params):
    with pytest.raises(ValueError):
        SparseAutoencoder(**params).fit(data[0][:50])


def test_k_above_n_latents_and_bad_inputs_say_what_to_do(data, fitted):
    with pytest.raises(ActclustError, match="n_latents >= k"):
        SparseAutoencoder(4, k=5, **SMALL).fit(data[0][:50])
    with pytest.raises(ActclustError, match="20 columns"):
        fitted.inverse_transform(np.zeros((3, 7)))
    with pytest.raises(ActclustError, match="n_rows"):
        fitted.top_rows(data[0], n_rows=0)
    bad = data[0][:20].copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fitted.transform(bad)
