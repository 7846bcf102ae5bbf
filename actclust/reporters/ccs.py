"""CCS: contrast-consistent search (Burns, Ye, Klein & Steinhardt, 2022)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils.validation import check_is_fitted

from ..errors import ActclustError
from ._base import (Interval, StrOptions, check_data, fit_context, register, seed_from,
                    warn_fewer_clusters)
from ._trainer import TorchReporterMixin, Trainer, seed_everything


def contrast_pairs(store, layer: str, pair_column: str = "statement_id",
                   side_column: str = "answer", positive: str = "Yes",
                   label_column: str = "truth"):
    """Activations of both sides of every contrast pair in a pooled store.

    Returns ``(X_pos, X_neg, y)``: row i of each side belongs to pair i; ``y`` holds the
    pair's ``label_column`` (for scoring only; CCS never sees it).

    Example:
        >>> import tempfile
        >>> import actclust
        >>> store = actclust.capture("minilm", "truth", "blocks.5.hook_out", pool="last",
        ...                          out=tempfile.mkdtemp() + "/s", limit=8, progress=False)
        >>> X_pos, X_neg, y = contrast_pairs(store, "blocks.5.hook_out")
        >>> X_pos.shape, X_neg.shape, len(y)
        ((4, 384), (4, 384), 4)
    """
    rows = store.rows  # a store's lazy row table: only the columns named are read
    for column in (pair_column, side_column):
        if column not in rows.columns:
            raise ActclustError(f"store {store.root} has no {column!r} column: CCS needs a "
                                "contrast-pair dataset (the bundled 'truth', pooled)")
    if "token" in rows.columns:
        raise ActclustError("contrast pairs need one row per document: capture with "
                            "--pool last (or mean), not token rows")
    X = store.layer(layer).to_numpy()
    sides = np.asarray(rows[side_column].to_numpy() == positive, dtype=bool)
    pairs = rows[pair_column].to_numpy()
    pos, neg = np.flatnonzero(sides), np.flatnonzero(~sides)
    pos = pos[np.argsort(pairs[pos], kind="stable")]
    neg = neg[np.argsort(pairs[neg], kind="stable")]
    if len(pos) != len(neg) or not np.array_equal(pairs[pos], pairs[neg]):
        raise ActclustError(f"every {pair_column} needs exactly one {positive!r} and one "
                            f"other {side_column}; the store's pairs are incomplete")
    y = rows[label_column].to_numpy()[pos] if label_column in rows.columns else None
    return np.asarray(X[pos]), np.asarray(X[neg]), y


@register("ccs", kind="contrast", cost="trained")
class CCS(TorchReporterMixin, ClusterMixin, BaseEstimator):
    """Contrast-consistent search: an unsupervised truth direction from contrast pairs.

    ``X`` holds each pair on one row, the positive side's activations then the negative
    side's (``np.hstack([X_pos, X_neg])``; :func:`contrast_pairs` builds both from a
    store). Each side is normalised separately (mean removed, and with ``normalize=
    "variance"`` scaled to unit variance per column), so the probe cannot read which
    answer was appended. A linear probe ``p(x) = sigmoid(w.x + b)`` is trained to minimise

        consistency (p(x+) - (1 - p(x-)))^2  +  confidence min(p(x+), p(x-))^2,

    averaged over pairs, from ``n_tries`` random starts (paper: 10); the start with the
    lowest loss is kept. ``labels_`` is 1 where ``(p(x+) + 1 - p(x-)) / 2 > 0.5``. CCS
    cannot know which direction means "true": score it with :meth:`accuracy`, which
    reports accuracy up to that sign flip.

    Attributes:
        labels_: 1 where the pair's positive side is judged true.
        coef_: the probe's direction, in normalised units.
        intercept_: the probe's bias.
        loss_: final loss of the kept start.
        history_: losses of the kept start, one dict per epoch.
        tries_: final loss of every start.
        n_iter_: epochs of the kept start.
        degenerate_: every pair got the same answer (the collapsed p = 0.5 solution);
            a ``ConvergenceWarning`` says so too.

    Parameters:
        n_tries: random starts; the one with the lowest final loss is kept.
        epochs: full-batch Adam steps per start.
        lr: AdamW's learning rate.
        weight_decay: AdamW's weight decay.
        normalize: ``"mean"`` (centre each side) or ``"variance"`` (and scale each column).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        random_state: seeds each start's initial weights.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> truth = rng.integers(0, 2, 200)
        >>> base = rng.normal(size=(200, 8))
        >>> direction = np.eye(8)[0] * 3
        >>> X_pos = base + np.outer(2 * truth - 1, direction) + rng.normal(size=(200, 8))
        >>> X_neg = base - np.outer(2 * truth - 1, direction) + rng.normal(size=(200, 8))
        >>> ccs = CCS(random_state=0).fit(np.hstack([X_pos, X_neg]))
        >>> ccs.accuracy(np.hstack([X_pos, X_neg]), truth) > 0.9
        True
    """

    _parameter_constraints = {
        **TorchReporterMixin._parameter_constraints,
        "n_tries": [Interval(Integral, 1, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "normalize": [StrOptions({"mean", "variance"})],
    }

    def __init__(self, *, n_tries=10, epochs=1000, lr=1e-3, weight_decay=0.01,
                 normalize="variance", device="auto", random_state=None):
        self.n_tries = n_tries
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.normalize = normalize
        self.device = device
        self.random_state = random_state

    def _split(self, X):
        if X.shape[1] % 2:
            raise ActclustError(f"CCS needs each pair on one row (positive side, then "
                                f"negative side): an even number of columns, got {X.shape[1]}")
        d = X.shape[1] // 2
        return X[:, :d], X[:, d:]

    def _normalize_fit(self, side):
        mean = side.mean(0)
        std = side.std(0) if self.normalize == "variance" else np.ones(side.shape[1])
        return mean, np.where(std > 0, std, 1.0)

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Find the direction from unlabelled pairs; ``y`` is ignored."""
        import torch

        from .._util.devices import resolve_device

        X = check_data(self, X).astype(np.float32)
        if len(X) < 2:
            raise ActclustError(f"CCS needs at least 2 pairs, got n_samples={len(X)}")
        pos, neg = self._split(X)
        self.norm_pos_, self.norm_neg_ = self._normalize_fit(pos), self._normalize_fit(neg)
        device = resolve_device(self.device)
        x_pos, x_neg = (torch.from_numpy(a).float().to(device)
                        for a in self._normalized(pos, neg))
        seed = seed_from(self.random_state)
        best = None
        self.tries_ = []

        def consistency_confidence(probe):
            p_pos = torch.sigmoid(probe(x_pos)).squeeze(1)
            p_neg = torch.sigmoid(probe(x_neg)).squeeze(1)
            return ((p_pos - (1 - p_neg)) ** 2).mean() + \
                (torch.minimum(p_pos, p_neg) ** 2).mean()

        for attempt in range(self.n_tries):
            seed_everything(seed + attempt)
            probe = torch.nn.Linear(pos.shape[1], 1).to(device)
            opt = torch.optim.AdamW(probe.parameters(), lr=self.lr,
                                    weight_decay=self.weight_decay)
            trainer = Trainer()  # one per start: each start's history begins at epoch 0

            def epoch(_, probe=probe, opt=opt, trainer=trainer):
                loss = trainer.train_step(lambda: consistency_confidence(probe), opt)
                return {"loss": loss.item()}

            history = trainer.run(probe, self.epochs, epoch, name=f"CCS start {attempt}",
                                  lr=self.lr)
            if not history:  # interrupted before a single epoch
                break
            self.tries_.append(history[-1]["loss"])
            if best is None or history[-1]["loss"] < best[1][-1]["loss"]:
                best = (probe, history)
            if trainer.interrupted:
                break
        if best is None:
            raise KeyboardInterrupt
        probe, self.history_ = best
        self.loss_ = self.history_[-1]["loss"]
        self.coef_ = probe.weight.detach().cpu().numpy()[0]
        self.intercept_ = float(probe.bias.detach().cpu().numpy()[0])
        self.n_iter_ = len(self.history_)
        self.labels_ = self.predict(X)
        # The trivial solution p = 0.5 everywhere has consistency 0 and confidence 0.25:
        # it is what CCS finds when the layer holds no consistent direction.
        self.degenerate_ = warn_fewer_clusters(
            self, self.labels_, 2, "every pair got the same answer: the layer may hold no "
            "consistent truth direction (the collapsed p = 0.5 solution)") < 2
        return self

    def _normalized(self, pos, neg):
        return ((pos - self.norm_pos_[0]) / self.norm_pos_[1],
                (neg - self.norm_neg_[0]) / self.norm_neg_[1])

    def predict_proba(self, X):
        """CCS' credence that each pair's positive side is true: (p(x+) + 1 - p(x-)) / 2."""
        check_is_fitted(self, "coef_")
        X = check_data(self, X, reset=False)
        pos, neg = self._normalized(*self._split(X))
        sigmoid = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
        p_pos = sigmoid(pos @ self.coef_ + self.intercept_)
        p_neg = sigmoid(neg @ self.coef_ + self.intercept_)
        return 0.5 * (p_pos + 1.0 - p_neg)

    def predict(self, X):
        """1 where the pair's positive side is judged true."""
        return (self.predict_proba(X) > 0.5).astype(np.int64)

    def accuracy(self, X, y) -> float:
        """Accuracy against binary labels, up to the sign CCS cannot know (>= 0.5)."""
        truth = pd.Series(y).astype(str).str.lower().isin(["1", "true", "yes"]).to_numpy()
        acc = float((self.predict(X).astype(bool) == truth).mean())
        return max(acc, 1.0 - acc)
