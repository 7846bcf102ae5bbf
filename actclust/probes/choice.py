"""Which probe a layer gets: logistic regression in memory, or the streamed ridge probe.

Measured on the bundled stores (3 seeds, grouped splits; ``docs/probes.md``), the logistic
probe is as accurate or more (up to 5 points on MiniLM's truth label) and the ridge probe
20-70 times faster; only the ridge probe fits a layer larger than memory. So ``"auto"``
keeps logistic regression while the probed rows hold at most ``IN_MEMORY_MAX_VALUES``
values (100,000 rows of 384 floats, 160 MB in float32) and streams above.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import pandas as pd

from ..errors import ActclustError
from .linear import LinearProbe, probe_scores
from .ridge import RidgeProbe, ridge_probe_scores

__all__ = ["PROBE_KINDS", "IN_MEMORY_MAX_VALUES", "probe_for", "layer_probe_scores"]

PROBE_KINDS = ("auto", "logistic", "ridge")
IN_MEMORY_MAX_VALUES = 40_000_000


def probe_for(probe: Union[None, str, LinearProbe, RidgeProbe], n_rows: int,
              n_features: int, random_state=0):
    """The unfitted probe for ``n_rows`` x ``n_features`` rows.

    ``probe`` is an instance (used as given), ``"logistic"``, ``"ridge"``, or ``"auto"`` /
    None: logistic up to ``IN_MEMORY_MAX_VALUES`` values, ridge above.

    Example:
        >>> type(probe_for("auto", 1_000, 384)).__name__, type(probe_for(None, 10**7, 384)).__name__
        ('LinearProbe', 'RidgeProbe')
    """
    if isinstance(probe, (LinearProbe, RidgeProbe)):
        return probe
    if probe is None:
        probe = "auto"
    if probe not in PROBE_KINDS:
        raise ActclustError(f"probe must be one of {', '.join(PROBE_KINDS)} or a LinearProbe "
                            f"/ RidgeProbe, got {probe!r}")
    if probe == "auto":
        probe = "logistic" if n_rows * n_features <= IN_MEMORY_MAX_VALUES else "ridge"
    kind = LinearProbe if probe == "logistic" else RidgeProbe
    return kind(random_state=random_state)


def layer_probe_scores(X, y, groups=None, types=None, random_state=0, probe=None,
                       progress: bool = False) -> dict:
    """Probe scores of one label on one layer (array or store layer view) with the probe
    :func:`probe_for` picks; rows whose label is missing are left out. The logistic probe
    gathers the labelled rows in memory; the ridge probe streams them.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(200, 4))
        >>> y = np.where(X[:, 1] > 0, "up", "down").astype(object)
        >>> y[:20] = None                                   # 20 rows without a label
        >>> s = layer_probe_scores(X, y, probe="ridge")
        >>> s["probe_accuracy"] > 0.9, s["n_train"] + s["n_test"]
        (True, 180)
    """
    known = pd.notna(np.asarray(y, dtype=object))
    template = probe_for(probe, int(known.sum()), int(X.shape[1]), random_state)
    if isinstance(template, RidgeProbe):
        return ridge_probe_scores(X, y, groups=groups, types=types, random_state=random_state,
                                  probe=template, progress=progress)
    everything = bool(known.all())
    Xk = np.asarray(X) if everything else X[np.flatnonzero(known)]
    pick = (lambda a: a) if everything else (lambda a: None if a is None else
                                             np.asarray(a)[known])
    return probe_scores(Xk, np.asarray(y)[known], groups=pick(groups), types=pick(types),
                        random_state=random_state, probe=template)
