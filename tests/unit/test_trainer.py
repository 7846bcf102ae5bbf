"""The one trainer of every trained reporter: batch step, loss sums, history, NaN guard
(restoring every trained tensor, DEC's centres included), Ctrl-C, and the degeneracy
warning."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

from actclust.reporters import CCS, DEC, IDEC, IIC, AEKMeans, DeepCluster, KMeans
from actclust.reporters import dec as dec_module
from actclust.reporters._trainer import LossSum, Trainer, TrainingDiverged

TINY = {
    "dec": lambda k: DEC(k, hidden=(8,), embed_dim=2, pretrain_epochs=3, max_updates=3,
                         n_init=1, random_state=0, device="cpu"),
    "idec": lambda k: IDEC(k, hidden=(8,), embed_dim=2, pretrain_epochs=3, max_updates=3,
                           n_init=1, random_state=0, device="cpu"),
    "iic": lambda k: IIC(k, hidden=(8,), n_subheads=2, epochs=4, random_state=0, device="cpu"),
    "deepcluster": lambda k: DeepCluster(k, hidden=(8,), feature_dim=4, epochs=3,
                                         random_state=0, device="cpu"),
    "aekmeans": lambda k: AEKMeans(k, hidden=(8,), code_dim=2, epochs=4, random_state=0,
                                   device="cpu"),
}


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(120, centers=3, n_features=6, random_state=0)


def state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_train_step_sums_row_weighted_and_per_part_losses():
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(10, 3)
    trainer = Trainer()
    before = state(net)
    scalar = trainer.run_batches([torch.arange(4), torch.arange(4, 10)],
                                 lambda idx: net(x[idx]).pow(2).mean(), opt)
    assert scalar.rows == 10 and scalar.steps == 2
    assert not torch.equal(before["weight"], net.weight)  # the optimiser stepped
    # a vector loss (one per head) is summed for backward and kept per part per step;
    # batches below min_rows are skipped
    parts = trainer.run_batches([torch.arange(5), torch.arange(5, 10), torch.tensor([3])],
                                lambda idx: net(x[idx]).pow(2).mean(0), opt, min_rows=2)
    assert parts.steps == 2 and parts.rows == 10 and parts.mean_parts(2).shape == (2,)
    assert LossSum().mean_parts(3).tolist() == [0.0, 0.0, 0.0]


def test_history_gets_one_record_per_epoch_numbered_over_the_whole_fit():
    trainer = Trainer()
    net = torch.nn.Linear(1, 1)
    first = trainer.run(net, 3, lambda e: {"phase": "a", "loss": 1.0 / (e + 1)}, name="a", lr=1)
    second = trainer.run(net, 2, lambda e: {"phase": "b", "loss": 0.1}, name="b", lr=1)
    assert [r["epoch"] for r in first] == [0, 1, 2]
    assert [r["epoch"] for r in second] == [3, 4]
    assert trainer.history == first + second
    stopped = Trainer().run(net, 10, lambda e: {"loss": 1.0, "stop": e == 1}, name="c", lr=1)
    assert len(stopped) == 2


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_trained_reporter_records_one_history_entry_per_epoch(name, blobs):
    X, _ = blobs
    model = TINY[name](3).fit(X)
    epochs = [h["epoch"] for h in model.history_]
    assert epochs == list(range(len(model.history_))) and len(epochs) > 0
    losses = [h["loss"] for h in model.history_ if "loss" in h]
    assert losses and np.isfinite(losses).all()
    if name in ("iic", "deepcluster", "aekmeans"):
        assert len(model.history_) == model.get_params()["epochs"] == model.n_iter_


def test_a_nan_loss_mid_epoch_restores_the_last_good_weights():
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    x = torch.randn(8, 2)
    trainer = Trainer()
    snapshots = []

    def epoch(number):
        def loss(idx):
            out = net(x[idx]).pow(2).mean()
            return out * float("nan") if number == 2 and idx[0] >= 4 else out
        losses = trainer.run_batches([torch.arange(4), torch.arange(4, 8)], loss, opt)
        snapshots.append(state(net))
        return {"loss": losses.mean()}

    with pytest.raises(TrainingDiverged, match=r"toy: the loss became nan at epoch 2.*now 0.5"):
        trainer.run(net, 5, epoch, name="toy", lr=0.5)
    assert len(trainer.history) == 2 and len(snapshots) == 2
    # the first batch of epoch 2 stepped before the NaN, and was undone
    for key, value in state(net).items():
        torch.testing.assert_close(value, snapshots[-1][key], rtol=0, atol=0)


def test_nan_guard_restores_every_dec_parameter_including_the_centres(blobs, monkeypatch):
    """A NaN in DEC's clustering phase: the encoder, decoder and the cluster centres (an
    ``nn.Parameter`` of the module) all go back to the end of the last good update."""
    X, _ = blobs
    real = dec_module.soft_assign
    calls = {"train": 0}

    def poisoned(z, centers, alpha=1.0):
        q = real(z, centers, alpha)
        if torch.is_grad_enabled():
            calls["train"] += 1
            if calls["train"] == 5:  # the second step of the second update
                return q * float("nan")
        return q

    monkeypatch.setattr(dec_module, "soft_assign", poisoned)
    kept = {}
    real_run = Trainer.run

    def spying_run(self, module, epochs, run_epoch, **kwargs):
        def watched(epoch):
            record = run_epoch(epoch)
            kept["good"] = state(module)  # the end of every epoch that finished
            return record
        kept["module"] = module
        return real_run(self, module, epochs, watched, **kwargs)

    monkeypatch.setattr(Trainer, "run", spying_run)
    model = DEC(3, hidden=(8,), embed_dim=2, pretrain_epochs=2, update_interval=3,
                max_updates=5, tol=0, n_init=1, random_state=0, device="cpu")
    with pytest.raises(TrainingDiverged, match="DEC clustering: the loss became nan"):
        model.fit(X)
    module = kept["module"]
    assert "centers" in kept["good"]
    restored = state(module)
    assert restored.keys() == kept["good"].keys()
    for key, value in restored.items():
        torch.testing.assert_close(value, kept["good"][key], rtol=0, atol=0)


def test_ctrl_c_keeps_the_last_good_weights_and_later_phases_do_not_start():
    net = torch.nn.Linear(2, 2)

    def run_epoch(epoch):
        if epoch == 2:
            with torch.no_grad():
                net.weight.add_(100.0)  # half-done work of the interrupted epoch
            raise KeyboardInterrupt
        with torch.no_grad():
            net.weight.add_(1.0)
        return {"loss": 1.0}

    before = net.weight.detach().clone()
    trainer = Trainer()
    with pytest.warns(RuntimeWarning, match="interrupted after 2 epochs"):
        history = trainer.run(net, 5, run_epoch, name="toy", lr=0.1)
    assert len(history) == 2 and trainer.interrupted
    torch.testing.assert_close(net.weight.detach(), before + 2.0)
    assert trainer.run(net, 5, run_epoch, name="next phase", lr=0.1) == []


def test_ctrl_c_during_a_fit_keeps_a_usable_reporter(blobs, monkeypatch):
    X, _ = blobs
    real = torch.optim.Adam.step
    steps = {"n": 0}

    def step(self, *args, **kwargs):
        steps["n"] += 1
        if steps["n"] == 10:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        model = AEKMeans(3, hidden=(8,), code_dim=2, epochs=20, batch_size=32,
                         random_state=0, device="cpu").fit(X)
    assert 0 < len(model.history_) < 20 and model.predict(X[:5]).shape == (5,)


@pytest.mark.parametrize("name", sorted(TINY))
def test_fewer_clusters_than_asked_is_a_convergence_warning(name):
    # two distinct points repeated: no reporter can find three clusters
    X = np.repeat(np.array([[0.0, 1.0, 2.0, 0.5], [3.0, -1.0, 0.5, 2.0]]), 30, axis=0)
    with pytest.warns(ConvergenceWarning, match=r"found [12] distinct clusters, fewer than "
                                                r"n_clusters=3"):
        TINY[name](3).fit(X)


def test_one_warning_per_fit_not_one_per_inner_kmeans():
    X = np.repeat(np.array([[0.0, 1.0], [3.0, -1.0]]), 30, axis=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        AEKMeans(3, hidden=(4,), code_dim=2, epochs=2, random_state=0, device="cpu").fit(X)
    messages = [str(w.message) for w in caught if w.category is ConvergenceWarning]
    assert len(messages) == 1 and messages[0].startswith("AEKMeans found")


def test_kmeans_and_ccs_use_the_same_check():
    with pytest.warns(ConvergenceWarning, match="KMeans found 2 distinct clusters.*duplicate"):
        KMeans(3, random_state=0).fit(np.repeat([[0.0, 0.0], [1.0, 1.0]], 10, axis=0))
    X = np.ones((40, 6))  # every pair the same: every pair gets the same answer
    with pytest.warns(ConvergenceWarning, match="CCS found 1 distinct clusters"):
        ccs = CCS(n_tries=1, epochs=5, random_state=0, device="cpu").fit(X)
    assert ccs.degenerate_


def test_a_healthy_fit_does_not_warn(blobs):
    X, _ = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = TINY["aekmeans"](3).fit(X)
    assert len(np.unique(model.labels_)) == 3
