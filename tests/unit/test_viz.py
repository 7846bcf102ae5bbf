"""actclust.viz figures that need no store: the contingency order and the training curves.
The figures of real stores (maps, dashboards, layer sweeps, reporter figures) are tested on
the shared MiniLM store in tests/integration/test_viz_minilm.py."""

import numpy as np
import pytest

from actclust.errors import ActclustError
from actclust.viz import contingency_heatmap, training_curves


def test_contingency_with_more_clusters_than_classes():
    fig = contingency_heatmap(["a", "a", "b", "b", "b", None], [0, 0, 1, 2, 2, 3])
    meta = fig.layout.meta
    assert meta["columns"] == ["a", "b"] and meta["rows"][:2] == ["0", "2"]
    assert meta["rows"][2] == "1"  # the unmatched cluster follows the matched ones


def test_training_curves_of_a_trained_reporter():
    from sklearn.datasets import make_blobs

    from actclust.reporters import DeepCluster

    X, _ = make_blobs(300, n_features=8, centers=3, random_state=0)
    model = DeepCluster(3, epochs=4, random_state=0, device="cpu").fit(X.astype(np.float32))
    fig = training_curves(model)
    meta = fig.layout.meta
    assert meta["epochs"] == len(model.history_)
    assert meta["panels"][:3] == ["loss", "nmi_previous", "largest_cluster"]
    loss = fig.data[0]
    assert loss.y.tolist() == pytest.approx([h["loss"] for h in model.history_])
    assert fig.layout.xaxis3.title.text == "epoch"


def test_training_curves_split_by_phase_and_mark_degenerate_epochs():
    history = [{"epoch": 0, "phase": "pretrain", "loss": 2.0},
               {"epoch": 1, "phase": "pretrain", "loss": 1.0},
               {"epoch": 2, "phase": "cluster", "loss": 0.5, "delta_label": 0.2,
                "largest_cluster": 0.4, "degenerate": False},
               {"epoch": 3, "phase": "cluster", "loss": 0.4, "delta_label": 0.01,
                "largest_cluster": 0.95, "degenerate": True}]
    fig = training_curves(history)
    names = [t.name for t in fig.data]
    assert "loss (phase pretrain)" in names and "loss (phase cluster)" in names
    crosses = [t for t in fig.data if t.name == "degenerate epoch"]
    assert crosses and all(list(t.x) == [3] for t in crosses)
    assert fig.layout.meta["panels"] == ["loss", "delta_label", "largest_cluster"]
    with pytest.raises(ActclustError, match="no training history"):
        training_curves(object())
