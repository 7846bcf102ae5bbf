"""Activation files a user already has, read as layers for :func:`~.importing.from_arrays`.

Every reader hands out array-likes that read rows on demand, never the whole file:

* ``.npy``: ``np.load(mmap_mode="r", allow_pickle=False)``, a read-only memory map;
* ``.safetensors``: each tensor a layer, read in row slices through ``safe_open``;
* ``.pt`` / ``.pth``: ``torch.load(weights_only=True, mmap=True)``, so a file holding
  anything but tensors is refused without running any of it; a tensor is one layer, a
  dict of name -> tensor several;
* a folder saved by Hugging Face ``datasets`` (``save_to_disk``), memory-mapped arrow:
  one array column is the layer (SAELens' cached activations keep one
  ``(context_size, d_in)`` array per row under the hook's name, with ``token_ids``).

Arrays of three dimensions ``(documents, positions, width)`` become one row per
(document, position), as in :func:`~.importing.from_arrays`.
"""

from __future__ import annotations

import os
import re
import stat
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from ..errors import ActclustError
from .importing import DEFAULT_SHARD_ROWS, from_arrays
from .reader import ActivationStore

__all__ = ["import_files", "read_file"]

SUFFIXES = (".npy", ".safetensors", ".pt", ".pth")


def _natural(name: str):
    """Sort key putting ``blocks.2`` before ``blocks.10``."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name)]


class _Found:
    """What one file gives: layers (name -> array-like) and optional row/doc tables."""

    def __init__(self, layers: dict, description: str, rows=None, docs=None):
        self.layers, self.description, self.rows, self.docs = layers, description, rows, docs


def _read_npy(path: Path, stack: ExitStack) -> _Found:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:  # object arrays need pickle; a damaged header
        raise ActclustError(f"{path} is not a .npy file of numbers "
                            f"({str(err).splitlines()[0][:120]})") from None
    if not isinstance(array, np.ndarray):
        raise ActclustError(f"{path} is an .npz archive, not a .npy array; save each layer "
                            "as its own .npy")
    return _Found({path.stem: array}, f"{path.name} (numpy .npy, memory-mapped)")


_SAFE_FLOATS = {"F16", "BF16", "F32", "F64"}


class _SafetensorsRows:
    """One tensor of a safetensors file, read by row slices."""

    def __init__(self, handle, key: str):
        self._slice = handle.get_slice(key)
        self.shape = tuple(int(d) for d in self._slice.get_shape())
        self.dtype = None  # checked by the reader, by its safetensors name

    def __getitem__(self, key: slice):
        return self._slice[key]


def _read_safetensors(path: Path, stack: ExitStack) -> _Found:
    from safetensors import safe_open

    try:
        handle = stack.enter_context(safe_open(str(path), framework="pt", device="cpu"))
    except Exception as err:  # safetensors raises its own error type for a bad header
        raise ActclustError(f"{path} is not a readable safetensors file "
                            f"({str(err).splitlines()[0][:120]})") from None
    layers = {}
    for key in sorted(handle.keys(), key=_natural):
        view = _SafetensorsRows(handle, key)
        kind = view._slice.get_dtype()
        if kind not in _SAFE_FLOATS:
            raise ActclustError(f"{path}: tensor {key!r} holds {kind} values, not "
                                "floating-point activations; keep only activations in the file")
        layers[key] = view
    if not layers:
        raise ActclustError(f"{path} holds no tensors")
    return _Found(layers, f"{path.name} (safetensors)")


def _read_pt(path: Path, stack: ExitStack) -> _Found:
    import pickle

    import torch

    def load(mmap: bool):
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)

    try:
        try:
            obj = load(True)
        except RuntimeError as err:
            if "zip" not in str(err).lower() and "mmap" not in str(err).lower():
                raise
            obj = load(False)  # torch.save's legacy format cannot be memory-mapped
            warnings.warn(f"{path} is in torch's legacy format and was read whole into "
                          "memory; save it again with a current torch to stream it",
                          stacklevel=4)
    except pickle.UnpicklingError:
        raise ActclustError(f"{path} holds Python objects other than tensors; actclust loads "
                            "only tensors and never runs code from a file: save a tensor or "
                            "a dict of name -> tensor") from None
    except (RuntimeError, EOFError, ValueError) as err:
        raise ActclustError(f"{path} is not a readable torch file "
                            f"({str(err).splitlines()[0][:120]})") from None
    if torch.is_tensor(obj):
        layers = {path.stem: obj}
    elif isinstance(obj, dict) and obj:
        layers = {}
        for key, value in obj.items():
            if not isinstance(key, str) or not torch.is_tensor(value):
                raise ActclustError(f"{path}: entry {str(key)[:60]!r} is a "
                                    f"{type(value).__name__}, not a tensor; save a tensor or "
                                    "a dict of name -> tensor")
            layers[key] = value
    else:
        raise ActclustError(f"{path} holds a {type(obj).__name__}, not a tensor or a dict of "
                            "name -> tensor")
    return _Found(layers, f"{path.name} (torch, memory-mapped)")


def _leaf(feature):
    """(nesting depth, leaf dtype name) of a datasets feature; depth 0 for a scalar."""
    kind = type(feature).__name__
    if kind.startswith("Array") and kind[-2:-1].isdigit():  # Array2D .. Array5D
        return len(feature.shape), str(feature.dtype)
    if kind in ("List", "LargeList", "Sequence"):
        depth, dtype = _leaf(feature.feature)
        return depth + 1, dtype
    return 0, str(getattr(feature, "dtype", kind))


class _DatasetColumn:
    """One array column of a ``datasets.Dataset``, read by row ranges."""

    def __init__(self, ds, column: str, source: Path):
        self.ds, self.column, self.source = ds.with_format("numpy", columns=[column]), \
            column, source
        first = self._block(0, 1)
        self.shape = (len(ds), *first.shape[1:])
        self.dtype = first.dtype

    def _block(self, lo: int, hi: int) -> np.ndarray:
        values = self.ds[lo:hi][self.column]
        if isinstance(values, list) or getattr(getattr(values, "dtype", None), "kind", "") == "O":
            try:
                values = np.stack([np.asarray(v) for v in values])
            except ValueError:
                raise ActclustError(f"{self.source}: the rows of column {self.column!r} have "
                                    "different lengths; every row must have one shape") from None
        return values

    def __getitem__(self, key: slice):
        lo, hi, _ = key.indices(self.shape[0])
        block = self._block(lo, hi)
        if tuple(block.shape[1:]) != self.shape[1:]:
            raise ActclustError(f"{self.source}: column {self.column!r} has rows of shape "
                                f"{list(block.shape[1:])} after {list(self.shape[1:])}; every "
                                "row must have one shape")
        return block


def _read_dataset(path: Path, column: Optional[str]) -> _Found:
    try:
        import datasets
    except ImportError:
        raise ActclustError(f"{path} is a folder; reading a saved Hugging Face dataset needs "
                            "the datasets package: pip install datasets") from None
    try:
        ds = datasets.load_from_disk(str(path), keep_in_memory=False)
    except (FileNotFoundError, ValueError, OSError) as err:
        raise ActclustError(f"{path} is not a dataset saved with save_to_disk "
                            f"({str(err).splitlines()[0][:120]})") from None
    if isinstance(ds, datasets.DatasetDict):
        if len(ds) != 1:
            raise ActclustError(f"{path} holds the splits {', '.join(ds)}; save the one to "
                                "import on its own (ds['train'].save_to_disk(...))")
        ds = next(iter(ds.values()))
    leaves = {name: _leaf(feature) for name, feature in ds.features.items()}
    arrays = [n for n, (depth, dtype) in leaves.items()
              if depth >= 1 and dtype.startswith(("float", "bfloat"))]
    if column is None:
        if not arrays:
            raise ActclustError(f"{path} has no column of float arrays to import (columns: "
                                f"{', '.join(leaves)})")
        column = arrays[0]
    elif column not in leaves:
        raise ActclustError(f"{path} has no column {column!r}; columns: {', '.join(leaves)}")
    elif leaves[column][0] < 1:
        raise ActclustError(f"{path}: column {column!r} holds one value per row, not an array "
                            "of activations")
    if len(ds) == 0:
        raise ActclustError(f"{path} has no rows: nothing to import")
    layer = _DatasetColumn(ds, column, path)
    per_token = len(layer.shape) >= 3
    positions = layer.shape[1] if per_token else None
    scalars = [n for n, (depth, _) in leaves.items() if depth == 0 and n != column]
    token_columns = [n for n, (depth, _) in leaves.items()
                     if per_token and depth == 1 and n != column and n not in arrays]
    labels = ds.select_columns(scalars).to_pandas() if scalars else None
    description = f"{path.name} (Hugging Face dataset, column {column})"
    if not per_token:
        rows = labels
        if rows is not None and "doc_id" not in rows.columns:
            rows.insert(0, "doc_id", np.arange(len(ds), dtype=np.int64))
        return _Found({column: layer}, description, rows=rows)
    rows = pd.DataFrame({
        "doc_id": np.repeat(np.arange(len(ds), dtype=np.int64), positions),
        "position": np.tile(np.arange(positions, dtype=np.int32), len(ds))})
    for name in token_columns:
        values = np.asarray(ds.with_format("numpy", columns=[name])[name])
        if values.dtype == object or values.shape != (len(ds), positions):
            warnings.warn(f"{path}: column {name!r} is not one value per position; not "
                          "imported", stacklevel=4)
            continue
        # SAELens calls the ids token_ids; a store's rows call them token_id
        rows["token_id" if name == "token_ids" else name] = values.reshape(-1)
    docs = None
    if labels is not None:
        docs = labels.copy()
        if "doc_id" in docs.columns:
            docs = docs.rename(columns={"doc_id": "user_doc_id"})
        docs.insert(0, "doc_id", np.arange(len(ds), dtype=np.int64))
    return _Found({column: layer}, description, rows=rows, docs=docs)


def read_file(path, stack: ExitStack, column: Optional[str] = None):
    """``(layers, rows, docs, description)`` of one file or saved dataset folder.

    Handles opened (safetensors) are closed by ``stack``.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ActclustError(f"{path} does not exist") from None
    if stat.S_ISDIR(mode):
        return _read_dataset(path, column)
    if not stat.S_ISREG(mode):
        raise ActclustError(f"{path} is not a regular file")
    readers = {".npy": _read_npy, ".safetensors": _read_safetensors, ".pt": _read_pt,
               ".pth": _read_pt}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise ActclustError(f"{path}: cannot import {path.suffix or 'a file without suffix'}; "
                            f"give {', '.join(SUFFIXES)} files or a folder saved by datasets")
    if column is not None:
        raise ActclustError(f"--column names a column of a saved dataset; {path} is a "
                            f"{path.suffix} file")
    return reader(path, stack)


