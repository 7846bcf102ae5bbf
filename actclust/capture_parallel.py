"""Capture on Ray: contiguous parts of the documents captured at once, then merged.

This process plans the whole capture exactly as a single-process one does (every document
tokenized once, so rows per document and the shard plan are known), splits the documents
into contiguous parts, and records the split in ``OUT/.parts/parts.json``. Each part is
one Ray task (a GPU when the cluster has them) running the ordinary single-process
:func:`~actclust.capture.capture` over its documents into a complete store of its own,
``OUT/.parts/part-NNNN/``. When every part is complete, :func:`.store.merge.merge_parts`
moves their shard files into ``OUT`` and writes its manifest last.

Parts are cut where a single-process run starts a batch (at its shard boundaries when
there are at least as many shards as parts, else at batch boundaries inside a shard), so
every forward pass sees the same documents as in one process: on CPU the merged store
equals a single-process capture bit for bit, row for row.

Example:
    >>> import actclust, tempfile
    >>> store = actclust.capture("minilm", "topics", "blocks.3.hook_out", pool="none",
    ...                          out=tempfile.mkdtemp() + "/s", limit=40, batch_size=8,
    ...                          backend="ray", workers=2)  # doctest: +SKIP
    >>> len(store.manifest["plan"]), len(store)  # doctest: +SKIP
    (2, 649)
"""

from __future__ import annotations

import os
import socket
import warnings
from typing import Optional

import numpy as np

from .capture import POOLS, _check_count, capture
from .capture import _planned as _planned_capture
from .data import as_dataset
from .data.base import Dataset
from .errors import ActclustError
from .models import load_target
from .store import ActivationStore
from .store import format as fmt
from .store.format import STORAGE_DTYPES
from .store.lock import StoreLock
from .store.merge import (PART_KEY, clear_target, merge_parts, part_manifest, part_marker,
                          part_path, read_parts_record, remove_parts, target_state,
                          write_parts_record)
from .store.resume import check_complete

BACKENDS = ("local", "ray")
RAY_HINT = "the Ray backend needs Ray: pip install 'actclust[ray]'"


def capture_parallel(model, dataset, layers, *, pool, out, batch_size, device, dtype,
                     max_length, exclude_special, limit, shard_rows, resume, overwrite,
                     progress, text_column, labels, tokenizer, verify, revision,
                     backend="ray", address: Optional[str] = None,
                     workers: Optional[int] = None, checksum: str = "xxh3") -> ActivationStore:
    """:func:`actclust.capture` with ``backend="ray"`` (the arguments are its own)."""
    _check_settings(backend, address, workers, pool, dtype, out, batch_size=batch_size,
                    shard_rows=shard_rows, limit=limit, max_length=max_length)
    root, kind = target_state(out, resume, overwrite)  # before Ray starts or a model loads
    ray = import_ray()
    with _RaySession(ray, address, workers, device) as session:
        ds = as_dataset(dataset, text_column=text_column, labels=labels)
        if limit is not None:
            ds = ds.head(limit)
        planned = _planned(model, ds, layers, pool, max_length, dtype, exclude_special,
                           shard_rows, tokenizer, revision)
        settings = dict(model=model, layers=planned["layers"], pool=pool,
                        batch_size=batch_size, device=device, dtype=dtype,
                        max_length=planned["max_length"], exclude_special=exclude_special,
                        shard_rows=shard_rows, tokenizer=tokenizer, verify=verify,
                        revision=revision, checksum=checksum)
        header = planned["header"]
        root.mkdir(parents=True, exist_ok=True)
        lock = StoreLock(root).acquire()
        try:
            if kind == "complete" and resume:
                _finished_store(root, header, verify)
                return ActivationStore(root)
            if overwrite:
                clear_target(root, keep=lock.path)
                kind = "empty"
            record = _record(root, header, resume)
            if record is None and kind == "merging":
                raise ActclustError(f"cannot finish the merge into {root}: its parts folder "
                                    "is gone; start again with --overwrite")
            if record is None:
                parts = split_documents(planned["shards"], planned["rows_per_doc"],
                                        batch_size, session.workers)
                record = write_parts_record(root, parts, header)
            if kind != "merging":  # a stopped merge has every part complete
                _capture_parts(ray, session, root, record, ds, settings, header, progress,
                               planned["name"])
            try:
                merge_parts(root, header, record)
            except OSError as err:
                raise ActclustError(f"merging the parts into {root} stopped "
                                    f"({err.strerror or err}); the store is left incomplete: "
                                    "rerun with --resume to finish the merge") from None
        finally:
            lock.release()
    return ActivationStore(root)


