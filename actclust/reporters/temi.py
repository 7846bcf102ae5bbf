"""TEMI: Exploring the limits of deep image clustering using pretrained models (Adaloglou
et al., BMVC 2023), on frozen activation vectors."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin

from ._base import Interval, StrOptions, fit_context, register
from ._trainer import TrainedReporterMixin, Trainer, batches


def temi_loss(p, q, prior, beta: float = 0.6):
    """TEMI's loss of each pair: ``-log sum_k (p_k q_k)**beta / prior_k``.

    ``p`` are the student's probabilities of one side of each pair, ``q`` the teacher's of
    the other side (rows x clusters, or heads x rows x clusters with ``prior`` heads x 1 x
    clusters), ``prior`` the running cluster sizes. The pointwise mutual information of
    the pair, with the self-entropy tempered by ``beta < 1`` (the authors' ``beta_mi``).
    Returns one loss per pair (per head and pair for stacked heads).

    Example:
        >>> import torch
        >>> eye = torch.eye(4)  # both sides sure of the same cluster, sizes balanced
        >>> [round(v, 4) for v in temi_loss(eye, eye, torch.full((4,), 0.25)).tolist()]
        [-1.3863, -1.3863, -1.3863, -1.3863]
    """
    import torch

    return -torch.log((((p * q) ** beta) / prior).sum(-1))


def pair_weight(q_a, q_b):
    """The teacher's agreement on each pair, ``mean over heads of sum_k q_k(a) q_k(b)``
    (heads x rows x clusters in, one weight per row out): pairs the teacher puts in
    different clusters, false-positive neighbours, count less.

    Example:
        >>> import torch
        >>> same, other = torch.eye(3)[None], torch.eye(3)[[1, 2, 0]][None]
        >>> pair_weight(same, same).tolist(), pair_weight(same, other).tolist()
        ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    """
    return (q_a * q_b).sum(-1).mean(0)


def update_prior(prior, q_views, momentum: float = 0.9):
    """The running cluster sizes after one step: ``momentum * prior + (1 - momentum) *``
    the teacher's mean probability over the batch, both views together (heads x rows x
    clusters for ``q_views``; heads x 1 x clusters for ``prior``).

    Example:
        >>> import torch
        >>> prior = torch.full((1, 1, 2), 0.5)
        >>> update_prior(prior, torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])).round(decimals=3)
        tensor([[[0.5500, 0.4500]]])
    """
    return momentum * prior + (1 - momentum) * q_views.mean(1, keepdim=True)


def _heads_module(d_in: int, n_heads: int, hidden: int, bottleneck: int, n_clusters: int):
    return _network_classes()["TEMINet"](d_in, n_heads, hidden, bottleneck, n_clusters)


def _network_classes() -> dict:
    """The torch modules, defined on first use (torch is imported lazily) as attributes of
    this module, so pickle finds them by name (see ``__getattr__`` below)."""
    if "TEMINet" in globals():
        return {"Heads": globals()["Heads"], "TEMINet": globals()["TEMINet"]}
    import torch
    from torch import nn

    class Heads(nn.Module):
        """``n_heads`` DINO heads evaluated at once: ``Linear(d, hidden)``-GELU-
        ``Linear(hidden, bottleneck)``, L2-normalised, then a weight-normalised
        ``Linear(bottleneck, C, bias=False)`` with a trainable gain. Returns logits,
        heads x rows x clusters."""

        def __init__(self, d_in, n_heads, hidden, bottleneck, n_clusters):
            super().__init__()
            self.n_heads, self.hidden = n_heads, hidden
            self.w1 = nn.Parameter(torch.empty(d_in, n_heads * hidden))
            self.b1 = nn.Parameter(torch.zeros(n_heads * hidden))
            self.w2 = nn.Parameter(torch.empty(n_heads, hidden, bottleneck))
            self.b2 = nn.Parameter(torch.zeros(n_heads, 1, bottleneck))
            self.v = nn.Parameter(torch.empty(n_heads, bottleneck, n_clusters))
            self.g = nn.Parameter(torch.ones(n_heads, 1, n_clusters))
            # the authors' truncated normal (std 0.02) on the MLP; the last layer keeps
            # torch's Linear default, its scale removed by the weight normalisation
            nn.init.trunc_normal_(self.w1, std=0.02, a=-2.0, b=2.0)
            nn.init.trunc_normal_(self.w2, std=0.02, a=-2.0, b=2.0)
            bound = 1 / np.sqrt(bottleneck)
            nn.init.uniform_(self.v, -bound, bound)

        def forward(self, x):
            h = nn.functional.gelu(x @ self.w1 + self.b1)
            h = h.view(len(x), self.n_heads, self.hidden).transpose(0, 1)  # heads x rows x h
            z = nn.functional.normalize(torch.baddbmm(self.b2, h, self.w2), dim=-1)
            return torch.bmm(z, self.g * self.v / self.v.norm(dim=1, keepdim=True))

    class TEMINet(nn.Module):
        """Student heads, their EMA teacher and the running cluster sizes: every tensor a
        fit changes, so saving or restoring it restores all."""

        def __init__(self, d_in, n_heads, hidden, bottleneck, n_clusters):
            super().__init__()
            self.student = Heads(d_in, n_heads, hidden, bottleneck, n_clusters)
            self.teacher = Heads(d_in, n_heads, hidden, bottleneck, n_clusters)
            self.teacher.load_state_dict(self.student.state_dict())
            self.teacher.requires_grad_(False)
            self.register_buffer("prior", torch.full((n_heads, 1, n_clusters), 1 / n_clusters))

    for cls in (Heads, TEMINet):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
        globals()[cls.__name__] = cls
    return {"Heads": Heads, "TEMINet": TEMINet}


def __getattr__(name):  # pickle looks the module classes up by name
    if name in ("Heads", "TEMINet"):
        return _network_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@register("temi", kind="clusterer", cost="trained", streams=True)
class TEMI(TrainedReporterMixin, ClusterMixin, BaseEstimator):
    """TEMI on frozen activation vectors: neighbours should share a cluster, weighted by
    how much an EMA teacher already agrees.

    Each row's ``n_neighbors`` nearest rows (the row itself excluded) are mined once, by
    cosine on L2-normalised rows of the input as given
    (:func:`actclust.label_free.nearest_neighbors`, faiss: exact up to 50,000 rows, IVF
    above). Every epoch each row is paired with one neighbour drawn uniformly; the two
    rows are TEMI's two views. ``n_heads`` DINO heads (``Linear(d, hidden)``-GELU-
    ``Linear(hidden, bottleneck)``, L2-normalised, then a weight-normalised linear to
    the clusters with a trainable gain) are trained at once, the student by AdamW, the
    teacher an EMA of the student (``teacher_momentum``). Probabilities are softmaxes of
    the logits over ``temperature`` (student) and ``teacher_temperature``.

    **Loss** (the authors' ``TEMI``): per pair and head, ``temi_loss``:
    ``-log sum_k (p_k(x) q_k(x'))**beta / pi_k``, student ``p`` on one side, teacher ``q``
    on the other, both directions averaged; ``pi`` (per head) is an EMA with momentum
    ``prior_momentum`` of the teacher's batch-mean probabilities over both sides, updated
    before each step's loss. Each pair's loss is multiplied by ``pair_weight``: the
    teacher's agreement on the pair, ``sum_k q_k(x) q_k(x')`` averaged over heads
    (``weighted=False`` drops it). The heads' losses are averaged. The learning rate is
    ``lr * batch_size / 256`` (the linear scaling rule), warmed up linearly from 0 over
    ``warmup_epochs``; weight decay spares biases; the last layer is frozen for the first
    ``freeze_last_layer`` epochs.

    **Head choice** (the authors'): the head with the lowest mean training loss over the
    last epoch (``head_losses_``, ``best_head_``); its *teacher* labels the rows. No
    labels are used.

    **Pair filter** (``pair_filter="kmeans"``, off by default, as in :class:`SCAN`): only
    the mined pairs that ``filter_agreement`` (all) of ``filter_runs`` k-means runs put in
    one cluster are drawn (Local Aggregation's co-assignment); a row with none keeps its
    nearest neighbour; ``kept_pairs_`` is the share kept.

    **Defaults, measured** (details in docs/reporters/temi.md; NMI / label-free
    ``self_probe_accuracy``, 2 seeds unless said; settings compared by the label-free
    score first). The authors' 16 heads of 512/256 take 1.9 s an epoch on 3,200 x 384 on
    two cores; 8 heads of 128/128 take what 4 of 256/128 do (0.18 s) and, choosing among
    twice the heads, raise digits pixels from 0.863 ± 0.028 to 0.877 ± 0.023 (5 seeds;
    16 heads of 128: 0.889 ± 0.011 in 31 s; 8 of 256: 0.883 ± 0.022 but 41 s a fit on
    3,200 x 384). Their teacher momentum 0.996 and lr 1e-4
    assume thousands of steps: on digits pixels (700 steps) they give 0.642 / 0.920, the
    teacher hardly moving (mean pair weight 0.31); 0.99 0.766 / 0.948; lr 1e-3 with 0.95
    0.836 / 0.976; k = 20 0.850 / 0.974 (k = 50 0.836, k = 10 0.804); momentum 0.9 with
    k = 20 0.885 / 0.972. Standardised input beats one global scale (0.838 against
    0.776); dropping the pair weight lowers digits (0.829 against 0.836). Defaults, 5
    seeds, NMI / self-probe / seconds a fit on two cores, against k-means
    (``n_init=10``): digits pixels 0.877 ± 0.023 / 0.972 / 11.3 s (k-means 0.743 ± 0.002
    / 0.965); digits-mlp 0.968 ± 0.013 / 0.991 / 10.0 s (0.938 ± 0.001 / 0.984). TEMI
    loses where the neighbours are impure or the labels unbalanced: MiniLM block 5
    topics (3,200 x 384, kNN purity 0.62) 0.341 ± 0.020 / 0.969 / 25.5 s (0.725 ± 0.046
    / 0.970; the self-probe score prefers k-means there too); block 3 (topic purity
    0.31) 0.002 ± 0.001 / 0.988 / 25.5 s (0.024 ± 0.013); token-level block 3 by part
    of speech (5,475 rows, purity 0.97, 12 unequal classes) 0.522 ± 0.040 / 0.999 / 43.9 s
    (0.662 ± 0.029 / 0.994): the prior ``pi`` forces equal
    clusters (balance 0.998 against k-means' 0.89). ``pair_filter="kmeans"`` lifts MiniLM
    block 5 to 0.553 (2 seeds) but lowers its self-probe score (0.919) and digits (0.760).

    Parameters:
        n_clusters: number of clusters, at least 2.
        n_heads: heads trained together; the lowest-loss one is kept.
        hidden: width of each head's hidden layer.
        bottleneck: width of each head's L2-normalised bottleneck.
        n_neighbors: neighbours mined per row (cosine).
        beta: the exponent tempering the pair's self-entropy (1 is plain PMI).
        temperature: the student's softmax temperature.
        teacher_temperature: the teacher's softmax temperature (also ``predict_proba``'s).
        teacher_momentum: EMA momentum of the teacher, per step.
        prior_momentum: EMA momentum of the cluster sizes ``pi``, per step.
        weighted: weight each pair by the teacher's agreement on it.
        pair_filter: ``"kmeans"`` draws only pairs that k-means runs co-assign.
        filter_runs: k-means runs the filter asks (seeds ``random_state`` onwards).
        filter_agreement: share of those runs that must co-assign a pair.
        standardize: scale each column to unit variance before the heads (otherwise one
            global scale keeps the columns' relative variances).
        epochs: training epochs.
        batch_size: rows per batch.
        lr: AdamW's base learning rate, scaled by ``batch_size / 256``.
        weight_decay: AdamW's weight decay, on weights only.
        warmup_epochs: epochs of linear learning-rate warm-up from 0.
        freeze_last_layer: epochs during which the last layer is not trained.
        memory_budget_gb: a store layer larger than this is streamed from its memory map
            (never loaded whole); the neighbour search streams it too.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        random_state: seeds weights, batches and pairs.
        progress: show a progress bar.

    Attributes:
        labels_: cluster of each training row.
        module_: student heads, teacher heads and cluster sizes (``prior``), on the CPU.
        best_head_: index of the kept head.
        head_losses_: each head's mean loss over the last epoch.
        history_: per epoch: ``loss`` (the lowest head loss),
            ``head_losses`` (mean per head), ``weight`` (mean pair weight).
        n_iter_: epochs trained.

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> X, y = make_blobs(300, centers=3, n_features=8, random_state=0)
        >>> TEMI(3, n_heads=2, epochs=5, random_state=0, device="cpu").fit(X).labels_.shape
        (300,)
    """

    _parameter_constraints = {
        **TrainedReporterMixin._parameter_constraints,
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "hidden": [Interval(Integral, 1, None, closed="left")],
        "bottleneck": [Interval(Integral, 1, None, closed="left")],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "beta": [Interval(Real, 0, None, closed="neither")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "teacher_temperature": [Interval(Real, 0, None, closed="neither")],
        "teacher_momentum": [Interval(Real, 0, 1, closed="both")],
        "prior_momentum": [Interval(Real, 0, 1, closed="both")],
        "weighted": ["boolean"],
        "pair_filter": [StrOptions({"kmeans"}), None],
        "filter_runs": [Interval(Integral, 1, None, closed="left")],
        "filter_agreement": [Interval(Real, 0, 1, closed="right")],
        "standardize": ["boolean"],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "warmup_epochs": [Interval(Integral, 0, None, closed="left")],
        "freeze_last_layer": [Interval(Integral, 0, None, closed="left")],
    }

    collapse_hint = ("TEMI left some clusters empty; use more n_heads, another "
                     "random_state, or ask for fewer clusters")

    def __init__(self, n_clusters=10, *, n_heads=8, hidden=128, bottleneck=128,
                 n_neighbors=20, beta=0.6, temperature=0.1, teacher_temperature=0.1,
                 teacher_momentum=0.9, prior_momentum=0.9, weighted=True, pair_filter=None,
                 filter_runs=5, filter_agreement=1.0,
                 standardize=True, epochs=100, batch_size=256, lr=1e-3,
                 weight_decay=1e-4, warmup_epochs=20, freeze_last_layer=1,
                 memory_budget_gb=2.0, device="auto", random_state=None, progress=False):
        self.n_clusters = n_clusters
        self.n_heads = n_heads
        self.hidden = hidden
        self.bottleneck = bottleneck
        self.n_neighbors = n_neighbors
        self.beta = beta
        self.temperature = temperature
        self.teacher_temperature = teacher_temperature
        self.teacher_momentum = teacher_momentum
        self.prior_momentum = prior_momentum
        self.weighted = weighted
        self.pair_filter = pair_filter
        self.filter_runs = filter_runs
        self.filter_agreement = filter_agreement
        self.standardize = standardize
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.freeze_last_layer = freeze_last_layer
        self.memory_budget_gb = memory_budget_gb
        self.device = device
        self.random_state = random_state
        self.progress = progress

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Mine neighbours, train student and teacher heads, keep the teacher's
        lowest-loss head; ``y`` is ignored."""
        import torch

        from ..label_free import nearest_neighbors

        X, seed, generator, device, data = self._start_fit(X, per_column=self.standardize)
        n = len(data)
        k = min(self.n_neighbors, n - 1)
        found = nearest_neighbors(X, k=k, metric="cosine", random_state=seed)[0]
        pool = torch.from_numpy(found).to(device)
        allowed = self._agreeing_pairs(X, found, seed)
        module = self._build_module("module_").to(device)
        student, teacher = module.student, module.teacher
        last_layer = [student.v, student.g]
        decayed = [student.w1, student.w2, student.v, student.g]
        opt = torch.optim.AdamW([
            {"params": decayed, "weight_decay": self.weight_decay},
            {"params": [student.b1, student.b2], "weight_decay": 0.0}])
        peak = self.lr * self.batch_size / 256  # the authors' linear scaling rule
        steps_per_epoch = -(-n // self.batch_size)
        warmup = self.warmup_epochs * steps_per_epoch
        step = _EMAStep(opt, student, teacher, self.teacher_momentum,
                        lambda s: peak * min(1.0, (s + 1) / warmup) if warmup else peak)
        trainer = Trainer(self.progress)
        weights = []

        def temi_batch(idx):
            idx = idx.to(device)
            if allowed is None:
                pick = torch.randint(0, pool.shape[1], (len(idx),), generator=generator)
            else:
                pick = torch.multinomial(allowed[idx.cpu()], 1, generator=generator)[:, 0]
            both = torch.cat([data[idx], data[pool[idx, pick.to(device)]]])
            with torch.no_grad():
                q = torch.softmax(teacher(both) / self.teacher_temperature, -1)
                module.prior.copy_(update_prior(module.prior, q, self.prior_momentum))
                q_a, q_b = q[:, :len(idx)], q[:, len(idx):]
                weight = pair_weight(q_a, q_b) if self.weighted else \
                    torch.ones(len(idx), device=q.device)
            weights.append(float(weight.mean()))
            p = torch.softmax(student(both) / self.temperature, -1)
            p_a, p_b = p[:, :len(idx)], p[:, len(idx):]
            per_head = (weight * temi_loss(p_a, q_b, module.prior, self.beta)).mean(1) + \
                (weight * temi_loss(p_b, q_a, module.prior, self.beta)).mean(1)
            return per_head / (2 * self.n_heads)  # summed by the trainer: the heads' mean

        def temi_epoch(epoch):
            frozen = epoch < self.freeze_last_layer
            for param in last_layer:  # no gradient: AdamW skips them, as the authors do
                param.requires_grad_(not frozen)
            weights.clear()
            losses = trainer.run_batches(batches(n, self.batch_size, generator), temi_batch,
                                         step)
            per_head = losses.mean_parts(self.n_heads) * self.n_heads
            return {"loss": float(per_head.min()), "head_losses": per_head.tolist(),
                    "weight": float(np.mean(weights)) if weights else 1.0}

        trainer.run(module, self.epochs, temi_epoch, name="TEMI", lr=peak)
        for param in last_layer:
            param.requires_grad_(True)
        self.history_ = trainer.history
        self.head_losses_ = np.asarray(self.history_[-1]["head_losses"]
                                       if self.history_ else np.zeros(self.n_heads))
        self.best_head_ = int(np.argmin(self.head_losses_))
        self.module_ = module.cpu().eval()
        self.labels_ = self.predict(X)
        self.n_iter_ = len(self.history_)
        self._check_degenerate()
        return self

    def _agreeing_pairs(self, X, found: np.ndarray, seed: int):
        """With ``pair_filter``: which mined pairs the k-means runs put in one
        cluster (a row with none keeps its nearest neighbour), as sampling weights on the
        CPU; ``None`` without. Sets ``kept_pairs_``."""
        import torch

        from ._pairs import kmeans_agreement

        if self.pair_filter is None:
            self.kept_pairs_ = 1.0
            return None
        same = kmeans_agreement(X, found, self.n_clusters, self.filter_runs, seed) \
            >= self.filter_agreement - 1e-9
        self.kept_pairs_ = float(same.mean())
        same[~same.any(1), 0] = True
        return torch.from_numpy(same.astype(np.float32))

    def _build_module(self, name):
        return _heads_module(self.n_features_in_, self.n_heads, self.hidden, self.bottleneck,
                             self.n_clusters)

    def predict_proba(self, X):
        """Soft assignment of each row by the teacher's kept head."""
        import torch

        return self._map_input(X, lambda rows: torch.softmax(
            self.module_.teacher(rows)[self.best_head_] / self.teacher_temperature, 1))

    def predict(self, X):
        """The most likely cluster of each row under the teacher's kept head."""
        return self.predict_proba(X).argmax(1)


class _EMAStep:
    """The optimiser as the trainer sees it: each step sets the learning rate of the
    schedule, steps AdamW, then moves the teacher towards the student."""

    def __init__(self, opt, student, teacher, momentum: float, schedule):
        self.opt, self.student, self.teacher = opt, student, teacher
        self.momentum, self.schedule, self.count = momentum, schedule, 0

    def zero_grad(self):
        self.opt.zero_grad()

    def step(self):
        import torch

        for group in self.opt.param_groups:
            group["lr"] = self.schedule(self.count)
        self.opt.step()
        self.count += 1
        with torch.no_grad():
            for s, t in zip(self.student.parameters(), self.teacher.parameters()):
                t.mul_(self.momentum).add_(s.detach(), alpha=1 - self.momentum)
