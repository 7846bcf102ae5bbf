"""One ``.npy`` shard: written whole or not at all, and read only after its header agrees
with the manifest.

A shard's header is data from disk like the manifest: :func:`read_header` parses it with
numpy's header readers (a literal parser, never pickle) and :func:`header_problems`
compares it, and the file's size, with what the manifest says before any byte of the
array is used.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import ActclustError
from . import format as fmt
from . import paths

# Bytes a shard writer lets the page cache hold before it flushes them to disk itself: the
# disk then works while the caller computes the next batch, instead of all at the final
# fsync, where a capture waits for it.
SYNC_BYTES = 32 << 20


def new_hash(field: str):
    """A fresh hash object for the manifest checksum key ``field`` (``"xxh3_128"`` or
    ``"sha256"``), with ``update`` and ``hexdigest``.

    Example:
        >>> new_hash("xxh3_128").hexdigest()
        '99aa06d3014798d86001c324468d497f'
    """
    if field == "sha256":
        return hashlib.sha256()
    if field == "xxh3_128":
        try:
            import xxhash
        except ImportError:
            raise ActclustError("xxh3 shard checksums need the xxhash package: pip install "
                                "xxhash (or write the store with checksum='sha256')") from None
        return xxhash.xxh3_128()
    raise ActclustError(f"unknown shard checksum {field!r}; choose one of "
                        f"{', '.join(fmt.CHECKSUM_DIGITS)}")


class ShardWriter:
    """One ``.npy`` shard of a known number of rows, written incrementally and hashed on the way.

    Knowing the row count up front lets the ``.npy`` header go first, so the checksum of
    the whole file (``checksum="xxh3"``, the default, or ``"sha256"``) is computed while
    writing, without reading the shard back. The temporary name is unique to this writer,
    so two writers never write into one file.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> w = ShardWriter(d / "00000.npy", n_rows=3, storage_dtype="float32")
        >>> w.append(np.ones((2, 4), np.float32)); w.append(np.zeros((1, 4), np.float32))
        >>> info = w.commit()
        >>> np.load(d / "00000.npy").shape, info["rows"], len(info["xxh3_128"])
        ((3, 4), 3, 32)
    """

    def __init__(self, path: Path, n_rows: int, storage_dtype: str,
                 checksum: str = fmt.DEFAULT_CHECKSUM):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        self.n_rows = n_rows
        self.dtype = fmt.STORAGE_DTYPES[storage_dtype]
        self.field = fmt.checksum_field(checksum)
        self.rows_written = 0
        self.trailing_shape = None
        self._fh = None
        self._hash = new_hash(self.field)
        # xxh3 hashes ~20 GB/s: inline costs less than a hand-off. sha256 (~1.7 GB/s)
        # runs on a second thread (hashlib releases the GIL) while this one writes.
        self._threaded = self.field == "sha256"
        self._pending: list = []
        self._unsynced = 0

    def _open(self, trailing_shape: tuple) -> None:
        self.trailing_shape = tuple(trailing_shape)
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {
            "descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
            "shape": (self.n_rows, *self.trailing_shape)})
        # O_EXCL: the name is ours alone; never write through something already there
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                     getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o644)
        self._fh = os.fdopen(fd, "wb")
        self._write(header.getvalue())

    def _write(self, data) -> None:
        if self._threaded:  # one FIFO worker keeps every shard's updates in order
            self._pending.append(_hasher().submit(self._hash.update, data))
        else:
            self._hash.update(data)
        self._fh.write(data)
        while len(self._pending) > 4:
            self._pending.pop(0).result()
        self._unsynced += len(data)
        if self._unsynced >= SYNC_BYTES:
            self._fh.flush()
            os.fdatasync(self._fh.fileno()) if hasattr(os, "fdatasync") else \
                os.fsync(self._fh.fileno())
            self._unsynced = 0

    def _digest(self) -> str:
        for future in self._pending:
            future.result()
        self._pending = []
        return self._hash.hexdigest()

    def append(self, array: np.ndarray) -> None:
        if array.dtype != self.dtype:
            raise TypeError(f"shard {self.path} holds {self.dtype}, got {array.dtype}")
        if self._fh is None:
            self._open(array.shape[1:])
        elif tuple(array.shape[1:]) != self.trailing_shape:
            raise ValueError(f"shard {self.path}: rows of shape {array.shape[1:]} after "
                             f"{self.trailing_shape}")
        if self.rows_written + len(array) > self.n_rows:
            raise ValueError(f"shard {self.path} planned for {self.n_rows} rows, got more")
        self._write(memoryview(np.ascontiguousarray(array)).cast("B"))
        self.rows_written += len(array)

    def commit(self) -> dict:
        """fsync, then rename into place; returns the manifest entry of the shard."""
        if self.rows_written != self.n_rows:
            raise ValueError(f"shard {self.path}: {self.rows_written} rows written, "
                             f"{self.n_rows} planned")
        if self._fh is None:  # a shard of zero rows still needs a valid header
            self._open((0,))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        size = self._fh.tell()
        self._fh.close()
        os.replace(self.tmp, self.path)
        fmt.fsync_dir(self.path.parent)  # the rename itself must be durable before the manifest
        return {"file": self.path.name, "rows": self.n_rows, "bytes": size,
                self.field: self._digest()}

    def abort(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pending = []
        if self._fh is not None and not self._fh.closed:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)


@functools.lru_cache(maxsize=1)
def _hasher() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="actclust-sha256")


def read_header(fh) -> tuple[tuple, bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, data_offset)`` of the ``.npy`` file ``fh``.

    Raises ``ValueError`` for anything that is not a well-formed version 1 or 2 header.

    Example:
        >>> buf = io.BytesIO(); np.save(buf, np.zeros((3, 2), "<f2")); _ = buf.seek(0)
        >>> read_header(buf)
        ((3, 2), False, dtype('float16'), 128)
    """
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError:
        raise
    except Exception as err:  # a crafted header may trip any parser error: all mean "bad"
        raise ValueError(f"unreadable .npy header ({type(err).__name__})") from None
    if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise ValueError(f"header shape {shape!r} is not a shape")
    return shape, bool(fortran), dtype, fh.tell()


