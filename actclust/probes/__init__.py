"""Linear probes and control tasks: what a supervised linear readout finds in one layer.

Two probes share one interface (``fit(X, y, groups)``, ``predict``, ``score``, ``coef_``):

* :class:`LinearProbe` (:mod:`.linear`): standardise, then multinomial logistic regression,
  in memory;
* :class:`RidgeProbe` (:mod:`.ridge`): ridge regression on one-hot labels, fitted exactly
  from statistics streamed over the rows, so a store layer of any size is probed in bounded
  memory.

:func:`probe_scores` and :func:`ridge_probe_scores` give the numbers the comparison table
records for one (layer, label): probe accuracy on a grouped split, the control task's
accuracy, selectivity and the majority baseline. :func:`layer_probe_scores` picks the probe
by size (:mod:`.choice`): logistic regression while the rows fit in memory, ridge above.
"""

from .linear import (LinearProbe, ProbeInputError, control_labels, grouped_split,
                     probe_scores)
from .ridge import DEFAULT_ALPHAS, RidgeProbe, ridge_probe_scores
from .choice import IN_MEMORY_MAX_VALUES, PROBE_KINDS, layer_probe_scores, probe_for

__all__ = ["LinearProbe", "RidgeProbe", "ProbeInputError", "grouped_split", "control_labels",
           "probe_scores", "ridge_probe_scores", "DEFAULT_ALPHAS", "probe_for", "layer_probe_scores",
           "PROBE_KINDS", "IN_MEMORY_MAX_VALUES"]
