"""Autoencoder + k-means: the classic deep-clustering baseline."""

from __future__ import annotations

from numbers import Integral, Real

from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin

from ._base import Interval, fit_context, register
from ._trainer import TrainedReporterMixin, Trainer, batches


def _autoencoder(d_in: int, hidden: tuple, d_code: int):
    from torch import nn

    dims = [d_in, *hidden, d_code]
    enc, dec = [], []
    for a, b in zip(dims[:-1], dims[1:]):
        enc += [nn.Linear(a, b), nn.ReLU()]
    for a, b in zip(dims[::-1][:-1], dims[::-1][1:]):
        dec += [nn.Linear(a, b), nn.ReLU()]
    return nn.ModuleDict({"encoder": nn.Sequential(*enc[:-1]),  # linear code, as in DEC
                          "decoder": nn.Sequential(*dec[:-1])})


@register("aekmeans", cost="trained", streams=True)
class AEKMeans(TrainedReporterMixin, ClusterMixin, TransformerMixin, BaseEstimator):
    """Train a small autoencoder on the activations, then k-means its code.

    Rows are centred and scaled first: by one global scale by default, or per column with
    ``standardize=True``. Per-column scaling amplifies near-constant columns into noise: on
    ``load_digits`` it cut NMI from 0.73 ± 0.01 to 0.51 ± 0.09 (3 seeds). The
    encoder is ``d -> hidden... -> code_dim``
    (ReLU between layers, a linear code), trained with Adam on the reconstruction MSE.
    The k-means step is :class:`~actclust.reporters.KMeans` on the codes.

    Parameters:
        n_clusters: clusters, at least 2.
        hidden: widths of the hidden layers.
        code_dim: size of the code k-means sees.
        epochs: passes over the data.
        batch_size: rows per training batch.
        lr: Adam's learning rate.
        n_init: k-means runs on the code.
        standardize: scale each column to unit variance instead of one global scale.
        memory_budget_gb: a store layer larger than this is streamed from its memory map,
            never loaded whole.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        random_state: seeds weights, batches and k-means.
        progress: show a progress bar.

    Attributes:
        labels_: cluster of each training row.
        cluster_centers_: k-means centres, in code space.
        module_: the trained autoencoder, on CPU.
        history_: one dict per epoch: reconstruction loss.
        kmeans_: the k-means fitted on the codes.

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> X, _ = make_blobs(300, centers=3, n_features=20, random_state=0)
        >>> ae = AEKMeans(3, epochs=20, random_state=0).fit(X)
        >>> ae.transform(X[:4]).shape, len(ae.history_)
        ((4, 10), 20)
    """

    _parameter_constraints = {
        **TrainedReporterMixin._parameter_constraints,
        "hidden": ["array-like"],
        "code_dim": [Interval(Integral, 1, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "standardize": ["boolean"],
    }

    def __init__(self, n_clusters=8, *, hidden=(256,), code_dim=10, epochs=50,
                 batch_size=256, lr=1e-3, n_init=5, standardize=False, memory_budget_gb=2.0,
                 device="auto", random_state=None, progress=False):
        self.n_clusters = n_clusters
        self.hidden = hidden
        self.code_dim = code_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.n_init = n_init
        self.standardize = standardize
        self.memory_budget_gb = memory_budget_gb
        self.device = device
        self.random_state = random_state
        self.progress = progress

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the autoencoder on ``X`` and cluster the codes; ``y`` is ignored."""
        import torch


        X, seed, generator, device, data = self._start_fit(X, per_column=self.standardize)
        module = self._build_module("module_").to(device)
        opt = torch.optim.Adam(module.parameters(), lr=self.lr)
        trainer = Trainer(self.progress)

        def reconstruction(idx):
            batch = data[idx.to(device)]
            return torch.nn.functional.mse_loss(module["decoder"](module["encoder"](batch)),
                                                batch)

        def epoch(_):
            losses = trainer.run_batches(batches(len(data), self.batch_size, generator),
                                         reconstruction, opt)
            return {"loss": losses.mean(len(data))}

        self.history_ = trainer.run(module, self.epochs, epoch, name="AEKMeans", lr=self.lr)
        self.module_ = module.cpu().eval()
        codes = self.transform(X)
        return self._kmeans_on(codes, seed)

    def _build_module(self, name):
        return _autoencoder(self.n_features_in_, tuple(self.hidden), self.code_dim)

    def transform(self, X):
        """The autoencoder's code for each row."""
        return self._map_input(X, lambda rows: self.module_["encoder"](rows))

    def predict(self, X):
        """Cluster of each row's code."""
        codes = self.transform(X)
        return self.kmeans_.predict(codes)
