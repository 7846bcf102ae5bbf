"""Trained reporters stream a store layer above their memory budget: same clusters as the
array, and the layer is never loaded whole."""

import numpy as np
import pytest

from actclust.reporters import (DEC, IDEC, IIC, SCAN, TEMI, AEKMeans, DeepCluster,
                                DAC, IMSAT, LocalAggregation)
from actclust.store.reader import LayerView
from tests.unit.test_store import make_store

SMALL = dict(random_state=0, device="cpu")
REPORTERS = {
    "dec": lambda budget: DEC(3, hidden=(32,), embed_dim=4, pretrain_epochs=10, n_init=3,
                              memory_budget_gb=budget, **SMALL),
    "dec-layerwise": lambda budget: DEC(3, hidden=(16, 16), embed_dim=4, pretrain="layerwise",
                                        pretrain_epochs=4, n_init=3, memory_budget_gb=budget,
                                        **SMALL),
    "idec": lambda budget: IDEC(3, hidden=(32,), embed_dim=4, pretrain_epochs=10, n_init=3,
                                memory_budget_gb=budget, **SMALL),
    "iic": lambda budget: IIC(3, pairing="noise", hidden=(16,), n_subheads=2, epochs=6,
                              memory_budget_gb=budget, **SMALL),
    "deepcluster": lambda budget: DeepCluster(3, hidden=(16,), feature_dim=8, epochs=3,
                                              memory_budget_gb=budget, **SMALL),
    "scan": lambda budget: SCAN(3, hidden=(16,), n_heads=2, epochs=4, memory_budget_gb=budget,
                                **SMALL),
    "temi": lambda budget: TEMI(3, n_heads=2, hidden=32, bottleneck=16, epochs=3,
                                memory_budget_gb=budget, **SMALL),
    # the perturbation radii come from neighbours searched in the scaled space, streamed too
    **{name: (lambda budget, standardize=standardize: IMSAT(
        3, hidden=(16,), epochs=3, batch_size=64, standardize=standardize,
        memory_budget_gb=budget, **SMALL))
       for name, standardize in (("imsat", False), ("imsat-standardized", True))},
    "dac": lambda budget: DAC(3, hidden=(16,), epochs=3, n_neighbors=5,
                              memory_budget_gb=budget, **SMALL),
    "local_aggregation": lambda budget: LocalAggregation(
        3, hidden=(32,), embed_dim=16, ir_epochs=2, epochs=3, n_init=3,
        memory_budget_gb=budget, **SMALL),
}
# loaded from the store (under the budget), the layer gives the array's clusters too
LOADED_TOO = {"scan", "temi", "local_aggregation", "imsat", "imsat-standardized", "dac"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("stream") / "s", n_docs=60, rows_per_doc=5,
                      shard_docs=25, dim=6)


def refuse(*args, **kwargs):
    raise AssertionError("the whole layer was loaded")


@pytest.mark.parametrize("name", sorted(REPORTERS))
def test_streamed_layer_gives_the_array_result(name, store, monkeypatch):
    store, data = store
    X = data["blocks.0.hook_out"]
    view = store.layer("blocks.0.hook_out")
    in_memory = REPORTERS[name](2.0).fit(X)
    if name in LOADED_TOO:
        np.testing.assert_array_equal(REPORTERS[name](2.0).fit(view).labels_,
                                      in_memory.labels_)
    monkeypatch.setattr(LayerView, "to_numpy", refuse)
    monkeypatch.setattr(LayerView, "__array__", refuse)
    streamed = REPORTERS[name](1e-9).fit(view)
    np.testing.assert_array_equal(streamed.labels_, in_memory.labels_)
    np.testing.assert_array_equal(streamed.predict(view), in_memory.predict(X))
    if hasattr(in_memory, "transform"):
        np.testing.assert_array_equal(streamed.transform(view), in_memory.transform(X))


def test_a_small_layer_is_loaded_and_gives_the_same_result(store):
    store, data = store
    view = store.layer("blocks.0.hook_out")
    a = AEKMeans(3, epochs=3, hidden=(8,), code_dim=2, **SMALL).fit(view).labels_
    b = AEKMeans(3, epochs=3, hidden=(8,), code_dim=2, **SMALL).fit(
        data["blocks.0.hook_out"]).labels_
    np.testing.assert_array_equal(a, b)


def test_nan_in_a_streamed_layer_names_the_row(tmp_path):
    store, data = make_store(tmp_path / "s", n_docs=20, rows_per_doc=3, shard_docs=8, dim=4,
                             nan_row=41)
    with pytest.raises(ValueError, match="row 41"):
        DEC(3, hidden=(8,), embed_dim=2, memory_budget_gb=1e-9, **SMALL).fit(
            store.layer("blocks.0.hook_out"))
