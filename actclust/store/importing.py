"""Activations a user already has, written as an ordinary store without capturing again.

:func:`from_arrays` takes each layer as an array-like (a numpy array or memory map, a torch
tensor, anything with ``.shape`` and row slicing) or as an iterable of 2-D batches, and
streams it through :class:`~actclust.store.writer.StoreWriter` a bounded chunk at a time:
a memory-mapped ``.npy`` larger than memory imports with about one chunk resident. Arrays
of three or more dimensions are ``(documents, positions, ...)``: each (document, position)
becomes a row, as a capture with ``pool="none"`` stores tokens.

Everything that can be checked before writing is (row counts, dtypes, the tables); what
can only be seen while reading (a batch of the wrong width, too few or too many batches,
NaN) stops the import and removes what it wrote, so a failed import never leaves a store
behind, let alone one that looks complete.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Iterable, Mapping
from typing import Optional

import numpy as np
import pandas as pd

from ..errors import ActclustError
from . import format as fmt
from . import paths
from .lock import StoreLock
from .reader import ActivationStore
from .writer import StoreWriter, check_store_target

__all__ = ["from_arrays", "DEFAULT_SHARD_ROWS"]

DEFAULT_SHARD_ROWS = 262_144  # as a capture: most stores are one shard per layer
CHUNK_BYTES = 64 << 20  # rows read from every source at a time, at most about this much


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


class _ArraySource:
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
        rows = to_rows(self.array[at:at + n], self.name, dtype).reshape(n, -1) \
            if n else np.zeros((0, self.width), fmt.STORAGE_DTYPES[dtype])
        if len(rows) != n:
            raise ActclustError(f"layer {self.name!r} gave {len(rows)} rows at row {at}, "
                                f"{n} expected: its length changed while importing")
        base = self.array.array if isinstance(self.array, TokenRows) else self.array
        if isinstance(base, np.memmap):
            scale = self.array.positions if isinstance(self.array, TokenRows) else 1
            _release(base, at // scale, -(-(at + n) // scale))
        return rows

    def finish(self) -> None:
        pass


class _BatchSource:
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


def _sources(layers, n_rows: Optional[int], rows: Optional[pd.DataFrame]) -> list:
    if not isinstance(layers, Mapping) or not layers:
        raise ActclustError("layers must be a dict of layer name -> array (or iterable of "
                            f"batches), got {type(layers).__name__}"
                            + (" with no layers" if isinstance(layers, Mapping) else ""))
    count = len(rows) if rows is not None else n_rows
    found = []
    for name, value in layers.items():
        fmt.check_name(name)
        if _is_array_like(value):
            found.append(_ArraySource(name, value))
        elif isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping)):
            if count is None:
                raise ActclustError(f"layer {name!r} is an iterable of batches: pass rows= "
                                    "or n_rows= so the number of rows is known before writing")
            found.append(_BatchSource(name, value, int(count)))
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


def _default_rows(sources: list, n_rows: int) -> pd.DataFrame:
    shapes = [s.documents_shape for s in sources if s.documents_shape is not None]
    if shapes:
        documents, positions = shapes[0]
        return pd.DataFrame({
            "doc_id": np.repeat(np.arange(documents, dtype=np.int64), positions),
            "position": np.tile(np.arange(positions, dtype=np.int32), documents)})
    return pd.DataFrame({"doc_id": np.arange(n_rows, dtype=np.int64)})


def _parquet_ready(frame: pd.DataFrame, what: str) -> None:
    import pyarrow as pa

    if any(not isinstance(c, str) for c in frame.columns):
        raise ActclustError(f"the {what} table has column names that are not strings: "
                            f"{[c for c in frame.columns if not isinstance(c, str)][:3]}")
    try:
        pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError) as err:
        raise ActclustError(f"the {what} table cannot be stored as parquet "
                            f"({str(err).splitlines()[0][:160]}); give each column one "
                            "kind of value") from None


def _tables(rows: Optional[pd.DataFrame], docs: Optional[pd.DataFrame], sources: list,
            n_rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The row and document tables as the store keeps them: ``doc_id`` 0..n_docs-1 in the
    order of ``docs`` (the user's own ids kept as ``user_doc_id``), every row's document
    present."""
    for frame, what in ((rows, "rows"), (docs, "docs")):
        if frame is not None and not isinstance(frame, pd.DataFrame):
            raise ActclustError(f"{what} must be a pandas DataFrame, got "
                                f"{type(frame).__name__}")
    rows = _default_rows(sources, n_rows) if rows is None else \
        rows.reset_index(drop=True).copy()
    if "row" in rows.columns:
        if not np.array_equal(rows["row"].to_numpy(), np.arange(len(rows))):
            raise ActclustError("the rows table has a 'row' column that is not 0..n-1; the "
                                "store numbers rows itself: rename or drop it")
        rows = rows.drop(columns="row")
    if "doc_id" not in rows.columns:
        rows.insert(0, "doc_id", np.arange(len(rows), dtype=np.int64))
    if rows["doc_id"].isna().any():
        raise ActclustError("the rows table has rows without a doc_id")
    if docs is None:
        docs = pd.DataFrame({"doc_id": pd.unique(rows["doc_id"])})
    else:
        docs = docs.reset_index(drop=True).copy()
        if "doc_id" not in docs.columns:
            raise ActclustError("the docs table has no doc_id column: one row per document, "
                                "with the doc_id the rows table uses")
    ids = docs["doc_id"]
    if ids.isna().any() or ids.duplicated().any():
        raise ActclustError("the docs table's doc_id must be unique and never missing")
    index = pd.Index(ids)
    position = index.get_indexer(rows["doc_id"])
    if (position < 0).any():
        missing = rows["doc_id"][position < 0].iloc[0]
        raise ActclustError(f"row {int(np.argmax(position < 0))} belongs to document "
                            f"{missing!r}, which the docs table does not have")
    if not (ids.dtype.kind in "iu" and np.array_equal(ids.to_numpy(), np.arange(len(ids)))):
        if "user_doc_id" in docs.columns or "user_doc_id" in rows.columns:
            raise ActclustError("the tables have both doc_id and user_doc_id; actclust "
                                "numbers documents itself and keeps yours as user_doc_id")
        docs = docs.rename(columns={"doc_id": "user_doc_id"})
        docs.insert(0, "doc_id", np.arange(len(docs), dtype=np.int64))
    docs["doc_id"] = docs["doc_id"].astype(np.int64)
    rows["doc_id"] = position.astype(np.int64)
    _parquet_ready(rows, "rows")
    _parquet_ready(docs, "docs")
    return rows, docs


