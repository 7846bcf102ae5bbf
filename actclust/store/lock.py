"""One writer per store: an advisory ``flock`` on ``STORE/.lock``, held for a whole run.

The kernel drops a ``flock`` when its holder exits, killed or not, so a crashed writer
never leaves a store locked; the file only names the holder (pid, host, start time) for
the message a second writer gets. The file is removed when the lock is released.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ActclustError
from . import format as fmt

try:
    import fcntl
except ImportError:  # not POSIX: writers are not serialised there (docs/safety.md)
    fcntl = None


class StoreLock:
    """The writer lock of the store at ``root``.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> first = StoreLock(root).acquire()
        >>> StoreLock(root).acquire()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        actclust.errors.ActclustError: store ... is being written by another writer (pid ...
        >>> first.release(); StoreLock(root).acquire().release()
    """

    def __init__(self, root):
        self.root = Path(root)
        self.path = self.root / fmt.LOCK
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "StoreLock":
        if fcntl is None or self._fd is not None:
            return self
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | \
            getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        for _ in range(20):  # each retry means a holder released between open and flock
            try:
                fd = os.open(self.path, flags, 0o644)
            except OSError as err:
                if err.errno == errno.ELOOP:
                    raise ActclustError(f"{self.path} is a symlink; remove it (a store's lock "
                                        "is its own file)") from None
                raise ActclustError(f"cannot lock store {self.root}: {err.strerror}") from None
            try:
                opened = os.fstat(fd)
                if not stat.S_ISREG(opened.st_mode):
                    raise ActclustError(f"{self.path} is not a regular file; remove it")
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as err:
                    if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise ActclustError(f"cannot lock store {self.root}: "
                                            f"{err.strerror}") from None
                    raise ActclustError(
                        f"store {self.root} is being written by another writer "
                        f"({_describe(fd)}); wait for it to finish or stop it, then retry"
                    ) from None
                try:
                    now = os.stat(self.path, follow_symlinks=False)
                except FileNotFoundError:
                    now = None
                if now is None or (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
                    continue  # we locked a file its holder removed on release: start over
                holder = {"pid": os.getpid(), "host": socket.gethostname(),
                          "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(holder).encode(), 0)
                self._fd, fd = fd, None
                return self
            finally:
                if fd is not None:
                    os.close(fd)
        raise ActclustError(f"cannot lock store {self.root}: its lock file keeps changing")

    def holder(self) -> str | None:
        """Who holds the lock now (pid, host, start), or None if nobody; creates nothing."""
        if fcntl is None:
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) |
                         getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None  # no lock file, or not one acquire would accept: it will say so
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return _describe(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        """Remove the lock file, then drop the lock (in that order, see ``acquire``)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            mine = os.fstat(fd)
            now = os.stat(self.path, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                os.unlink(self.path)
        except OSError:
            pass  # the lock still goes with the descriptor
        finally:
            os.close(fd)

    def __del__(self):
        try:
            self.release()
        except Exception:
            pass


def _describe(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return (f"pid {int(holder['pid'])} on {str(holder['host'])[:80]}, since "
                f"{str(holder['started'])[:40]}")
    except (ValueError, KeyError, TypeError, OSError):
        return "a process that has not written its name yet"
