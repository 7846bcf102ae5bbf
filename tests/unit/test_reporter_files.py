"""Fitted reporters saved and loaded without running code: round trips, joblib, and
crafted files (pickle payloads, lying metadata) refused with nothing executed."""

import json
import pickle
import struct

import joblib
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save as save_safetensors
from sklearn.datasets import make_blobs

from actclust.errors import ActclustError
from actclust.reporters import (CCS, DEC, IDEC, IIC, SCAN, TEMI, TURTLE, AEKMeans,
                                DeepCluster, KMeans, LocalAggregation, IMSAT, DAC, SparseAutoencoder, capabilities,
                                load_reporter,
                                registry)
from actclust.reporters._io import FORMAT_VERSION

FITS = {
    "dec": lambda: DEC(3, hidden=(8,), embed_dim=2, pretrain_epochs=3, max_updates=3,
                       n_init=1, random_state=0, device="cpu"),
    "dec-layerwise": lambda: DEC(3, hidden=(8, 6), embed_dim=2, pretrain="layerwise",
                                 pretrain_epochs=2, max_updates=2, n_init=1, random_state=0,
                                 device="cpu"),
    "idec": lambda: IDEC(3, hidden=(8,), embed_dim=2, pretrain_epochs=3, max_updates=3,
                         n_init=1, random_state=0, device="cpu"),
    "iic": lambda: IIC(3, hidden=(16,), n_subheads=2, epochs=8, random_state=0, device="cpu"),
    "deepcluster": lambda: DeepCluster(3, hidden=(8,), feature_dim=4, whiten_components=2,
                                       epochs=2, random_state=0, device="cpu"),
    "aekmeans": lambda: AEKMeans(3, hidden=(8,), code_dim=2, epochs=3, random_state=0,
                                 device="cpu"),
    "scan": lambda: SCAN(3, hidden=(8,), n_heads=2, epochs=5, random_state=0, device="cpu"),
    "ccs": lambda: CCS(n_tries=2, epochs=30, random_state=0, device="cpu"),
    "temi": lambda: TEMI(3, hidden=8, bottleneck=4, n_heads=2, epochs=3, random_state=0,
                         device="cpu"),
    "turtle": lambda: TURTLE(3, steps=20, random_state=0, device="cpu"),
    "local_aggregation": lambda: LocalAggregation(3, hidden=(8,), embed_dim=4, ir_epochs=1,
                                                  epochs=2, n_init=2, random_state=0,
                                                  device="cpu"),
    "imsat": lambda: IMSAT(3, hidden=(8,), epochs=3, batch_size=32, random_state=0,
                           device="cpu"),
    "dac": lambda: DAC(3, hidden=(8,), epochs=3, n_neighbors=5, random_state=0, device="cpu"),
    "sae": lambda: SparseAutoencoder(8, k=2, epochs=3, random_state=0, device="cpu"),
}
OUTPUTS = ("predict", "transform", "predict_proba")


@pytest.fixture(scope="module")
def X():
    return make_blobs(90, centers=3, n_features=6, random_state=0)[0]


@pytest.fixture(scope="module")
def fitted(X):
    return {name: make().fit(X) for name, make in FITS.items()}


def outputs(model, X) -> dict:
    return {m: getattr(model, m)(X) for m in OUTPUTS if hasattr(model, m)}


def assert_same(a, b, X):
    got, want = outputs(a, X), outputs(b, X)
    # every reporter predicts, transforms (PCA, the autoencoder) or both
    assert got.keys() == want.keys() and {"predict", "transform"} & got.keys()
    for method, value in want.items():
        np.testing.assert_array_equal(got[method], value, err_msg=method)


def test_every_savable_reporter_is_covered():
    savable = {name for name in registry() if capabilities(name).savable}
    assert savable == {"dec", "idec", "iic", "deepcluster", "aekmeans", "ccs", "scan", "temi",
                       "turtle", "local_aggregation", "imsat", "dac", "sae"}
    assert savable <= {name.split("-")[0] for name in FITS}


