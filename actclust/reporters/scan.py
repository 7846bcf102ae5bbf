"""SCAN: Semantic Clustering by Adopting Nearest neighbours (Van Gansbeke et al., ECCV 2020),
on frozen activation vectors."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin

from ._base import Interval, StrOptions, fit_context, register
from ._trainer import TrainedReporterMixin, Trainer, batches, map_rows
from .backbones import mlp

EPS = 1e-8  # the authors' clamp of probabilities in the entropy (losses.py EPS)


def scan_loss(p, p_pair, entropy_weight: float = 5.0):
    """SCAN's loss for one head: ``-mean log <p(x), p(n)> - entropy_weight * H(mean p(x))``.

    ``p`` and ``p_pair`` are probabilities (rows x clusters) of the anchors and of their
    neighbours; the entropy is of the anchors' batch mean only, as in the authors'
    ``SCANLoss``. The log is clamped at -100 like their binary cross-entropy.

    Example:
        >>> import torch
        >>> eye = torch.eye(4).repeat(5, 1)  # confident, consistent, balanced
        >>> round(scan_loss(eye, eye, entropy_weight=1.0).item(), 4)  # -log 4
        -1.3863
    """
    import torch

    consistency = -torch.log((p * p_pair).sum(1)).clamp(min=-100).mean()
    mean = p.mean(0).clamp_min(EPS)
    entropy = -(mean * torch.log(mean)).sum()
    return consistency - entropy_weight * entropy


def _network(d_in: int, hidden: tuple, n_clusters: int, n_heads: int):
    from torch import nn

    width = hidden[-1] if len(hidden) else d_in
    return nn.ModuleDict({"trunk": mlp(d_in, hidden),
                          "heads": nn.ModuleList([nn.Linear(width, n_clusters)
                                                  for _ in range(n_heads)])})


def _all_heads(module, rows):
    """Probabilities of every head, stacked: heads x rows x clusters."""
    import torch

    z = module["trunk"](rows)
    return torch.stack([torch.softmax(head(z), 1) for head in module["heads"]])


@register("scan", kind="clusterer", cost="trained", streams=True)
class SCAN(TrainedReporterMixin, ClusterMixin, BaseEstimator):
    """SCAN on frozen activation vectors: neighbours should share a confident cluster.

    Each row's ``n_neighbors`` nearest rows are mined once, by cosine on L2-normalised
    rows of the input as given (:func:`actclust.label_free.nearest_neighbors`, faiss:
    exact up to 50,000 rows, IVF above). Every epoch each row is paired with one entry
    drawn uniformly from its neighbour list *and itself* (the authors' list holds the
    anchor, so one pair in ``k + 1`` is the row with itself). ``n_heads`` softmax heads
    over a shared trunk (``hidden=()``: linear heads on the scaled rows, as SCAN trains
    on ImageNet; otherwise an MLP with batch norm) are trained together, their losses
    summed, with ``scan_loss``: ``-log <p(x), p(n)> - entropy_weight * H(mean p)``.

    **Head choice.** The authors mine 5 neighbours on a held-out validation split and keep
    the head (and epoch) with the lowest SCAN loss there. There is no validation split
    here: after the last epoch each head's SCAN loss is computed on every training row
    with all its neighbours (full-set mean probabilities in the entropy) and the lowest
    is kept (``head_losses_``, ``best_head_``). No labels are used.

    **Self-labelling** (``self_label=True``): the kept head labels the rows; rows whose
    largest probability exceeds ``confidence`` (0.99) are targets for a class-balanced
    cross-entropy (weight ``n_confident / count_c`` per class in the batch) on a
    perturbed view of the row, for ``self_label_epochs`` more epochs on trunk and kept
    head. Vectors have no image augmentation; ``perturb="noise"`` adds Gaussian noise of
    ``noise_scale`` column standard deviations, ``"dropout"`` zeroes inputs with
    probability ``noise_scale``.

    **Pair filter** (``pair_filter="kmeans"``, beyond the paper): a neighbour stays in a
    row's list only if ``filter_agreement`` (all, by default) of ``filter_runs`` k-means
    runs with ``n_clusters`` clusters put the two in one cluster (Local Aggregation's
    "close neighbours"). It discards the pairs that join sentences of one template but two
    topics: on MiniLM block 5 it keeps 47% of the pairs, their purity rises from 0.62 to
    0.83, and SCAN goes from 0.295 to 0.675 ± 0.022 NMI (5 seeds; k-means 0.725); on
    digits pixels it keeps 80% (purity 0.94 to 0.97) but costs NMI, 0.841 to 0.781 ±
    0.012, since the pairs that cross k-means' boundaries are the ones that let SCAN
    correct them. The self-probe score prefers the filter on both (MiniLM 0.953 against
    0.903, digits 0.972 against 0.971), so it is not chosen without labels; it is off by
    default.

    **Defaults, measured** (``benchmarks/scan_quality.py``, ``load_digits`` pixels, NMI /
    label-free ``self_probe_accuracy``, 2 seeds unless said; settings compared by the
    label-free score first). Linear heads 0.760 / 0.965, an MLP trunk ``(256,)`` 0.825 /
    0.969, ``(512, 256)`` 0.821 / 0.964, hence ``hidden=(256,)``; Adam lr 1e-4 (the
    authors' CIFAR value) 0.58 / 0.93 on linear heads, 1e-3 0.76 / 0.965; batch 128
    0.833, 256 0.825; k = 10 0.803, 50 0.806 against 0.825 at 20; standardised input
    0.825 against 0.822 with one global scale. Self-labelling leaves NMI unchanged at
    lr 1e-4 (0.823) and lowers it at 1e-3 (0.785 noise, 0.773 dropout; 0.743 without
    class balancing), with only 30-43% of rows above 0.99: vectors lack the strong
    augmentation the authors' gain comes from, so it is off by default. Defaults, 5
    seeds: 0.841 ± 0.017 NMI (self-probe 0.971) in 8.3 s per fit on two cores, against
    k-means (``n_init=10``) 0.743 ± 0.002; 200 epochs reach 0.869 ± 0.019 in 19 s, but
    the label-free score does not separate them (0.970 against 0.971), so the cheaper
    100 stay. On MiniLM block 5 of the bundled topics set (3,200 x 384, kNN purity 0.62)
    SCAN loses to k-means: 0.295 ± 0.004 against 0.725 ± 0.041 (13.8 s per fit;
    ``n_neighbors=5`` 0.429 ± 0.017), and its self-probe score (0.90 against 0.97) says
    so without labels.

    Parameters:
        n_clusters: number of clusters, at least 2.
        n_heads: heads trained together; the lowest-loss one is kept.
        hidden: widths of the shared trunk (Linear + BatchNorm + ReLU); ``()`` for
            linear heads.
        n_neighbors: neighbours mined per row (cosine).
        entropy_weight: weight of the entropy of the mean assignment (lambda; 5 in every
            configuration the authors ship).
        standardize: scale each column to unit variance before the heads (otherwise one
            global scale keeps the columns' relative variances).
        epochs: SCAN epochs.
        batch_size: rows per batch (at least 2).
        lr: Adam's learning rate.
        weight_decay: Adam's weight decay (1e-4 as the authors).
        self_label: run the self-labelling stage.
        confidence: probability above which a row is a self-labelling target.
        self_label_epochs: epochs of self-labelling.
        self_label_lr: Adam's learning rate for self-labelling (1e-4 as the authors).
        perturb: ``"noise"`` or ``"dropout"``: the view self-labelling trains on.
        noise_scale: noise in column standard deviations, or the dropout probability.
        pair_filter: ``"kmeans"`` keeps only neighbours that k-means runs co-assign with
            the row; ``None`` keeps all.
        filter_runs: k-means runs the filter asks (seeds ``random_state`` onwards).
        filter_agreement: share of those runs that must co-assign a pair to keep it.
        memory_budget_gb: a store layer larger than this is streamed from its memory map
            (never loaded whole); the neighbour search streams it too.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        random_state: seeds weights, batches and pairs.
        progress: show a progress bar.

    Attributes:
        labels_: cluster of each training row.
        module_: trunk and heads, on the CPU.
        best_head_: index of the kept head.
        head_losses_: each head's SCAN loss on all rows after the SCAN stage.
        kept_pairs_: with ``pair_filter``, the share of mined pairs kept.
        confident_share_: share of rows whose kept-head probability exceeds
            ``confidence`` after the SCAN stage (the self-labelling targets).
        history_: per epoch: ``stage`` (``"scan"`` or ``"self_label"``), ``loss``; SCAN
            epochs add ``head_losses`` (mean per head), self-labelling epochs
            ``confident`` (share of rows used as targets that epoch).
        n_iter_: epochs trained, both stages.

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> X, y = make_blobs(300, centers=3, n_features=8, random_state=0)
        >>> SCAN(3, epochs=5, random_state=0, device="cpu").fit(X).labels_.shape
        (300,)
    """

    _parameter_constraints = {
        **TrainedReporterMixin._parameter_constraints,
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "hidden": ["array-like"],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "entropy_weight": [Interval(Real, 0, None, closed="left")],
        "standardize": ["boolean"],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "self_label": ["boolean"],
        "confidence": [Interval(Real, 0, 1, closed="neither")],
        "self_label_epochs": [Interval(Integral, 1, None, closed="left")],
        "self_label_lr": [Interval(Real, 0, None, closed="neither")],
        "perturb": [StrOptions({"noise", "dropout"})],
        "noise_scale": [Interval(Real, 0, 1, closed="left")],
        "pair_filter": [StrOptions({"kmeans"}), None],
        "filter_runs": [Interval(Integral, 1, None, closed="left")],
        "filter_agreement": [Interval(Real, 0, 1, closed="right")],
    }

    collapse_hint = ("SCAN left some clusters empty; raise entropy_weight, use more "
                     "n_heads or another random_state, or ask for fewer clusters")

    def __init__(self, n_clusters=10, *, n_heads=10, hidden=(256,), n_neighbors=20,
                 entropy_weight=5.0, standardize=True, epochs=100, batch_size=128, lr=1e-3,
                 weight_decay=1e-4, self_label=False, confidence=0.99, self_label_epochs=50,
                 self_label_lr=1e-4,
                 perturb="noise", noise_scale=0.1, pair_filter=None, filter_runs=5,
                 filter_agreement=1.0,
                 memory_budget_gb=2.0, device="auto", random_state=None, progress=False):
        self.n_clusters = n_clusters
        self.n_heads = n_heads
        self.hidden = hidden
        self.n_neighbors = n_neighbors
        self.entropy_weight = entropy_weight
        self.standardize = standardize
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.self_label = self_label
        self.confidence = confidence
        self.self_label_epochs = self_label_epochs
        self.self_label_lr = self_label_lr
        self.perturb = perturb
        self.noise_scale = noise_scale
        self.pair_filter = pair_filter
        self.filter_runs = filter_runs
        self.filter_agreement = filter_agreement
        self.memory_budget_gb = memory_budget_gb
        self.device = device
        self.random_state = random_state
        self.progress = progress

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Mine neighbours, train the heads, keep the best, optionally self-label; ``y``
        is ignored."""
        import torch

        from ..label_free import nearest_neighbors

        X, seed, generator, device, data = self._start_fit(X, per_column=self.standardize)
        n = len(data)
        k = min(self.n_neighbors, n - 1)
        found = nearest_neighbors(X, k=k, metric="cosine", random_state=seed)[0] \
            if k >= 1 else np.zeros((n, 0), dtype=np.int64)
        pool_np = np.hstack([np.arange(n)[:, None], found])  # the anchor first, as theirs
        if self.pair_filter == "kmeans" and k >= 1:
            pool_np = self._co_assigned_pool(X, pool_np, seed)
        pool = torch.from_numpy(pool_np).to(device)
        module = self._build_module("module_").to(device)
        opt = torch.optim.Adam(module.parameters(), lr=self.lr,
                               weight_decay=self.weight_decay)
        trainer = Trainer(self.progress)
        # BatchNorm needs two rows; a linear head takes any batch
        min_rows = 2 if len(tuple(self.hidden)) else 1

        def scan_batch(idx):
            idx = idx.to(device)
            pick = torch.randint(0, pool.shape[1], (len(idx),), generator=generator)
            both = _all_heads(module, torch.cat([data[idx],
                                                 data[pool[idx, pick.to(device)]]]))
            p, p_pair = both[:, :len(idx)], both[:, len(idx):]
            return torch.stack([scan_loss(p[h], p_pair[h], self.entropy_weight)
                                for h in range(self.n_heads)])

        def scan_epoch(_):
            module.train()
            losses = trainer.run_batches(batches(n, self.batch_size, generator), scan_batch,
                                         opt, min_rows=min_rows)
            per_head = losses.mean_parts(self.n_heads)
            return {"stage": "scan", "loss": float(per_head.min()),
                    "head_losses": per_head.round(5).tolist()}

        trainer.run(module, self.epochs, scan_epoch, name="SCAN", lr=self.lr)
        module.eval()
        probs = map_rows(lambda rows: _all_heads(module, rows).permute(1, 0, 2), data)
        self.head_losses_ = self._full_losses(probs, pool_np[:, 1:])
        self.best_head_ = int(np.argmin(self.head_losses_))
        self.confident_share_ = float((probs[:, self.best_head_].max(1)
                                       > self.confidence).mean())
        if self.self_label:
            self._self_label(module, data, trainer, generator, device, min_rows)
        self.history_ = trainer.history
        self.module_ = module.cpu().eval()
        self.labels_ = self.predict(X)
        self.n_iter_ = len(self.history_)
        self._check_degenerate()
        return self

    def _co_assigned_pool(self, X, pool: np.ndarray, seed: int) -> np.ndarray:
        """Each row's list keeps the neighbours that every one of ``filter_runs`` k-means
        runs (``n_clusters`` clusters, seeds ``seed..``) puts in its cluster; the freed
        places repeat the kept entries (the anchor included), so every list has the same
        length and each kept neighbour is still drawn uniformly."""
        from ._pairs import kmeans_agreement

        anchor, found = pool[:, 0], pool[:, 1:]
        keep = kmeans_agreement(X, found, self.n_clusters, self.filter_runs, seed) \
            >= self.filter_agreement - 1e-9
        self.kept_pairs_ = float(keep.mean())
        out = np.empty_like(pool)
        for i in range(len(pool)):  # rows keep different numbers of neighbours
            out[i] = np.resize(np.r_[anchor[i], found[i][keep[i]]], pool.shape[1])
        return out

    def _full_losses(self, probs: np.ndarray, found: np.ndarray) -> np.ndarray:
        """Each head's SCAN loss over every row and all its mined neighbours, with the
        entropy of the mean over all rows (the authors' ``scan_evaluate``)."""
        n, n_heads, _ = probs.shape
        consistency = np.zeros(n_heads)
        for start in range(0, n, 4096):  # bounded memory: rows x k x heads at a time
            p = probs[start:start + 4096]
            pairs = np.einsum("nhc,nkhc->nkh", p, probs[found[start:start + 4096]])
            consistency += -np.log(np.clip(pairs, np.exp(-100), None)).sum((0, 1))
        consistency /= max(n * found.shape[1], 1)
        mean = np.clip(probs.mean(0), EPS, None)
        entropy = -(mean * np.log(mean)).sum(1)
        return (consistency - self.entropy_weight * entropy).astype(np.float64)

    def _self_label(self, module, data, trainer, generator, device, min_rows):
        """Confident rows of the kept head teach the rest, on a perturbed view."""
        import torch
        import torch.nn.functional as F

        head = module["heads"][self.best_head_]
        params = list(module["trunk"].parameters()) + list(head.parameters())
        opt = torch.optim.Adam(params, lr=self.self_label_lr,
                               weight_decay=self.weight_decay)
        col_sd = torch.from_numpy(self.column_sd_).to(device)[None]

        def perturbed(rows):
            if self.perturb == "dropout":
                return F.dropout(rows, self.noise_scale, training=True)
            return rows + torch.randn(rows.shape, generator=generator).to(device) \
                * col_sd * self.noise_scale

        def batch_loss(idx):
            rows = data[idx.to(device)]
            module.eval()  # targets from the clean view, batch norm in inference mode
            with torch.no_grad():
                target_p = torch.softmax(head(module["trunk"](rows)), 1)
            module.train()
            top, target = target_p.max(1)
            mask = top > self.confidence
            state["confident"] += int(mask.sum())
            if not mask.any():
                return (head.weight * 0).sum()  # nothing confident in this batch
            target = target[mask]
            counts = torch.bincount(target, minlength=self.n_clusters).float()
            weight = torch.where(counts > 0, mask.sum() / counts.clamp_min(1),
                                 torch.ones_like(counts))
            logits = head(module["trunk"](perturbed(rows)))[mask]
            return F.cross_entropy(logits, target, weight=weight)

        state = {"confident": 0}

        def epoch(_):
            state["confident"] = 0
            losses = trainer.run_batches(batches(len(data), self.batch_size, generator),
                                         batch_loss, opt, min_rows=min_rows)
            return {"stage": "self_label", "loss": losses.mean(),
                    "confident": state["confident"] / len(data)}

        trainer.run(module, self.self_label_epochs, epoch, name="SCAN self-labelling",
                    lr=self.self_label_lr)

    def _build_module(self, name):
        return _network(self.n_features_in_, tuple(self.hidden), self.n_clusters,
                        self.n_heads)

    def predict_proba(self, X):
        """Soft assignment of each row by the kept head."""
        import torch

        return self._map_input(X, lambda rows: torch.softmax(
            self.module_["heads"][self.best_head_](self.module_["trunk"](rows)), 1))

    def predict(self, X):
        """The most likely cluster of each row under the kept head."""
        return self.predict_proba(X).argmax(1)
