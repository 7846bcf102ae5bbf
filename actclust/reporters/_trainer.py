"""The torch training every deep reporter shares: the loop and the batch step.

A reporter supplies its module and the loss of a batch; :class:`Trainer` handles the rest
the same way for all of them: the step, a progress bar, ``history_``, a NaN guard that
names the epoch, and Ctrl-C, which stops training with the last good weights kept.
:class:`TrainedReporterMixin` adds seeding, the device, scaling, streaming and the
degeneracy warning.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Callable

import numpy as np

from ..errors import ActclustError
from ._base import (DEVICE, MEMORY_BUDGET, N_CLUSTERS, check_data, check_finite_rows,
                    check_n_clusters, check_varying, is_layer_view, iter_rows, seed_from,
                    warn_fewer_clusters)
from ._io import ReporterFileMixin


class TrainingDiverged(ActclustError):
    """The loss became NaN or infinite."""


def seed_everything(seed: int):
    """Seed torch's CPU and CUDA generators; returns a generator for batch order."""
    import torch

    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


ROW_CHUNK = 8192  # rows per full pass step: bounds memory, and keeps array and store
# paths bit-identical (same chunks, same arithmetic)


def _moments(chunks, n_features: int):
    """Column means, column sds (0 for constant columns) and the sd of all entries,
    accumulated in float64; NaN/inf rows are refused with their global index."""
    n, total, squares = 0, np.zeros(n_features), np.zeros(n_features)
    low, high = np.full(n_features, np.inf), np.full(n_features, -np.inf)
    for chunk in chunks:
        check_finite_rows(chunk, offset=n)
        chunk = chunk.astype(np.float64)
        n += len(chunk)
        total += chunk.sum(0)
        squares += np.square(chunk).sum(0)
        low, high = np.minimum(low, chunk.min(0)), np.maximum(high, chunk.max(0))
    mean = total / n
    # rounding leaves a tiny variance on a constant column: min == max says it is one
    col_sd = np.where(high > low, np.sqrt(np.maximum(squares / n - mean ** 2, 0)), 0.0)
    cells = n * n_features
    overall = np.sqrt(max(squares.sum() / cells - (total.sum() / cells) ** 2, 0))
    return mean.astype(np.float32), col_sd.astype(np.float32), np.float32(overall)


class StreamedRows:
    """A store layer read by row index and scaled on the fly, never loaded whole.

    Stands in for the in-memory tensor of scaled rows: ``len``, ``rows[idx]`` (a torch
    index tensor or a slice) and ``device``. The operating system's page cache keeps
    recently read shards; batches reach the device one at a time.
    """

    def __init__(self, view, mean, scale, device):
        self.view, self.mean, self.scale, self.device = view, mean, scale, device
        self.shape = tuple(view.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx):
        import torch

        if isinstance(idx, slice):
            rows = np.asarray(self.view[idx], dtype=np.float32)
        else:
            rows = np.asarray(self.view[np.asarray(idx.cpu(), dtype=np.int64)],
                              dtype=np.float32)
        return torch.from_numpy((rows - self.mean) / self.scale).to(self.device)


def map_rows(fn, data, chunk: int = ROW_CHUNK) -> np.ndarray:
    """``fn`` over the rows of ``data`` (tensor or :class:`StreamedRows`) in chunks, without
    gradients; the outputs concatenated as a numpy array."""
    import torch

    outputs = []
    with torch.no_grad():
        for start in range(0, len(data), chunk):
            outputs.append(fn(data[start:start + chunk]).cpu().numpy())
    return np.concatenate(outputs)


class TorchReporterMixin(ReporterFileMixin):
    """What every reporter that trains with torch shares: a ``device`` (any torch device
    name; checked at fit time by ``actclust._util.devices.resolve_device``),
    ``random_state``, and save/load without pickle."""

    _parameter_constraints = {"device": DEVICE, "random_state": ["random_state"]}


