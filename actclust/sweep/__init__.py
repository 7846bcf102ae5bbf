"""Declarative sweeps: many layers x reporters x seeds (and probes), resumable, in parallel
processes or on a Ray cluster, into one tidy results table.

A sweep file (TOML, see ``docs/sweeps.md``) or an equal dict names the model(s), the
dataset, the layers, the reporters with their parameter grids, the probes, the labels and
the seeds. :func:`run_sweep` captures once, then runs each cell and records it as soon as
it finishes, so a killed sweep started again with ``resume=True`` redoes only what was
not finished.

Example:
    >>> spec = load_sweep(EXAMPLE)
    >>> spec.name, [r.method for r in spec.reporters][:2]
    ('topics-layers', ['kmeans', 'gmm(covariance_type=diag)'])
"""

from .command import add_command, cmd_sweep
from .grids import ReporterSpec
from .runner import SweepResult, run_sweep
from .spec import EXAMPLE, SweepSpec, load_sweep

__all__ = ["run_sweep", "load_sweep", "SweepSpec", "SweepResult", "ReporterSpec",
           "EXAMPLE", "add_command", "cmd_sweep"]