def _check_settings(backend, address, workers, pool, dtype, out, **counts) -> None:
    """What :func:`actclust.capture` refuses before any work, and the Ray options."""
    if backend not in BACKENDS:
        raise ActclustError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "ray":
        raise ActclustError("address and workers apply to the Ray backend: pass "
                            "backend='ray' (--backend ray) or leave them out")
    if workers is not None:
        _check_count("workers", workers, optional=False)
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise ActclustError(f"the Ray address must be host:port, got {address!r}")
    if pool not in POOLS:
        raise ActclustError(f"unknown pooling {pool!r}; choose one of {', '.join(POOLS)}")
    if dtype not in STORAGE_DTYPES:
        raise ActclustError(f"unknown storage dtype {dtype!r}; choose one of "
                            f"{', '.join(STORAGE_DTYPES)}")
    if out is None:
        raise ActclustError("no output directory: pass out=... (--out on the command line)")
    for name, value in counts.items():
        _check_count(name, value, optional=name in ("limit", "max_length"))


def _planned(model, ds: Dataset, layers, pool, max_length, dtype, exclude_special,
             shard_rows, tokenizer, revision) -> dict:
    """The whole capture planned here as a single-process capture plans it: the manifest
    header, the shard plan and rows per document. The model is loaded on the CPU and let go
    again; the workers load their own copies."""
    target = load_target(model, tokenizer=tokenizer, device="cpu", revision=revision)
    layer_names, plan, shards, header = _planned_capture(target, ds, layers, pool, max_length,
                                                         dtype, exclude_special, shard_rows)
    return {"name": target.name, "layers": layer_names,
            "max_length": header["capture"]["max_length"],
            "rows_per_doc": plan.rows_per_doc, "shards": shards, "header": header}


