"""The bundled ``digits-mlp`` target: a small MLP trained on ``load_digits`` at first use.

Training takes about a second, is seeded, and the weights are cached (in
``$ACTCLUST_CACHE`` or ``~/.cache/actclust``), so every capture sees the same network.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

ARCH_VERSION = 1


def cache_dir() -> Path:
    return Path(os.environ.get("ACTCLUST_CACHE", Path.home() / ".cache" / "actclust"))


def build_digits_mlp() -> nn.Sequential:
    """The untrained network: named layers make readable hook names (``relu1``, ``fc2``).

    Example:
        >>> [name for name, _ in build_digits_mlp().named_children()]
        ['fc1', 'relu1', 'fc2', 'relu2', 'logits']
    """
    return nn.Sequential(OrderedDict([
        ("fc1", nn.Linear(64, 128)), ("relu1", nn.ReLU()),
        ("fc2", nn.Linear(128, 64)), ("relu2", nn.ReLU()),
        ("logits", nn.Linear(64, 10)),
    ]))


def train_digits_mlp(seed: int = 0, epochs: int = 300) -> tuple[nn.Sequential, dict]:
    """Train on 80% of the digits (inputs scaled to [0, 1]); report held-out accuracy.

    Example:
        >>> model, info = train_digits_mlp(epochs=50)
        >>> info["test_accuracy"] > 0.8
        True
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    order = np.random.default_rng(seed).permutation(len(X))
    cut = int(0.8 * len(X))
    train, test = torch.tensor(order[:cut]), torch.tensor(order[cut:])
    torch.manual_seed(seed)
    model = build_digits_mlp()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs // 10):
        for batch in torch.randperm(cut, generator=generator).split(128):
            idx = train[batch]
            opt.zero_grad()
            nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(X[test]).argmax(1) == y[test]).float().mean().item()
    return model, {"seed": seed, "test_accuracy": round(accuracy, 4),
                   "train_rows": cut, "test_rows": len(X) - cut}


def load_digits_mlp(seed: int = 0) -> nn.Sequential:
    """The trained network, from the cache or trained now and cached atomically."""
    path = cache_dir() / f"digits-mlp-v{ARCH_VERSION}-seed{seed}.pt"
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            model = build_digits_mlp()
            model.load_state_dict(saved["state_dict"])
            model.info = saved["info"]
            return model.eval()
        except Exception:  # a damaged cache file is simply retrained
            path.unlink(missing_ok=True)
    model, info = train_digits_mlp(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"state_dict": model.state_dict(), "info": info}, tmp)
    os.replace(tmp, path)
    model.info = info
    return model
