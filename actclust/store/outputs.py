"""Checks on a file a command is about to write, made before any long work starts.

A command that fits for ten minutes and then cannot write its results has lost the user's
time; one that writes over a store's own files has lost their data. So every output file is
checked first: its folder exists and is writable, it is not a folder, and it is not inside
an actclust store (a store's files belong to the store).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ActclustError
from . import format as fmt
from .paths import classify


def enclosing_store(path) -> Path | None:
    """The store directory that ``path`` lies in (or is), if any.

    Example:
        >>> import tempfile
        >>> enclosing_store(Path(tempfile.mkdtemp()) / "results.parquet") is None
        True
    """
    here = Path(os.path.abspath(path))
    for folder in [here, *here.parents]:
        # By content, so a damaged store still counts and a foreign manifest.json does not.
        if os.path.lexists(folder / fmt.MANIFEST) and classify(folder)[0] == "store":
            return folder
    return None


def check_output_file(path, option: str = "--out", suffixes: tuple = ()) -> Path:
    """Refuse an output file path that cannot or must not be written; returns it as a Path.

    Refused: an empty path, an existing directory, a symlink, a path whose nearest existing
    folder is not writable (missing folders are created on writing), an existing file that
    is not writable, and any path inside an actclust store. ``suffixes`` (e.g.
    ``(".parquet",)``) are the extensions accepted.

    Example:
        >>> check_output_file("")
        Traceback (most recent call last):
        ...
        actclust.errors.ActclustError: --out is empty: name the file to write
    """
    if path is None or str(path).strip() == "":
        raise ActclustError(f"{option} is empty: name the file to write")
    path = Path(path)
    if path.is_symlink():
        raise ActclustError(f"{option} {path} is a symbolic link; name a regular file")
    if path.is_dir():
        raise ActclustError(f"{option} {path} is a directory; name a file inside it")
    if path.exists() and not path.is_file():  # a FIFO, a device, a socket
        raise ActclustError(f"{option} {path} is not a regular file; name a new file")
    store = enclosing_store(path)
    if store is not None:
        raise ActclustError(f"{option} {path} is inside the store {store}; a store's files "
                            "are its own: write elsewhere")
    # A missing folder is created on writing: what must be writable is the nearest one
    # that exists.
    folder = Path(os.path.abspath(path)).parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ActclustError(f"{option} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ActclustError(f"{option} {path}: folder {folder} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise ActclustError(f"{option} {path} exists and is not writable")
    if suffixes and path.suffix.lower() not in suffixes:
        # a results file written over notes.txt would destroy the user's notes
        raise ActclustError(f"{option} {path}: expected a {' or '.join(suffixes)} file name")
    return path
