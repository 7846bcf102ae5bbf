"""What every stage shares: devices, name globs, atomic file writes, the version and the
results schema.

This package is the bottom layer of actclust: it imports nothing of actclust but
:mod:`actclust.errors`, so any stage may use it without importing another stage.
"""

from .devices import resolve_device
from .files import atomic_write, atomic_write_bytes, fsync_dir
from .names import glob_regex, select_names
from .schema import PROBE_METHOD, RESULT_COLUMNS
from .version import __version__

__all__ = ["resolve_device", "atomic_write", "atomic_write_bytes", "fsync_dir", "glob_regex",
           "select_names", "PROBE_METHOD", "RESULT_COLUMNS", "__version__"]