class TrainedReporterMixin(TorchReporterMixin):
    """Fit and inference plumbing every trained clusterer shares.

    Rows are centred and divided by one global scale (or per column with
    ``per_column=True``), once at fit time; inference applies the same scaling. A store
    layer larger than ``memory_budget_gb`` is streamed: batches are read from its memory
    map as training needs them, and full passes (assignments, features) go in chunks.
    """

    _parameter_constraints = {**TorchReporterMixin._parameter_constraints,
                              "n_clusters": N_CLUSTERS, "memory_budget_gb": MEMORY_BUDGET,
                              "progress": ["boolean"]}

    # Why a trained clusterer ends with fewer clusters than asked, and what to try.
    collapse_hint = ("training collapsed onto fewer clusters; try another random_state, a "
                     "lower learning rate or fewer clusters")

    def _kmeans_on(self, embedding, seed: int):
        """Finish a fit by k-means (``n_init`` runs) on the learned ``embedding``:
        ``kmeans_``, ``labels_``, ``cluster_centers_``, ``n_iter_`` (epochs in
        ``history_``); too few clusters is warned once, by :meth:`_check_degenerate`."""
        from sklearn.exceptions import ConvergenceWarning

        from .kmeans import KMeans

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.kmeans_ = KMeans(self.n_clusters, n_init=self.n_init, random_state=seed,
                                  device="cpu").fit(embedding)
        self.labels_ = self.kmeans_.labels_
        self.cluster_centers_ = self.kmeans_.cluster_centers_
        self.n_iter_ = len(self.history_)
        self._check_degenerate()
        return self

    def _check_degenerate(self) -> None:
        """The one degeneracy check: a ``ConvergenceWarning`` when ``labels_`` hold fewer
        distinct clusters than ``n_clusters``."""
        warn_fewer_clusters(self, self.labels_, self.n_clusters, self.collapse_hint)

    def _checked_rows(self, X):
        """``(X, streamed)``: a store layer larger than ``memory_budget_gb`` stays as it is,
        to be streamed; anything else is checked and made a float32 array."""
        streamed = is_layer_view(X) and len(X.shape) == 2 and \
            X.shape[0] * X.shape[1] * 4 > self.memory_budget_gb * 2**30
        if streamed:
            self.n_features_in_ = X.shape[1]
        else:
            X = check_data(self, X).astype(np.float32)
        return X, streamed

    def _start_fit(self, X, per_column: bool = False, scale: bool = True):
        """Validate ``X``, seed torch, choose the device and scale the rows (``scale=False``
        keeps them as they are, for a backbone taken from the studied model).

        Returns ``(X, seed, generator, device, data)``: ``X`` checked (a float32 array, or
        the store layer itself when it is streamed), the int seed, a torch generator for
        batch order, the device and the scaled rows (a tensor on the device, or
        :class:`StreamedRows`).
        """
        import torch

        from .._util.devices import resolve_device

        X, streamed = self._checked_rows(X)
        check_n_clusters(self, X.shape[0], self.n_clusters)
        seed = seed_from(self.random_state)
        generator = seed_everything(seed)
        mean, col_sd, overall = _moments(iter_rows(X, ROW_CHUNK), X.shape[1])
        if not scale:
            self.mean_, self.scale_ = np.zeros_like(mean), np.float32(1.0)
        elif per_column:
            check_varying(col_sd > 0, len(X), self, stacklevel=4)
            self.mean_, self.scale_ = mean, np.where(col_sd > 0, col_sd, 1.0).astype(np.float32)
        else:  # one global scale keeps the columns' relative variances
            self.mean_, self.scale_ = mean, np.float32(overall or 1.0)
        self.column_sd_ = (col_sd / self.scale_).astype(np.float32)  # of the scaled rows
        device = resolve_device(self.device)
        if streamed:
            return X, seed, generator, device, StreamedRows(X, self.mean_, self.scale_, device)
        data = torch.from_numpy((X - self.mean_) / self.scale_).to(device)
        return X, seed, generator, device, data

    def _map_input(self, X, fn) -> np.ndarray:
        """``fn`` over new rows (array, tensor or store layer), checked and scaled as at fit
        time, chunk by chunk on the CPU, without gradients. ``fn`` should reach fitted
        attributes only when called, after the fitted check here."""
        import torch

        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "module_")
        if is_layer_view(X) and len(X.shape) == 2:
            if X.shape[1] != self.n_features_in_:
                raise ActclustError(f"X has {X.shape[1]} features, but "
                                    f"{type(self).__name__} is expecting "
                                    f"{self.n_features_in_} features as input")
        else:
            X = check_data(self, X, reset=False)
        outputs, start = [], 0
        with torch.no_grad():
            for rows in iter_rows(X, ROW_CHUNK):
                check_finite_rows(rows, offset=start)  # a store layer was not checked whole
                outputs.append(fn(torch.from_numpy((rows - self.mean_) / self.scale_)).numpy())
                start += len(rows)
        return np.concatenate(outputs)


def batches(n: int, batch_size: int, generator):
    """Shuffled index batches for one epoch."""
    import torch

    return torch.randperm(n, generator=generator).split(batch_size)


class _NonFinite(Exception):
    """A batch's loss was NaN or infinite (caught by :meth:`Trainer.run`)."""

    def __init__(self, loss):
        super().__init__(loss)
        self.loss = loss


class LossSum:
    """The losses of one epoch's batches: ``total`` sums each scalar loss times its
    batch's rows (a row-weighted mean follows), ``parts`` sums vector losses (one per
    head) step by step; ``rows`` and ``steps`` count them."""

    def __init__(self):
        self.total, self.rows, self.steps, self.parts = 0.0, 0, 0, None

    def add(self, loss, rows: int) -> None:
        if loss.dim() == 0:
            self.total += loss.item() * rows
        else:
            values = loss.cpu().numpy()
            if self.parts is None:
                self.parts = np.zeros(len(values))
            self.parts += values
        self.rows += rows
        self.steps += 1

    def mean(self, rows: int | None = None) -> float:
        """Row-weighted mean loss over ``rows`` (default: the rows that were stepped)."""
        return self.total / (self.rows if rows is None else rows)

    def mean_parts(self, n_parts: int) -> np.ndarray:
        """Mean of each part of a vector loss over the steps (zeros when none ran)."""
        parts = np.zeros(n_parts) if self.parts is None else self.parts
        return parts / max(self.steps, 1)


