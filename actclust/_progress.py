"""Progress bars: tqdm's widget bar in Jupyter when it can be drawn, the text bar otherwise.

When stderr is not a terminal (a log file, a CI job, ``nohup``), a bar redrawn ten times a
second fills the log with carriage-return updates; there it is redrawn every
:data:`LOG_INTERVAL` seconds, so a long capture leaves a line now and then. ``actclust
--quiet`` (or :func:`set_quiet`) turns every bar off.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

LOG_INTERVAL = 10.0  # seconds between redraws when stderr is not a terminal
_QUIET = False


def set_quiet(quiet: bool = True) -> None:
    """Turn every progress bar in this process off (``True``) or back on.

    Example:
        >>> set_quiet(True); tqdm(range(3)).disable
        True
        >>> set_quiet(False)
    """
    global _QUIET
    _QUIET = bool(quiet)


@contextmanager
def quiet(on: bool = True):
    """Within the block, no progress bars (when ``on``); the setting before comes back after.

    Example:
        >>> with quiet():
        ...     tqdm(range(3)).disable
        True
    """
    before = _QUIET
    set_quiet(on or before)
    try:
        yield
    finally:
        set_quiet(before)


def _in_notebook() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


def _writes_to_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def tqdm(*args, **kwargs):
    """A tqdm bar. ``tqdm.auto`` without ipywidgets warns in every notebook cell
    ("IProgress not found"); the text bar works everywhere, so it is the fallback.

    Example:
        >>> bar = tqdm(range(3), disable=True)
        >>> sum(bar)
        3
    """
    from importlib.util import find_spec

    if _QUIET:
        kwargs["disable"] = True
    notebook = _in_notebook()
    if not notebook and not _writes_to_terminal(kwargs.get("file") or sys.stderr):
        kwargs["mininterval"] = max(float(kwargs.get("mininterval", 0.1)), LOG_INTERVAL)
    if notebook and find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm as bar
    else:
        from tqdm.std import tqdm as bar
    return bar(*args, **kwargs)
