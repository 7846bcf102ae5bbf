"""Where imported rows come from: array-likes read by row ranges, and iterables of batches
re-cut into the chunks the writer asks for; each chunk checked (floating point, finite,
in the storage dtype's range) on the way.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable, Mapping
from typing import Optional

import numpy as np
import pandas as pd

from ..errors import ActclustError
from . import format as fmt

__all__ = ["TokenRows", "ArraySource", "BatchSource", "to_rows", "sources"]


class TokenRows:
    """The rows of a ``(documents, positions, ...)`` array-like, one per (document,
    position), read by document ranges: row ``d * positions + p`` is ``array[d, p]``
    flattened.

    Example:
        >>> view = TokenRows(np.arange(24.0).reshape(2, 3, 4))
        >>> view.shape, view[2:4].tolist()
        ((6, 4), [[8.0, 9.0, 10.0, 11.0], [12.0, 13.0, 14.0, 15.0]])
    """

    def __init__(self, array):
        self.array = array
        shape = tuple(int(d) for d in array.shape)
        self.documents, self.positions = shape[0], shape[1]
        self.width = int(np.prod(shape[2:], dtype=np.int64))
        self.shape = (self.documents * self.positions, self.width)
        self.dtype = getattr(array, "dtype", None)

    def __getitem__(self, key: slice):
        lo, hi, _ = key.indices(self.shape[0])
        if hi <= lo:
            return np.zeros((0, self.width), np.float32)
        first, last = lo // self.positions, -(-hi // self.positions)
        block = self.array[first:last]
        block = block.reshape(len(block) * self.positions, self.width)
        start = lo - first * self.positions
        return block[start:start + hi - lo]


def _is_array_like(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "__getitem__")


def _dtype_name(value) -> str:
    return str(getattr(value, "dtype", type(value).__name__)).replace("torch.", "")


def _floating(dtype) -> Optional[bool]:
    """Whether ``dtype`` (numpy or torch) holds floating-point numbers; None if unknown."""
    if dtype is None:
        return None
    if type(dtype).__module__ == "torch":
        return bool(dtype.is_floating_point)
    try:
        return np.dtype(dtype).kind == "f"
    except TypeError:
        return None


def to_rows(chunk, layer: str, dtype: str) -> np.ndarray:
    """One chunk of a source as 2-D rows in the storage ``dtype``; refuses what is not
    floating point and values that are not finite (in the source or after the cast).

    Example:
        >>> to_rows(np.ones((2, 3)), "h", "float16").dtype
        dtype('float16')
        >>> to_rows(np.array([[1.0, np.nan]]), "h", "float32")
        Traceback (most recent call last):
        ...
        actclust.errors.ActclustError: layer 'h' holds NaN or infinite values (first at row 0 of its chunk); clean them before importing
    """
    if type(chunk).__module__.startswith("torch"):
        import torch

        chunk = chunk.detach()
        if chunk.dtype == torch.bfloat16:
            chunk = chunk.float()
        if not chunk.dtype.is_floating_point:
            raise ActclustError(f"layer {layer!r} holds {_dtype_name(chunk)} values, not "
                                "floating-point activations")
        chunk = chunk.cpu().numpy()
    chunk = np.asarray(chunk)
    if chunk.dtype.kind != "f":
        raise ActclustError(f"layer {layer!r} holds {chunk.dtype} values, not floating-point "
                            "activations")
    if chunk.ndim != 2:
        raise ActclustError(f"layer {layer!r} gave a batch of shape {list(chunk.shape)}; "
                            "batches are 2-D (rows, width)")
    bad = ~np.isfinite(chunk).all(axis=1)
    if bad.any():
        raise ActclustError(f"layer {layer!r} holds NaN or infinite values (first at row "
                            f"{int(np.argmax(bad))} of its chunk); clean them before importing")
    if dtype == "bfloat16":
        import torch

        out = torch.from_numpy(np.ascontiguousarray(chunk, np.float32)).to(torch.bfloat16)
        return out.view(torch.int16).numpy().view(np.uint16)
    with np.errstate(over="ignore"):  # an overflow is found and refused just below
        out = chunk.astype(fmt.STORAGE_DTYPES[dtype], copy=False)
    if out.dtype != chunk.dtype and not np.isfinite(out).all():
        raise ActclustError(f"layer {layer!r} has values beyond the range of {dtype}; import "
                            "it as float32")
    return out


def _release(array, lo: int, hi: int) -> None:
    """Drop rows ``lo:hi`` of a ``np.memmap`` from this process's resident memory once
    copied, so a file larger than memory streams through (as :class:`LayerView` does)."""
    raw = getattr(array, "_mmap", None)
    if raw is None or not hasattr(raw, "madvise") or array.ndim < 1 or not len(array):
        return
    row = array.strides[0]
    if row <= 0 or not array.flags.c_contiguous:
        return
    begin = array.offset + lo * row
    begin -= begin % mmap.PAGESIZE
    end = array.offset + hi * row
    if end > begin:
        try:
            raw.madvise(mmap.MADV_DONTNEED, begin, end - begin)
        except (OSError, ValueError):
            pass


class ArraySource:
    def __init__(self, name: str, array):
        self.name = name
        shape = tuple(int(d) for d in array.shape)
        if len(shape) < 2:
            raise ActclustError(f"layer {name!r} has shape {list(shape)}; a layer is 2-D "
                                "(rows, width) or (documents, positions, width)")
        self.array = TokenRows(array) if len(shape) >= 3 else array
        self.documents_shape = shape[:2] if len(shape) >= 3 else None
        self.n_rows = int(self.array.shape[0])
        self.width = int(np.prod(self.array.shape[1:], dtype=np.int64))
        if _floating(getattr(array, "dtype", None)) is False:
            raise ActclustError(f"layer {name!r} holds {_dtype_name(array)} values, not "
                                "floating-point activations")

    def read(self, n: int, at: int, dtype: str) -> np.ndarray:
        rows = to_rows(self.array[at:at + n], self.name, dtype) \
            if n else np.zeros((0, self.width), fmt.STORAGE_DTYPES[dtype])
        if len(rows) != n:
            raise ActclustError(f"layer {self.name!r} gave {len(rows)} rows at row {at}, "
                                f"{n} expected: its length changed while importing")
        base = self.array.array if isinstance(self.array, TokenRows) else self.array
        if isinstance(base, np.memmap):
            # The writer gets a copy, so the file's pages can go now: a file larger than
            # memory passes through with one chunk resident, not the whole file.
            if np.may_share_memory(rows, base):
                rows = rows.copy()
            scale = self.array.positions if isinstance(self.array, TokenRows) else 1
            _release(base, at // scale, -(-(at + n) // scale))
        return rows

    def finish(self) -> None:
        pass


class BatchSource:
    """An iterable of 2-D batches, re-cut into the chunks the writer asks for."""

    def __init__(self, name: str, batches: Iterable, n_rows: int):
        self.name = name
        self.n_rows = n_rows
        self.width = None
        self.documents_shape = None
        self._it = iter(batches)
        self._left = None  # rows of the last batch not handed out yet
        self._seen = 0

    def _next_batch(self, dtype: str):
        try:
            batch = next(self._it)
        except StopIteration:
            raise ActclustError(f"layer {self.name!r}: its batches hold {self._seen} rows, "
                                f"{self.n_rows} expected (from rows or n_rows)") from None
        rows = to_rows(batch, self.name, dtype)
        if self.width is None:
            self.width = rows.shape[1]
        elif rows.shape[1] != self.width:
            raise ActclustError(f"layer {self.name!r}: a batch of width {rows.shape[1]} after "
                                f"batches of width {self.width}; every row has one width")
        self._seen += len(rows)
        if self._seen > self.n_rows:
            raise ActclustError(f"layer {self.name!r}: its batches hold more than the "
                                f"{self.n_rows} rows expected (from rows or n_rows)")
        return rows

    def read(self, n: int, at: int, dtype: str) -> np.ndarray:
        parts, have = [], 0
        while have < n:
            if self._left is None or not len(self._left):
                self._left = self._next_batch(dtype)
            take = self._left[:n - have]
            self._left = self._left[n - have:]
            parts.append(take)
            have += len(take)
        if not parts:
            return np.zeros((0, self.width or 0), fmt.STORAGE_DTYPES[dtype])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def finish(self) -> None:
        """After the last row: anything still to come means the counts were wrong."""
        extra = 0 if self._left is None else len(self._left)
        for batch in self._it:
            extra += len(batch)
            if extra:
                break
        if extra:
            raise ActclustError(f"layer {self.name!r}: its batches hold more than the "
                                f"{self.n_rows} rows expected (from rows or n_rows)")


def sources(layers, n_rows: Optional[int], rows: Optional[pd.DataFrame]) -> list:
    if not isinstance(layers, Mapping) or not layers:
        raise ActclustError("layers must be a dict of layer name -> array (or iterable of "
                            f"batches), got {type(layers).__name__}"
                            + (" with no layers" if isinstance(layers, Mapping) else ""))
    count = len(rows) if rows is not None else n_rows
    found = []
    for name, value in layers.items():
        fmt.check_name(name)
        if _is_array_like(value):
            found.append(ArraySource(name, value))
        elif isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping)):
            if count is None:
                raise ActclustError(f"layer {name!r} is an iterable of batches: pass rows= "
                                    "or n_rows= so the number of rows is known before writing")
            found.append(BatchSource(name, value, int(count)))
        else:
            raise ActclustError(f"layer {name!r} is a {type(value).__name__}; give an array, "
                                "a tensor or an iterable of 2-D batches")
    counts = {s.name: s.n_rows for s in found}
    expected = {count} if count is not None else set()
    if len(set(counts.values()) | expected) > 1:
        what = ", ".join(f"{k} {v}" for k, v in counts.items())
        if count is not None:
            what += f"; {'rows' if rows is not None else 'n_rows'} {count}"
        raise ActclustError(f"layers must all have the same number of rows: {what}")
    token_shapes = {s.documents_shape for s in found if s.documents_shape is not None}
    if len(token_shapes) > 1:
        raise ActclustError("layers of (documents, positions, ...) must agree on both: "
                            + ", ".join(f"{s.name} {list(s.documents_shape)}" for s in found
                                        if s.documents_shape is not None))
    return found