class Trainer:
    """The training loop and the batch step of every trained reporter (skorch's
    ``fit_loop`` / ``train_step`` / ``get_loss`` split).

    A reporter supplies its module (every tensor it trains lives in it, so restoring the
    module restores everything) and, per batch, a function that returns the loss. The
    trainer owns the rest, the same way for all: the step (``zero_grad``, loss,
    ``backward``, ``step``), the loss sums, a progress bar, ``history`` (one dict per
    epoch), a NaN guard (a non-finite loss restores the weights of the last good epoch
    and raises :class:`TrainingDiverged` naming the epoch and the learning rate) and
    Ctrl-C (training stops with the last good weights kept and a warning; later phases
    of the same fit do not start).

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 1)
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> x, y = torch.ones(4, 2), torch.zeros(4, 1)
        >>> trainer = Trainer()
        >>> def epoch(_):
        ...     losses = trainer.run_batches([torch.arange(4)],
        ...         lambda idx: torch.nn.functional.mse_loss(net(x[idx]), y[idx]), opt)
        ...     return {"loss": losses.mean()}
        >>> history = trainer.run(net, 3, epoch, name="toy", lr=0.1)
        >>> len(history), history[2]["loss"] < history[0]["loss"]
        (3, True)
    """

    def __init__(self, progress: bool = False):
        self.progress = progress
        self.history: list = []
        self.interrupted = False

    # -- the batch step --------------------------------------------------------------
    def train_step(self, get_loss: Callable, *optimizers):
        """One batch: zero the gradients, ``get_loss()`` (a scalar tensor, or a vector of
        losses that are summed for the backward pass), backpropagate, step every
        optimiser. Returns the loss, detached. A non-finite loss stops before any step."""
        for opt in optimizers:
            opt.zero_grad()
        loss = get_loss()
        if not _all_finite(loss):
            raise _NonFinite(float(loss.detach().sum()))
        (loss if loss.dim() == 0 else loss.sum()).backward()
        for opt in optimizers:
            opt.step()
        return loss.detach()

    def run_batches(self, index_batches, get_loss: Callable, *optimizers,
                    min_rows: int = 1) -> LossSum:
        """:meth:`train_step` over each index batch (``get_loss(idx)``), skipping batches
        of fewer than ``min_rows`` rows (batch norm needs two); returns the loss sums."""
        losses = LossSum()
        for idx in index_batches:
            if len(idx) < min_rows:
                continue
            losses.add(self.train_step(lambda: get_loss(idx), *optimizers), len(idx))
        return losses

    # -- the loop ------------------------------------------------------------------------
    def run(self, module, epochs: int, run_epoch: Callable[[int], dict], *, name: str,
            lr: float) -> list:
        """Run ``run_epoch(epoch) -> dict`` for up to ``epochs`` epochs on ``module``;
        returns this run's records, which are also appended to :attr:`history` (each
        with its ``epoch``, counted over the whole history).

        A record with ``stop: True`` ends training early (convergence). After an
        interruption nothing more runs (an empty list is returned).
        """
        from .._progress import tqdm

        records: list = []
        if self.interrupted:
            return records
        good = copy.deepcopy(module.state_dict())
        bar = tqdm(range(epochs), desc=name, unit="epoch", disable=not self.progress,
                   leave=False)
        try:
            for epoch in bar:
                number = len(self.history)
                try:
                    record = {"epoch": number, **run_epoch(epoch)}
                except _NonFinite as err:
                    record = {"epoch": number, "loss": err.loss}
                loss = record.get("loss")
                if loss is not None and not math.isfinite(loss):
                    _restore(module, good)
                    raise TrainingDiverged(
                        f"{name}: the loss became {loss} at epoch {number}; the weights of "
                        f"the epoch before are kept. Lower the learning rate (now {lr:g}).")
                self.history.append(record)
                records.append(record)
                good = copy.deepcopy(module.state_dict())
                if loss is not None:
                    bar.set_postfix(loss=f"{loss:.4g}")
                if record.get("stop"):
                    break
        except KeyboardInterrupt:
            _restore(module, good)
            self.interrupted = True
            warnings.warn(f"{name}: interrupted after {len(records)} epochs; the last good "
                          "weights are kept", RuntimeWarning, stacklevel=2)
        finally:
            bar.close()
        return records


def _all_finite(loss) -> bool:
    import torch

    return bool(torch.isfinite(loss).all())


def _restore(module, good: dict) -> None:
    """Load the last good weights. A parameter created after that snapshot (DeepCluster's
    head, re-made each epoch) has no earlier weights and is left as it is."""
    module.load_state_dict(good, strict=False)


def degenerate(labels: np.ndarray, n_clusters: int, share: float = 0.9) -> bool:
    """True when one cluster holds more than ``share`` of the rows (a collapsed solution)."""
    counts = np.bincount(labels, minlength=n_clusters)
    return bool(counts.max() > share * len(labels))