def import_ray():
    """The ``ray`` module, or an error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ActclustError(RAY_HINT) from None
    return ray


class _RaySession:
    """Join the cluster at ``address``, or start a local one of ``workers`` CPUs; one
    started here is shut down on leaving. ``workers`` becomes how many parts run at once:
    by default the cluster's GPUs (unless ``device`` is the CPU), else its CPUs."""

    def __init__(self, ray, address, workers, device="auto"):
        self.ray, self.address, self.workers, self.device = ray, address, workers, device
        self.started = False

    def __enter__(self) -> "_RaySession":
        ray = self.ray
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS") or None
            if address:
                _check_reachable(address)
            try:
                if address:
                    ray.init(address=address, include_dashboard=False, log_to_driver=False)
                else:
                    ray.init(address="local", num_cpus=self.workers or _local_cpus(),
                             include_dashboard=False, log_to_driver=False)
            except Exception as err:  # Ray reports an unreachable cluster in several types
                first = " ".join(str(err).split())[:200]
                if address:
                    raise ActclustError(f"cannot connect to the Ray cluster at {address} "
                                        f"({first}); check --address (`ray status` on the "
                                        "head node shows it)") from None
                raise ActclustError(f"cannot start a local Ray ({first})") from None
            self.started = True
        try:
            resources = ray.cluster_resources()
            # the most CPUs one node has: a task asking for more would wait forever
            per_node = max([int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes()
                            if n.get("Alive")] or [1])
        except BaseException:
            self.__exit__()
            raise
        self.gpus = int(resources.get("GPU", 0)) if self.device != "cpu" else 0
        cpus = max(1, int(resources.get("CPU", 1)))
        if self.workers is None:
            self.workers = self.gpus or cpus
        # torch threads of a task = the CPUs it holds, so tasks do not fight over cores
        self.threads = max(1, min(cpus // self.workers, per_node))
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once a cluster address nothing answers at: Ray itself keeps retrying for
    minutes before it gives up."""
    if address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise ActclustError(f"the Ray address {address!r} is not host:port (for example "
                            "10.0.0.5:6379, or ray://10.0.0.5:10001)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise ActclustError(f"cannot reach the Ray cluster at {address} "
                            f"({err.strerror or type(err).__name__}); check --address "
                            "(`ray status` on the head node shows it)") from None


def _local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _same(what: str, before: dict, now: dict) -> None:
    """Refuse to go on with an interrupted capture whose settings differ."""
    for key in sorted(set(before) | set(now)):
        if before.get(key) != now.get(key):
            a, b = before.get(key), now.get(key)
            diffs = [f"{key}.{k}: {a.get(k)!r} then, {b.get(k)!r} now"
                     for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)] \
                if isinstance(a, dict) and isinstance(b, dict) else \
                [f"{key}: {a!r} then, {b!r} now"]
            raise ActclustError(f"cannot resume: {what} was a different capture "
                                f"({'; '.join(diffs[:3])}); use --overwrite to start again")


def _finished_store(root, header: dict, verify: bool) -> None:
    """``--resume`` on a complete store: the same capture, whole; nothing to do but clear
    away a parts folder a run stopped before deleting."""
    manifest = fmt.read_manifest(root)
    _same(f"the existing store {root}", {k: manifest.get(k) for k in header}, header)
    check_complete(root, manifest, verify)
    record = read_parts_record(root)
    if record is not None:
        remove_parts(root, record)


def _record(root, header: dict, resume: bool) -> Optional[dict]:
    """The record of an interrupted run's split, to go on with (``--resume``); None for a
    new split."""
    record = read_parts_record(root)
    if record is not None and resume:
        _same(f"the interrupted run in {root}", record["header"], header)
        return record
    return None


class _ShiftedLabeler:
    """A dataset's token labeler for a part: document ``i`` of the part is document
    ``start + i`` of the whole."""

    def __init__(self, labeler, start: int):
        self.labeler, self.start = labeler, start

    def __call__(self, index, text, offsets, positions):
        return self.labeler(index + self.start, text, offsets, positions)


def part_dataset(ds: Dataset, part: dict, n_parts: int) -> Dataset:
    """The documents of one part, with their global ids, and a mark naming the part (its
    store's manifest records it, so the merge knows the store for its own)."""
    lo, hi = part["doc_start"], part["doc_stop"]
    labeler = None if ds.token_labeler is None else _ShiftedLabeler(ds.token_labeler, lo)
    return Dataset(ds.name, ds.docs.iloc[lo:hi].reset_index(drop=True),
                   None if ds.inputs is None else ds.inputs[lo:hi], labeler,
                   ds.description, {**ds.meta, PART_KEY: part_marker(part, n_parts)})


def _capture_part(settings: dict, dataset: Dataset, out: str, threads: int) -> int:
    """One part, in a Ray worker: the single-process capture of its documents (resumed
    when an earlier run, or an earlier try of this task, left some)."""
    import torch

    torch.set_num_threads(threads)
    store = capture(dataset=dataset, out=out, resume=True, progress=False, **settings)
    return len(store)


def _part_done(root, record: dict, index: int, header: dict, verify: bool) -> bool:
    """Whether part ``index`` is complete, whole and of this capture. A complete part
    found damaged is deleted (it is ours) and captured again."""
    manifest = part_manifest(root, record, index)
    if manifest is None or not manifest["complete"]:
        return False
    folder = part_path(root, index)
    want = {k: v for k, v in header.items() if k != "dataset"}
    got = {k: manifest.get(k) for k in want}
    got["capture"] = dict(got["capture"] or {}, truncated_docs=want["capture"]["truncated_docs"])
    _same(f"part {index} ({folder})", got, want)
    rows = record["parts"][index]["rows"]
    if manifest["n_rows"] != rows:
        raise ActclustError(f"part {index} ({folder}) holds {manifest['n_rows']} rows, the "
                            f"plan says {rows}: the workers tokenize differently from this "
                            "machine; give them the same model files and versions")
    try:
        check_complete(folder, manifest, verify)
    except ActclustError as err:
        warnings.warn(f"{err}; capturing part {index} again", stacklevel=3)
        from .store import paths

        paths.remove_entries(paths.store_entries(folder))
        folder.rmdir()
        return False
    return True


def _capture_parts(ray, session, root, record: dict, ds: Dataset, settings: dict,
                   header: dict, progress: bool, name: str) -> None:
    """Run every part not yet complete as a Ray task; wait for all of them, then report
    the first failure (the finished parts are kept for ``--resume``)."""
    from ._progress import tqdm

    parts = record["parts"]
    pending = [p for p in parts if not _part_done(root, record, p["index"], header,
                                                  settings["verify"])]
    total = sum(p["rows"] for p in parts)
    bar = tqdm(total=total, initial=total - sum(p["rows"] for p in pending), unit="row",
               unit_scale=True, disable=not progress,
               desc=f"capture {name} on Ray ({len(parts)} parts)")
    task = ray.remote(_capture_part).options(
        num_cpus=session.threads, num_gpus=1 if session.gpus else 0, max_retries=1)
    refs = {task.remote(settings, part_dataset(ds, p, len(parts)),
                        str(part_path(root.resolve(), p["index"])), session.threads): p
            for p in pending}
    failures = []
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            part = refs.pop(ready[0])
            try:
                ray.get(ready[0])
                bar.update(part["rows"])
            except Exception as err:  # kept until every part has run
                failures.append((part, err))
    finally:
        for ref in refs:  # interrupted: stop the parts still running
            ray.cancel(ref, force=True)
        bar.close()
    if failures:
        raise _task_error(ray, *failures[0])


def _task_error(ray, part: dict, err: Exception) -> Exception:
    where = f"part {part['index']} (documents {part['doc_start']}-{part['doc_stop'] - 1})"
    cause = getattr(err, "cause", None)
    if isinstance(cause, ActclustError):
        return ActclustError(f"{where}: {cause}")
    if isinstance(err, ray.exceptions.RayTaskError):
        return err  # a bug in the task: its traceback says where
    first = " ".join(str(err).split())[:300]
    return ActclustError(f"{where} failed on Ray ({type(err).__name__}: {first}); the "
                         "finished parts are kept: rerun with --resume")


def split_documents(shards: list, rows_per_doc, batch_size: int, n_parts: int) -> list:
    """Contiguous document ranges ``{"index", "doc_start", "doc_stop", "rows"}`` for at
    most ``n_parts`` parts, balanced by rows.

    A part starts where a single-process capture starts a batch, so its forward passes
    see the same documents: with at least ``n_parts`` shards, parts are runs of whole
    shards; with fewer, each shard gets parts in proportion to its rows, cut at its batch
    boundaries (a shard of one batch is one part).

    Example:
        >>> rows = np.full(10, 3)
        >>> shards = [{"index": 0, "doc_start": 0, "doc_stop": 10, "rows": 30}]
        >>> [(p["doc_start"], p["doc_stop"]) for p in split_documents(shards, rows, 2, 3)]
        [(0, 4), (4, 6), (6, 10)]
    """
    rows = np.asarray(rows_per_doc, dtype=np.int64)
    prefix = np.concatenate([[0], np.cumsum(rows)])
    ranges = []
    if len(shards) >= n_parts:
        for i, j in _balanced(np.array([s["rows"] for s in shards]), n_parts):
            ranges.append((shards[i]["doc_start"], shards[j - 1]["doc_stop"]))
    else:
        batches = [[(lo, min(lo + batch_size, s["doc_stop"]))
                    for lo in range(s["doc_start"], s["doc_stop"], batch_size)]
                   for s in shards]
        counts = [1] * len(shards)
        for _ in range(n_parts - len(shards)):  # one more part to the heaviest per part
            open_ = [k for k, b in enumerate(batches) if counts[k] < len(b)]
            if not open_:
                break
            k = max(open_, key=lambda k: (shards[k]["rows"] / counts[k], -k))
            counts[k] += 1
        for b, count in zip(batches, counts):
            weights = np.array([prefix[hi] - prefix[lo] for lo, hi in b])
            ranges += [(b[i][0], b[j - 1][1]) for i, j in _balanced(weights, count)]
    return [{"index": k, "doc_start": int(lo), "doc_stop": int(hi),
             "rows": int(prefix[hi] - prefix[lo])} for k, (lo, hi) in enumerate(ranges)]


def _balanced(weights: np.ndarray, n: int) -> list:
    """``n`` contiguous, non-empty groups ``(start, stop)`` of ``weights`` whose sums are
    as even as cuts at the items allow."""
    n = min(n, len(weights))
    prefix = np.concatenate([[0], np.cumsum(weights)])
    cuts = [0]
    for k in range(1, n):
        lo, hi = cuts[-1] + 1, len(weights) - (n - k)
        goal = prefix[-1] * k / n
        c = int(np.searchsorted(prefix, goal))
        best = min((x for x in (c - 1, c) if lo <= x <= hi),
                   key=lambda x: abs(prefix[x] - goal), default=min(max(c, lo), hi))
        cuts.append(best)
    cuts.append(len(weights))
    return list(zip(cuts[:-1], cuts[1:]))
