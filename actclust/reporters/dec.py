"""DEC (Xie et al. 2016) and IDEC (Guo et al. 2017): clustering in a learned embedding."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning

from ._base import Interval, StrOptions, fit_context, is_layer_view, register
from ._dec_nets import autoencoder, init_pca, linear_map, pretrain_layerwise
from ._trainer import (ROW_CHUNK, TrainedReporterMixin, Trainer, batches, degenerate,
                       map_rows)


def soft_assign(z, centers, alpha: float = 1.0):
    """Student's t similarity of each embedding to each centre, rows summing to 1 (DEC eq. 1)."""
    import torch

    sq = torch.cdist(z, centers).pow(2)
    q = (1.0 + sq / alpha).pow(-(alpha + 1.0) / 2.0)
    return q / q.sum(1, keepdim=True)


def target_distribution(q):
    """DEC's sharpened target: p_ij = (q_ij^2 / f_j) / sum_j' (q_ij'^2 / f_j') (eq. 3)."""
    weight = q.pow(2) / q.sum(0)
    return weight / weight.sum(1, keepdim=True)


@register("dec", cost="trained", streams=True)
class DEC(TrainedReporterMixin, ClusterMixin, TransformerMixin, BaseEstimator):
    """Deep Embedded Clustering (Xie, Girshick & Farhadi, ICML 2016).

    1. Embed. ``pretrain="end-to-end"`` (default) trains an autoencoder
       ``d-500-500-2000-embed_dim`` (the paper's shape) whole with Adam; ``"layerwise"``
       first trains each layer pair as a denoising autoencoder (input dropout
       ``dropout``), as the paper does, then fine-tunes end to end (on ``load_digits``,
       3 seeds: NMI 0.841 ± 0.036 against 0.825 ± 0.002, within one sd, far less stable
       and three times as slow). ``"none"`` trains no autoencoder: the embedding is a
       linear map started at the projection on the top ``embed_dim`` principal axes of
       the scaled rows (``embed_dim=None``: all of them, a rotation of the rows).
    2. Initialise the centres by k-means (``n_init`` runs). ``init="input"`` (default)
       runs it on the rows themselves and takes each cluster's mean embedding as its
       centre; ``"embedding"`` (the paper's) runs it on the embeddings.
    3. Train embedding and centres to minimise KL(P || Q), with Q the Student-t soft
       assignment (``alpha`` = 1) and P the sharpened target, recomputed on all rows
       every ``update_interval`` iterations (default: once per pass over the data; the
       paper used 140 iterations of 256 on MNIST). Stop when fewer than ``tol`` of the rows
       change cluster between two target updates (paper: 0.1%).

    Why ``init="input"``: on MiniLM block 5 (topics) the paper's setting reached NMI
    0.446 against k-means' 0.725, with NMI 0.355 against the sentence template: the
    10-d autoencoder keeps the template, and k-means on its embedding starts from it.
    Measured (NMI, 5 seeds unless a count follows; self-probe: the label-free
    ``self_probe_accuracy`` of the clusters, mean over the four inputs, which chose the
    defaults; CPU, 2 threads; docs/reporters/dec-idec.md has every setting tried)::

        setting                       digits  digits-mlp  minilm-3  minilm-5       self-probe
        KMeans(k), one run            0.734   0.913       0.034     0.556 ± 0.105  0.9709
        KMeans(k, n_init=10)          0.743   0.938       0.024     0.725 ± 0.046  0.9731
        DEC, the paper's setting      0.822   0.945       0.000     0.446 ± 0.028  0.9808
        DEC, init="input" (default)   0.818   0.936       0.001     0.834 ± 0.071  0.9820
        DEC, init="input", 32-d (3)   0.816   0.944       0.000     0.864 ± 0.047  0.9816
        DEC, embed_dim=32 (3)         0.811   0.946       0.000     0.590 ± 0.161  0.9768
        DEC, pretrain="none" (a)      0.745   0.937       0.028     0.765 ± 0.029  0.9744
        IDEC, the paper's setting     0.744   0.942       0.010     0.361 ± 0.020  0.9504
        IDEC, pretrain="none" (a)     0.745   0.938       0.029     0.765 ± 0.029  0.9744

    (3): 3 seeds on digits and digits-mlp, 1 on minilm-3, 2 on minilm-5. (a): over the
    input width (``embed_dim=None``); IDEC's default. Fit seconds on MiniLM block 5:
    about 33 with the autoencoder, 2 without, k-means 4. A loss to k-means remains on
    digits-mlp (0.936 ± 0.007 against 0.938 ± 0.001, within one sd); on MiniLM block 3
    every setting finds the template, not the topic.

    Parameters:
        n_clusters: clusters, at least 2.
        embed_dim: width of the embedding (paper: 10); ``None``: the input width. With
            ``pretrain="none"`` at most the input width (a wider one is the input width).
        hidden: widths of the encoder's hidden layers (paper: 500, 500, 2000); unused
            with ``pretrain="none"``.
        pretrain: ``"end-to-end"``, ``"layerwise"`` or ``"none"`` (above).
        init: where the k-means that places the centres runs: ``"input"`` (the rows)
            or ``"embedding"`` (the paper's).
        pretrain_epochs: epochs of pretraining (per layer pair when layerwise).
        pretrain_lr: Adam's learning rate for pretraining.
        dropout: input dropout of the layerwise denoising autoencoders.
        lr: SGD learning rate of the clustering phase (paper: 0.01).
        momentum: SGD momentum of the clustering phase (paper: 0.9).
        max_updates: target updates at most.
        update_interval: iterations between target updates (``None``: one pass).
        tol: stop when fewer than this share of rows change cluster.
        alpha: degrees of freedom of the Student-t kernel.
        batch_size: rows per batch.
        n_init: k-means runs that initialise the centres.
        memory_budget_gb: a store layer larger than this is streamed from its memory map,
            never loaded whole.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        random_state: seeds weights, batches and k-means.
        progress: show a progress bar.

    Attributes:
        labels_: cluster of each training row.
        cluster_centers_: the centres, in embedding space.
        module_: the autoencoder (with ``pretrain="none"``: the linear map), on CPU; its
            ``centers`` parameter holds the centres, so restoring the module restores
            them too.
        history_: one dict per pretraining epoch and per target update (``phase``,
            ``loss``, ``delta_label``, ``largest_cluster``, ``degenerate``).
        n_iter_: target updates made.

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> X, y = make_blobs(300, centers=3, n_features=10, random_state=0)
        >>> dec = DEC(3, hidden=(32,), embed_dim=3, pretrain_epochs=20, random_state=0)
        >>> dec.fit(X).cluster_centers_.shape
        (3, 3)
        >>> DEC(3, pretrain="none", random_state=0).fit(X).transform(X[:2]).shape
        (2, 10)
    """

    keeps_decoder = False  # IDEC trains on reconstruction + gamma * KL

    _parameter_constraints = {
        **TrainedReporterMixin._parameter_constraints,
        "embed_dim": [None, Interval(Integral, 1, None, closed="left")],
        "hidden": ["array-like"],
        "pretrain": [StrOptions({"end-to-end", "layerwise", "none"})],
        "init": [StrOptions({"embedding", "input"})],
        "pretrain_epochs": [Interval(Integral, 0, None, closed="left")],
        "pretrain_lr": [Interval(Real, 0, None, closed="neither")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "max_updates": [Interval(Integral, 1, None, closed="left")],
        "update_interval": [None, Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, 1, closed="both")],
        "alpha": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, n_clusters=10, *, embed_dim=10, hidden=(500, 500, 2000),
                 pretrain="end-to-end", init="input", pretrain_epochs=50, pretrain_lr=1e-3,
                 dropout=0.2, lr=0.01, momentum=0.9, max_updates=100, update_interval=None,
                 tol=0.001, alpha=1.0, batch_size=256, n_init=20, memory_budget_gb=2.0,
                 device="auto", random_state=None, progress=False):
        self.n_clusters = n_clusters
        self.embed_dim = embed_dim
        self.hidden = hidden
        self.pretrain = pretrain
        self.init = init
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_lr = pretrain_lr
        self.dropout = dropout
        self.lr = lr
        self.momentum = momentum
        self.max_updates = max_updates
        self.update_interval = update_interval
        self.tol = tol
        self.alpha = alpha
        self.batch_size = batch_size
        self.n_init = n_init
        self.memory_budget_gb = memory_budget_gb
        self.device = device
        self.random_state = random_state
        self.progress = progress

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Pretrain, initialise centres, then train on KL(P || Q); ``y`` is ignored."""
        X, seed, generator, self.device_, data = self._start_fit(X)
        module = self._build_module("module_").to(self.device_)
        trainer = Trainer(self.progress)
        if self.pretrain == "none":
            init_pca(module, data)
        else:
            self._pretrain(trainer, module, data, generator)
        self._init_centers(module, X, data, seed)
        self._cluster(trainer, module, data, generator)
        self.history_ = trainer.history
        self.module_ = module.cpu().eval()
        self.cluster_centers_ = module.centers.detach().numpy().copy()
        self.labels_ = self.predict(X)
        self.n_iter_ = sum(1 for h in self.history_ if h["phase"] == "cluster")
        self._check_degenerate()
        return self

    def _embed_width(self) -> int:
        """``embed_dim``; the input width when it is ``None``, or when a linear map is
        asked for more (it can give no more)."""
        if self.embed_dim is None:
            return self.n_features_in_
        if self.pretrain == "none":
            return min(self.embed_dim, self.n_features_in_)
        return self.embed_dim

    def _build_module(self, name):
        """The autoencoder (or, without pretraining, the linear map), with the centres as
        a parameter (filled in by k-means)."""
        import torch

        width = self._embed_width()
        if self.pretrain == "none":
            module = linear_map(self.n_features_in_, width, self.keeps_decoder)
        else:
            module = autoencoder(self.n_features_in_, tuple(self.hidden), width)
        module.register_parameter(
            "centers", torch.nn.Parameter(torch.zeros(self.n_clusters, width)))
        return module

    # -- phases -------------------------------------------------------------------------
    def _pretrain(self, trainer, module, data, generator) -> None:
        import torch

        if self.pretrain == "layerwise":
            pretrain_layerwise(trainer, module, data, generator, epochs=self.pretrain_epochs,
                               batch_size=self.batch_size, dropout=self.dropout,
                               lr=self.pretrain_lr)
        opt = torch.optim.Adam(list(module["encoder"].parameters())
                               + list(module["decoder"].parameters()), lr=self.pretrain_lr)

        def reconstruction(idx):
            batch = data[idx.to(data.device)]
            return torch.nn.functional.mse_loss(module["decoder"](module["encoder"](batch)),
                                                batch)

        def epoch(_):
            losses = trainer.run_batches(batches(len(data), self.batch_size, generator),
                                         reconstruction, opt)
            return {"phase": "pretrain", "loss": losses.mean(len(data))}

        trainer.run(module, self.pretrain_epochs, epoch, name=f"{type(self).__name__} pretrain",
                    lr=self.pretrain_lr)

    def _init_centers(self, module, X, data, seed) -> None:
        """k-means (``n_init`` runs) on the embeddings, or with ``init="input"`` on the
        rows themselves, the centres then being each cluster's mean embedding."""
        import torch

        from .kmeans import KMeans

        km = KMeans(self.n_clusters, n_init=self.n_init, random_state=seed, device="cpu",
                    max_points_per_centroid=None)
        with warnings.catch_warnings():  # too few clusters is reported once, after fit
            warnings.simplefilter("ignore", ConvergenceWarning)
            if self.init == "embedding":
                centers = km.fit(map_rows(module["encoder"], data)).cluster_centers_
            else:
                centers = self._mean_embeddings(module, data, self._input_kmeans(km, X, seed))
        with torch.no_grad():
            module.centers.copy_(torch.from_numpy(centers))

    def _input_kmeans(self, km, X, seed) -> np.ndarray:
        """The k-means cluster of every row of ``X``. The rows DEC trains on are ``X``
        centred and divided by one number, which moves no k-means boundary, so ``X``
        itself serves. A streamed store layer is clustered on a seeded sample (256 rows
        per cluster, or as many as the memory budget holds), then assigned in batches."""
        if not is_layer_view(X):
            return km.fit(X).labels_
        n = X.shape[0]
        cap = min(n, max(self.n_clusters * 256,
                         int(self.memory_budget_gb * 2**30 // (4 * X.shape[1]))))
        idx = np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))
        return km.fit(np.asarray(X[idx], dtype=np.float32)).predict(X)

    def _mean_embeddings(self, module, data, labels) -> np.ndarray:
        """Each cluster's mean embedding, summed chunk by chunk (no n x width array)."""
        sums = np.zeros((self.n_clusters, module.centers.shape[1]))
        for start in range(0, len(data), ROW_CHUNK):
            z = map_rows(module["encoder"], data[start:start + ROW_CHUNK])
            np.add.at(sums, labels[start:start + ROW_CHUNK], z)
        counts = np.bincount(labels, minlength=self.n_clusters)[:, None]
        return (sums / np.maximum(counts, 1)).astype(np.float32)

    def _cluster(self, trainer, module, data, generator) -> None:
        import torch

        centers = module.centers
        params = list(module["encoder"].parameters()) + [centers]
        if self.keeps_decoder:
            params += list(module["decoder"].parameters())
        opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)
        interval = self.update_interval or max(1, -(-len(data) // self.batch_size))
        state = {"labels": None}

        def steps():
            """``interval`` index batches, cycling through fresh shuffles."""
            order = iter(())
            for _step in range(interval):
                idx = next(order, None)
                if idx is None:
                    order = iter(batches(len(data), self.batch_size, generator))
                    idx = next(order)
                yield idx.to(data.device)

        def clustering(idx, p):
            batch = data[idx]
            z = module["encoder"](batch)
            loss = torch.nn.functional.kl_div(soft_assign(z, centers, self.alpha).log(),
                                              p[idx], reduction="batchmean")
            if self.keeps_decoder:
                loss = torch.nn.functional.mse_loss(module["decoder"](z), batch) + \
                    self.gamma * loss
            return loss

        def update(_):
            with torch.no_grad():  # chunk by chunk: never an n x width embedding
                q = torch.from_numpy(map_rows(lambda rows: soft_assign(
                    module["encoder"](rows), centers, self.alpha), data)).to(data.device)
                p = target_distribution(q)
            labels = q.argmax(1).cpu().numpy()
            change = 1.0 if state["labels"] is None else \
                float((labels != state["labels"]).mean())
            state["labels"] = labels
            record = {"phase": "cluster", "delta_label": change,
                      "largest_cluster": float(np.bincount(labels, minlength=self.n_clusters)
                                               .max() / len(labels)),
                      "degenerate": degenerate(labels, self.n_clusters)}
            if change < self.tol:
                return {**record, "stop": True}
            losses = trainer.run_batches(steps(), lambda idx: clustering(idx, p), opt)
            return {**record, "loss": losses.mean()}

        trainer.run(module, self.max_updates, update, name=f"{type(self).__name__} clustering",
                    lr=self.lr)

    # -- inference ------------------------------------------------------------------------
    def transform(self, X):
        """The embedding of each row."""
        return self._map_input(X, lambda rows: self.module_["encoder"](rows))

    def predict_proba(self, X):
        """DEC's soft assignment Q of each row to each cluster."""
        import torch

        z = torch.from_numpy(self.transform(X))
        return soft_assign(z, torch.from_numpy(self.cluster_centers_), self.alpha).numpy()

    def predict(self, X):
        """The most likely cluster of each row under Q."""
        return self.predict_proba(X).argmax(1)


@register("idec", cost="trained", streams=True)
class IDEC(DEC):
    """Improved DEC (Guo, Gao, Liu & Yin, IJCAI 2017): DEC that keeps the decoder.

    The clustering phase minimises ``reconstruction + gamma * KL(P || Q)`` (paper:
    ``gamma`` = 0.1), so the embedding keeps the local structure the autoencoder learned
    instead of being free to distort it. With ``pretrain="none"`` the decoder is the
    transpose of the linear map (the best linear reconstruction to start from).
    Everything else is :class:`DEC`.

    The defaults differ from DEC's: ``pretrain="none"``, ``embed_dim=None`` (the linear
    map over the whole input width). The reconstruction holds the embedding to the
    structure that dominates the rows, on MiniLM the sentence template: the paper's
    setting reached NMI 0.361 on block 5 (k-means 0.725), ``init="input"`` 0.690, ten PCA
    dimensions 0.575. Over the whole input width nothing has to be reconstructed away;
    the Student-t assignment is then nearly flat, self-training stops after one pass,
    and IDEC is k-means with ``n_init`` runs (0.765 on block 5; self-probe 0.9744 over
    the four inputs of :class:`DEC`'s table, the highest IDEC setting, against 0.9504 for
    the paper's). On these inputs the reconstruction term does not help; the paper's
    setting (``pretrain="end-to-end", embed_dim=10, init="embedding"``) stays available.

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> X, y = make_blobs(300, centers=3, n_features=10, random_state=0)
        >>> IDEC(3, random_state=0).fit(X).cluster_centers_.shape
        (3, 10)
    """

    _parameter_constraints = {**DEC._parameter_constraints,
                              "gamma": [Interval(Real, 0, None, closed="neither")]}

    def __init__(self, n_clusters=10, *, gamma=0.1, embed_dim=None, hidden=(500, 500, 2000),
                 pretrain="none", init="input", pretrain_epochs=50, pretrain_lr=1e-3,
                 dropout=0.2, lr=0.01, momentum=0.9, max_updates=100, update_interval=None,
                 tol=0.001, alpha=1.0, batch_size=256, n_init=20, memory_budget_gb=2.0,
                 device="auto", random_state=None, progress=False):
        super().__init__(n_clusters, embed_dim=embed_dim, hidden=hidden, pretrain=pretrain,
                         init=init, pretrain_epochs=pretrain_epochs, pretrain_lr=pretrain_lr,
                         dropout=dropout, lr=lr, momentum=momentum, max_updates=max_updates,
                         update_interval=update_interval, tol=tol, alpha=alpha,
                         batch_size=batch_size, n_init=n_init,
                         memory_budget_gb=memory_budget_gb, device=device,
                         random_state=random_state, progress=progress)
        self.gamma = gamma

    keeps_decoder = True