def shard_plan(doc_of_row: np.ndarray, shard_rows: int) -> list:
    """Shards of at most ``shard_rows`` rows. Rows in document order are cut between
    documents, as a capture cuts them (a document longer than ``shard_rows`` gets a shard
    of its own); rows in any other order are cut every ``shard_rows`` rows.

    Example:
        >>> [s["rows"] for s in shard_plan(np.array([0, 0, 1, 1, 1, 2]), 4)]
        [2, 4]
    """
    n = len(doc_of_row)
    cuts = [0]
    if n and np.all(np.diff(doc_of_row) >= 0):
        starts = np.flatnonzero(np.r_[True, doc_of_row[1:] != doc_of_row[:-1]]).tolist()
        starts.append(n)
        for lo, hi in zip(starts[:-1], starts[1:]):
            if lo > cuts[-1] and hi - cuts[-1] > shard_rows:
                cuts.append(lo)
    else:
        cuts = list(range(0, n, shard_rows)) or [0]
    cuts.append(n)
    plan = []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        docs = doc_of_row[lo:hi]
        start = int(docs.min()) if hi > lo else 0
        plan.append({"index": len(plan), "doc_start": start,
                     "doc_stop": int(docs.max()) + 1 if hi > lo else start, "rows": hi - lo})
    return plan


