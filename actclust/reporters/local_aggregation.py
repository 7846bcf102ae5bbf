"""Local Aggregation (Zhuang, Zhai & Yamins, ICCV 2019) on frozen activation vectors: an
embedding in which each row's close neighbours gather, clustered by k-means."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin

from ..errors import ActclustError
from ._base import Interval, StrOptions, fit_context, register
from ._local_aggregation import (BankStep, bank_clusters, bank_rows, close_in_background,
                                 init_bank, instance_loss, la_loss, resolve_count,
                                 spectral_labels)
from ._trainer import TrainedReporterMixin, Trainer, batches, map_rows
from .backbones import mlp

# an int is a number of rows, a float in (0, 1] a share of the rows
_COUNT = [Interval(Integral, 1, None, closed="left"), Interval(Real, 0, 1, closed="right")]


def _network(d_in: int, hidden: tuple, embed_dim: int):
    from torch import nn

    width = hidden[-1] if len(hidden) else d_in
    return nn.Sequential(mlp(d_in, hidden), nn.Linear(width, embed_dim))


@register("local_aggregation", kind="clusterer", cost="trained", streams=True)
class LocalAggregation(TrainedReporterMixin, ClusterMixin, TransformerMixin, BaseEstimator):
    """Local Aggregation on frozen activation vectors: learn an embedding in which rows that
    k-means keeps together gather, then k-means it.

    An MLP (``hidden``, batch norm) maps each perturbed row to an L2-normalised
    ``embed_dim``-d embedding ``v``. A memory bank holds one embedding per training row,
    moved towards each new one as ``normalise(m * bank + (1 - m) * v)`` with ``m =
    bank_momentum`` (0.5, the authors'); it starts uniform random, normalised. The first
    ``ir_epochs`` epochs train instance discrimination, ``-log softmax(v . bank / t)`` at
    the row's own bank entry (the authors' warm start). Then Local Aggregation: each row's
    background neighbours ``B`` are the ``n_background`` bank entries with the largest
    dot product with ``v``; its close neighbours ``C`` are the rows that share its cluster
    in any of ``n_kmeans`` k-means runs with ``n_centroids`` centroids on the bank
    (recomputed every ``kmeans_every`` epochs); the loss is ``-log( sum_{C & B}
    exp(v . v_j / t) / sum_B exp(v . v_j / t) )`` with ``t = temperature`` (0.07).
    ``n_background`` and ``n_centroids`` take a number of rows or a share of them.

    After training, ``transform`` gives the embedding of the clean rows, and ``final``
    clusters it into ``n_clusters``: ``"spectral"`` (default) clusters the graph joining
    each row to its ``n_neighbors - 1`` nearest rows in the embedding (scikit-learn's
    ``SpectralClustering(affinity="nearest_neighbors")``, neighbours by faiss, ``n_init``
    k-means runs on the eigenvectors), and ``predict`` gives a new row the cluster with
    the nearest normalised mean embedding; ``"kmeans"`` is k-means (``n_init`` runs) on
    the embedding, the paper's choice.

    Vectors have no image augmentation: ``perturb="noise"`` adds Gaussian noise of
    ``noise_scale`` column standard deviations, ``"dropout"`` zeroes inputs with
    probability ``noise_scale``.

    **Defaults, measured** (docs/reporters/local_aggregation.md; NMI / label-free
    ``self_probe_accuracy``; settings compared by the label-free score first). The
    paper's scale, many small clusters (centroids 5% of rows, background 10%), spreads
    the embedding evenly: digits pixels 0.376 / 0.901, MiniLM block 5 topics 0.010 /
    0.791 (the embedding follows the sentence templates). Centroids 1% of rows, 40, 20,
    10: digits 0.695 / 0.576 / 0.643 / 0.674, MiniLM 0.601 / 0.093 / 0.797 / 0.867,
    the self-probe score highest at 10 on both: hence ``n_centroids=n_clusters``. On
    digits (3 seeds) noise 0.1 / 0.5 / 0.8 sd gives 0.661 / 0.725 / 0.748; background
    10% / 30% / 100% 0.723 / 0.725 / 0.731; 1 / 3 / 10 k-means runs 0.713 / 0.725 /
    0.742; 100 epochs 0.732; 10 warm-up epochs 0.692. Without the warm start MiniLM
    falls to 0.265 (0.601 with it); Adam 1e-3 is below the authors' SGD (digits 0.606
    against 0.695, MiniLM 0.478 against 0.601). These defaults with ``final="kmeans"``, 3
    seeds, against k-means (``n_init=10``): digits pixels 0.751 ± 0.008 / 0.970 in 7.6 s (k-means 0.741 ±
    0.002 / 0.961); MiniLM block 5 (3,200 x 384) 0.806 ± 0.021 / 0.981 in 14.4 s
    (0.714 ± 0.045 / 0.972), on two cores.

    **The final clustering.** k-means on the embedding stays level with k-means on the
    pixels (5 seeds: 0.748 ± 0.021 against 0.743 ± 0.002), and no training change lifts
    it clearly (3 seeds, k-means on the embedding / spectral on it): defaults 0.751 /
    0.808; 100 epochs 0.760 / 0.806 (19 s); noise 1.0 sd 0.753 / 0.803, 1.2 sd 0.742 /
    0.802; embedding 32-d 0.738 / 0.784. The digit classes are curved in the embedding:
    Ward 0.781 ± 0.024, spectral on 30 neighbours 0.774, on 10 0.808 ± 0.004 (self-probe
    0.973 against k-means' 0.969). On MiniLM the final clustering matters little (k-means
    0.806 ± 0.026 / 0.979, spectral 0.798 ± 0.033 / 0.976, Ward 0.803). Spectral
    clustering of the pixels themselves gives 0.854 on digits but 0.466 on MiniLM, where
    the embedding carries the result. Defaults, 5 seeds, two cores: digits pixels
    0.806 ± 0.004 / 0.972 in 8.3 s (k-means 0.743 ± 0.002 / 0.965; ``final="kmeans"``
    0.748 ± 0.021); MiniLM block 5 0.787 ± 0.038 / 0.978 in 17.4 s (k-means 0.725 ±
    0.046 / 0.970; ``final="kmeans"`` 0.787 ± 0.033).

    Parameters:
        n_clusters: clusters of the final clustering, at least 2.
        hidden: widths of the MLP (Linear + BatchNorm + ReLU) before the embedding.
        embed_dim: width of the L2-normalised embedding (128, the authors').
        n_background: background neighbours ``k`` per row: a count, or a share of rows.
        n_centroids: centroids of each k-means run on the bank: a count, a share of
            rows, or ``None`` for ``n_clusters``.
        n_kmeans: k-means runs on the bank; a row's close neighbours are those any run
            puts with it.
        kmeans_every: epochs between two clusterings of the bank.
        temperature: ``t`` of both losses.
        bank_momentum: weight of a row's old bank entry when it is updated.
        ir_epochs: epochs of instance discrimination before Local Aggregation.
        epochs: epochs of Local Aggregation.
        batch_size: rows per batch (at least 2).
        optimizer: ``"sgd"`` (momentum 0.9, the authors') or ``"adam"``.
        lr: the learning rate; with SGD it drops tenfold at 80% and again at 95% of the
            Local Aggregation epochs (the authors' 160 and 190 of 200).
        weight_decay: weight decay (1e-4, the authors').
        perturb: ``"noise"`` or ``"dropout"``: the view each step embeds.
        noise_scale: noise in column standard deviations, or the dropout probability.
        standardize: scale each column to unit variance first (otherwise one global
            scale keeps the columns' relative variances).
        final: ``"spectral"`` or ``"kmeans"``: the clustering of the embedding.
        n_neighbors: neighbours (the row included) of each row in the spectral graph.
        n_init: runs of the final k-means (on the embedding, or on the spectral
            eigenvectors).
        memory_budget_gb: a store layer larger than this is streamed from its memory map
            (never loaded whole); the memory bank (rows x ``embed_dim``) stays in memory.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        random_state: seeds weights, bank, batches, noise and every k-means.
        progress: show a progress bar.

    Attributes:
        labels_: cluster of each training row.
        cluster_centers_: the k-means centres in embedding space, or with
            ``final="spectral"`` each cluster's normalised mean embedding.
        kmeans_: with ``final="kmeans"``, the k-means fitted on the embedding.
        final_: the clustering used: ``final``, or ``"kmeans"`` when the neighbour graph
            of the embedding falls into more pieces than clusters (a warning says so).
        module_: the embedding MLP, on the CPU.
        n_background_, n_centroids_: the counts used.
        history_: per epoch: ``stage`` (``"ir"`` or ``"la"``), ``loss``; LA epochs add
            ``close`` (mean share of the background that is close) and ``clustered``
            (whether the bank was clustered before the epoch).
        n_iter_: epochs trained, both stages.

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> X, y = make_blobs(300, centers=3, n_features=8, random_state=0)
        >>> la = LocalAggregation(3, epochs=3, random_state=0, device="cpu").fit(X)
        >>> la.labels_.shape, la.transform(X[:2]).shape
        ((300,), (2, 128))
    """

    _parameter_constraints = {
        **TrainedReporterMixin._parameter_constraints,
        "hidden": ["array-like"],
        "embed_dim": [Interval(Integral, 1, None, closed="left")],
        "n_background": _COUNT,
        "n_centroids": [*_COUNT, None],
        "n_kmeans": [Interval(Integral, 1, None, closed="left")],
        "kmeans_every": [Interval(Integral, 1, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "bank_momentum": [Interval(Real, 0, 1, closed="left")],
        "ir_epochs": [Interval(Integral, 0, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "optimizer": [StrOptions({"sgd", "adam"})],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "perturb": [StrOptions({"noise", "dropout"})],
        "noise_scale": [Interval(Real, 0, None, closed="left")],
        "standardize": ["boolean"],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "final": [StrOptions({"kmeans", "spectral"})],
        "n_neighbors": [Interval(Integral, 2, None, closed="left")],
    }

    collapse_hint = ("the embedding's k-means left some clusters empty; try another "
                     "random_state or ask for fewer clusters")

    def __init__(self, n_clusters=10, *, hidden=(256,), embed_dim=128, n_background=0.3,
                 n_centroids=None, n_kmeans=5, kmeans_every=1, temperature=0.07,
                 bank_momentum=0.5, ir_epochs=5, epochs=50, batch_size=128,
                 optimizer="sgd", lr=0.03, weight_decay=1e-4, perturb="noise",
                 noise_scale=0.8, standardize=True, final="spectral", n_neighbors=10,
                 n_init=10, memory_budget_gb=2.0, device="auto", random_state=None,
                 progress=False):
        self.n_clusters = n_clusters
        self.hidden = hidden
        self.embed_dim = embed_dim
        self.n_background = n_background
        self.n_centroids = n_centroids
        self.n_kmeans = n_kmeans
        self.kmeans_every = kmeans_every
        self.temperature = temperature
        self.bank_momentum = bank_momentum
        self.ir_epochs = ir_epochs
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.perturb = perturb
        self.noise_scale = noise_scale
        self.standardize = standardize
        self.final = final
        self.n_neighbors = n_neighbors
        self.n_init = n_init
        self.memory_budget_gb = memory_budget_gb
        self.device = device
        self.random_state = random_state
        self.progress = progress

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the embedding (instance discrimination, then Local Aggregation) and
        k-means it; ``y`` is ignored."""
        import torch
        import torch.nn.functional as F


        if self.perturb == "dropout" and self.noise_scale >= 1:
            raise ActclustError(f"noise_scale={self.noise_scale} is a dropout probability "
                                "with perturb='dropout'; use a value below 1")
        X, seed, generator, device, data = self._start_fit(X, per_column=self.standardize)
        n = len(data)
        self.n_background_ = resolve_count(self.n_background, n)
        self.n_centroids_ = resolve_count(self.n_clusters if self.n_centroids is None
                                          else self.n_centroids, n)
        faiss_device = "cpu" if device == "cpu" else "auto"
        module = self._build_module("module_").to(device)
        params = [{"params": [p for p in module.parameters() if p.dim() > 1],
                   "weight_decay": self.weight_decay},  # no decay on biases and batch norm
                  {"params": [p for p in module.parameters() if p.dim() <= 1],
                   "weight_decay": 0.0}]
        opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9) if self.optimizer == "sgd" \
            else torch.optim.Adam(params, lr=self.lr)
        bank = init_bank(n, self.embed_dim, generator).to(device)
        step = BankStep(opt, bank)
        col_sd = torch.from_numpy(self.column_sd_).to(device)[None]
        state = {"labels": None, "close": []}
        trainer = Trainer(self.progress)
        min_rows = 2 if len(tuple(self.hidden)) else 1

        def embed(idx):
            rows = data[idx]
            if self.perturb == "dropout":
                rows = F.dropout(rows, self.noise_scale, training=True)
            else:
                rows = rows + torch.randn(rows.shape, generator=generator).to(device) \
                    * col_sd * self.noise_scale
            v = F.normalize(module(rows), dim=1)
            step.pending = (idx, bank_rows(bank, idx, v.detach(), self.bank_momentum))
            return v

        def ir_batch(idx):
            idx = idx.to(device)
            return instance_loss(embed(idx) @ bank.T, idx, self.temperature).mean()

        def la_batch(idx):
            idx = idx.to(device)
            v = embed(idx)
            dots, background = torch.topk(v @ bank.T, self.n_background_, dim=1,
                                          sorted=False)
            close = close_in_background(state["labels"], idx, background)
            state["close"].append(float(close.float().mean()))
            return la_loss(dots, close, self.temperature).mean()

        def ir_epoch(_):
            module.train()
            losses = trainer.run_batches(batches(n, self.batch_size, generator), ir_batch,
                                         step, min_rows=min_rows)
            return {"stage": "ir", "loss": losses.mean()}

        def la_epoch(epoch):
            module.train()
            if self.optimizer == "sgd":  # the authors' step decay
                decay = 0.1 ** ((epoch >= 0.8 * self.epochs) + (epoch >= 0.95 * self.epochs))
                for group in opt.param_groups:
                    group["lr"] = self.lr * decay
            clustered = epoch % self.kmeans_every == 0
            if clustered:
                state["labels"] = torch.from_numpy(bank_clusters(
                    bank.cpu().numpy(), self.n_centroids_, self.n_kmeans, seed,
                    faiss_device)).to(device)
            state["close"] = []
            losses = trainer.run_batches(batches(n, self.batch_size, generator), la_batch,
                                         step, min_rows=min_rows)
            return {"stage": "la", "loss": losses.mean(), "clustered": clustered,
                    "close": float(np.mean(state["close"])) if state["close"] else 0.0}

        if self.ir_epochs:
            trainer.run(module, self.ir_epochs, ir_epoch, name="Instance discrimination",
                        lr=self.lr)
        trainer.run(module, self.epochs, la_epoch, name="Local Aggregation", lr=self.lr)
        self.history_ = trainer.history
        self.module_ = module.cpu().eval()
        embedding = map_rows(lambda rows: self._embed(rows.cpu()), data)
        self.final_ = self.final
        if self.final == "spectral":
            labels = spectral_labels(embedding, self.n_clusters, self.n_neighbors,
                                     self.n_init, seed)
            if labels is not None:
                return self._spectral_on(embedding, labels)
            warnings.warn(f"the {self.n_neighbors}-nearest-neighbour graph of the embedding "
                          f"falls into more than {self.n_clusters} pieces, so spectral "
                          "clustering would isolate the small ones; k-means on the "
                          "embedding is used instead (final_)", stacklevel=2)
            self.final_ = "kmeans"
        return self._kmeans_on(embedding, seed)

    def _spectral_on(self, embedding, labels):
        """``labels_`` from spectral clustering of the embedding's neighbour graph;
        ``cluster_centers_``, the clusters' normalised mean embeddings, place new rows."""
        self.labels_ = labels
        centres = np.zeros((self.n_clusters, embedding.shape[1]), dtype=np.float32)
        np.add.at(centres, self.labels_, embedding)
        norms = np.linalg.norm(centres, axis=1, keepdims=True)
        self.cluster_centers_ = centres / np.where(norms > 0, norms, 1)
        self.n_iter_ = len(self.history_)
        self._check_degenerate()
        return self

    def _embed(self, rows):
        import torch.nn.functional as F

        return F.normalize(self.module_(rows), dim=1)

    def _build_module(self, name):
        return _network(self.n_features_in_, tuple(self.hidden), self.embed_dim)

    def transform(self, X):
        """The L2-normalised embedding of each row."""
        return self._map_input(X, lambda rows: self._embed(rows))

    def predict(self, X):
        """The nearest k-means centre of each row's embedding; with ``final="spectral"``
        the cluster whose normalised mean embedding is closest (largest dot product)."""
        embedding = self.transform(X)  # checks the fit before kmeans_ is reached
        if self.final_ == "kmeans":
            return self.kmeans_.predict(embedding)
        return np.asarray(embedding @ self.cluster_centers_.T).argmax(1)
