"""The torch training loop every deep reporter shares.

A reporter supplies its module and one epoch of work; the trainer handles the rest the
same way for all of them: seeding, device, a progress bar, ``history_``, a NaN guard that
names the epoch, and Ctrl-C, which stops training with the last good weights kept.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Callable

import numpy as np

from ..errors import ActclustError
from ._base import (check_data, check_finite_rows, check_n_clusters, check_varying,
                    is_layer_view, iter_rows, seed_from)


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


class TrainedReporterMixin:
    """Fit and inference plumbing every trained reporter shares.

    Rows are centred and divided by one global scale (or per column with
    ``per_column=True``), once at fit time; inference applies the same scaling. A store
    layer larger than ``memory_budget_gb`` is streamed: batches are read from its memory
    map as training needs them, and full passes (assignments, features) go in chunks.
    """

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

        streamed = is_layer_view(X) and len(X.shape) == 2 and \
            X.shape[0] * X.shape[1] * 4 > getattr(self, "memory_budget_gb", 2.0) * 2**30
        if streamed:
            self.n_features_in_ = X.shape[1]
        else:
            X = check_data(self, X).astype(np.float32)
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


def train(module, epochs: int, run_epoch: Callable[[int], dict], *, name: str, lr: float,
          progress: bool = False, history: list | None = None) -> list:
    """Run ``run_epoch(epoch) -> dict`` for up to ``epochs`` epochs.

    Each returned dict is appended to ``history`` (with its ``epoch``); a ``loss`` that is
    not finite raises :class:`TrainingDiverged` naming the epoch and the learning rate, after
    restoring the weights of the last good epoch. A dict with ``stop: True`` ends training
    early (convergence). Ctrl-C ends training with the last good weights and a warning.

    Example:
        >>> import torch
        >>> m = torch.nn.Linear(2, 1)
        >>> h = train(m, 3, lambda e: {"loss": 1.0 / (e + 1)}, name="toy", lr=0.1)
        >>> [round(r["loss"], 2) for r in h]
        [1.0, 0.5, 0.33]
    """
    from .._progress import tqdm

    history = [] if history is None else history
    good = copy.deepcopy(module.state_dict())
    bar = tqdm(range(epochs), desc=name, unit="epoch", disable=not progress, leave=False)
    try:
        for epoch in bar:
            record = {"epoch": len(history), **run_epoch(epoch)}
            loss = record.get("loss")
            if loss is not None and not math.isfinite(loss):
                module.load_state_dict(good)
                raise TrainingDiverged(
                    f"{name}: the loss became {loss} at epoch {record['epoch']}; the weights "
                    f"of the epoch before are kept. Lower the learning rate (now {lr:g}).")
            history.append(record)
            good = copy.deepcopy(module.state_dict())
            if loss is not None:
                bar.set_postfix(loss=f"{loss:.4g}")
            if record.get("stop"):
                break
    except KeyboardInterrupt:
        module.load_state_dict(good)
        warnings.warn(f"{name}: interrupted after {len(history)} epochs; the last good "
                      "weights are kept", RuntimeWarning, stacklevel=2)
    finally:
        bar.close()
    return history


def degenerate(labels: np.ndarray, n_clusters: int, share: float = 0.9) -> bool:
    """True when one cluster holds more than ``share`` of the rows (a collapsed solution)."""
    counts = np.bincount(labels, minlength=n_clusters)
    return bool(counts.max() > share * len(labels))
