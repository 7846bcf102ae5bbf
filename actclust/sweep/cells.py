"""Cells: the unit of work of a sweep, which cells a sweep has, their keys, how a cell
runs, and how it is recorded.

A cell is one reporter fit (model, layer, reporter + parameters, seed) scored against the
labels, or one probe (model, layer, label, seed). Its key hashes everything its rows
depend on, including the fingerprint of the layer's data, so a finished cell is found
again by key and a changed setting misses only the cells it touches.

Each finished cell is one file under ``<out>/cells/``, written to a hidden temporary name
and renamed into place: ``<key>.parquet`` holds its rows, ``<key>.error.json`` the error of
a failed cell. A killed sweep leaves at worst a temporary file, which the next run removes.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import ActclustError
from .._util.files import atomic_write
from .._util.schema import PROBE_METHOD, RESULT_COLUMNS

if TYPE_CHECKING:  # annotations only: workers import this module, and nothing heavy
    from .spec import SweepSpec
    from .stores import StorePlan

CELL_FORMAT = 2  # bump when a cell's rows change meaning: every recorded cell is redone
# The results table of compare, with the model each row comes from in front.
TABLE_COLUMNS = ["model", *RESULT_COLUMNS]
# Metrics that measure time: they differ from run to run, every other value is reproducible.
TIMING_METRICS = ("fit_seconds",)
# Cell fields that locate the work but do not decide its rows: not part of the key.
NOT_IN_KEY = ("store", "store_version", "reporter_class")
# Estimator parameters that change how a fit reports or pages its data, not its result.
NOT_IN_KEY_PARAMS = ("progress", "verbose", "memory_budget_gb")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def layer_fingerprint(manifest: dict, layer: str) -> str:
    """sha256 over what a layer's rows depend on: model, documents, capture settings and
    the layer's shard checksums (already in the manifest, so nothing is re-read).

    A shard with a sha256 contributes it as it is, as before xxh3 existed, so the cells of
    a store written then keep their keys; an xxh3 shard contributes ``"xxh3_128:<hex>"``.

    Example:
        >>> m = {"model": {"name": "m", "config_hash": "c"}, "dataset": {"fingerprint": "d"},
        ...      "capture": {"pool": "mean"}, "layers": {"h": {"shards": [{"sha256": "x"}]}}}
        >>> len(layer_fingerprint(m, "h"))
        64
    """
    cap = {k: v for k, v in manifest["capture"].items() if k not in ("layers", "shard_rows")}
    parts = {"model": [manifest["model"].get("name"), manifest["model"].get("config_hash")],
             "dataset": manifest["dataset"].get("fingerprint"), "capture": cap,
             "shards": [shard_checksum(s) for s in manifest["layers"][layer]["shards"]]}
    return digest(parts)


def shard_checksum(shard: dict):
    """A shard's checksum as a layer fingerprint takes it: its sha256 when it has one (the
    key of stores from before xxh3), else ``"xxh3_128:<hex>"``; None without either.

    Example:
        >>> shard_checksum({"sha256": "ab"}), shard_checksum({"xxh3_128": "cd"})
        ('ab', 'xxh3_128:cd')
    """
    if "sha256" in shard:
        return shard["sha256"]
    if "xxh3_128" in shard:
        return f"xxh3_128:{shard['xxh3_128']}"
    return None


def digest(obj) -> str:
    """sha256 of a JSON-able object, independent of dict order.

    Example:
        >>> digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})
        True
    """
    text = json.dumps(obj, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def cell_key(cell: dict) -> str:
    """The cell's key: a hash of every field that decides its rows.

    Left out: where the store lies (``NOT_IN_KEY``), and the parameters that only change
    how a fit reports progress or pages its data (``NOT_IN_KEY_PARAMS``).

    Example:
        >>> a = {"kind": "probe", "layer": "h", "seed": 0, "params": {"verbose": 0}}
        >>> cell_key(a) == cell_key({**a, "params": {"verbose": 2}})
        True
        >>> cell_key(a) == cell_key({**a, "seed": 1})
        False
    """
    fields = {}
    for name, value in cell.items():
        if name in NOT_IN_KEY or name == "key":
            continue
        if name in ("params", "full_params", "probe_params"):
            value = {k: v for k, v in value.items() if k not in NOT_IN_KEY_PARAMS}
        fields[name] = value
    return digest({"format": CELL_FORMAT, **fields})[:32]


def describe(cell: dict) -> str:
    """A short human name of a cell for progress lines and failure lists.

    Example:
        >>> describe({"kind": "probe", "model": "m", "layer": "h", "label": "y", "seed": 0})
        'm h probe[y] seed 0'
    """
    what = cell["method"] if cell["kind"] == "reporter" else f"probe[{cell['label']}]"
    return f"{cell['model']} {cell['layer']} {what} seed {cell['seed']}"


def _jsonable(value):
    """``value`` as JSON can hold it; what JSON cannot, by its repr."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def plan_cells(spec: SweepSpec, plan: StorePlan, store, labels: list) -> list:
    """The cells of one store: each layer x reporter grid point x seed, then each layer x
    label x seed probe, every cell with its key."""
    from ..probes import LinearProbe, RidgeProbe
    from ..reporters import get_reporter

    manifest = store.manifest
    common = {"model": plan.model, "dataset": manifest["dataset"].get("name"),
              "pool": manifest["capture"].get("pool"), "store": str(store.root.resolve()),
              "store_version": digest(manifest)}
    out = []
    for layer in plan.layers:
        fingerprint = layer_fingerprint(manifest, layer)
        for rep in spec.reporters:
            full = _jsonable(rep.estimator().get_params(deep=False))
            full.pop("random_state", None)
            extra = {}
            cls = get_reporter(rep.name)
            if not cls.__module__.startswith("actclust.") and cls.__module__ != "__main__":
                extra["reporter_class"] = f"{cls.__module__}:{cls.__qualname__}"
            for seed in spec.seeds:
                out.append({"kind": "reporter", **common, "layer": layer,
                            "layer_fingerprint": fingerprint, "reporter": rep.name,
                            "method": rep.method, "params": _jsonable(rep.params),
                            "full_params": full, "seed": seed, "labels": list(labels),
                            **extra})
        if spec.probes is None:
            continue
        params, probe_kind = spec.probes["params"], spec.probes.get("kind", "auto")
        probe_class = RidgeProbe if probe_kind == "ridge" else LinearProbe
        full = _jsonable(probe_class(**params).get_params(deep=False))
        full.pop("random_state", None)
        # "auto" cells keep the keys they had before probes had kinds.
        kind_field = {} if probe_kind == "auto" else {"probe_kind": probe_kind}
        for label in labels:
            for seed in spec.seeds:
                out.append({"kind": "probe", **common, "layer": layer,
                            "layer_fingerprint": fingerprint, "label": label,
                            "probe_params": _jsonable(params), "full_params": full,
                            "group_column": spec.probes["group_column"], "seed": seed,
                            **kind_field})
    for cell in out:
        cell["key"] = cell_key(cell)
    return out