@pytest.mark.parametrize("name", sorted(FITS))
def test_round_trip_gives_identical_outputs(name, fitted, X, tmp_path):
    model = fitted[name]
    path = model.save(tmp_path / f"{name}.safetensors")
    loaded = type(model).load(path)
    assert type(loaded) is type(model) and loaded is not model
    assert loaded.get_params() == model.get_params()
    assert_same(loaded, model, X)
    if hasattr(model, "labels_"):  # the autoencoder has features, not clusters
        np.testing.assert_array_equal(loaded.labels_, model.labels_)
    assert json.dumps(loaded.history_) == json.dumps(model.history_)  # NaN == NaN here
    assert load_reporter(path).get_params() == model.get_params()
    with safe_open(str(path), "np") as fh:  # weights are plain arrays, as on the CPU
        meta = json.loads(fh.metadata()["actclust"])
    assert meta["class"] == type(model).__name__ and meta["format_version"] == FORMAT_VERSION
    assert "actclust_version" in meta


def test_loading_does_not_disturb_the_callers_random_stream(fitted, tmp_path):
    path = fitted["iic"].save(tmp_path / "iic.safetensors")
    torch.manual_seed(123)
    IIC.load(path)
    after_load = torch.rand(3)
    torch.manual_seed(123)
    np.testing.assert_array_equal(after_load, torch.rand(3))


def test_loaded_module_is_a_fresh_copy_on_the_cpu(fitted, tmp_path):
    model = fitted["dec"]
    loaded = DEC.load(model.save(tmp_path / "dec.safetensors"))
    assert all(p.device.type == "cpu" for p in loaded.module_.parameters())
    assert not loaded.module_.training
    np.testing.assert_array_equal(loaded.module_.centers.detach().numpy(),
                                  model.cluster_centers_)


@pytest.mark.parametrize("name", sorted(FITS))
def test_joblib_pickling_keeps_working(name, fitted, X, tmp_path):
    model = fitted[name]
    joblib.dump(model, tmp_path / "model.joblib")
    assert_same(joblib.load(tmp_path / "model.joblib"), model, X)


