"""actclust: let unsupervised reporters find the structure in a network's activations,
then compare it with what linear probes find, layer by layer.

Example:
    >>> import actclust, tempfile
    >>> store = actclust.capture("minilm", "topics", "blocks.*.hook_out", pool="mean",
    ...                          out=tempfile.mkdtemp() + "/s", limit=16, progress=False)
    >>> len(store.layers)
    6
"""

__version__ = "0.1.0"

from .capture import capture  # noqa: E402
from .compare import compare  # noqa: E402
from .store import ActivationStore  # noqa: E402

__all__ = ["capture", "ActivationStore", "compare", "__version__"]
