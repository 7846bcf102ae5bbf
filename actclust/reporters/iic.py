"""IIC: Invariant Information Clustering (Ji, Henriques & Vedaldi, ICCV 2019)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.metrics import normalized_mutual_info_score

from ._base import Interval, StrOptions, fit_context, register
from ._trainer import TrainedReporterMixin, Trainer, batches, degenerate, map_rows
from .backbones import mlp


def iic_loss(z, z_pair, eps: float = 1e-8, entropy_weight: float = 1.0):
    """Negative mutual information between paired soft assignments (IIC eq. 3).

    The joint distribution is the batch mean of outer products, symmetrised (a pair is
    unordered) and normalised. ``entropy_weight`` above 1 weights the marginals' entropy
    more than the paper does (the ``lamb`` of the authors' code), pushing towards balanced
    clusters.
    """
    import torch

    joint = (z.unsqueeze(2) * z_pair.unsqueeze(1)).sum(0)
    joint = (joint + joint.t()) / 2
    joint = (joint / joint.sum()).clamp_min(eps)
    marg_i = joint.sum(1, keepdim=True)
    marg_j = joint.sum(0, keepdim=True)
    return -(joint * (torch.log(joint) - entropy_weight * (torch.log(marg_i)
                                                           + torch.log(marg_j)))).sum()


def neighbour_table(X: np.ndarray, k: int, exact_below: int = 20_000,
                    seed: int = 0) -> np.ndarray:
    """Indices of each row's ``k`` nearest other rows (faiss, L2).

    Exact up to ``exact_below`` rows; above, an inverted-file index (sqrt(n) lists, 8
    probed) cuts the cost: exact search on 100,000 rows costs minutes on
    two cores, and a pair needs only a near neighbour, not the nearest.

    Example:
        >>> X = np.array([[0.0], [0.1], [5.0], [5.2]], dtype=np.float32)
        >>> neighbour_table(X, 1).ravel().tolist()
        [1, 0, 3, 2]
    """
    import faiss

    X = np.ascontiguousarray(X, dtype=np.float32)
    n, d = X.shape
    if n <= exact_below:
        index = faiss.IndexFlatL2(d)
    else:
        nlist = int(np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
        sample = np.random.default_rng(seed).choice(n, min(n, 40 * nlist), replace=False)
        index.train(X[np.sort(sample)])
        index.nprobe = 8
    index.add(X)
    _, idx = index.search(X, k + 1)
    # The first hit is normally the row itself; drop it wherever it is (ties, IVF).
    own = idx == np.arange(n)[:, None]
    own[~own.any(1), -1] = True
    return idx[~own].reshape(n, k)


def _network(d_in: int, hidden: tuple, heads: dict, n_subheads: int):
    from torch import nn

    width = hidden[-1] if len(hidden) else d_in
    return nn.ModuleDict({
        "backbone": mlp(d_in, hidden),
        **{name: nn.ModuleList([nn.Sequential(nn.Linear(width, k), nn.Softmax(dim=1))
                                for _ in range(n_subheads)]) for name, k in heads.items()},
    })


@register("iic", cost="trained", streams=True)
class IIC(TrainedReporterMixin, ClusterMixin, BaseEstimator):
    """Invariant Information Clustering for activation vectors.

    A backbone (MLP with batch norm) feeds softmax heads; training maximises the mutual
    information between the cluster assignments of a row and of its paired view. The main
    head has ``n_clusters`` outputs, the over-clustering head ``overcluster_factor`` times
    more (0: no over-clustering head); epochs alternate between them (paper). Each head
    has ``n_subheads`` copies. When training ends, each main sub-head's loss is computed
    on all rows in eval mode, every row paired with each of its neighbours (the authors'
    ``get_subhead_using_loss``), and the lowest is kept (``subhead_losses_``);
    ``subhead_selection="self_probe"`` keeps the sub-head with the best label-free
    :func:`~actclust.label_free.self_probe_accuracy` instead. Labels are never used (the
    authors' default picks the sub-head by accuracy on labelled data).

    Activation vectors have no image augmentations, so the paired view is made by
    ``pairing``: ``"neighbours"`` pairs a row with one of its ``n_neighbors`` nearest rows
    in activation space (faiss); ``"noise"`` with itself plus Gaussian noise
    (``noise_scale`` times each column's sd) and input dropout; ``"both"`` mixes the two
    per batch; ``"kmeans"`` with one of ``n_neighbors`` rows drawn once from its
    consensus cell, the rows that every one of ``pair_runs`` k-means runs
    (``pair_clusters`` clusters, default ``n_clusters``) puts with it (a row alone in
    its cell is its own pair). ``pair_components`` searches neighbours in the leading
    principal components, whitened, instead of the rows. Measured: planted blobs (4 centres, 12 dims) NMI 1.00 with neighbours,
    0.86 with noise or both; ``load_digits`` (2 seeds, 60 epochs, entropy weight 1)
    0.58 ± 0.07 with neighbours, 0.51 ± 0.06 noise, 0.57 ± 0.06 both, hence the default.

    **Defaults, measured** (``load_digits`` pixels, 1,797 x 64, NMI mean ± sd over 3
    seeds, then the label-free self-probe score of the kept sub-head; two CPU cores).
    The cause of the old loss to k-means was too little training, not the pairs or the
    heads: 50 epochs of 4 batches give the main head 100 Adam steps, and at lr 1e-3 the
    clustering is still moving (NMI at main-head epoch 0, 20, 40, ..., 180 of a 200-epoch
    run: 0.19, 0.54, 0.65, 0.65, 0.67, 0.73, 0.73, 0.81, 0.82, 0.82). 50 epochs at 1e-3
    0.665 ± 0.067 / 0.850; 100: 0.720 ± 0.017 / 0.870; 200: 0.827 ± 0.016 / 0.952; 400:
    0.842 ± 0.022 / 0.961; 100 epochs at lr 3e-3 0.824 ± 0.019 / 0.967, at 1e-2
    0.844 ± 0.046 / 0.966 (less stable), 200 at 3e-3 0.839 ± 0.016 / 0.963 (twice the
    time, same self-probe score). Hence 100 epochs at 3e-3. The pairs are good: 5 nearest
    neighbours share the digit for 97.9% of the pairs (20: 93.8%; per-column scaling
    95.9%). The sub-heads agree (NMI spread under 0.03 within a seed), so the choice of
    sub-head is not the cause: choosing by the self-probe score instead of the loss gave
    0.827 against 0.824. Entropy weight 1 at the new settings: 0.725 ± 0.015 (the largest
    clusters stay too large; balance 0.83 against 0.99), so 2 stays. No over-clustering
    head: 0.828 ± 0.003 at half the time (its epochs all go to the main head); batches of
    256: 0.719 at lr 1e-3; each row four times per batch with different neighbours (the
    authors' repeats): 0.850 ± 0.056 at three times the time. Defaults, 5 seeds:
    0.835 ± 0.031 NMI (self-probe 0.954) in 5.5 s per fit, against k-means
    (``n_init=10``) 0.743 ± 0.002.

    **MiniLM block 5** (bundled ``topics``, 3,200 x 384, 10 topics) IIC loses to k-means
    and depends on the seed: defaults 0.265 ± 0.162 NMI (5 seeds, 8.8 s per fit) against
    0.725 ± 0.046. Its 5 nearest neighbours share the topic in 80% of the pairs but the
    sentence template (52 templates) in 63%, and the clusters IIC finds carry the
    template (NMI with the template 0.26-0.43); a self-probe score of 0.93-0.95 shows
    they are readable partitions, just not the topics. Measured (3 seeds): the old 50
    epochs at 1e-3 0.301 ± 0.018; k-means pair filter 0.369; 20 neighbours 0.296; 2
    neighbours 0.301; per-column scaling 0.407 ± 0.128; no over-clustering head 0.436;
    noise pairs 0.389 ± 0.155; linear heads (``hidden=()``) 0.508 ± 0.059, with the
    self-probe choice 0.575 ± 0.104 (10 sub-heads 0.573).

    **Pairs without the template, linear heads: within one sd of k-means on MiniLM.**
    Rows drawn from a row's k-means consensus cell (10 clusters, 5 runs) share the topic
    in 85% of the pairs and the template in 28% (5 nearest neighbours: 80% and 63%;
    neighbours in the 16 whitened leading components: 92% and 69%). With the MLP the
    template still wins (3 seeds): consensus pairs 0.559 ± 0.147 (self-probe 0.877), 20
    of them 0.456, 10 runs 0.466; whitened-component neighbours 0.294 ± 0.106. Linear
    heads, which can only cut the rows by hyperplanes as k-means does: whitened-component
    neighbours 0.639 ± 0.094; **``pairing="kmeans", hidden=()``: 0.710 ± 0.036 over 5
    seeds** (self-probe 0.971, 9 s per fit) against k-means 0.725 ± 0.046, template NMI
    0.13 (kNN pairs: 0.26-0.43). It is not the
    default because digits needs the MLP and the neighbours: the consensus cells share
    the digit in 83% of the pairs (neighbours 98%), and the setting gives 0.746 ± 0.021
    (3 seeds; MLP with consensus pairs 0.731 ± 0.062) against the defaults' 0.835. The
    self-probe score cannot choose between them: it prefers the linear heads on both
    inputs (digits 0.972 against 0.954), so the choice is the user's, from what the
    layer's neighbours are known to share.

    Parameters:
        n_clusters: clusters of the main head, at least 2.
        overcluster_factor: the over-clustering head has this many times more outputs;
            0 trains the main head alone.
        n_subheads: copies of each head; one copy of the main head is kept.
        hidden: widths of the backbone's layers.
        pairing: ``"neighbours"``, ``"noise"``, ``"both"`` or ``"kmeans"`` (above).
        n_neighbors: neighbours (or consensus-cell partners) a row may be paired with.
        pair_runs: k-means runs whose consensus cells give ``"kmeans"`` pairs.
        pair_clusters: clusters of each of those runs; ``None`` for ``n_clusters``.
        pair_components: search neighbours in this many leading principal components,
            whitened; ``None`` searches the rows themselves.
        noise_scale: Gaussian noise of a noise pair, in column standard deviations.
        dropout: input dropout of a noise pair.
        entropy_weight: weight of the marginals' entropy (above).
        epochs: epochs, alternating the main and the over-clustering head.
        batch_size: rows per batch (at least 2).
        lr: Adam's learning rate.
        subhead_selection: ``"loss"`` keeps the main sub-head with the lowest loss on
            all rows; ``"self_probe"`` the one with the best self-probe score (five
            logistic regressions per sub-head: slower).
        memory_budget_gb: a store layer larger than this is streamed from its memory map
            (neighbour pairing still builds its neighbour table from all rows).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        random_state: seeds weights, batches and pairs.
        progress: show a progress bar.

    Attributes:
        labels_: cluster of each training row, from the kept sub-head.
        module_: backbone and heads, on CPU.
        best_subhead_: index of the kept sub-head of the main head.
        subhead_losses_: each main sub-head's loss on all rows after training.
        subhead_scores_: with ``subhead_selection="self_probe"``, each main sub-head's
            self-probe score.
        n_pair_cells_: with ``pairing="kmeans"``, the number of consensus cells.
        history_: per epoch: ``head``, ``loss`` of the best sub-head and of each
            (``subhead_losses``); for main-head epochs also ``nmi_previous`` (the NMI with
            the previous main-head assignment), ``largest_cluster`` and ``degenerate``.
        n_iter_: epochs trained.

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> X, y = make_blobs(400, centers=3, n_features=8, random_state=0)
        >>> IIC(3, epochs=20, random_state=0).fit(X).labels_.shape
        (400,)
    """

    _parameter_constraints = {
        **TrainedReporterMixin._parameter_constraints,
        "overcluster_factor": [Interval(Integral, 0, None, closed="left")],
        "n_subheads": [Interval(Integral, 1, None, closed="left")],
        "hidden": ["array-like"],
        "pairing": [StrOptions({"neighbours", "noise", "both", "kmeans"})],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "pair_runs": [Interval(Integral, 1, None, closed="left")],
        "pair_clusters": [Interval(Integral, 2, None, closed="left"), None],
        "pair_components": [Interval(Integral, 1, None, closed="left"), None],
        "noise_scale": [Interval(Real, 0, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "entropy_weight": [Interval(Real, 0, None, closed="neither")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "subhead_selection": [StrOptions({"loss", "self_probe"})],
    }

    def __init__(self, n_clusters=10, *, overcluster_factor=5, n_subheads=5, hidden=(256, 128),
                 pairing="neighbours", n_neighbors=5, pair_runs=5, pair_clusters=None,
                 pair_components=None, noise_scale=0.1, dropout=0.1,
                 entropy_weight=2.0, epochs=100, batch_size=512, lr=3e-3, subhead_selection="loss",
                 memory_budget_gb=2.0, device="auto", random_state=None, progress=False):
        self.n_clusters = n_clusters
        self.overcluster_factor = overcluster_factor
        self.n_subheads = n_subheads
        self.hidden = hidden
        self.pairing = pairing
        self.n_neighbors = n_neighbors
        self.pair_runs = pair_runs
        self.pair_clusters = pair_clusters
        self.pair_components = pair_components
        self.noise_scale = noise_scale
        self.dropout = dropout
        self.entropy_weight = entropy_weight
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.subhead_selection = subhead_selection
        self.memory_budget_gb = memory_budget_gb
        self.device = device
        self.random_state = random_state
        self.progress = progress

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train on unlabelled rows; ``y`` is ignored."""
        import torch

        X, seed, generator, device, data = self._start_fit(X)
        rng = np.random.default_rng(seed)
        col_sd = torch.from_numpy(self.column_sd_).to(device)[None]
        neighbours = None if self.pairing == "noise" else \
            torch.from_numpy(self._partners(X, seed, rng)).to(device)
        module = self._build_module("module_").to(device)
        opt = torch.optim.Adam(module.parameters(), lr=self.lr)
        trainer = Trainer(self.progress)
        state = {"labels": None}

        def paired(idx, batch):
            use_noise = self.pairing == "noise" or (
                self.pairing == "both" and rng.random() < 0.5)
            if not use_noise:
                pick = torch.from_numpy(rng.integers(0, neighbours.shape[1], len(idx)))
                return data[neighbours[idx, pick.to(device)]]
            noisy = batch + torch.randn_like(batch) * col_sd * self.noise_scale
            return torch.nn.functional.dropout(noisy, self.dropout)

        def head_losses(idx, head):
            """The IIC loss of each sub-head of ``head`` on one batch and its pairs."""
            idx = idx.to(device)
            batch = data[idx]
            both = module["backbone"](torch.cat([batch, paired(idx, batch)]))
            z, z_pair = both[:len(idx)], both[len(idx):]
            return torch.stack([iic_loss(sub(z), sub(z_pair), entropy_weight=self.entropy_weight)
                                for sub in module[head]])

        def epoch(number):
            head = "main" if number % 2 == 0 or not self.overcluster_factor else "over"
            module.train()
            losses = trainer.run_batches(batches(len(data), self.batch_size, generator),
                                         lambda idx: head_losses(idx, head), opt, min_rows=2)
            per_head = losses.mean_parts(self.n_subheads)
            record = {"head": head, "loss": float(per_head.min()),
                      "subhead_losses": per_head.round(5).tolist()}
            if head == "main":
                labels = self._assign(module, data, int(per_head.argmin()))
                # NMI, not the share of changed ids: the kept sub-head may switch, and
                # cluster ids mean nothing across sub-heads.
                stability = float("nan") if state["labels"] is None else \
                    normalized_mutual_info_score(state["labels"], labels)
                state["labels"] = labels
                record.update(nmi_previous=stability,
                              largest_cluster=float(np.bincount(labels, minlength=self.n_clusters)
                                                    .max() / len(labels)),
                              degenerate=degenerate(labels, self.n_clusters))
            return record

        self.history_ = trainer.run(module, self.epochs, epoch, name="IIC", lr=self.lr)
        self._choose_subhead(module, data, neighbours, col_sd, X, seed)
        self.module_ = module.cpu().eval()
        self.labels_ = self.predict(X)
        self.n_iter_ = len(self.history_)
        self._check_degenerate()
        return self

    def _partners(self, X, seed: int, rng) -> np.ndarray:
        """Rows x ``n_neighbors`` candidates for each row's pair: its nearest rows, or with
        ``pairing="kmeans"`` rows drawn from its cell of ``pair_runs`` k-means runs."""
        if self.pair_components:
            from sklearn.decomposition import PCA

            X = PCA(min(self.pair_components, *np.shape(X)), whiten=True,
                    random_state=seed).fit_transform(np.asarray(X))
        if self.pairing != "kmeans":
            return neighbour_table(X, min(self.n_neighbors, len(X) - 1))
        from ._pairs import cell_partners, consensus_cells

        cells = consensus_cells(X, self.pair_clusters or self.n_clusters, self.pair_runs, seed)
        self.n_pair_cells_ = int(cells.max()) + 1
        return cell_partners(cells, self.n_neighbors, rng)

    def _build_module(self, name):
        heads = {"main": self.n_clusters}
        if self.overcluster_factor:
            heads["over"] = self.n_clusters * self.overcluster_factor
        return _network(self.n_features_in_, tuple(self.hidden), heads, self.n_subheads)

    def _choose_subhead(self, module, data, neighbours, col_sd, X, seed: int) -> None:
        """Score every main sub-head once training ends and keep the best.

        The loss is the authors' ``get_subhead_using_loss``: all rows, eval mode, no
        gradient, each row paired with every one of its neighbours in turn (a noise view
        when there are no neighbours), so the choice does not hang on the last epoch's
        random batches and pairs. ``subhead_selection="self_probe"`` keeps the sub-head
        whose clusters a linear probe on ``X`` predicts best instead (no labels either).
        """
        import torch

        module.eval()
        with torch.no_grad():
            features = torch.from_numpy(map_rows(module["backbone"], data))
            if neighbours is not None:
                found = neighbours.cpu()
                views = [features[found[:, j]] for j in range(found.shape[1])]
            else:
                sd = col_sd.cpu()
                noisy = map_rows(lambda rows: module["backbone"](torch.nn.functional.dropout(
                    rows + torch.randn_like(rows) * sd.to(rows.device) * self.noise_scale,
                    self.dropout)), data)
                views = [torch.from_numpy(noisy)]
            heads = [sub.cpu() for sub in module["main"]]
            losses = np.array([np.mean([iic_loss(sub(features), sub(view),
                                                 entropy_weight=self.entropy_weight).item()
                                        for view in views]) for sub in heads])
            device = next(module.parameters()).device  # the backbone may have none
            for sub in heads:
                sub.to(device)
        module.train()
        self.subhead_losses_ = losses
        self.best_subhead_ = int(losses.argmin())
        if self.subhead_selection == "self_probe":
            from ..label_free import self_probe_accuracy

            scores = np.array([self_probe_accuracy(X, self._assign(module, data, i),
                                                   random_state=seed)
                               for i in range(self.n_subheads)])
            self.subhead_scores_ = scores
            if np.isfinite(scores).any():  # NaN: a sub-head with a single cluster
                self.best_subhead_ = int(np.nanargmax(scores))

    def _assign(self, module, data, subhead: int) -> np.ndarray:
        module.eval()
        probs = map_rows(lambda rows: module["main"][subhead](module["backbone"](rows)), data)
        module.train()
        return probs.argmax(1)

    def predict_proba(self, X):
        """Soft assignment of each row by the kept sub-head of the main head."""
        return self._map_input(X, lambda rows: self.module_["main"][self.best_subhead_](
            self.module_["backbone"](rows)))

    def predict(self, X):
        """The most likely cluster of each row under the kept sub-head."""
        return self.predict_proba(X).argmax(1)
