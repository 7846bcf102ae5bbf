"""Writing a store: shards stream into hidden temporary files and appear only when whole.

The manifest is the commit point. A shard counts once the manifest lists it for every
layer; anything else found in the directory on ``resume`` is the debris of an interrupted
write and is removed before the capture goes on, so a killed run resumes with exactly the
rows of an uninterrupted one.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ActclustError
from . import format as fmt


class ShardWriter:
    """One ``.npy`` shard of a known number of rows, written incrementally and hashed on the way.

    Knowing the row count up front lets the ``.npy`` header go first, so the sha256 of the
    whole file is computed while writing, without reading the shard back.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> w = ShardWriter(d / "00000.npy", n_rows=3, storage_dtype="float32")
        >>> w.append(np.ones((2, 4), np.float32)); w.append(np.zeros((1, 4), np.float32))
        >>> info = w.commit()
        >>> np.load(d / "00000.npy").shape, info["rows"]
        ((3, 4), 3)
    """

    def __init__(self, path: Path, n_rows: int, storage_dtype: str):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.n_rows = n_rows
        self.dtype = fmt.STORAGE_DTYPES[storage_dtype]
        self.rows_written = 0
        self.trailing_shape = None
        self._fh = None
        self._hash = hashlib.sha256()
        self._pending: list = []

    def _open(self, trailing_shape: tuple) -> None:
        self.trailing_shape = tuple(trailing_shape)
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {
            "descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
            "shape": (self.n_rows, *self.trailing_shape)})
        self._fh = open(self.tmp, "wb")
        self._write(header.getvalue())

    def _write(self, data) -> None:
        # sha256 runs on a second thread (hashlib releases the GIL) while this one copies
        # the same bytes to the file; one FIFO worker keeps every shard's updates in order.
        self._pending.append(_hasher().submit(self._hash.update, data))
        self._fh.write(data)
        while len(self._pending) > 4:
            self._pending.pop(0).result()

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
                "sha256": self._digest()}

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


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    fmt.atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def _is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def prepare_directory(root: Path, resume: bool, overwrite: bool) -> dict | None:
    """Apply the new/resume/overwrite rules; returns the manifest to resume from, if any."""
    if resume and overwrite:
        raise ActclustError("choose one of --resume and --overwrite, not both")
    if root.exists() and not root.is_dir():
        raise ActclustError(f"output {root} exists and is a file, not a directory")
    # Only hidden temporaries means a run killed before its first manifest: nothing to keep.
    has_content = root.exists() and any(not _is_temporary(p) for p in root.iterdir())
    is_store = (root / fmt.MANIFEST).exists()
    if resume:
        if not is_store:
            if has_content:
                raise ActclustError(f"cannot resume: {root} holds files but no {fmt.MANIFEST}")
            return None  # nothing to resume: start fresh
        return fmt.read_manifest(root)
    if has_content:
        if not overwrite:
            raise ActclustError(f"output {root} already exists; pass --resume to finish an "
                                "interrupted capture or --overwrite to replace it")
        if not is_store:
            raise ActclustError(f"refusing to overwrite {root}: it is not an actclust store "
                                f"(no {fmt.MANIFEST}); choose an empty or new directory")
        shutil.rmtree(root)
    return None


class StoreWriter:
    """Writes a whole store shard by shard, following a plan fixed before the first row.

    ``plan`` lists the shards as ``{"index", "doc_start", "doc_stop", "rows"}``; ``header``
    holds the manifest's provenance fields (model, dataset, capture settings). With
    ``resume=True`` an interrupted store with the same header and plan is continued.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp()) / "store"
        >>> plan = [{"index": 0, "doc_start": 0, "doc_stop": 2, "rows": 2}]
        >>> docs = pd.DataFrame({"doc_id": [0, 1], "text": ["a", "b"]})
        >>> w = StoreWriter(root, {"model": {"name": "toy"}}, plan, ["h"], docs, "float32")
        >>> w.begin_shard(plan[0])
        >>> w.append({"h": np.ones((2, 3), np.float32)}, pd.DataFrame({"doc_id": [0, 1]}))
        >>> w.commit_shard(); w.finalize()
        >>> from actclust import ActivationStore
        >>> ActivationStore(root).layer("h").shape
        (2, 3)
    """

    def __init__(self, root, header: dict, plan: list, layers: list, docs: pd.DataFrame,
                 storage_dtype: str, resume: bool = False, overwrite: bool = False):
        from .._util.version import __version__

        self.root = Path(root)
        self.layers = list(layers)
        self.storage_dtype = storage_dtype
        self.plan = plan
        previous = prepare_directory(self.root, resume, overwrite)
        if previous is not None:
            self._check_same_capture(previous, header, plan)
            self.manifest = previous
            if previous["complete"]:  # a kill after the final manifest may leave row parts
                shutil.rmtree(self.root / fmt.ROW_PARTS_DIR, ignore_errors=True)
            else:
                self._remove_debris()
                write_parquet_atomic(docs, self.root / fmt.DOCS)  # in case it never landed
        else:
            self.manifest = {
                "schema_version": fmt.SCHEMA_VERSION, "actclust_version": __version__,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "complete": False, **header, "n_rows": int(sum(s["rows"] for s in plan)),
                "plan": plan, "shards_done": [],
                "layers": {name: {"shape": None, "dtype": storage_dtype, "shards": [],
                                  "complete": False} for name in self.layers},
            }
            # The manifest goes first: from then on the directory is a (resumable) store.
            self.root.mkdir(parents=True, exist_ok=True)
            fmt.write_manifest(self.root, self.manifest)
            for name in self.layers:
                (self.root / fmt.LAYERS_DIR / fmt.layer_dir_name(name)).mkdir(
                    parents=True, exist_ok=True)
            (self.root / fmt.ROW_PARTS_DIR).mkdir(exist_ok=True)
            write_parquet_atomic(docs, self.root / fmt.DOCS)
        self._shard = None

    @staticmethod
    def _check_same_capture(previous: dict, header: dict, plan: list) -> None:
        for key, value in header.items():
            before = previous.get(key)
            if before != value:
                if isinstance(value, dict) and isinstance(before, dict):
                    diffs = [f"{key}.{k}: {before.get(k)!r} then, {value.get(k)!r} now"
                             for k in sorted(set(value) | set(before))
                             if before.get(k) != value.get(k)]
                else:
                    diffs = [f"{key}: {before!r} then, {value!r} now"]
                raise ActclustError(
                    f"cannot resume: the existing store was a different capture "
                    f"({'; '.join(diffs)}); use --overwrite to start again")
        if previous.get("plan") != plan:
            raise ActclustError("cannot resume: the documents or shard size differ from the "
                                "interrupted capture; use the same settings or --overwrite")

    def _remove_debris(self) -> None:
        """Delete files a killed run left that the manifest does not list."""
        listed = {name: {s["file"] for s in info["shards"]}
                  for name, info in self.manifest["layers"].items()}
        for name in self.layers:
            layer_dir = self.root / fmt.LAYERS_DIR / fmt.layer_dir_name(name)
            layer_dir.mkdir(parents=True, exist_ok=True)
            for path in layer_dir.iterdir():
                if path.name not in listed[name]:
                    path.unlink()
        parts = self.root / fmt.ROW_PARTS_DIR
        parts.mkdir(exist_ok=True)
        done = {f"{i:05d}.parquet" for i in self.manifest["shards_done"]}
        for path in parts.iterdir():
            if path.name not in done:
                path.unlink()
        for path in self.root.iterdir():
            if _is_temporary(path):
                path.unlink()

    @property
    def complete(self) -> bool:
        return bool(self.manifest["complete"])

    def pending_shards(self) -> list:
        if self.complete:
            return []
        done = set(self.manifest["shards_done"])
        return [s for s in self.plan if s["index"] not in done]

    def begin_shard(self, entry: dict) -> None:
        self._shard = {
            "entry": entry, "row_parts": [],
            "writers": {name: ShardWriter(
                self.root / fmt.LAYERS_DIR / fmt.layer_dir_name(name) / fmt.shard_name(
                    entry["index"]), entry["rows"], self.storage_dtype)
                for name in self.layers}}

    def append(self, arrays: dict, rows: pd.DataFrame) -> None:
        """Add one batch: ``arrays[layer]`` has one row per row of ``rows``."""
        for name, writer in self._shard["writers"].items():
            writer.append(arrays[name])
        self._shard["row_parts"].append(rows)

    def commit_shard(self) -> None:
        shard, self._shard = self._shard, None
        index = shard["entry"]["index"]
        try:
            infos = {name: w.commit() for name, w in shard["writers"].items()}
            rows = pd.concat(shard["row_parts"], ignore_index=True)
            write_parquet_atomic(rows, self.root / fmt.ROW_PARTS_DIR / f"{index:05d}.parquet")
        except BaseException:
            for w in shard["writers"].values():
                w.abort()
            raise
        for name in self.layers:
            self.manifest["layers"][name]["shards"].append(infos[name])
        self.manifest["shards_done"].append(index)
        fmt.write_manifest(self.root, self.manifest)

    def abort_shard(self) -> None:
        if self._shard is not None:
            for w in self._shard["writers"].values():
                w.abort()
            self._shard = None

    def finalize(self) -> None:
        """Join the row parts into ``rows.parquet``, fill in shapes, mark complete."""
        parts_dir = self.root / fmt.ROW_PARTS_DIR
        order = sorted(self.manifest["shards_done"])
        if order != [s["index"] for s in self.plan]:
            raise RuntimeError("finalize called before every shard was written")
        parts = [pd.read_parquet(parts_dir / f"{i:05d}.parquet") for i in order]
        rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        rows.insert(0, "row", np.arange(len(rows), dtype=np.int64))
        write_parquet_atomic(rows, self.root / fmt.ROWS)
        for name, info in self.manifest["layers"].items():
            info["shards"].sort(key=lambda s: s["file"])
            trailing = self._trailing_shape(name, info)
            info["shape"] = [self.manifest["n_rows"], *trailing]
            info["complete"] = True
        self.manifest["complete"] = True
        self.manifest.pop("shards_done")
        fmt.write_manifest(self.root, self.manifest)
        shutil.rmtree(parts_dir, ignore_errors=True)

    def _trailing_shape(self, name: str, info: dict) -> list:
        for shard in info["shards"]:
            path = self.root / fmt.LAYERS_DIR / fmt.layer_dir_name(name) / shard["file"]
            arr = np.load(path, mmap_mode="r")
            if shard["rows"]:
                return list(arr.shape[1:])
        return [0]
