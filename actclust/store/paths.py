"""Where a store may read and write: inside its own folder, never through a symlink.

Readers reach every file as the store's real folder joined with checked names (no ``/``,
no ``..``, no leading dot), and refuse a symlink at any step, so nothing a manifest says
can lead outside the store. Writers act only on a folder that is a store by its content
(:func:`classify`), and delete only entries a store consists of (:func:`store_entries`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path

from ..errors import ActclustError
from . import format as fmt

# Hidden temporaries of an atomic write (".NAME.<hex>.tmp"; older writers used ".NAME.tmp").
ROOT_TMP = re.compile(r"\A\.(manifest\.json|docs\.parquet|rows\.parquet)(\.[0-9a-f]+)?\.tmp\Z")
SHARD_TMP = re.compile(r"\A\.\d{5,}\.npy(\.[0-9a-f]+)?\.tmp\Z")
PART_TMP = re.compile(r"\A\.\d{5,}\.parquet(\.[0-9a-f]+)?\.tmp\Z")


def store_path(root, *parts: str) -> Path:
    """``root/parts...`` in the store's real folder, each part a checked plain name and
    each folder on the way a real directory, not a symlink.

    Example:
        >>> store_path("/tmp", "layers", "../etc")
        Traceback (most recent call last):
        ...
        actclust.errors.ActclustError: name '../etc' cannot be used as a directory name: it starts with '.'
    """
    path = Path(root).resolve()
    for i, part in enumerate(parts):
        path = path / fmt.check_name(part, "name")
        if i < len(parts) - 1 and path.is_symlink():
            raise ActclustError(f"{path} is a symlink; a store never follows a link out of "
                                "its folder. Replace it with a real directory")
    return path


def open_checked(root, *parts: str):
    """``(file, None)`` for the regular file ``root/parts...`` confined to the store, or
    ``(None, why)`` with why it cannot be read (``"is missing"``, ``"is a symlink ..."``)."""
    try:
        path = store_path(root, *parts)
    except ActclustError as err:
        return None, f"is out of reach ({err})"
    try:
        return fmt.open_regular(path), None
    except FileNotFoundError:
        return None, "is missing"
    except NotADirectoryError:
        return None, "is missing (a folder on its path is a file)"
    except ActclustError:
        return None, "is not a regular file"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return None, "is a symlink; a store reads only its own files"
        return None, f"cannot be read ({err.strerror})"


def open_in_store(root, *parts: str, what: str = "file"):
    """Open the regular file ``root/parts...`` for reading, confined to the store; a
    missing file or a symlink is an :class:`ActclustError` naming the path."""
    fh, why = open_checked(root, *parts)
    if fh is None:
        raise ActclustError(f"{what} {Path(root).joinpath(*parts)} of the store {why}")
    return fh


def check_output_path(root, destructive: bool) -> Path:
    """The absolute path a writer may use for ``root``; refuses the dangerous ones.

    Refused always: an empty path, a path that is a symlink, ``/``, the home directory,
    the working directory or a folder that contains it. With ``destructive`` (resume or
    overwrite) no component of the path may be a symlink either, so what is checked is
    what is changed.

    Example:
        >>> check_output_path("", destructive=False)
        Traceback (most recent call last):
        ...
        actclust.errors.ActclustError: the output path is empty; name the store directory
    """
    text = os.fspath(root) if isinstance(root, (str, os.PathLike)) else None
    if text is None:
        raise ActclustError(f"the output path must be a path, got {type(root).__name__}")
    if text.strip() == "":
        raise ActclustError("the output path is empty; name the store directory")
    if "\0" in text:
        raise ActclustError("the output path contains a NUL character")
    absolute = Path(os.path.abspath(text))
    if Path(text).is_symlink() or absolute.is_symlink():
        raise ActclustError(f"output {text} is a symlink (to {os.readlink(absolute)}); give "
                            "the real directory instead")
    if destructive:
        for parent in absolute.parents:
            if parent.is_symlink():
                raise ActclustError(f"output {text}: {parent} on its path is a symlink; "
                                    f"give the real path ({absolute.resolve()})")
    real = absolute.resolve()
    if real == Path(real.anchor):
        raise ActclustError(f"output {text} is the filesystem root; choose a store directory")
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise ActclustError(f"output {text} is the working directory or contains it; "
                            "choose a store directory below it")
    try:
        home = Path.home().resolve()
    except (KeyError, RuntimeError):  # no home directory known
        home = None
    if real == home:
        raise ActclustError(f"output {text} is the home directory; choose a store directory")
    return absolute


def _kind(path: Path) -> str:
    mode = os.lstat(path).st_mode
    return "link" if stat.S_ISLNK(mode) else "dir" if stat.S_ISDIR(mode) else \
        "file" if stat.S_ISREG(mode) else "other"


def _unexpected(root: Path, path: Path, why: str = "") -> ActclustError:
    rel = path.relative_to(root)
    return ActclustError(f"{root} holds {rel}{why}, which is not part of an actclust store; "
                         "move it away or choose another directory")


def store_entries(root: Path) -> list[Path]:
    """Every entry of the store at ``root`` (deepest first), refusing anything a store
    does not consist of: the manifest, the two tables, ``layers/<name>/`` of shard files,
    ``rows.parts/``, hidden temporaries and the lock. Symlinks are never part of a store.
    """
    entries = []
    for path in sorted(root.iterdir()):
        kind, name = _kind(path), path.name
        if kind == "link":
            raise _unexpected(root, path, " (a symlink)")
        if kind == "file" and (name in (fmt.MANIFEST, fmt.DOCS, fmt.ROWS, fmt.LOCK)
                               or ROOT_TMP.match(name)):
            entries.append(path)
        elif kind == "dir" and name in (fmt.LAYERS_DIR, fmt.ROW_PARTS_DIR):
            children = [path] if name == fmt.ROW_PARTS_DIR else \
                sorted(path.iterdir())
            for folder in children:
                if folder is not path:
                    try:
                        fmt.check_name(folder.name)
                    except ActclustError:
                        raise _unexpected(root, folder) from None
                    if _kind(folder) != "dir":
                        raise _unexpected(root, folder, " (not a layer folder)")
                files, tmps = (fmt.PART_FILE, PART_TMP) if folder is path else \
                    (fmt.SHARD_FILE, SHARD_TMP)
                for item in sorted(folder.iterdir()):
                    if _kind(item) != "file" or not (files.match(item.name) or
                                                     tmps.match(item.name)):
                        raise _unexpected(root, item)
                    entries.append(item)
                if folder is not path:
                    entries.append(folder)
            entries.append(path)
        else:
            raise _unexpected(root, path)
    return entries


def is_debris(path: Path) -> bool:
    """A file an interrupted writer may leave at the top of a store before its manifest."""
    return path.name == fmt.LOCK or bool(ROOT_TMP.match(path.name))


def classify(root: Path) -> tuple[str, str]:
    """What ``root`` is for a writer: ``("absent" | "empty" | "store" | "foreign", why)``.

    ``empty`` may hold the debris of a writer killed before its first manifest;
    ``store`` has a store manifest (by content, see :func:`format.not_a_store_reason`).
    """
    if not os.path.lexists(root):
        return "absent", ""
    if _kind(root) != "dir":
        return "foreign", "it is not a directory"
    manifest = root / fmt.MANIFEST
    if os.path.lexists(manifest):
        try:
            with fmt.open_regular(manifest) as fh:
                content = json.loads(fh.read())
        except (OSError, ValueError, RecursionError):
            return "foreign", f"its {fmt.MANIFEST} is not a readable JSON file of its own"
        reason = fmt.not_a_store_reason(content)
        if reason:
            return "foreign", f"its {fmt.MANIFEST} is not a store manifest: {reason}"
        return "store", ""
    others = [p for p in root.iterdir() if not (is_debris(p) and _kind(p) == "file")]
    if others:
        return "foreign", f"it holds {others[0].name} and no {fmt.MANIFEST}"
    return "empty", ""


def remove_entries(entries: list[Path], keep: Path | None = None) -> None:
    """Delete what :func:`store_entries` listed (files, then their emptied folders)."""
    for path in entries:
        if keep is not None and path == keep:
            continue
        if _kind(path) == "dir":
            path.rmdir()  # only ever empty here: its entries came first
        else:
            path.unlink()
