"""Writing a store: shards stream into hidden temporary files and appear only when whole.

The manifest is the commit point. A shard counts once the manifest lists it for every
layer; anything else found in the directory on ``resume`` is the debris of an interrupted
write and is removed before the capture goes on, so a killed run resumes with exactly the
rows of an uninterrupted one. A writer holds the store's lock (:mod:`.lock`) for its whole
run, acts only on a folder that is a store by content, and deletes only files a store
consists of (:mod:`.paths`).
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ActclustError
from . import format as fmt
from . import paths
from .lock import StoreLock
from .outputs import enclosing_store
from .resume import check_complete, drop_damaged_shards, remove_debris
from .shards import ShardWriter, open_shard

__all__ = ["StoreWriter", "ShardWriter", "check_store_target", "prepare_directory",
           "write_parquet_atomic"]


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    fmt.atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def prepare_directory(root: Path, resume: bool, overwrite: bool) -> str:
    """Check that ``root`` may be written in this mode, before anything is touched there.

    Returns what ``root`` is (``"absent"``, ``"empty"`` or ``"store"``). Refused: both
    modes at once; paths :func:`paths.check_output_path` refuses; a folder that is not an
    actclust store (by its manifest's content, never by the file name); an existing store
    without ``resume`` or ``overwrite``; for ``overwrite``, a store folder holding anything
    a store does not consist of (named in the error).
    """
    if resume and overwrite:
        raise ActclustError("choose one of --resume and --overwrite, not both")
    state, why = paths.classify(root)
    if state == "foreign":
        if not root.is_dir() or root.is_symlink():
            raise ActclustError(f"output {root} exists and is not a directory")
        if resume:
            raise ActclustError(f"cannot resume: {root} is not an actclust store ({why})")
        if overwrite:
            raise ActclustError(f"refusing to overwrite {root}: it is not an actclust store "
                                f"({why}); choose an empty or new directory")
        raise ActclustError(f"output {root} already exists and is not an actclust store "
                            f"({why}); choose a new or empty directory")
    if state == "store" and not (resume or overwrite):
        raise ActclustError(f"output {root} already exists; pass --resume to finish an "
                            "interrupted capture or --overwrite to replace it")
    if state == "store" and overwrite:
        paths.store_entries(root)  # refuses before anything is deleted
    return state


def checked_output(root, resume: bool, overwrite: bool) -> Path:
    """The absolute output path, after the checks every store writer makes first: one
    mode at a time, a path :func:`paths.check_output_path` accepts, not inside a store."""
    if resume and overwrite:
        raise ActclustError("choose one of --resume and --overwrite, not both")
    path = paths.check_output_path(root, destructive=resume or overwrite)
    outer = enclosing_store(path.parent)
    if outer is not None:
        raise ActclustError(f"output {root} is inside the store {outer}; a store's files "
                            "are its own: write elsewhere")
    return path


def check_store_target(root, resume: bool = False, overwrite: bool = False) -> Path:
    """Everything a :class:`StoreWriter` would refuse about ``root``, checked without
    creating or changing anything; returns the absolute path it would write.

    Call it before long work (loading a model, tokenizing) so a bad ``--out`` fails at
    once. Also refused here: a store another writer is writing now.

    Example:
        >>> check_store_target("")
        Traceback (most recent call last):
        ...
        actclust.errors.ActclustError: the output path is empty; name the store directory
    """
    path = checked_output(root, resume, overwrite)
    state = prepare_directory(path, resume, overwrite)
    holder = StoreLock(path).holder() if state == "store" else None
    if holder:
        raise ActclustError(f"store {path} is being written by another writer ({holder}); "
                            "wait for it to finish or stop it, then retry")
    return path


class StoreWriter:
    """Writes a whole store shard by shard, following a plan fixed before the first row.

    ``plan`` lists the shards as ``{"index", "doc_start", "doc_stop", "rows"}``; ``header``
    holds the manifest's provenance fields (model, dataset, capture settings). With
    ``resume=True`` an interrupted store with the same header and plan is continued: every
    shard it lists as finished is checked first (present, header and size as listed, and
    with ``verify=True`` its checksum), and one that fails is captured again. With
    ``overwrite=True`` an existing store is replaced.

    ``checksum`` is each shard's checksum: ``"xxh3"`` (xxh3_128, the default: fast, catches
    damage) or ``"sha256"`` (also a cryptographic fingerprint; such a store stays schema 1,
    readable by older actclust). A resumed store keeps the checksum it was started with.

    The writer holds the store's lock from construction until :meth:`finalize`,
    :meth:`close` or :meth:`abort_shard`; a second writer meanwhile is refused. Use it as
    a context manager so an exception releases the lock.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp()) / "store"
        >>> plan = [{"index": 0, "doc_start": 0, "doc_stop": 2, "rows": 2}]
        >>> docs = pd.DataFrame({"doc_id": [0, 1], "text": ["a", "b"]})
        >>> with StoreWriter(root, {"model": {"name": "toy"}}, plan, ["h"], docs,
        ...                  "float32") as w:
        ...     w.begin_shard(plan[0])
        ...     w.append({"h": np.ones((2, 3), np.float32)}, pd.DataFrame({"doc_id": [0, 1]}))
        ...     w.commit_shard(); w.finalize()
        >>> from actclust import ActivationStore
        >>> ActivationStore(root).layer("h").shape
        (2, 3)
    """

    def __init__(self, root, header: dict, plan: list, layers: list, docs: pd.DataFrame,
                 storage_dtype: str, resume: bool = False, overwrite: bool = False,
                 verify: bool = False, checksum: str = fmt.DEFAULT_CHECKSUM):
        self.layers = [fmt.check_name(name) for name in layers]
        self.checksum = fmt.checksum_field(checksum)
        self.root = check_store_target(root, resume, overwrite)
        self.storage_dtype = storage_dtype
        self.plan = plan
        self._shard = None
        created = not os.path.lexists(self.root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ActclustError(f"cannot create store {self.root}: {err.strerror}") from None
        self._lock = StoreLock(self.root).acquire()
        try:
            # Again under the lock: another writer may have changed the folder meanwhile.
            state = prepare_directory(self.root, resume, overwrite)
            self._start(state, header, docs, overwrite, verify)
        except BaseException:
            self._lock.release()
            if created:
                try:
                    self.root.rmdir()  # only when nothing was written into it
                except OSError:
                    pass
            raise

    def _start(self, state: str, header: dict, docs: pd.DataFrame, overwrite: bool,
               verify: bool) -> None:
        from .._util.version import __version__

        if state == "store" and overwrite:
            paths.remove_entries(paths.store_entries(self.root), keep=self._lock.path)
            state = "empty"
        if state == "store":
            previous = fmt.read_manifest(self.root)
            self._check_same_capture(previous, header, self.plan)
            if list(previous["layers"]) != self.layers:
                raise ActclustError(f"cannot resume: the existing store holds layers "
                                    f"{', '.join(previous['layers'])}, this capture "
                                    f"{', '.join(self.layers)}; use --overwrite to start again")
            self.manifest = previous
            self.checksum = fmt.store_checksum(previous)  # one algorithm per store
            if previous["complete"]:
                check_complete(self.root, previous, verify)
                self._lock.release()  # nothing left to write
            else:
                remove_debris(self.root, previous, self.layers)
                if drop_damaged_shards(self.root, previous, self.layers, verify):
                    fmt.write_manifest(self.root, previous)
                write_parquet_atomic(docs, self.root / fmt.DOCS)  # in case it never landed
            return
        for path in self.root.iterdir():  # a run killed before its first manifest
            if paths.ROOT_TMP.match(path.name):
                path.unlink()
        self.manifest = {
            "format": fmt.MARKER, "schema_version": fmt.schema_for(self.checksum),
            "actclust_version": __version__, "checksum": self.checksum,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "complete": False, **header, "n_rows": int(sum(s["rows"] for s in self.plan)),
            "plan": self.plan, "shards_done": [],
            "layers": {name: {"shape": None, "dtype": self.storage_dtype, "shards": [],
                              "complete": False} for name in self.layers},
        }
        # The manifest goes first: from then on the directory is a (resumable) store.
        fmt.write_manifest(self.root, self.manifest)
        for name in self.layers:
            (self.root / fmt.LAYERS_DIR / name).mkdir(parents=True, exist_ok=True)
        (self.root / fmt.ROW_PARTS_DIR).mkdir(exist_ok=True)
        write_parquet_atomic(docs, self.root / fmt.DOCS)

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

    @property
    def complete(self) -> bool:
        return bool(self.manifest["complete"])

    @property
    def locked(self) -> bool:
        """Whether this writer still holds the store's lock (and may write)."""
        return self._lock.held

    def _check_open(self) -> None:
        if not self._lock.held:
            raise ActclustError(f"the writer of {self.root} is closed (finished, aborted or "
                                "complete); open a new StoreWriter with resume=True")

    def pending_shards(self) -> list:
        if self.complete:
            return []
        done = set(self.manifest["shards_done"])
        return [s for s in self.plan if s["index"] not in done]

    def begin_shard(self, entry: dict) -> None:
        self._check_open()
        self._shard = {
            "entry": entry, "row_parts": [],
            "writers": {name: ShardWriter(
                self.root / fmt.LAYERS_DIR / name / fmt.shard_name(entry["index"]),
                entry["rows"], self.storage_dtype, self.checksum)
                for name in self.layers}}

    def append(self, arrays: dict, rows: pd.DataFrame) -> None:
        """Add one batch: ``arrays[layer]`` has one row per row of ``rows``."""
        for name, writer in self._shard["writers"].items():
            writer.append(arrays[name])
        self._shard["row_parts"].append(rows)

    def commit_shard(self) -> None:
        self._check_open()
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
        """Drop the shard in progress and end this run (the lock is released): after a
        failure, continue with a new writer and ``resume=True``."""
        if self._shard is not None:
            for w in self._shard["writers"].values():
                w.abort()
            self._shard = None
        self._lock.release()

    def close(self) -> None:
        """End the run: drop an unfinished shard and release the lock (idempotent)."""
        self.abort_shard()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def finalize(self) -> None:
        """Check every shard, join the row parts into ``rows.parquet``, fill in shapes,
        mark the store complete and release the lock."""
        self._check_open()
        parts_dir = self.root / fmt.ROW_PARTS_DIR
        order = sorted(self.manifest["shards_done"])
        if order != [s["index"] for s in self.plan]:
            raise RuntimeError("finalize called before every shard was written")
        for name, info in self.manifest["layers"].items():
            info["shards"].sort(key=lambda s: fmt.shard_index(s["file"]))
            info["shape"] = [self.manifest["n_rows"], *self._checked_trailing(name, info)]
        parts = []
        for i in order:
            with paths.open_in_store(self.root, fmt.ROW_PARTS_DIR, f"{i:05d}.parquet",
                                     what="row part") as fh:
                parts.append(pd.read_parquet(fh))
            if len(parts[-1]) != self.plan[i]["rows"]:
                raise ActclustError(f"cannot complete store {self.root}: row part {i} has "
                                    f"{len(parts[-1])} rows, the plan says "
                                    f"{self.plan[i]['rows']}; rerun with --resume")
        rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        rows.insert(0, "row", np.arange(len(rows), dtype=np.int64))
        write_parquet_atomic(rows, self.root / fmt.ROWS)
        for info in self.manifest["layers"].values():
            info["complete"] = True
        self.manifest["complete"] = True
        self.manifest.pop("shards_done")
        fmt.write_manifest(self.root, self.manifest)
        shutil.rmtree(parts_dir, ignore_errors=True)
        self._lock.release()

    def _checked_trailing(self, name: str, info: dict) -> list:
        """The layer's row shape, after checking every shard is whole and agrees: a store
        is never marked complete over a missing or odd shard."""
        trailing = None
        for entry in info["shards"]:
            shape, problems = open_shard(self.root, name, entry, info["dtype"], trailing,
                                         mapped=False)
            if problems:
                raise ActclustError(f"cannot complete store {self.root}: "
                                    f"{fmt.LAYERS_DIR}/{name}/{entry['file']}: {problems[0]};"
                                    " rerun the capture with --resume")
            if entry["rows"] and trailing is None:
                trailing = shape.shape[1:]
        return list(trailing) if trailing is not None else [0]
