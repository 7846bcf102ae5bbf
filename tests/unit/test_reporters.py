"""Classical reporters on data with known structure, reproducibility, stores, bad input."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits, make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from actclust.errors import ActclustError
from actclust.reporters import (GMM, PCA, AEKMeans, Agglomerative, KMeans, capabilities,
                                get_reporter, make_reporter, registry, select_k)
from tests.unit.test_store import make_store


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(600, centers=4, n_features=8, cluster_std=1.0, random_state=3)


@pytest.fixture(scope="module")
def anisotropic():
    X, y = make_blobs(600, centers=3, random_state=170)
    return X @ np.array([[0.6, -0.6], [-0.4, 0.8]]), y


CLUSTERERS = {
    "kmeans": lambda k: KMeans(k, n_init=3, random_state=0),
    "gmm": lambda k: GMM(k, random_state=0),
    "agglomerative": lambda k: Agglomerative(k),
    "aekmeans": lambda k: AEKMeans(k, epochs=30, random_state=0, device="cpu"),
}


@pytest.mark.parametrize("name", CLUSTERERS)
def test_recovers_planted_blobs(name, blobs):
    X, y = blobs
    model = CLUSTERERS[name](4).fit(X)
    assert adjusted_rand_score(y, model.labels_) > 0.95
    np.testing.assert_array_equal(model.predict(X), model.labels_)


# Short settings for the same-seed check; a registered reporter not listed here is checked
# with its defaults, so a new reporter is covered the day it is registered.
QUICK = {
    "kmeans": dict(n_init=3), "aekmeans": dict(epochs=5, device="cpu"),
    "dec": dict(hidden=(32,), embed_dim=4, pretrain_epochs=5, max_updates=50, n_init=2,
                device="cpu"),
    "idec": dict(hidden=(32,), embed_dim=4, pretrain_epochs=5, max_updates=50, n_init=2,
                 device="cpu"),
    "iic": dict(epochs=6, device="cpu"), "deepcluster": dict(epochs=3, device="cpu"),
    "scan": dict(hidden=(16,), n_heads=2, epochs=5, device="cpu"),
    "temi": dict(hidden=16, bottleneck=8, n_heads=2, epochs=3, device="cpu"),
    "turtle": dict(steps=20, device="cpu"),
    "local_aggregation": dict(hidden=(16,), embed_dim=8, ir_epochs=1, epochs=3, n_init=2,
                              device="cpu"),
    "imsat": dict(hidden=(16,), epochs=3, batch_size=64, device="cpu"),
    "dac": dict(hidden=(16,), epochs=3, n_neighbors=5, device="cpu"),
    "sae": dict(n_latents=8, k=2, epochs=3, device="cpu"),
}
SEEDED_CLUSTERERS = sorted(n for n, cls in registry().items()
                           if capabilities(cls).kind == "clusterer" and capabilities(cls).seeded)


@pytest.mark.parametrize("name", SEEDED_CLUSTERERS)
def test_same_seed_same_result(name, blobs):
    X, _ = blobs
    fits = [make_reporter(name, n_clusters=4, seed=3, **QUICK.get(name, {})).fit(X)
            for _ in range(2)]
    np.testing.assert_array_equal(fits[0].labels_, fits[1].labels_)
    centers = [getattr(f, "cluster_centers_", None) for f in fits]
    if centers[0] is not None:
        np.testing.assert_allclose(centers[0], centers[1])


def test_full_covariance_gmm_beats_kmeans_on_anisotropic_blobs(anisotropic):
    X, y = anisotropic
    km = adjusted_rand_score(y, KMeans(3, n_init=5, random_state=0).fit(X).labels_)
    gmm = adjusted_rand_score(y, GMM(3, n_init=3, random_state=0).fit(X).labels_)
    assert gmm > 0.95 and gmm > km + 0.2


def test_kmeans_matches_sklearn_inertia_on_digits():
    from sklearn.cluster import KMeans as SkKMeans

    X = load_digits().data.astype(np.float32)
    ours = KMeans(10, n_init=5, random_state=0).fit(X)
    theirs = SkKMeans(10, n_init=5, random_state=0).fit(X)
    assert ours.inertia_ <= theirs.inertia_ * 1.02
    np.testing.assert_allclose(ours.inertia_, -ours.score(X), rtol=1e-4)
    dist = ours.transform(X[:50])
    np.testing.assert_array_equal(dist.argmin(1), ours.predict(X[:50]))


def test_kmeans_records_faiss_subsampling(blobs):
    X, _ = blobs
    km = KMeans(4, max_points_per_centroid=20, random_state=0).fit(X)
    assert km.n_train_points_ == 80 and len(km.labels_) == 600
    assert KMeans(4, random_state=0).fit(X).n_train_points_ == 600


def test_kmeans_deepcluster_preprocessing_and_spherical(blobs):
    X, y = blobs
    white = KMeans(4, whiten_components=4, n_init=3, random_state=0).fit(X)
    assert white.cluster_centers_.shape == (4, 4)
    np.testing.assert_allclose(np.linalg.norm(white._preprocess(X), axis=1), 1, rtol=1e-5)
    sph = KMeans(4, spherical=True, random_state=0).fit(X)
    np.testing.assert_allclose(np.linalg.norm(sph.cluster_centers_, axis=1), 1, rtol=1e-4)


def test_pca_exact_and_streamed_agree(tmp_path):
    store, data = make_store(tmp_path / "s", n_docs=200, rows_per_doc=10, shard_docs=60,
                             dim=5, scale=np.array([8.0, 4.0, 2.0, 1.0, 0.5]))
    view = store.layer("blocks.0.hook_out")
    exact = PCA(3).fit(view)
    streamed = PCA(3, memory_budget_gb=1e-6, batch_size=256).fit(view)
    assert not exact.incremental_ and streamed.incremental_
    # the streamed pass is exact, not an approximation
    np.testing.assert_allclose(streamed.explained_variance_ratio_,
                               exact.explained_variance_ratio_, rtol=1e-4)
    overlap = np.abs(streamed.components_ @ exact.components_.T)
    np.testing.assert_allclose(np.diag(overlap), 1, atol=1e-4)
    np.testing.assert_allclose(np.abs(streamed.transform(view)),
                               np.abs(exact.transform(view)), atol=1e-3)


def test_kmeans_streams_a_store_layer_beyond_the_budget(tmp_path):
    store, _ = make_store(tmp_path / "s", n_docs=300, rows_per_doc=4, shard_docs=100, dim=6)
    view = store.layer("blocks.1.hook_out")
    X = view.to_numpy()
    small = KMeans(3, random_state=0, memory_budget_gb=1e-5).fit(view)
    assert small.n_train_points_ < len(X) and len(small.labels_) == len(X)
    np.testing.assert_array_equal(small.labels_, small.predict(X))
    np.testing.assert_array_equal(KMeans(3, random_state=0).fit(view).labels_,
                                  KMeans(3, random_state=0).fit(X).labels_)


def test_inputs_as_tensors_and_sklearn_tools(blobs):
    X, y = blobs
    a = KMeans(4, random_state=0).fit(torch.from_numpy(X)).labels_
    np.testing.assert_array_equal(a, KMeans(4, random_state=0).fit(X).labels_)
    pipe = make_pipeline(PCA(3, random_state=0), clone(KMeans(4, random_state=0))).fit(X)
    assert adjusted_rand_score(y, pipe.predict(X)) > 0.95
    search = GridSearchCV(GMM(random_state=0), {"n_clusters": [2, 4, 8]}, cv=3).fit(X)
    assert search.best_params_["n_clusters"] >= 4


def test_gmm_select_k_and_pca_first(blobs):
    X, _ = blobs
    table = select_k(X, [2, 4, 7], random_state=0)
    assert table.loc[table["best"], "k"].item() == 4
    reduced = GMM(4, pca_components=3, covariance_type="diag", random_state=0).fit(X)
    assert reduced.pca_.n_components_ == 3 and reduced.means_.shape == (4, 3)
    np.testing.assert_allclose(reduced.predict_proba(X).sum(1), 1)


def test_agglomerative_preclusters_large_inputs(blobs):
    X, y = blobs
    agg = Agglomerative(4, max_points=50, random_state=0).fit(X)
    assert agg.precluster_ and agg.linkage_.shape == (49, 4)
    assert adjusted_rand_score(y, agg.labels_) > 0.9
    assert agg.linkage_[-1, 3] == 50  # the root merges every centroid


def test_aekmeans_history_and_pickle(blobs):
    import pickle

    X, _ = blobs
    ae = AEKMeans(4, epochs=10, random_state=0, device="cpu").fit(X)
    losses = [h["loss"] for h in ae.history_]
    assert losses[-1] < losses[0]
    again = pickle.loads(pickle.dumps(ae))
    np.testing.assert_array_equal(again.predict(X[:20]), ae.predict(X[:20]))


@pytest.mark.parametrize("name", ["kmeans", "gmm", "agglomerative", "aekmeans"])
def test_bad_input_errors(name):
    cls = get_reporter(name)
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match=r"n_clusters.*range \[2, inf\)"):
        cls(n_clusters=1).fit(X)
    with pytest.raises(ValueError, match=r"n_clusters.*range \[2, inf\)"):
        cls(n_clusters=0).fit(X)
    with pytest.raises(ActclustError, match="n_clusters=30 needs at least 30 rows"):
        cls(n_clusters=30).fit(X)
    bad = X.copy()
    bad[[4, 9]] = np.nan
    bad[11, 0] = np.inf
    with pytest.raises(ActclustError, match=r"3 row\(s\) containing NaN or inf \(first: row 4\)"):
        cls(n_clusters=3).fit(bad)


def test_constant_columns_warn_and_all_constant_is_an_error():
    from actclust.reporters._base import warn_constant_columns

    X = np.random.default_rng(0).normal(size=(30, 4))
    X[:, 2] = 0.0
    with pytest.warns(UserWarning, match="1 of 4 columns are constant"):
        keep = warn_constant_columns(X, KMeans())
    assert keep.tolist() == [True, True, False, True]
    with pytest.raises(ActclustError, match="every column of X is constant"):
        warn_constant_columns(np.ones((5, 3)), KMeans())


def test_unknown_reporter_name():
    with pytest.raises(ActclustError, match="unknown reporter 'kmean'.*kmeans"):
        get_reporter("kmean")


# -- what reporters declare, and the one way to configure them ---------------------------

def test_every_registered_reporter_declares_what_it_is():
    from actclust.reporters import capabilities, registry

    table = {name: capabilities(name) for name in registry()}
    assert {n for n, c in table.items() if c.kind == "clusterer"} == {
        "kmeans", "gmm", "agglomerative", "aekmeans", "dec", "idec", "iic", "deepcluster",
        "scan", "temi", "turtle", "local_aggregation", "imsat", "dac"}
    assert {n for n, c in table.items() if c.kind == "transformer"} == {"pca", "sae"}
    assert {n for n, c in table.items() if c.kind == "contrast"} == {"ccs"}
    assert {n for n, c in table.items() if c.cost == "trained"} == {
        "aekmeans", "dec", "idec", "iic", "deepcluster", "ccs", "scan", "temi", "turtle",
        "local_aggregation", "imsat", "dac", "sae"}
    assert {n for n, c in table.items() if c.cost == "quadratic"} == {"agglomerative"}
    assert {n for n, c in table.items() if not c.streams} == {"gmm", "agglomerative", "ccs"}
    assert table["pca"].k_param == "n_components" and table["ccs"].k_param is None
    assert all(c.seeded for c in table.values())
    assert table["agglomerative"].cost_rank < table["dec"].cost_rank
    assert all(table[n].name == n for n in table)


def test_capabilities_of_names_classes_instances_and_foreign_estimators():
    from sklearn.cluster import DBSCAN, SpectralClustering
    from sklearn.decomposition import TruncatedSVD

    from actclust.reporters import capabilities, is_clusterer, is_transformer

    assert capabilities("kmeans") is capabilities(KMeans) is capabilities(KMeans(3))
    assert is_clusterer(SpectralClustering()) and not is_transformer(SpectralClustering())
    assert capabilities(SpectralClustering()).k_param == "n_clusters"
    assert capabilities(DBSCAN()).k_param is None and capabilities(DBSCAN()).name is None
    assert is_transformer(TruncatedSVD()) and capabilities(TruncatedSVD).k_param == \
        "n_components"

    class Mine(KMeans):  # a subclass does not inherit its parent's registration
        pass

    assert capabilities(Mine).name is None and capabilities(Mine).kind == "clusterer"
    with pytest.raises(ActclustError, match="unknown reporter 'kmean'"):
        capabilities("kmean")


def test_configure_sets_k_and_seed_whatever_they_are_called():
    from actclust.reporters import CCS, DEC, configure, make_reporter

    est = KMeans()
    assert configure(est, n_clusters=5, seed=3) is est
    assert (est.n_clusters, est.random_state) == (5, 3)
    assert configure(PCA(), n_clusters=4, seed=1).get_params()["n_components"] == 4
    ccs = configure(CCS(), n_clusters=4, seed=2)  # CCS has no k: only the seed is set
    assert ccs.random_state == 2 and "n_clusters" not in ccs.get_params()
    untouched = configure(DEC(7, random_state=9))
    assert (untouched.n_clusters, untouched.random_state) == (7, 9)
    base = GMM(covariance_type="diag")
    made = make_reporter(base, n_clusters=3, seed=0)
    assert made is not base and base.n_clusters == 8
    assert made.get_params()["covariance_type"] == "diag" and made.n_clusters == 3
    assert make_reporter("agglomerative", n_clusters=4, linkage="average").linkage == "average"


def test_register_refuses_duplicates_and_declares_defaults():
    from sklearn.base import BaseEstimator, TransformerMixin

    from actclust.reporters import capabilities, register
    from actclust.reporters._base import _REGISTRY

    with pytest.raises(ValueError, match="already taken by KMeans"):
        register("kmeans")(GMM)

    class Shrink(TransformerMixin, BaseEstimator):
        def __init__(self, n_components=2):
            self.n_components = n_components

        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return X[:, :self.n_components]

    try:
        register("shrink-test")(Shrink)
        caps = capabilities("shrink-test")
        assert (caps.kind, caps.cost, caps.streams, caps.k_param, caps.savable) == \
            ("transformer", "cheap", False, "n_components", False)
    finally:
        _REGISTRY.pop("shrink-test", None)
    with pytest.raises(ValueError, match="kind must be one of"):
        register("bad-kind", kind="cluster")(Shrink)
    assert "bad-kind" not in _REGISTRY


@pytest.mark.parametrize("name", ["kmeans", "aekmeans", "dec", "idec", "iic", "deepcluster",
                                  "ccs", "turtle"])
def test_device_names_are_checked_by_resolve_device(name):
    cls = get_reporter(name)
    X = np.random.default_rng(0).normal(size=(20, 4))
    if not torch.cuda.is_available():  # an indexed device passes the parameter check and
        # reaches resolve_device, which knows there is no CUDA here
        with pytest.raises(ActclustError, match="device 'cuda:1' asked for"):
            configure_small(cls(device="cuda:1")).fit(X)
    with pytest.raises(ActclustError, match="unknown device 'bogus'"):
        configure_small(cls(device="bogus")).fit(X)
    with pytest.raises(ValueError, match="'device' parameter .* must be an instance of 'str'"):
        cls(device=3).fit(X)


def configure_small(est):
    """Small settings, so a fit that gets past the device check ends quickly."""
    small = {"epochs": 1, "pretrain_epochs": 1, "max_updates": 1, "n_init": 1,
             "hidden": (4,), "n_clusters": 2}
    params = est.get_params()
    return est.set_params(**{k: v for k, v in small.items() if k in params})