def unique(cells: list) -> list:
    """Each cell once, in first-seen order (two equal cells would give duplicate rows)."""
    seen, out = set(), []
    for cell in cells:
        if cell["key"] not in seen:
            seen.add(cell["key"])
            out.append(cell)
    return out


@functools.lru_cache(maxsize=8)
def _open_store(path: str, version: str):
    """One open store per process and store version: rows and labels are read once."""
    from ..store import ActivationStore

    return ActivationStore(path)


_THREADS_SET = []


def limit_threads(threads: int) -> None:
    """At most ``threads`` BLAS/OpenMP/faiss/torch threads in this (worker) process.

    The environment variables cover libraries loaded later (torch, when a trained
    reporter imports it, reads ``OMP_NUM_THREADS``); threadpoolctl covers those already
    loaded; torch is told directly only when it is already imported, so a worker that
    runs k-means never imports it.
    """
    if _THREADS_SET == [threads]:
        return
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    _THREADS_SET[:] = [threads]


def warm_up(threads: int) -> int:
    """Import what cells need, so a worker's start-up overlaps with the sweep's planning;
    returns the worker's process id."""
    limit_threads(threads)
    importlib.import_module("actclust.compare")
    importlib.import_module("actclust.probes")
    return os.getpid()


def run_cell(cell: dict, cells_dir: str, threads=None, store=None) -> dict:
    """Run one cell and record it under ``cells_dir``; returns ``{"key", "ok", "seconds",
    "error"}``. Any exception of the fit is recorded, not raised: the sweep goes on.

    Workers receive ``cell`` (plain data, with the store's path) and open the store
    themselves, memory-mapped; nothing large is sent to them. ``threads`` limits this
    process's numerical threads (see :func:`limit_threads`); None leaves them alone.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> cell = {"key": "k1", "kind": "probe", "model": "m", "layer": "h", "label": "y",
        ...         "seed": 0, "store": d + "/missing", "store_version": ""}
        >>> run_cell(cell, d)["error"]
        'ActclustError: store .../missing does not exist'
    """
    if threads is not None:
        limit_threads(threads)
    start = time.perf_counter()
    key = cell["key"]
    directory = Path(cells_dir)
    try:
        if store is None:
            store = _open_store(cell["store"], cell["store_version"])
        records = _compute(cell, store)
        table = pd.DataFrame.from_records(records, columns=RESULT_COLUMNS)
        table.insert(0, "model", cell["model"])
        table = table.astype({"seed": np.int64, "value": np.float64})
        atomic_write(directory / f"{key}.parquet",
                     lambda tmp: table.to_parquet(tmp, index=False))
        (directory / f"{key}.error.json").unlink(missing_ok=True)
        return {"key": key, "ok": True, "seconds": time.perf_counter() - start,
                "error": None}
    except Exception as err:  # recorded per cell: one diverged fit must not stop a sweep
        message = f"{type(err).__name__}: {' '.join(str(err).split())}"
        write_failure(directory, cell, message, traceback.format_exc())
        return {"key": key, "ok": False, "seconds": time.perf_counter() - start,
                "error": message}