def _table(path, what: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise ActclustError(f"{what} table {path} does not exist") from None
    except Exception as err:  # pyarrow's errors vary with the damage
        raise ActclustError(f"{what} table {path} is not a readable parquet file "
                            f"({str(err).splitlines()[0][:120]})") from None


def import_files(files, out, *, layer_names=None, rows=None, docs=None,
                 column: Optional[str] = None, dtype: str = "float32",
                 shard_rows: int = DEFAULT_SHARD_ROWS, overwrite: bool = False, model=None,
                 dataset: Optional[str] = None, progress: bool = True) -> ActivationStore:
    """``actclust import``: the layers of ``files`` as one store at ``out``.

    Args:
        files: paths of ``.npy``, ``.safetensors``, ``.pt``/``.pth`` files or folders
            saved by ``datasets``; their layers together form the store, so all have the
            same number of rows.
        layer_names: new names for the layers, in order (default: the file stem, the
            tensor keys, the dataset column).
        rows, docs: paths of parquet tables (or DataFrames) as :func:`from_arrays` takes;
            they replace the tables a dataset provides.
        column: the array column of a saved dataset (default: its first float array column).
        dtype, shard_rows, overwrite, model, dataset, progress: as in :func:`from_arrays`.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> np.save(folder / "resid.npy", np.ones((4, 3), np.float32))
        >>> store = import_files([folder / "resid.npy"], folder / "s", progress=False)
        >>> store.layers, store.manifest["imported"]
        (['resid'], 'resid.npy (numpy .npy, memory-mapped)')
    """
    from .writer import check_store_target

    if not files:
        raise ActclustError("no files to import")
    check_store_target(out, overwrite=overwrite)  # fail before opening anything large
    with ExitStack() as stack:
        layers, origin, tables, described = {}, {}, [], []
        for file in files:
            found = read_file(file, stack, column)
            for name, array in found.layers.items():
                if name in layers:
                    raise ActclustError(f"layer {name!r} comes from both {origin[name]} and "
                                        f"{file}; name the layers with --layer")
                layers[name], origin[name] = array, file
            if found.rows is not None or found.docs is not None:
                tables.append((file, found.rows, found.docs))
            described.append(found.description)
        if layer_names:
            if len(layer_names) != len(layers):
                raise ActclustError(f"--layer gives {len(layer_names)} names for "
                                    f"{len(layers)} layers ({', '.join(layers)})")
            if len(set(layer_names)) != len(layer_names):
                raise ActclustError(f"--layer names a layer twice: {', '.join(layer_names)}")
            layers = dict(zip(layer_names, layers.values()))
        found_rows, found_docs = _one_table_set(tables)
        rows = _table(rows, "--rows") if isinstance(rows, (str, os.PathLike)) else rows
        docs = _table(docs, "--docs") if isinstance(docs, (str, os.PathLike)) else docs
        if rows is None:
            rows = found_rows
        if docs is None and (rows is found_rows):
            docs = found_docs
        names = [Path(f).name for f in files]
        return from_arrays(out, layers, rows, docs, dtype=dtype, shard_rows=shard_rows,
                           overwrite=overwrite, model=model,
                           dataset=dataset or (Path(files[0]).stem if len(files) == 1
                                               else ",".join(names)),
                           source="; ".join(described), progress=progress)


def _one_table_set(tables: list):
    """The rows and docs tables the files provide; several files may, if they agree."""
    if not tables:
        return None, None
    first, rows, docs = tables[0]
    for other, more_rows, more_docs in tables[1:]:
        for a, b, what in ((rows, more_rows, "rows"), (docs, more_docs, "documents")):
            if (a is None) != (b is None) or (a is not None and not a.equals(b)):
                raise ActclustError(f"{first} and {other} describe their {what} differently "
                                    "(labels or token ids); import them separately or give "
                                    "--rows/--docs")
    return rows, docs
