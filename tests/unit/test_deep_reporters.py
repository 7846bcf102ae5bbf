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

SMALL = dict(hidden=(32,), embed_dim=4, pretrain_epochs=25, n_init=5, device="cpu")


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
        DEC(4, hidden=(32,), embed_dim=4, pretrain_epochs=5, pretrain_lr=1e6, n_init=1,
            random_state=0, device="cpu").fit(X * 1e3)


def test_fewer_rows_than_clusters():
    with pytest.raises(ActclustError, match="n_clusters=12 needs at least 12 rows"):
        DEC(12, **SMALL).fit(np.random.default_rng(0).normal(size=(8, 3)))
