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
import os
from typing import Optional

import numpy as np
import pandas as pd

from ..errors import ActclustError
from . import format as fmt
from . import paths
from .import_sources import ArraySource, sources as layer_sources
from .lock import StoreLock
from .reader import ActivationStore
from .writer import StoreWriter, check_store_target

__all__ = ["from_arrays", "shard_plan", "DEFAULT_SHARD_ROWS"]

DEFAULT_SHARD_ROWS = 262_144  # as a capture: most stores are one shard per layer
CHUNK_BYTES = 64 << 20  # rows read from every source at a time, at most about this much


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
                source: Optional[str] = None, progress: bool = True,
                checksum: str = "xxh3") -> ActivationStore:
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
        checksum: each shard's checksum in the manifest: ``"xxh3"`` (fast) or
            ``"sha256"``.

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
    fmt.checksum_field(checksum)  # an unknown one fails before any file is touched
    root = check_store_target(out, overwrite=overwrite)
    sources = layer_sources(layers, n_rows, rows)
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
        kinds = sorted({type(s.array).__name__ if isinstance(s, ArraySource) else
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
    writer = StoreWriter(root, header, plan, names, docs, dtype, overwrite=overwrite,
                         checksum=checksum)
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