def header_problems(header, size: int, entry: dict, storage_dtype: str,
                    trailing: tuple | None) -> list[str]:
    """What is wrong with a shard, given its parsed header and file size, compared with
    its manifest ``entry`` (rows, bytes), the layer's dtype and row shape (``trailing``;
    None when not yet known). An empty list means it may be read."""
    shape, fortran, dtype, offset = header
    problems = []
    want = fmt.STORAGE_DTYPES[storage_dtype]
    if dtype != want:
        problems.append(f"dtype {dtype.str}, the manifest says {storage_dtype} ({want.str})")
    if fortran and len(shape) > 1:
        problems.append("stored in Fortran order, a store's shards are C order")
    if not shape or shape[0] != entry["rows"]:
        problems.append(f"{shape[0] if shape else 'no'} rows, the manifest says "
                        f"{entry['rows']}")
    elif entry["rows"] and trailing is not None and tuple(shape[1:]) != tuple(trailing):
        problems.append(f"row shape {list(shape[1:])}, the layer is {list(trailing)}")
    elif len(shape) < 2 and entry["rows"]:
        problems.append(f"shape {list(shape)}, a layer's rows are vectors")
    expected = offset + int(np.prod(shape, dtype=object)) * dtype.itemsize
    if not problems and size != expected:
        problems.append(f"{size} bytes, its header says {expected}: truncated or padded")
    if "bytes" in entry and size != entry["bytes"] and not problems:
        problems.append(f"{size} bytes, the manifest says {entry['bytes']}")
    return problems


def open_shard(root, layer: str, entry: dict, storage_dtype: str, trailing,
               checksum: bool = False, mapped: bool = True):
    """Check one shard, then open it; returns ``(array or None, problems)``.

    The array is a read-only memory map of the checked bytes (an in-memory array for a
    shard without values); with ``mapped=False`` it is an empty array of the shard's shape
    (a check that maps nothing). ``checksum`` also recomputes the file's checksums the
    manifest lists (``xxh3_128`` and/or ``sha256``, in one read) and compares. Problems are phrases: ``"missing"``, ``"dtype <f2, the manifest says ..."``.
    """
    fh, why = paths.open_checked(root, fmt.LAYERS_DIR, layer, entry["file"])
    if fh is None:
        return None, [why[3:] if why.startswith("is ") else why]
    with fh:
        try:
            header = read_header(fh)
        except ValueError as err:
            return None, [f"not a valid .npy file ({str(err)[:120]})"]
        size = os.fstat(fh.fileno()).st_size
        problems = header_problems(header, size, entry, storage_dtype, trailing)
        if not problems and checksum:
            problems += checksum_problems(fh, entry)
        if problems:
            return None, problems
        shape, _, dtype, offset = header
        if not shape[0] and trailing is not None:
            shape = (0, *trailing)  # a zero-row shard may have been written as (0, 0)
        if not mapped:
            return np.empty((0, *shape[1:]), dtype), []
        if 0 in shape:
            return np.zeros(shape, dtype), []
        return np.memmap(fh, dtype=dtype, mode="r", offset=offset, shape=shape), []


def checksum_problems(fh, entry: dict, chunk: int = 1 << 22) -> list[str]:
    """Recompute every checksum the shard's manifest ``entry`` lists over the whole file
    ``fh`` (one read); ``["checksum mismatch ..."]`` if any differs, ``[]`` if all agree.

    Example:
        >>> buf = io.BytesIO(b"shard bytes")
        >>> entry = {"xxh3_128": new_hash("xxh3_128").hexdigest()}
        >>> checksum_problems(buf, entry)
        ['checksum mismatch (file changed or damaged)']
    """
    hashes = {field: new_hash(field) for field in fmt.CHECKSUM_DIGITS if field in entry}
    if not hashes:
        return ["no checksum in the manifest"]
    fh.seek(0)
    while block := fh.read(chunk):
        for digest in hashes.values():
            digest.update(block)
    if any(digest.hexdigest() != entry[field] for field, digest in hashes.items()):
        return ["checksum mismatch (file changed or damaged)"]
    return []


def load_shard(root, layer: str, entry: dict, storage_dtype: str, trailing) -> np.ndarray:
    """:func:`open_shard` for readers: a problem is an :class:`ActclustError` naming the
    shard and saying what to do."""
    array, problems = open_shard(root, layer, entry, storage_dtype, trailing)
    if problems:
        path = Path(root) / fmt.LAYERS_DIR / layer / entry["file"]
        if problems[0] == "missing":
            raise ActclustError(f"shard {path} is missing; run `actclust verify {root}` and "
                                "capture again")
        raise ActclustError(f"shard {path} does not match the manifest: {problems[0]}; run "
                            f"`actclust verify {root}`")
    return array
