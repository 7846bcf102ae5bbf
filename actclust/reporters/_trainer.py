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
from ._base import check_data, check_n_clusters, seed_from, warn_constant_columns


class TrainingDiverged(ActclustError):
    """The loss became NaN or infinite."""


def seed_everything(seed: int):
    """Seed torch's CPU and CUDA generators; returns a generator for batch order."""
    import torch

    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


class TrainedReporterMixin:
    """Fit and inference plumbing every trained reporter shares.

    Rows are centred and divided by one global scale (or per column with
    ``per_column=True``), once at fit time; inference applies the same scaling.
    """

    def _start_fit(self, X, per_column: bool = False):
        """Validate ``X``, seed torch, choose the device and scale the rows.

        Returns ``(X, seed, generator, device, data)``: the checked float32 array, the
        int seed, a torch generator for batch order, the device and the scaled rows as a
        tensor on that device.
        """
        import torch

        from ..capture import resolve_device

        X = check_data(self, X).astype(np.float32)
        check_n_clusters(self, len(X), self.n_clusters)
        seed = seed_from(self.random_state)
        generator = seed_everything(seed)
        self.mean_ = X.mean(0)
        if per_column:
            warn_constant_columns(X, self)
            self.scale_ = np.where(X.std(0) > 0, X.std(0), 1.0).astype(np.float32)
        else:  # one global scale keeps the columns' relative variances
            self.scale_ = np.float32(X.std() or 1.0)
        device = resolve_device(self.device)
        data = torch.from_numpy((X - self.mean_) / self.scale_).to(device)
        return X, seed, generator, device, data

    def _scaled_input(self, X):
        """New rows, checked and scaled as at fit time, as a CPU tensor."""
        import torch

        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "module_")
        X = check_data(self, X, reset=False).astype(np.float32)
        return torch.from_numpy((X - self.mean_) / self.scale_)


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
    from tqdm.auto import tqdm

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
