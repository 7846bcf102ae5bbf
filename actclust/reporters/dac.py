"""DAC: Deep Adaptive Image Clustering (Chang et al., ICCV 2017), on frozen activation
vectors."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin

from ._base import Interval, StrOptions, fit_context, register
from ._trainer import TrainedReporterMixin, Trainer, batches, map_rows
from .backbones import mlp

EPS = 1e-7  # the clamp of Keras' binary cross-entropy, which the authors train with


def label_features(logits):
    """DAC's label features: the softmax of the logits, L2-normalised, so that the dot
    product of two rows is the cosine of their cluster probabilities (1 for the same
    one-hot cluster, 0 for two different ones).

    Example:
        >>> import torch
        >>> z = label_features(torch.tensor([[9.0, 0.0], [0.0, 9.0], [9.0, 0.0]]))
        >>> (z @ z.T).round(decimals=3)
        tensor([[1., 0., 1.],
                [0., 1., 0.],
                [1., 0., 1.]])
    """
    import torch

    return torch.nn.functional.normalize(torch.softmax(logits, -1), dim=-1)


def pair_targets(similarity, upper: float, lower: float):
    """The pairs DAC trains on and their targets: a similarity above ``upper`` makes a
    "similar" pair (target 1), one below ``lower`` a "dissimilar" pair (target 0); the
    pairs in between, and each row with itself, are left out. Returns ``(target,
    selected)``, both shaped like ``similarity``.

    Example:
        >>> import torch
        >>> sim = torch.tensor([[1.0, 0.97, 0.2], [0.97, 1.0, 0.5], [0.2, 0.5, 1.0]])
        >>> target, selected = pair_targets(sim, upper=0.95, lower=0.3)
        >>> target.tolist()  # the diagonal is similar, but never selected
        [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        >>> selected.tolist()
        [[False, True, True], [True, False, False], [True, False, False]]
    """
    import torch

    similar, dissimilar = similarity > upper, similarity < lower
    selected = (similar | dissimilar) & ~torch.eye(len(similarity), dtype=torch.bool,
                                                   device=similarity.device)
    return similar.to(similarity.dtype), selected


def dac_loss(similarity, target, selected):
    """Binary cross-entropy between the similarities of the selected pairs and their
    targets, averaged over those pairs (the authors' ``my_binary_crossentropy``);
    similarities are clamped to ``[1e-7, 1 - 1e-7]`` as Keras does. No pair selected:
    zero, still attached to the graph.

    Example:
        >>> import torch
        >>> sim = torch.tensor([[1.0, 0.9], [0.9, 1.0]])
        >>> round(dac_loss(sim, torch.ones(2, 2), torch.tensor([[False, True],
        ...                                                      [True, False]])).item(), 4)
        0.1054
    """
    import torch

    if not bool(selected.any()):
        return (similarity * 0).sum()
    s = similarity[selected].clamp(EPS, 1 - EPS)
    t = target[selected]
    return -(t * torch.log(s) + (1 - t) * torch.log(1 - s)).mean()


def thresholds(upper: float, lower: float, epochs: int) -> np.ndarray:
    """The self-paced schedule: epoch ``e`` selects pairs with ``u_e = upper - e * step``
    and ``l_e = lower + e * step``, ``step = (upper - lower) / (2 * epochs)``, so the two
    meet at their midpoint when training ends (the authors' stopping rule ``u < l``).
    Returns an ``epochs x 2`` array of ``(u_e, l_e)``.

    Example:
        >>> thresholds(0.99, 0.79, 2).round(3).tolist()
        [[0.99, 0.79], [0.94, 0.84]]
    """
    step = (upper - lower) / (2 * epochs)
    e = np.arange(epochs)
    return np.stack([upper - e * step, lower + e * step], 1)


def population_batch_norm(module, data) -> None:
    """Set every batch norm's running statistics to those of all rows of ``data`` (tensor
    or :class:`StreamedRows`, in the chunks of :func:`map_rows`), then put ``module`` in
    inference mode: what the label features are read with, in training and after it.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.BatchNorm1d(1))
        >>> population_batch_norm(net, torch.tensor([[1.0], [3.0], [5.0]]))
        >>> net[0].running_mean.item(), net[0].training
        (3.0, False)
    """
    from torch import nn

    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the chunks
    module.train()
    # a chunk of one row has no batch statistics: it is left out
    map_rows(lambda rows: module(rows)[:, :0] if len(rows) > 1 else rows[:, :0], data)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    module.eval()


def _network(d_in: int, hidden: tuple, n_clusters: int, logit_norm: bool):
    from torch import nn

    width = hidden[-1] if len(hidden) else d_in
    layers = [mlp(d_in, hidden), nn.Linear(width, n_clusters)]
    if logit_norm:  # the authors' BatchNorm before the softmax
        layers.append(nn.BatchNorm1d(n_clusters))
    return nn.Sequential(*layers)


@register("dac", kind="clusterer", cost="trained", streams=True)
class DAC(TrainedReporterMixin, ClusterMixin, BaseEstimator):
    """DAC on frozen activation vectors: pairs whose label features agree become similar,
    pairs that clearly disagree dissimilar, and the network learns from both.

    The network (an MLP with batch norm, ``hidden``; then a linear layer to the clusters
    and, with ``logit_norm``, the authors' BatchNorm before the softmax) gives each row a
    softmax; L2-normalised, it is the row's *label feature*, and the dot product of two
    label features is their similarity (:func:`label_features`). Training runs
    ``epochs`` threshold steps. At the start of each, the label features of every clean
    row are computed once (batch norms set to the statistics of all rows,
    :func:`population_batch_norm`) and fixed for the step; then ``inner_epochs`` passes
    over the rows in batches of ``batch_size``: every pair in a batch whose fixed
    similarity is above the upper threshold is a similar pair (target 1), below the lower
    one a dissimilar pair (target 0), the rest are ignored (:func:`pair_targets`); the
    loss is the binary cross-entropy between the similarities of the network's label
    features on a perturbed view of the rows (Gaussian noise of ``noise_scale`` column
    sds, or input dropout) and those targets (:func:`dac_loss`). The thresholds start at
    ``upper`` and ``lower`` and move toward each other by ``(upper - lower) / (2 *
    epochs)`` a step, so they meet when training ends (the authors' stopping rule ``u <
    l``; :func:`thresholds`). Optimiser: RMSprop (Keras' rho 0.9), ``lr``. A row's
    cluster is the argmax of its label feature.

    **Seeded neighbour pairs** (``n_neighbors``, beyond the paper): on vectors a random
    MLP's first partition is arbitrary and DAC's self-selected pairs keep it (digits
    pixels 0.664 ± 0.033 NMI without seeds, 3 seeds). With ``n_neighbors > 0`` each
    row's nearest rows are mined once (cosine on the input as given,
    :func:`actclust.label_free.nearest_neighbors`); every batch carries one of each
    anchor's neighbours, and ``-neighbor_weight * mean log <z(x), z(n)>`` pulls the pair
    together. ``consistency_weight`` adds the authors' second output (cross-entropy of
    the perturbed softmax to the clean one; weight 1 or 10 in their scripts).

    **Defaults, measured** (details in docs/reporters/dac.md; NMI / label-free
    ``self_probe_accuracy``, 2 seeds unless said; settings compared by the label-free
    score first). Digits pixels without seeds: MLP ``(256,)`` 0.552 / 0.928, linear
    head 0.706 / 0.962; with 20 seeded neighbours 0.843 / 0.965 (noise 0.1,
    consistency 1), 0.831 / 0.969 (noise 0.5, consistency 0), 0.802 / 0.971 (noise
    0.5, consistency 1); k = 10 0.783 / 0.966, k = 5 0.786 / 0.965; a linear head with
    seeds 0.774 / 0.974: the self-probe score would pick it, by less than its seed
    spread (about 0.003), and its preference for a linear head is built in (a linear
    probe scores the clusters), so the MLP stays. Measured before the targets were read
    with all rows' batch-norm statistics (with the initial running averages every pair
    looked similar and MiniLM collapsed to one cluster): ``(512, 256)`` 0.555 and no
    BatchNorm on the logits 0.474, against 0.601 for the defaults of then. Defaults, 3
    seeds, NMI / self-probe / seconds a fit on two cores, against
    k-means (``n_init=10``): digits pixels 0.825 ± 0.011 / 0.969 / 4.2 s (k-means 0.732
    ± 0.010 / 0.971). DAC loses on MiniLM block 5 topics (3,200 x 384, 10 topics, kNN
    purity 0.62): 0.283 ± 0.010 / 0.891 / 9.9 s against 0.542 ± 0.105 / 0.964, and
    without seeds 0.309 ± 0.106 / 0.941; the self-probe score says so without labels.
    There, fewer seeds do better (k = 5 0.426 / 0.918), the same disagreement between
    inputs that SCAN shows.

    Parameters:
        n_clusters: number of clusters, at least 2.
        hidden: widths of the MLP (Linear + BatchNorm + ReLU); ``()`` for a linear head.
        logit_norm: BatchNorm on the logits before the softmax (the authors').
        upper: the first upper threshold: a pair more similar is a similar pair.
        lower: the first lower threshold: a pair less similar is a dissimilar pair.
        epochs: threshold steps; the thresholds meet after the last.
        inner_epochs: passes over the rows per threshold step, with fixed targets.
        batch_size: rows per batch; every pair in a batch is a candidate.
        lr: RMSprop's learning rate.
        consistency_weight: weight of the cross-entropy of the perturbed softmax to the
            clean one (the authors' second output); 0 leaves it out.
        perturb: ``"noise"``, ``"dropout"`` or ``None``: the view the loss is taken on.
        noise_scale: noise in column standard deviations, or the dropout probability.
        n_neighbors: nearest neighbours mined per row as seeded similar pairs (0: none,
            the paper's DAC).
        neighbor_weight: weight of the seeded pairs' term.
        standardize: scale each column to unit variance (otherwise one global scale).
        memory_budget_gb: a store layer larger than this is streamed from its memory map
            (never loaded whole); the neighbour search streams it too.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        random_state: seeds weights, batches, perturbations and pairs.
        progress: show a progress bar.

    Attributes:
        labels_: cluster of each training row.
        module_: the network, on the CPU.
        history_: per threshold step: ``loss``, ``upper``, ``lower``, ``selected`` (share
            of a batch's pairs trained on) and ``similar`` (share of those that are
            similar; near ``1 / n_clusters`` once the clusters are balanced).
        n_iter_: threshold steps trained.

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> X, y = make_blobs(300, centers=3, n_features=8, random_state=0)
        >>> DAC(3, epochs=5, random_state=0, device="cpu").fit(X).labels_.shape
        (300,)
    """

    _parameter_constraints = {
        **TrainedReporterMixin._parameter_constraints,
        "hidden": ["array-like"],
        "logit_norm": ["boolean"],
        "upper": [Interval(Real, 0, 1, closed="right")],
        "lower": [Interval(Real, 0, 1, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "inner_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "consistency_weight": [Interval(Real, 0, None, closed="left")],
        "perturb": [StrOptions({"noise", "dropout"}), None],
        "noise_scale": [Interval(Real, 0, 1, closed="left")],
        "n_neighbors": [Interval(Integral, 0, None, closed="left")],
        "neighbor_weight": [Interval(Real, 0, None, closed="left")],
        "standardize": ["boolean"],
    }

    collapse_hint = ("DAC left some clusters empty; keep logit_norm=True, try another "
                     "random_state, or ask for fewer clusters")

    def __init__(self, n_clusters=10, *, hidden=(256,), logit_norm=True, upper=0.99,
                 lower=0.8, epochs=50, inner_epochs=2, batch_size=256, lr=1e-3,
                 consistency_weight=0.0, perturb="noise", noise_scale=0.5, n_neighbors=20,
                 neighbor_weight=1.0, standardize=True, memory_budget_gb=2.0, device="auto",
                 random_state=None, progress=False):
        self.n_clusters = n_clusters
        self.hidden = hidden
        self.logit_norm = logit_norm
        self.upper = upper
        self.lower = lower
        self.epochs = epochs
        self.inner_epochs = inner_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.consistency_weight = consistency_weight
        self.perturb = perturb
        self.noise_scale = noise_scale
        self.n_neighbors = n_neighbors
        self.neighbor_weight = neighbor_weight
        self.standardize = standardize
        self.memory_budget_gb = memory_budget_gb
        self.device = device
        self.random_state = random_state
        self.progress = progress

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train on self-selected pairs under the shrinking thresholds; ``y`` is
        ignored."""
        import torch

        from ..errors import ActclustError

        if self.lower >= self.upper:
            raise ActclustError(f"DAC needs lower < upper, got lower={self.lower} and "
                                f"upper={self.upper}; lower the lower threshold")
        X, seed, generator, device, data = self._start_fit(X, per_column=self.standardize)
        n = len(data)
        pool = self._neighbour_pool(X, n, seed, device)
        module = self._build_module("module_").to(device)
        # Keras' RMSprop (rho 0.9, eps 1e-7), the authors' optimiser
        opt = torch.optim.RMSprop(module.parameters(), lr=self.lr, alpha=0.9, eps=1e-7)
        trainer = Trainer(self.progress)
        col_sd = torch.from_numpy(self.column_sd_).to(device)[None]
        state = {}

        def perturbed(rows):
            if self.perturb is None or self.noise_scale == 0:
                return rows
            if self.perturb == "dropout":
                keep = torch.rand(rows.shape, generator=generator).to(device) \
                    >= self.noise_scale
                return rows * keep / (1 - self.noise_scale)
            return rows + torch.randn(rows.shape, generator=generator).to(device) \
                * col_sd * self.noise_scale

        def batch_loss(idx):
            idx = idx.to(device)
            b = len(idx)
            z_clean = state["features"][idx]
            target, selected = pair_targets(z_clean @ z_clean.T, state["upper"],
                                            state["lower"])
            state["selected"] += int(selected.sum())
            state["similar"] += int((target.bool() & selected).sum())
            state["pairs"] += b * (b - 1)
            rows = idx
            if pool is not None:  # each anchor's mined neighbour rides along
                pick = torch.randint(0, pool.shape[1], (b,), generator=generator)
                rows = torch.cat([idx, pool[idx, pick.to(device)]])
            logits = module(perturbed(data[rows]))
            z = label_features(logits)
            loss = dac_loss(z[:b] @ z[:b].T, target, selected)
            if pool is not None:  # a seeded similar pair: -log of its similarity
                agreement = (z[:b] * z[b:]).sum(1).clamp(EPS, 1)
                loss = loss - self.neighbor_weight * torch.log(agreement).mean()
            if self.consistency_weight:  # the authors' second output: BCE to the clean p
                p = torch.softmax(logits[:b], 1).clamp(EPS, 1 - EPS)
                q = state["probs"][idx]
                loss = loss - self.consistency_weight * (
                    q * torch.log(p) + (1 - q) * torch.log(1 - p)).mean()
            return loss

        def epoch(e):
            state.update(upper=float(schedule[e, 0]), lower=float(schedule[e, 1]),
                         selected=0, similar=0, pairs=0)
            # the targets: label features of the clean rows, fixed for the epoch, with the
            # batch norms' statistics of all rows (the authors' Keras layers normalise by
            # the predicted batch; stale running statistics make every pair look alike)
            population_batch_norm(module, data)
            probs = torch.from_numpy(map_rows(lambda rows: torch.softmax(module(rows), 1),
                                              data)).to(device)
            state["probs"] = probs
            state["features"] = torch.nn.functional.normalize(probs, dim=1)
            module.train()
            losses = None
            for _ in range(self.inner_epochs):
                losses = trainer.run_batches(batches(n, self.batch_size, generator),
                                             batch_loss, opt, min_rows=2)
            pairs = max(state["pairs"], 1)
            return {"loss": losses.mean() if losses.rows else 0.0,
                    "upper": state["upper"], "lower": state["lower"],
                    "selected": state["selected"] / pairs,
                    "similar": state["similar"] / max(state["selected"], 1)}

        schedule = thresholds(self.upper, self.lower, self.epochs)
        trainer.run(module, self.epochs, epoch, name="DAC", lr=self.lr)
        population_batch_norm(module, data)
        self.history_ = trainer.history
        self.module_ = module.cpu().eval()
        self.labels_ = self.predict(X)
        self.n_iter_ = len(self.history_)
        self._check_degenerate()
        return self

    def _neighbour_pool(self, X, n: int, seed: int, device):
        """With ``n_neighbors``: each row's nearest rows (cosine on the input as given),
        one of which joins every batch as a similar pair; ``None`` without."""
        import torch

        from ..label_free import nearest_neighbors

        k = min(self.n_neighbors, n - 1)
        if k < 1:
            return None
        found = nearest_neighbors(X, k=k, metric="cosine", random_state=seed)[0]
        return torch.from_numpy(found).to(device)

    def _build_module(self, name):
        return _network(self.n_features_in_, tuple(self.hidden), self.n_clusters,
                        self.logit_norm)

    def predict_proba(self, X):
        """Soft assignment of each row: the softmax the label features are made of."""
        import torch

        return self._map_input(X, lambda rows: torch.softmax(self.module_(rows), 1))

    def predict(self, X):
        """The most likely cluster of each row (argmax of its label feature)."""
        return self.predict_proba(X).argmax(1)
