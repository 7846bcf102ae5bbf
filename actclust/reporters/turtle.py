"""TURTLE: the labelling a linear classifier separates best (Gadetsky et al., ICML 2024),
on frozen activation vectors, in one or several representation spaces (layers)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin

from ..errors import ActclustError
from ._base import (Interval, check_data, check_finite_rows, check_n_clusters,
                    check_varying, fit_context, is_layer_view, iter_rows, register,
                    seed_from)
from ._turtle_parts import (_check_space, _encoder, _inner_fit, _one_head, _stacked,
                            as_spaces, head_losses, task_labels)
from ._trainer import (ROW_CHUNK, LossSum, StreamedRows, TrainedReporterMixin, Trainer,
                       _moments, seed_everything)

STEPS_PER_RECORD = 100  # outer steps summarised in one history_ record


@register("turtle", kind="clusterer", cost="trained", streams=True)
class TURTLE(TrainedReporterMixin, ClusterMixin, BaseEstimator):
    """TURTLE on frozen activation vectors: the labelling a linear classifier learns best.

    Per representation space ``s`` (one layer; several are given as a list,
    ``fit([X_block3, X_block5])``, rows aligned) a weight-normalised linear *task
    encoder* ``theta_s`` gives soft labels ``softmax(theta_s z_s)``; the labelling is
    their mean over spaces. Each outer step takes a random batch of up to ``batch_size``
    rows, trains fresh linear classifiers ``W_s`` (one per space, ``nn.Linear``'s
    initialisation) for ``inner_steps`` Adam steps on the labelling (held constant),
    then moves the task encoders by Adam on
    ``sum_s CE(W_s z_s, labels) - gamma * sum_s H(mean_batch softmax(theta_s z_s))``
    (:func:`~._turtle_parts.turtle_loss`; the first-order hypergradient of the authors' Eq. 13).
    ``warm_start=True`` keeps the inner classifiers and their optimiser from step to
    step instead. Clusters are the argmax of the mean labelling.

    **Heads** (``n_heads``, beyond the paper): that many task encoders (and their inner
    classifiers) train side by side in one batched product, each on its own problem, and
    the one with the lowest outer loss over the last 100 steps is kept (``best_head_``):
    restarts for the price of wider matrices. On MiniLM block 5 the loss ranks restarts
    as the self-probe score does (one head, 5 seeds: NMI 0.926 / 0.917 / 0.727 / 0.921 /
    0.517 at losses -21.618 / -21.626 / -21.594 / -21.620 / -21.535), but only at the end
    (after 500 steps the best seed is still behind), so every head trains in full. The
    cost grows with ``n_heads * batch_size``: 8 heads on batches of 512 rows cost what one
    head on 3,200 rows does and give 0.921 ± 0.003 (5 seeds, self-probe 0.984) against
    0.802 ± 0.180 (0.974); on digits they lose (pixels 0.667 ± 0.025 / 0.945, digits-mlp
    0.856 ± 0.013 / 0.979, against 0.703 / 0.955 and 0.941 / 0.987), and the self-probe
    score says which to keep on all three. The default stays the authors' one head on
    full batches.

    Each space is centred and standardised per column (``standardize=True``) or divided
    by one global scale, on its own: a layer's scale says nothing about its structure,
    and the inner classifiers take a fixed number of fixed-size steps.

    **Defaults, measured** (NMI / label-free ``self_probe_accuracy``, two cores; settings
    compared by the label-free score first; docs/reporters/turtle.md has the details).
    Standardised spaces (digits 0.715 / 0.960 against 0.714 / 0.953 with one global
    scale). T = 1,500 outer steps instead of the authors' 6,000: on MiniLM block 5
    (3,200 x 384) 1,000 steps give 0.875 / 0.978, 1,500 0.921 / 0.985, 3,000 0.913 / 0.982,
    and 6,000 would take 100 s. M = 5 inner steps is worse (0.786 / 0.969), so is a batch
    of 1,024 rows (0.647 / 0.972), and a task encoder started at a k-means partition is no
    better (digits 0.622 / 0.943). Defaults, 5 seeds, against k-means (``n_init=10``):
    digits pixels 0.703 ± 0.005 / 0.955 (k-means 0.743 ± 0.002 / 0.962), 9.6 s a fit;
    digits-mlp 0.941 ± 0.028 / 0.987 (0.938 ± 0.001 / 0.985), 10.7 s; MiniLM block 5 by
    topic 0.802 ± 0.161 / 0.974 (0.725 ± 0.041 / 0.970), 27.5 s; MiniLM block 3 by topic
    0.008 ± 0.004 / 0.979 (0.024 ± 0.012 / 0.972; both find the template); token-level
    block 3 by part of speech 0.589 ± 0.031 / 0.989 (0.662 ± 0.026 / 0.994), 48 s.
    Keeping the inner classifiers (``warm_start=True``) raises the self-probe score on
    every input measured (MiniLM block 5: 0.992 ± 0.001, 5 seeds) but drops MiniLM's NMI
    to 0.659 ± 0.138 (digits pixels rise to 0.778 ± 0.003 / 0.979, digits-mlp to
    0.979 ± 0.001 / 0.995, 5 seeds, 8 s a fit): warm TURTLE optimises what
    the score measures, so the score cannot referee it, and the authors' cold start
    stays (a judgement, argued in the docs). Several spaces: MiniLM blocks 3 + 5 find the
    template both encode (template NMI 0.569, topic 0.140 ± 0.073, 57 s); digits pixels
    + digits-mlp 0.842 ± 0.008, above either k-means on pixels or TURTLE on pixels alone.

    Parameters:
        n_clusters: number of clusters, at least 2.
        n_heads: task encoders trained together; the lowest-loss one is kept.
        steps: outer steps (T; 6,000 in the authors' code, 1,500 here: see above).
        inner_steps: Adam steps of the inner classifiers per outer step (M).
        gamma: weight of the entropy of each space's mean labelling.
        batch_size: rows per outer step (all rows when there are fewer).
        lr: Adam's learning rate for the task encoders.
        inner_lr: Adam's learning rate for the inner classifiers.
        warm_start: keep the inner classifiers across outer steps.
        standardize: unit variance per column (otherwise one global scale per space).
        memory_budget_gb: a store layer larger than this is streamed from its memory map
            (batches of rows read by index, never loaded whole).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        random_state: seeds the task encoders, inner classifiers and batches.
        progress: show a progress bar.

    Attributes:
        labels_: cluster of each training row.
        module_: the kept head's task encoders (one per space), on the CPU.
        head_losses_: each head's outer loss, mean over the last 100 steps.
        best_head_: index of the kept head.
        n_spaces_: number of representation spaces fitted.
        space_dims_: columns of each space.
        n_features_in_: columns of the input (their sum over spaces with several).
        mean_, scale_: the scaling of each space (arrays for one space, lists of arrays
            for several).
        history_: one record per 100 outer steps: ``step`` (the last one), ``loss``,
            ``head_losses`` (per head), ``error`` (the inner classifiers' cross-entropy)
            and ``entropy`` (summed over spaces), means over those steps and heads.
        n_iter_: outer steps run.

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> X, y = make_blobs(300, centers=3, n_features=8, random_state=0)
        >>> TURTLE(3, steps=50, random_state=0, device="cpu").fit(X).labels_.shape
        (300,)
    """

    _parameter_constraints = {
        **TrainedReporterMixin._parameter_constraints,
        "steps": [Interval(Integral, 1, None, closed="left")],
        "inner_steps": [Interval(Integral, 1, None, closed="left")],
        "gamma": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "inner_lr": [Interval(Real, 0, None, closed="neither")],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "warm_start": ["boolean"],
        "standardize": ["boolean"],
    }

    collapse_hint = ("TURTLE left some clusters empty; raise gamma or steps, try another "
                     "random_state, or ask for fewer clusters")

    def __init__(self, n_clusters=10, *, n_heads=1, steps=1500, inner_steps=10,
                 gamma=10.0, batch_size=10000, lr=1e-3, inner_lr=1e-3, warm_start=False,
                 standardize=True, memory_budget_gb=2.0, device="auto",
                 random_state=None, progress=False):
        self.n_clusters = n_clusters
        self.n_heads = n_heads
        self.steps = steps
        self.inner_steps = inner_steps
        self.gamma = gamma
        self.batch_size = batch_size
        self.lr = lr
        self.inner_lr = inner_lr
        self.warm_start = warm_start
        self.standardize = standardize
        self.memory_budget_gb = memory_budget_gb
        self.device = device
        self.random_state = random_state
        self.progress = progress

    # -- inputs ------------------------------------------------------------------------
    def _streamed(self, space) -> bool:
        return is_layer_view(space) and len(space.shape) == 2 and \
            space.shape[0] * space.shape[1] * 4 > self.memory_budget_gb * 2**30

    def _start_spaces(self, X):
        """Check every space, seed torch, choose the device and scale each space on its
        own. Returns ``(spaces, seed, generator, device, data)``: the checked inputs (a
        float32 array, or a streamed store layer), and per space the scaled rows (a
        tensor on the device, or :class:`StreamedRows`)."""
        import torch

        from .._util.devices import resolve_device

        spaces, several = as_spaces(X)
        checked = []
        for space in spaces:
            if self._streamed(space):
                checked.append(space)
            elif several:  # sklearn's n_features_in_ describes one array, set below
                checked.append(_check_space(space))
            else:
                checked.append(check_data(self, space).astype(np.float32))
        n = checked[0].shape[0]
        check_n_clusters(self, n, self.n_clusters)
        self.n_spaces_ = len(checked)
        self.space_dims_ = tuple(int(s.shape[1]) for s in checked)
        self.n_features_in_ = int(sum(self.space_dims_))
        if several and hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        seed = seed_from(self.random_state)
        generator = seed_everything(seed)
        device = resolve_device(self.device)
        means, scales, data = [], [], []
        for space in checked:
            mean, col_sd, overall = _moments(iter_rows(space, ROW_CHUNK), space.shape[1])
            if self.standardize:
                check_varying(col_sd > 0, n, self, stacklevel=5)
                scale = np.where(col_sd > 0, col_sd, 1.0).astype(np.float32)
            else:  # one global scale keeps the columns' relative variances
                scale = np.float32(overall or 1.0)
            means.append(mean)
            scales.append(scale)
            if is_layer_view(space) and self._streamed(space):
                data.append(StreamedRows(space, mean, scale, device))
            else:
                data.append(torch.from_numpy((space - mean) / scale).to(device))
        self.mean_ = means if several else means[0]
        self.scale_ = scales if several else scales[0]
        return checked, seed, generator, device, data

    def _scalings(self):
        if self.n_spaces_ == 1 and not isinstance(self.mean_, list):
            return [self.mean_], [self.scale_]
        return list(self.mean_), list(self.scale_)

    # -- training ----------------------------------------------------------------------
    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the task encoders; ``X`` is one space (array, tensor, store layer) or a
        list of them with the same rows; ``y`` is ignored."""
        import torch

        spaces, seed, generator, device, data = self._start_spaces(X)
        n = len(data[0])
        batch = min(self.batch_size, n)
        heads = self.n_heads
        encoder = _encoder(self.space_dims_, self.n_clusters, heads).to(device)
        opt = torch.optim.Adam(encoder.parameters(), lr=self.lr, betas=(0.9, 0.999))
        trainer = Trainer(self.progress)
        inner = {"weights": None, "state": None}
        everything = torch.arange(n)

        def fresh_classifiers():
            out = []
            for d in self.space_dims_:
                bound = 1 / np.sqrt(d)
                outputs = heads * self.n_clusters
                W = (torch.rand(outputs, d, generator=generator) * 2 - 1) * bound
                b = (torch.rand(outputs, generator=generator) * 2 - 1) * bound
                out.append([W.to(device), b.to(device)])
            return out

        parts = {"error": 0.0, "entropy": 0.0}

        def outer_loss(idx):
            rows = [space[idx.to(device)] if batch < n or isinstance(space, StreamedRows)
                    else space for space in data]
            labels, per_space = task_labels(encoder, rows)
            if inner["weights"] is None or not self.warm_start:
                inner["weights"], inner["state"] = fresh_classifiers(), None
            inner["state"] = _inner_fit(rows, labels.detach(), inner["weights"],
                                        self.inner_steps, self.inner_lr,
                                        inner["state"] if self.warm_start else None)
            logits = [_stacked(torch.addmm(b, z, W.T), labels)
                      for z, (W, b) in zip(rows, inner["weights"])]
            with torch.no_grad():
                error = head_losses(logits, labels, per_space, 0.0)
                parts["error"] += float(error.mean())
                parts["entropy"] += float((error - head_losses(
                    logits, labels, per_space, 1.0)).mean())
            return head_losses(logits, labels, per_space, self.gamma)

        def index_batches(count):
            for _ in range(count):
                if batch < n:
                    yield torch.randperm(n, generator=generator)[:batch]
                else:
                    yield everything

        def chunk(number):
            count = min(STEPS_PER_RECORD, self.steps - number * STEPS_PER_RECORD)
            parts.update(error=0.0, entropy=0.0)
            losses: LossSum = trainer.run_batches(index_batches(count), outer_loss, opt)
            per_head = losses.mean_parts(heads)
            return {"step": number * STEPS_PER_RECORD + count, "loss": float(per_head.mean()),
                    "head_losses": per_head.tolist(), "error": parts["error"] / count,
                    "entropy": parts["entropy"] / count}

        records = -(-self.steps // STEPS_PER_RECORD)
        trainer.run(encoder, records, chunk, name="TURTLE", lr=self.lr)
        self.history_ = trainer.history
        # the head with the lowest outer loss over the last record's steps (the authors
        # train one; the loss ranks restarts the way the self-probe score does)
        self.head_losses_ = np.asarray(self.history_[-1]["head_losses"] if self.history_
                                       else np.zeros(heads))
        self.best_head_ = int(np.argmin(self.head_losses_))
        self.module_ = _one_head(encoder.cpu(), self.best_head_).eval()
        self.n_iter_ = int(self.history_[-1]["step"]) if self.history_ else 0
        self.labels_ = self._predict_scaled(data)
        self._check_degenerate()
        return self

    def _predict_scaled(self, data) -> np.ndarray:
        import torch

        module = self.module_
        n = len(data[0])
        out = []
        with torch.no_grad():
            for start in range(0, n, ROW_CHUNK):
                rows = [d[start:start + ROW_CHUNK].cpu() for d in data]
                out.append(task_labels(module, rows)[0].numpy())
        return np.concatenate(out).argmax(1)

    def _build_module(self, name):
        return _encoder(self.space_dims_, self.n_clusters)

    # -- inference ---------------------------------------------------------------------
    def predict_proba(self, X):
        """The mean over spaces of each task encoder's soft labelling, per row; ``X`` in
        the form given to :meth:`fit` (one space, or a list of spaces)."""
        import torch

        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "module_")
        spaces, several = as_spaces(X)
        if len(spaces) != self.n_spaces_:
            raise ActclustError(f"X has {len(spaces)} representation space(s), but "
                                f"TURTLE was fitted on {self.n_spaces_}; give the same "
                                "layers in the same order")
        checked = []
        for space, d in zip(spaces, self.space_dims_):
            if is_layer_view(space) and len(space.shape) == 2:
                if space.shape[1] != d:
                    raise ActclustError(f"X has {space.shape[1]} features, but TURTLE is "
                                        f"expecting {d} features as input")
                checked.append(space)
            elif several or self.n_spaces_ > 1:
                checked.append(_check_space(space, d))
            else:
                checked.append(check_data(self, space, reset=False))
        means, scales = self._scalings()
        outputs, start = [], 0
        with torch.no_grad():
            for rows in zip(*(iter_rows(s, ROW_CHUNK) for s in checked)):
                scaled = []
                for r, mean, scale in zip(rows, means, scales):
                    check_finite_rows(r, offset=start)
                    scaled.append(torch.from_numpy((r - mean) / scale))
                outputs.append(task_labels(self.module_, scaled)[0].numpy())
                start += len(rows[0])
        return np.concatenate(outputs)

    def predict(self, X):
        """The most likely cluster of each row."""
        return self.predict_proba(X).argmax(1)