def test_unfitted_and_unsavable_reporters_are_refused(X, tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        DEC().save(tmp_path / "x.safetensors")
    custom = DeepCluster(3, backbone=torch.nn.Sequential(torch.nn.Linear(6, 4)), epochs=1,
                         whiten_components=2, random_state=0, device="cpu").fit(X)
    with pytest.raises(ActclustError, match="'params.backbone'.*never holds code.*joblib"):
        custom.save(tmp_path / "custom.safetensors")
    assert not (tmp_path / "custom.safetensors").exists()


def test_a_file_of_another_class_is_refused_before_building(fitted, tmp_path):
    path = fitted["idec"].save(tmp_path / "idec.safetensors")
    with pytest.raises(ActclustError, match="holds a IDEC, not a DEC"):
        DEC.load(path)


# -- crafted files ------------------------------------------------------------------------

class Payload:
    """Unpickling this creates ``marker``: what a malicious model file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payloads_are_refused_and_never_run(tmp_path):
    canary = tmp_path / "canary"
    pickle.loads(pickle.dumps(Payload(canary)))
    assert canary.exists(), "the payload must be live for this test to mean anything"
    marker = tmp_path / "marker"
    raw = pickle.dumps(Payload(marker))
    files = {"evil.pkl": raw, "dec.safetensors": raw, "idec.pt": raw}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"model": Payload(marker)}, tmp_path / "torch.safetensors")  # old DEC format
    joblib.dump(Payload(marker), tmp_path / "job.safetensors")
    for name in [*files, "torch.safetensors", "job.safetensors"]:
        for load in (DEC.load, load_reporter):
            with pytest.raises(ActclustError, match="is not an actclust reporter file"):
                load(tmp_path / name)
    assert not marker.exists()


def rewrite(path, out, edit_meta=None, edit_tensors=None):
    """Copy a reporter file with its metadata and/or arrays changed."""
    with safe_open(str(path), "np") as fh:
        meta = json.loads(fh.metadata()["actclust"])
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    if edit_meta:
        edit_meta(meta)
    if edit_tensors:
        edit_tensors(tensors)
    out.write_bytes(save_safetensors(tensors, metadata={"actclust": json.dumps(meta)}))
    return out


def test_metadata_naming_another_class_is_refused(fitted, tmp_path):
    good = fitted["dec"].save(tmp_path / "dec.safetensors")

    def claim(cls, reporter):
        def edit(meta):
            meta["class"], meta["reporter"] = cls, reporter
        return edit

    idec = rewrite(good, tmp_path / "a.safetensors", claim("IDEC", "idec"))
    with pytest.raises(ActclustError, match="holds a IDEC, not a DEC"):
        DEC.load(idec)
    with pytest.raises(ActclustError, match="malformed IDEC file.*parameters do not match"):
        load_reporter(idec)  # DEC's parameters in an IDEC's clothes
    for cls, reporter in [("Popen", "subprocess.Popen"), ("system", "os"),
                          ("KMeans", "kmeans"), ("DEC", "idec")]:
        bad = rewrite(good, tmp_path / f"{cls}.safetensors", claim(cls, reporter))
        with pytest.raises(ActclustError, match="is not a reporter actclust can load"):
            load_reporter(bad)


def test_a_nested_estimator_must_be_a_registered_reporter(fitted, tmp_path):
    good = fitted["aekmeans"].save(tmp_path / "ae.safetensors")

    def smuggle(meta):
        meta["attributes"]["__dict__"]["kmeans_"]["__estimator__"] = "builtins.eval"

    bad = rewrite(good, tmp_path / "bad.safetensors", smuggle)
    with pytest.raises(ActclustError, match="malformed AEKMeans file.*not a registered reporter"):
        AEKMeans.load(bad)


META, TENSORS = "meta", "tensors"


@pytest.mark.parametrize("part, damage, message", [
    (META, lambda m: m.update(format_version=FORMAT_VERSION + 1), "newer actclust"),
    (META, lambda m: m.update(format="something-else"), "no actclust reporter metadata"),
    (META, lambda m: m.pop("params"), "lacks the class or parameters"),
    (META, lambda m: m["params"]["__dict__"].update(alpha=-1.0), "malformed DEC file.*alpha"),
    (META, lambda m: m["params"]["__dict__"].update(evil=1), "parameters do not match"),
    (META, lambda m: m["attributes"]["__dict__"].update(__class__=1), "not a fitted attribute"),
    (META, lambda m: m["attributes"]["__dict__"].update(x_={"__call__": "os.system"}),
     "unexpected value"),
    (TENSORS, lambda t: t.pop("mean_"), "does not hold"),
    (TENSORS, lambda t: t.update(extra=np.zeros(2)), "arrays nothing refers to"),
    (TENSORS, lambda t: t.update({"module_.centers": np.zeros((5, 2), np.float32)}),
     "size mismatch"),
    # a network far too large to build is refused by its shapes, before any allocation
    (META, lambda m: m["params"]["__dict__"].update(hidden={"__tuple__": [10**12]}),
     "size mismatch"),
    (META, lambda m: m["attributes"]["__dict__"].update(module_=3), "no weights for the network"),
])
def test_malformed_files_are_refused_with_one_line(part, damage, message, fitted, tmp_path):
    good = fitted["dec"].save(tmp_path / "dec.safetensors")
    bad = rewrite(good, tmp_path / "bad.safetensors", **{f"edit_{part}": damage})
    with pytest.raises(ActclustError, match=message) as err:
        DEC.load(bad)
    assert "\n" not in str(err.value)


def test_truncated_and_foreign_files_are_refused(fitted, tmp_path):
    good = fitted["dec"].save(tmp_path / "dec.safetensors").read_bytes()
    (tmp_path / "cut").write_bytes(good[: len(good) // 2])
    (tmp_path / "empty").write_bytes(b"")
    header = json.dumps({"__metadata__": {"actclust": "[1, 2"}}).encode()
    (tmp_path / "json").write_bytes(struct.pack("<Q", len(header)) + header)
    (tmp_path / "plain").write_bytes(save_safetensors({"w": np.zeros(3, np.float32)}))
    for name in ("cut", "empty", "json", "plain"):
        with pytest.raises(ActclustError, match="is not an actclust reporter file"):
            DEC.load(tmp_path / name)
    with pytest.raises(ActclustError, match="no reporter file at"):
        DEC.load(tmp_path / "missing.safetensors")


def test_kmeans_inside_a_reporter_round_trips_its_whitening(fitted, X, tmp_path):
    model = fitted["deepcluster"]
    assert model.kmeans_.whitening_ is not None
    loaded = DeepCluster.load(model.save(tmp_path / "dc.safetensors"))
    assert isinstance(loaded.kmeans_, KMeans)
    for a, b in zip(loaded.kmeans_.whitening_, model.kmeans_.whitening_):
        np.testing.assert_array_equal(a, b)
