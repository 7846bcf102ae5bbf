"""DeepCluster (Caron, Bojanowski, Joulin & Douze, ECCV 2018) over activation vectors."""

from __future__ import annotations

import copy
import warnings

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import normalized_mutual_info_score

from ._base import HasMethods, Interval, fit_context, register
from ._trainer import TrainedReporterMixin, Trainer, degenerate, map_rows
from .backbones import mlp


@register("deepcluster", cost="trained", streams=True)
class DeepCluster(TrainedReporterMixin, ClusterMixin, TransformerMixin, BaseEstimator):
    """DeepCluster: alternate k-means pseudo-labels and training the network on them.

    Each epoch: compute the backbone's features of every row; PCA-whiten them to
    ``whiten_components`` dimensions and L2-normalise (the paper: 256 of 4096; default
    here ``feature_dim // 8``, 0 = no whitening; measured on load_digits, 2 seeds: all 128
    dims NMI 0.62, 16 dims 0.77, none 0.76; whitening every direction lifts noise to the
    level of signal); k-means them
    (faiss, :class:`~actclust.reporters.KMeans`) into ``n_clusters`` pseudo-labels, where
    faiss re-seeds an empty cluster by splitting a large one with a small perturbation, as
    the paper does; re-initialise the linear classifier head; train backbone and head on
    the pseudo-labels for one pass, sampling rows uniformly over pseudo-labels so big
    clusters cannot swallow the rest. ``history_`` records the NMI between consecutive
    epochs' assignments, the paper's convergence signal. Over-clustering (``n_clusters``
    far above the number of classes) costs little: faiss k-means and one linear head.

    The backbone is an MLP over activation vectors (Linear + BatchNorm + ReLU), trained
    with SGD (paper: lr 0.05, momentum 0.9, weight decay 1e-5). ``backbone`` takes any
    torch module instead, copied at fit time; with
    :func:`~actclust.reporters.backbones.following_blocks` it is the studied model's own
    blocks after the captured layer, initialised from its weights, so the clusters carry
    that network's inductive bias. A module backbone gets the rows unscaled (its weights
    expect the model's own activations); ``feature_dim`` is then its output width, and a
    smaller ``lr`` (e.g. 1e-3) keeps the pretrained blocks from being destroyed in the
    first epochs.

    Attributes:
        labels_: clusters of the k-means of the trained backbone's features.
        module_: the trained backbone, on CPU.
        kmeans_: that k-means, whitening included.
        history_: per epoch: ``loss``, ``nmi_previous``, ``largest_cluster``,
            ``degenerate``.
        n_iter_: epochs trained.

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> X, y = make_blobs(400, centers=3, n_features=8, random_state=0)
        >>> DeepCluster(3, epochs=5, random_state=0).fit(X).labels_.shape
        (400,)
    """

    _parameter_constraints = {
        **TrainedReporterMixin._parameter_constraints,
        "backbone": [None, HasMethods(["forward", "state_dict"])],
        "hidden": ["array-like"],
        "feature_dim": [Interval(Integral, 1, None, closed="left")],
        "whiten_components": [None, Interval(Integral, 0, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, n_clusters=10, *, backbone=None, hidden=(512,), feature_dim=128,
                 whiten_components=None, epochs=30, batch_size=256, lr=0.05, momentum=0.9,
                 weight_decay=1e-5, memory_budget_gb=2.0, device="auto", random_state=None,
                 progress=False):
        self.n_clusters = n_clusters
        self.backbone = backbone
        self.hidden = hidden
        self.feature_dim = feature_dim
        self.whiten_components = whiten_components
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.memory_budget_gb = memory_budget_gb
        self.device = device
        self.random_state = random_state
        self.progress = progress

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Alternate clustering and training for ``epochs``; ``y`` is ignored."""
        import torch

        from .kmeans import KMeans

        custom = self.backbone is not None
        X, seed, generator, device, data = self._start_fit(X, scale=not custom)
        if custom:
            backbone = copy.deepcopy(self.backbone).float().to(device)
            feature_dim = self._features(backbone, data[:2]).shape[1]
        else:
            backbone = self._build_module("module_").to(device)
            feature_dim = self.feature_dim
        # Backbone and classifier head in one module, so the trainer restores both.
        net = torch.nn.ModuleDict({"backbone": backbone})
        opt = torch.optim.SGD(backbone.parameters(), lr=self.lr, momentum=self.momentum,
                              weight_decay=self.weight_decay)
        if self.whiten_components is None:
            whiten = max(1, feature_dim // 8)
        else:
            whiten = min(self.whiten_components, feature_dim) or None
        trainer = Trainer(self.progress)
        state = {"labels": None}

        def cluster(number):
            km = KMeans(self.n_clusters, whiten_components=whiten, random_state=seed + number,
                        device="cpu" if device == "cpu" else "auto", max_points_per_centroid=None)
            with warnings.catch_warnings():
                # dead ReLU units in the backbone's own features: nothing a user can act on;
                # too few clusters is reported once, after fit
                warnings.filterwarnings("ignore", message=".*columns are constant")
                warnings.simplefilter("ignore", ConvergenceWarning)
                return km.fit(self._features(backbone, data))

        def classification(idx, targets):
            idx = idx.to(device)
            return torch.nn.functional.cross_entropy(net["head"](backbone(data[idx])),
                                                     targets[idx])

        def epoch(number):
            km = cluster(number)
            labels = km.labels_
            stability = float("nan") if state["labels"] is None else \
                normalized_mutual_info_score(state["labels"], labels)
            state["labels"] = labels
            net["head"] = torch.nn.Linear(feature_dim, self.n_clusters).to(device)  # re-init
            head_opt = torch.optim.SGD(net["head"].parameters(), lr=self.lr,
                                       momentum=self.momentum, weight_decay=self.weight_decay)
            # Uniform over pseudo-labels: each row weighted by 1 / its cluster's size.
            sizes = np.bincount(labels, minlength=self.n_clusters)
            weights = torch.from_numpy(1.0 / sizes[labels])
            order = torch.multinomial(weights, len(labels), replacement=True,
                                      generator=generator)
            targets = torch.from_numpy(labels).to(device)
            backbone.train()
            losses = trainer.run_batches(order.split(self.batch_size),
                                         lambda idx: classification(idx, targets), opt,
                                         head_opt, min_rows=2)
            return {"loss": losses.mean(len(labels)), "nmi_previous": stability,
                    "largest_cluster": float(sizes.max() / len(labels)),
                    "degenerate": degenerate(labels, self.n_clusters)}

        self.history_ = trainer.run(net, self.epochs, epoch, name="DeepCluster", lr=self.lr)
        # The clusters users get are those of the trained features, so that predict()
        # on the training rows gives labels_.
        self.kmeans_ = cluster(len(self.history_))
        self.labels_ = self.kmeans_.labels_
        self.module_ = backbone.cpu().eval()
        self.n_iter_ = len(self.history_)
        self._check_degenerate()
        return self

    def _build_module(self, name):
        """The MLP backbone (a custom ``backbone`` is code, never rebuilt from a file)."""
        return mlp(self.n_features_in_, (*self.hidden, self.feature_dim))

    @staticmethod
    def _features(backbone, data) -> np.ndarray:
        backbone.eval()
        return map_rows(backbone, data)

    def transform(self, X):
        """The backbone's features of each row."""
        return self._map_input(X, lambda rows: self.module_(rows))

    def predict(self, X):
        """Cluster of each row under the last epoch's k-means (whitening included)."""
        features = self.transform(X)
        return self.kmeans_.predict(features)