def _fingerprint(docs: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    try:
        digest.update(pd.util.hash_pandas_object(docs, index=False).values.tobytes())
    except TypeError:  # unhashable cells (lists): their parquet bytes identify them
        digest.update(docs.to_parquet(index=False))
    digest.update(",".join(map(str, docs.columns)).encode())
    return digest.hexdigest()


def _remove_partial(root, created: bool) -> None:
    """Remove what a failed import wrote (under the lock, only a store's own entries),
    and the folder itself when the import created it."""
    lock = StoreLock(root)
    try:
        lock.acquire()
    except ActclustError:
        return  # someone else writes there now: theirs to finish; it is incomplete anyway
    try:
        if paths.classify(root)[0] == "store":
            paths.remove_entries(paths.store_entries(root), keep=lock.path)
    except (ActclustError, OSError):
        pass  # what cannot be removed is an incomplete store, refused by every reader
    finally:
        lock.release()
    if created:
        try:
            root.rmdir()
        except OSError:
            pass


def from_arrays(out, layers, rows: Optional[pd.DataFrame] = None,
                docs: Optional[pd.DataFrame] = None, *, n_rows: Optional[int] = None,
                dtype: str = "float32", shard_rows: int = DEFAULT_SHARD_ROWS,
                overwrite: bool = False, model=None, dataset: Optional[str] = None,
                source: Optional[str] = None, progress: bool = True) -> ActivationStore:
    """Write activations you already have as a store at ``out``.

    Args:
        out: the store directory to create (refused if it exists, unless ``overwrite``
            and it is a store).
        layers: layer name -> a 2-D array-like ``(rows, width)``; an array-like of three or
            more dimensions ``(documents, positions, ...)``, one row per (document,
            position) with the rest flattened; or an iterable of 2-D batches (then
            ``rows`` or ``n_rows`` says how many rows there are). Array-likes are numpy
            arrays and memory maps, torch tensors, or anything with ``.shape`` and row
            slicing. Every layer has the same number of rows.
        rows: one row per vector, in layer order: ``doc_id`` and any token-level columns
            (``position``, ``token``, labels). Default: one document per row, or for
            ``(documents, positions, ...)`` arrays ``doc_id`` and ``position``.
        docs: one row per document: ``doc_id``, ``text`` and document labels. Default:
            the doc ids of ``rows``. Ids that are not ``0..n-1`` are kept as
            ``user_doc_id`` and renumbered.
        n_rows: the number of rows, when layers are iterables and ``rows`` is not given.
        dtype: storage dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        shard_rows: rows per shard file.
        overwrite: replace an existing store at ``out``.
        model: the model's name, recorded in the manifest.
        dataset: the dataset's name, recorded in the manifest.
        source: where the activations came from, recorded as the manifest's
            ``imported`` (default: the kinds of the layers given).
        progress: show a progress bar.

    Returns:
        The :class:`~actclust.ActivationStore` written.

    Memory: each source is read ``CHUNK_BYTES`` (64 MiB) of rows at a time, so a memory
    map or a memory-mapped tensor larger than memory imports in bounded memory.

    Example:
        >>> import tempfile
        >>> X = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
        >>> labels = pd.DataFrame({"doc_id": range(6), "kind": list("aabbcc")})
        >>> store = from_arrays(tempfile.mkdtemp() + "/s", {"h": X}, labels, progress=False)
        >>> np.array_equal(store.layer("h")[:], X), store.labels("kind")[:3].tolist()
        (True, ['a', 'a', 'b'])
    """
    if dtype not in fmt.STORAGE_DTYPES:
        raise ActclustError(f"unknown storage dtype {dtype!r}; choose one of "
                            f"{', '.join(fmt.STORAGE_DTYPES)}")
    for what, value in (("shard_rows", shard_rows), ("n_rows", n_rows)):
        if value is not None and (isinstance(value, bool) or
                                  not isinstance(value, (int, np.integer)) or value < 1):
            raise ActclustError(f"{what} must be a whole number of at least 1, got {value!r}")
    if out is None:
        raise ActclustError("no output directory: pass out=... (--out on the command line)")
    root = check_store_target(out, overwrite=overwrite)
    sources = _sources(layers, n_rows, rows)
    total = sources[0].n_rows
    if total == 0:
        raise ActclustError("the layers have no rows: nothing to import")
    rows, docs = _tables(rows, docs, sources, total)
    plan = shard_plan(rows["doc_id"].to_numpy(), int(shard_rows))
    names = [s.name for s in sources]
    model_name = model if isinstance(model, str) else \
        getattr(getattr(model, "cfg", None), "model_name", None) or \
        (type(model).__name__ if model is not None else "imported")
    if source is None:
        kinds = sorted({type(s.array).__name__ if isinstance(s, _ArraySource) else
                        "batches" for s in sources})
        source = "in-memory " + ", ".join(kinds)
    header = {
        "model": {"name": str(model_name), "kind": "imported"},
        "dataset": {"name": str(dataset or "imported"), "fingerprint": _fingerprint(docs),
                    "n_docs": len(docs)},
        "capture": {"layers": names, "pool": "none", "max_length": None,
                    "storage_dtype": dtype, "exclude_special": False,
                    "shard_rows": int(shard_rows), "truncated_docs": 0},
        "imported": str(source),
    }
    created = not os.path.lexists(root)
    writer = StoreWriter(root, header, plan, names, docs, dtype, overwrite=overwrite)
    try:
        _write(writer, sources, rows, dtype, progress)
    except BaseException:
        writer.close()
        _remove_partial(root, created)
        raise
    return ActivationStore(root)


def _write(writer: StoreWriter, sources: list, rows: pd.DataFrame, dtype: str,
           progress: bool) -> None:
    from .._progress import tqdm

    # a float64 source row and its stored copy, for the widest layer (batches: unknown yet)
    row_bytes = max(s.width or 1 for s in sources) * 12
    chunk = max(1, CHUNK_BYTES // row_bytes)
    bar = tqdm(total=len(rows), unit="row", unit_scale=True, disable=not progress,
               desc="import")
    try:
        at = 0
        for shard in writer.plan:
            writer.begin_shard(shard)
            end = at + shard["rows"]
            while at < end:
                n = min(chunk, end - at)
                writer.append({s.name: s.read(n, at, dtype) for s in sources},
                              rows.iloc[at:at + n])
                at += n
                bar.update(n)
            writer.commit_shard()
        for s in sources:
            s.finish()
        writer.finalize()
    except OSError as err:
        raise ActclustError(f"cannot write store {writer.root}: {err.strerror or err}; "
                            "nothing was kept") from None
    except ValueError as err:
        if isinstance(err, ActclustError):
            raise
        raise ActclustError(f"cannot import into {writer.root}: {err}") from None
    finally:
        bar.close()
