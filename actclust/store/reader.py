"""Reading a store: memory-mapped layers, the row table (lazy, :mod:`.row_table`), labels,
batches and torch loaders.

Nothing read from disk is trusted: the manifest is validated when the store is opened,
every file is reached inside the store without following a symlink, each shard's header
is checked against the manifest before its rows are used, and the row table must have a
row per stored vector (``docs/safety.md``).
"""

from __future__ import annotations

import mmap
import os
import stat
from functools import cached_property
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pandas as pd

from ..errors import ActclustError, closest
from . import format as fmt
from . import paths
from .row_table import RowTable
from .shards import load_shard


class ActivationStore:
    """A captured store on disk: ``store.layer(name)`` gives the activations of one layer.

    Args:
        root: the store directory written by :func:`actclust.capture`.
        allow_incomplete: open a store whose capture was interrupted (for inspection);
            by default that is an error that says how to resume.

    Example:
        >>> import actclust, tempfile
        >>> out = tempfile.mkdtemp() + "/store"
        >>> store = actclust.capture("minilm", ["a cat", "a dog"], "blocks.0.hook_out",
        ...                          pool="mean", out=out, progress=False)
        >>> store.layers, len(store), store.layer("blocks.0.hook_out").shape
        (['blocks.0.hook_out'], 2, (2, 384))
    """

    def __init__(self, root, allow_incomplete: bool = False):
        if not isinstance(root, (str, os.PathLike)) or not str(root).strip():
            raise ActclustError(f"a store is a directory path, got {root!r}")
        self.root = Path(root)
        self.manifest = fmt.read_manifest(self.root)
        if not self.manifest["complete"]:
            if not allow_incomplete:
                done = len(self.manifest.get("shards_done", []))
                raise ActclustError(
                    f"store {self.root} is incomplete: its capture stopped after {done} of "
                    f"{len(self.manifest['plan'])} shards. Run the same capture again with "
                    "--resume to finish it.")
        else:
            n = self._table_length(fmt.ROWS)
            if n != len(self):
                raise ActclustError(f"store {self.root} is damaged: {fmt.ROWS} has {n} rows, "
                                    f"its layers {len(self)}; run `actclust verify "
                                    f"{self.root}` and capture it again")

    def __repr__(self) -> str:
        dataset = self.manifest.get("dataset", {}).get("name")
        return (f"ActivationStore({str(self.root)!r}, model={self.model_name!r}, "
                f"dataset={dataset!r}, rows={len(self)}, layers={self.layers})")

    def _repr_html_(self) -> str:  # Jupyter's rich display
        from .summary import store_html

        return store_html(self)

    def _read_table(self, name: str, **kwargs) -> pd.DataFrame:
        with paths.open_in_store(self.root, name, what="table") as fh:
            try:
                return pd.read_parquet(fh, **kwargs)
            except Exception as err:  # pyarrow's errors for a damaged file vary by damage
                raise ActclustError(f"{self.root / name} is not a readable parquet table "
                                    f"({type(err).__name__}); run `actclust verify "
                                    f"{self.root}`") from None

    def _table_length(self, name: str) -> int:
        import pyarrow.parquet as pq

        with paths.open_in_store(self.root, name, what="table") as fh:
            try:
                return int(pq.ParquetFile(fh).metadata.num_rows)
            except Exception as err:
                raise ActclustError(f"{self.root / name} is not a readable parquet table "
                                    f"({type(err).__name__}); run `actclust verify "
                                    f"{self.root}`") from None

    def __len__(self) -> int:
        return int(self.manifest["n_rows"])

    @property
    def complete(self) -> bool:
        return bool(self.manifest["complete"])

    @property
    def layers(self) -> list[str]:
        """Captured layer names, in capture order."""
        return list(self.manifest["layers"])

    @property
    def model_name(self) -> str:
        return self.manifest.get("model", {}).get("name", "?")

    def layer(self, name: str) -> "LayerView":
        """The activations of one layer as a memory-mapped, sliceable view."""
        if not isinstance(name, str):
            raise ActclustError(f"a layer is named by a string, got {type(name).__name__}; "
                                f"store {self.root} holds {', '.join(self.layers)}")
        if name not in self.manifest["layers"]:
            raise ActclustError(f"layer {name!r} is not in store {self.root}; it holds "
                                f"{', '.join(self.layers)} ({closest(name, self.layers)})")
        return LayerView(self, name)

    def __getitem__(self, name: str) -> "LayerView":
        return self.layer(name)

    @cached_property
    def docs(self) -> pd.DataFrame:
        """One row per document: ``doc_id``, text and document-level labels."""
        return self._read_table(fmt.DOCS)

    @cached_property
    def rows(self) -> RowTable:
        """One row per stored vector, joined with its document's columns, read lazily.

        Row ``i`` describes row ``i`` of every layer: ``row``, ``doc_id``, ``position``
        and ``token`` (token-level stores), token-level label columns, then the
        document's columns (``text`` and labels). A :class:`~.row_table.RowTable`:
        ``rows["topic"]`` reads one column, ``rows[["doc_id", "token"]]`` a few,
        ``rows.take(index)`` whole rows (their documents joined for those rows only),
        ``rows.to_pandas()`` the whole joined table; other DataFrame methods fall back to
        ``to_pandas()`` (the whole table in memory: text repeated on every token row).

        Example:
            >>> store.rows.take([0, 1])[["doc_id", "token", "text"]]  # doctest: +SKIP
        """
        return RowTable(self.root, len(self))

    @property
    def columns(self) -> list[str]:
        """Every row column: ``rows.parquet``'s, then ``docs.parquet``'s (without its
        ``doc_id``), read from the tables' schemas alone."""
        return list(self.rows.columns)

    def column(self, name: str) -> np.ndarray:
        """One column, one value per row, aligned with every layer; only that column is
        read. A document column (``text``, ``topic``) is read from ``docs.parquet`` and
        spread over its rows; text comes back as an object array holding one string per
        distinct value (ten million token rows of a few hundred tokens: ten million
        pointers, not ten million strings).

        Example:
            >>> store.column("token")[:3]  # doctest: +SKIP
            array(['[CLS]', 'the', 'cat'], dtype=object)
        """
        if not isinstance(name, str) or name not in self.rows.columns:
            raise ActclustError(f"column {name!r} is not in store {self.root}; columns: "
                                f"{', '.join(self.columns)}")
        return self.rows.values(name)

    @property
    def label_columns(self) -> list[str]:
        """Columns of :attr:`rows` usable as labels (everything but ids, text, tokens)."""
        return self.rows.label_columns

    def labels(self, column: str) -> np.ndarray:
        """Values of a label column, one per row, aligned with every layer.

        Example:
            >>> store.labels("topic")[:3]  # doctest: +SKIP
            array(['sports', 'sports', 'cooking'], dtype=object)
        """
        rows = self.rows
        if not isinstance(column, str) or column not in rows.columns:
            raise ActclustError(f"label column {column!r} is not in store {self.root}; "
                                f"label columns: {', '.join(self.label_columns)}")
        if rows.is_list_column(column):
            raise ActclustError(f"label column {column!r} of store {self.root} holds lists "
                                "or arrays, not one label per row")
        return rows.values(column)

    def size_bytes(self) -> int:
        """Bytes on disk taken by the whole store directory (symlinks are not followed)."""
        total = 0
        for folder, _, files in os.walk(self.root):
            for name in files:
                st = os.lstat(os.path.join(folder, name))
                total += st.st_size if stat.S_ISREG(st.st_mode) else 0
        return total

    def verify(self) -> list[str]:
        """Recompute checksums and check shapes and row alignment; returns the problems.

        An empty list means the store is intact.
        """
        from .verify import verify_store

        return verify_store(self.root)