def write_failure(directory: Path, cell: dict, message: str, trace: str = "") -> None:
    """Record a failed cell as ``<key>.error.json`` (read back with :func:`read_failure`).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> cell = {"key": "k", "model": "m", "layer": "h", "method": "gmm", "seed": 0}
        >>> write_failure(d, cell, "ValueError: diverged")
        >>> read_failure(d, "k")["error"], finished(d)
        ('ValueError: diverged', set())
    """
    record = {"key": cell["key"], "model": cell["model"], "layer": cell["layer"],
              "method": cell.get("method", PROBE_METHOD), "label": cell.get("label"),
              "seed": cell["seed"], "error": message, "traceback": trace}
    data = json.dumps(record, indent=1).encode()
    atomic_write(Path(directory) / f"{cell['key']}.error.json",
                 lambda tmp: tmp.write_bytes(data))


def _compute(cell: dict, store) -> list:
    from ..compare import probe_cell, reporter_cell
    from ..reporters import is_transformer

    if cell["kind"] == "probe":
        from ..probes import LinearProbe, RidgeProbe

        # The seed decides the probe's folds as well as its train/test split.
        params = {k: tuple(v) if isinstance(v, list) else v
                  for k, v in cell["probe_params"].items()}
        kind = cell.get("probe_kind", "auto")
        probe = "auto" if kind == "auto" and not params else \
            (RidgeProbe if kind == "ridge" else LinearProbe)(**params,
                                                             random_state=cell["seed"])
        return probe_cell(store, cell["layer"], cell["label"], cell["seed"], probe=probe,
                          group_column=cell["group_column"])
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in cell["params"].items()}
    n_clusters = params.pop("n_clusters", None)
    est = reporter_class(cell)(**params)
    if is_transformer(est):
        return _transformer_rows(est, store, cell)
    return reporter_cell(store, cell["layer"], est, cell["seed"], cell["labels"],
                         n_clusters=n_clusters, method=cell["method"])


def reporter_class(cell: dict):
    """The cell's reporter class. A reporter registered outside actclust (a plugin) is
    registered again here from ``cell["reporter_class"]`` (``"module:Class"``), so a
    fresh worker process finds it too.

    Example:
        >>> reporter_class({"reporter": "kmeans"}).__name__
        'KMeans'
    """
    from ..reporters import get_reporter, register, registry

    if cell["reporter"] not in registry() and cell.get("reporter_class"):
        module, _, name = cell["reporter_class"].partition(":")
        register(cell["reporter"])(getattr(importlib.import_module(module), name))
    return get_reporter(cell["reporter"])


def _transformer_rows(est, store, cell) -> list:
    """A reporter that does not cluster (PCA): how much variance its components explain."""
    from ..reporters import configure

    configure(est, seed=cell["seed"])
    start = time.perf_counter()
    est.fit(store.layer(cell["layer"]))
    seconds = time.perf_counter() - start
    ratio = getattr(est, "explained_variance_ratio_", None)
    if ratio is None:
        raise ActclustError(f"reporter {cell['reporter']!r} neither clusters nor explains "
                            "variance: there is nothing to score")
    scores = {"explained_variance": float(np.sum(ratio)),
              "n_components": float(len(ratio)), "fit_seconds": seconds}
    return [{"layer": cell["layer"], "method": cell["method"], "label": "", "metric": m,
             "seed": cell["seed"], "value": v} for m, v in scores.items()]


def finished(cells_dir: Path) -> set:
    """Keys of the cells recorded as done (failures are not done: they run again).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> (d / "abc.parquet").touch(); (d / ".abc.parquet.7.tmp").touch()
        >>> finished(d)
        {'abc'}
    """
    if not cells_dir.exists():
        return set()
    return {p.name[:-len(".parquet")] for p in cells_dir.iterdir()
            if p.name.endswith(".parquet") and not p.name.startswith(".")}


def remove_debris(cells_dir: Path) -> None:
    """Delete the temporary files of writes a kill interrupted.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> (d / "abc.parquet").touch(); (d / ".def.parquet.7.tmp").touch()
        >>> remove_debris(d); sorted(p.name for p in d.iterdir())
        ['abc.parquet']
    """
    if cells_dir.exists():
        for path in cells_dir.iterdir():
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)


def read_failure(cells_dir: Path, key: str):
    """The failure record of cell ``key``, or None (see :func:`write_failure`)."""
    path = cells_dir / f"{key}.error.json"
    return json.loads(path.read_text()) if path.exists() else None
