"""Files that appear whole or not at all."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (POSIX needs the directory fsynced too)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write) -> Path:
    """Make ``path`` appear whole or not at all: ``write(tmp)`` fills a hidden temporary
    file whose name no other writer uses (two processes may write the same file at once),
    which is fsynced, renamed into place, and the rename made durable. Returns the path.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> atomic_write(d / "a.txt", lambda tmp: tmp.write_text("hi")).read_text()
        'hi'
        >>> [p.name for p in d.iterdir()]
        ['a.txt']
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` so that ``path`` holds either the old or the new content, never half."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))