def open_store(store) -> ActivationStore:
    """An :class:`ActivationStore` from a store or its path.

    Example:
        >>> open_store(3)
        Traceback (most recent call last):
        ...
        actclust.errors.ActclustError: expected an ActivationStore or a store directory, got int
    """
    if isinstance(store, ActivationStore):
        return store
    if isinstance(store, (str, Path)):
        return ActivationStore(store)
    raise ActclustError(f"expected an ActivationStore or a store directory, got "
                        f"{type(store).__name__}")


GATHER_SPAN_BYTES = 2 ** 26  # a gather drops a shard's pages once per 64 MB of it


class LayerView:
    """One layer of a store, read lazily from its memory-mapped shards.

    Index it like an array (``view[10:20]``, ``view[[3, 1]]``, ``view[mask]``), turn it
    into one array with :meth:`to_numpy`, stream it with :meth:`iter_batches`, or feed it
    to torch with :meth:`dataloader`. ``np.asarray(view)`` works, so scikit-learn takes it.
    bfloat16 layers are widened to float32 when read.

    Example:
        >>> import tempfile
        >>> import actclust
        >>> store = actclust.capture("minilm", "topics", "blocks.0.hook_out", pool="mean",
        ...                          out=tempfile.mkdtemp() + "/s", limit=8, progress=False)
        >>> view = store.layer("blocks.0.hook_out")
        >>> view.shape, view[2:4].shape, str(view.to_numpy().dtype)
        ((8, 384), (2, 384), 'float32')
    """

    def __init__(self, store: ActivationStore, name: str):
        self.store = store
        self.name = name
        info = store.manifest["layers"][name]
        self.storage_dtype = info["dtype"]
        self._shard_info = info["shards"]
        self._trailing = tuple(info["shape"][1:]) if info["shape"] else None
        self.shape = tuple(info["shape"]) if info["shape"] else (0,)
        counts = [s["rows"] for s in self._shard_info]
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __repr__(self) -> str:
        return f"LayerView({self.name!r}, shape={self.shape}, dtype={self.storage_dtype})"

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def dtype(self) -> np.dtype:
        """The dtype arrays come back in (float32 for bfloat16 storage)."""
        return np.dtype(np.float32 if self.storage_dtype == "bfloat16"
                        else fmt.STORAGE_DTYPES[self.storage_dtype])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @cached_property
    def shards(self) -> list[np.memmap]:
        """One read-only memory map per shard file, in row order.

        Every shard's header (shape, dtype, order) and size are checked against the
        manifest before any is returned: an odd shard is an error naming it.
        """
        maps, trailing = [], self._trailing
        for info in self._shard_info:
            arr = load_shard(self.store.root, self.name, info, self.storage_dtype, trailing)
            if trailing is None and info["rows"]:  # incomplete store: the first sets it
                trailing = arr.shape[1:]
            maps.append(arr)
        return maps

    def _decode(self, arr: np.ndarray) -> np.ndarray:
        return fmt.decode(arr, self.storage_dtype)

    def to_numpy(self) -> np.ndarray:
        """The whole layer as one array.

        A one-shard layer (the default up to ``shard_rows`` rows) comes back as a read-only
        memory map, so nothing is loaded until touched. A layer of several shards is
        concatenated in memory; for layers larger than memory use :meth:`iter_batches`.
        bfloat16 layers are decoded to float32 in memory.
        """
        if len(self.shards) == 1 and self.storage_dtype != "bfloat16":
            return self.shards[0]
        if not self.shards:
            return np.zeros(self.shape, self.dtype)
        return self._decode(np.concatenate(self.shards))

    def __array__(self, dtype=None, copy=None):
        arr = self.to_numpy()
        return np.asarray(arr, dtype=dtype) if dtype is not None else np.asarray(arr)

    def _take(self, rows: np.ndarray) -> np.ndarray:
        """Gather rows (int64 indices, any order) across shards.

        Rows are read in sorted order (kinder to the memory map), and a gather that spans
        more than ``GATHER_SPAN_BYTES`` of a shard drops each span's pages from this
        process's resident set once copied: a sample spread over a layer larger than
        memory keeps about one span resident, not the whole layer.
        """
        out = np.empty((len(rows), *self.shape[1:]), fmt.STORAGE_DTYPES[self.storage_dtype])
        row_bytes = max(1, out[:1].nbytes)
        span = max(1, GATHER_SPAN_BYTES // row_bytes)
        shard_of = np.searchsorted(self._offsets, rows, side="right") - 1
        for s in np.unique(shard_of):
            where = np.nonzero(shard_of == s)[0]
            local = rows[where] - self._offsets[s]
            order = np.argsort(local, kind="stable")
            where, local = where[order], local[order]
            if local[-1] - local[0] < span:
                out[where] = self.shards[s][local]
                continue
            cuts = np.searchsorted(local, np.arange(local[0], local[-1] + 1, span))
            for lo, hi in zip(cuts, np.r_[cuts[1:], len(local)]):
                if hi > lo:
                    out[where[lo:hi]] = self.shards[s][local[lo:hi]]
                    first = self._offsets[s] + local[lo]
                    self._release(first, self._offsets[s] + local[hi - 1] + 1)
        return self._decode(out)

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        n = len(self)
        if isinstance(key, (int, np.integer)):
            index = int(key) + n if key < 0 else int(key)
            if not 0 <= index < n:
                raise IndexError(f"row {key} out of range for layer of {n} rows")
            result = self._take(np.array([index]))[0]
        elif isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step == 1:
                result = self._slice(start, stop)
            else:
                result = self._take(np.arange(start, stop, step, dtype=np.int64))
        else:
            key = np.asarray(key)
            if key.dtype == bool:
                if key.shape != (n,):
                    raise IndexError(f"boolean index of shape {key.shape} for {n} rows")
                key = np.nonzero(key)[0]
            key = key.astype(np.int64)
            if key.size and (key.min() < -n or key.max() >= n):
                raise IndexError(f"row index out of range for layer of {n} rows")
            result = self._take(np.where(key < 0, key + n, key))
        return result[(slice(None), *rest)] if rest else result

    def _slice(self, start: int, stop: int) -> np.ndarray:
        pieces = []
        for s, shard in enumerate(self.shards):
            lo, hi = self._offsets[s], self._offsets[s + 1]
            if hi <= start or lo >= stop:
                continue
            pieces.append(shard[max(start - lo, 0):min(stop, hi) - lo])
        if not pieces:
            return np.zeros((0, *self.shape[1:]), self.dtype)
        return self._decode(pieces[0] if len(pieces) == 1 else np.concatenate(pieces))

    def _release(self, start: int, stop: int) -> None:
        """Drop rows ``start:stop`` from this process's resident memory (not from the page
        cache): a full pass over a layer larger than memory keeps about one batch resident
        while reading through the memory map without copies."""
        page = mmap.PAGESIZE
        row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * \
            fmt.STORAGE_DTYPES[self.storage_dtype].itemsize
        for s, shard in enumerate(self.shards):
            lo, hi = self._offsets[s], self._offsets[s + 1]
            raw = getattr(shard, "_mmap", None)
            if hi <= start or lo >= stop or raw is None or not hasattr(raw, "madvise"):
                continue
            begin = shard.offset + (max(start - lo, 0)) * row_bytes
            end = shard.offset + (min(stop, hi) - lo) * row_bytes
            begin -= begin % page
            if end > begin:
                raw.madvise(mmap.MADV_DONTNEED, begin, end - begin)

    def iter_batches(self, batch_size: int = 4096, shuffle: bool = False, seed: int = 0,
                     labels: Optional[str] = None, dtype=None) -> Iterator:
        """Yield the layer in batches of ``batch_size`` rows (the last may be shorter).

        With ``shuffle=True`` the row order is a permutation drawn from ``seed``; with
        ``labels="topic"`` each item is ``(X, y)`` with that label column.

        Example:
            >>> for X, y in view.iter_batches(256, shuffle=True, labels="topic"):  # doctest: +SKIP
            ...     ...
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        y_all = self.store.labels(labels) if labels is not None else None
        n = len(self)
        order = np.random.default_rng(seed).permutation(n) if shuffle else None
        previous = None
        for start in range(0, n, batch_size):
            if previous is not None:
                self._release(*previous)
            if order is None:
                X = self._slice(start, min(start + batch_size, n))
                idx = slice(start, start + len(X))
                previous = (start, start + len(X))
            else:
                idx = order[start:start + batch_size]
                X = self._take(idx)
            if dtype is not None:
                X = X.astype(dtype, copy=False)
            yield X if y_all is None else (X, y_all[idx])

    def torch_dataset(self, batch_size: int = 4096, shuffle: bool = False, seed: int = 0,
                      labels: Optional[str] = None):
        """A torch ``IterableDataset`` of float32 batches (split across DataLoader workers)."""
        from .torch_data import LayerIterable

        return LayerIterable(self, batch_size, shuffle, seed, labels)

    def dataloader(self, batch_size: int = 4096, shuffle: bool = False, seed: int = 0,
                   labels: Optional[str] = None, num_workers: int = 0):
        """A torch ``DataLoader`` yielding float32 tensors of ``batch_size`` rows.

        Example:
            >>> for xb in view.dataloader(512, shuffle=True):  # doctest: +SKIP
            ...     loss = model(xb)
        """
        import torch.utils.data

        return torch.utils.data.DataLoader(
            self.torch_dataset(batch_size, shuffle, seed, labels), batch_size=None,
            num_workers=num_workers)
