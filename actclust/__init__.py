"""actclust: let unsupervised reporters find the structure in a network's activations,
then compare it with what linear probes find, layer by layer.

The public names are imported on first use, so ``import actclust.sweep.cells`` (a
worker that only runs k-means) does not pay for torch.

Example:
    >>> import actclust, tempfile
    >>> store = actclust.capture("minilm", "topics", "blocks.*.hook_out", pool="mean",
    ...                          out=tempfile.mkdtemp() + "/s", limit=16, progress=False)
    >>> len(store.layers)
    6
"""

import importlib
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what static readers (type checkers, the API docs) should see
    from .capture import capture
    from .compare import compare
    from .store import ActivationStore

from ._util.version import __version__

# public name -> the submodule that defines it
_LAZY = {"capture": ".capture", "ActivationStore": ".store", "compare": ".compare"}

__all__ = ["capture", "ActivationStore", "compare", "__version__"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps ``actclust.capture`` and ``actclust.compare`` the functions: importing the
    submodule of the same name would otherwise bind the module over the function."""

    def __setattr__(self, name, value):
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
