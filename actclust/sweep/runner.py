"""Running a sweep: check everything, capture once, run the cells that are not done,
assemble the results table, write the report.

Output folder::

    sweep.json         the sweep's name, file and data settings (a folder holds one sweep)
    store/             the captured store (stores/<model>/ for several models)
    cells/<key>.parquet       rows of each finished cell; <key>.error.json for failed ones
    results.parquet    every finished cell's rows, in the sweep's order
    failures.json      the failed cells with their errors
    report.html        when actclust.viz provides write_report
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

import pandas as pd

from ..errors import ActclustError
from .._util.files import atomic_write
from .._util.schema import PROBE_METHOD
from . import cells as cellmod
from .spec import SweepSpec, check_run, load_sweep

log = logging.getLogger("actclust.sweep")

FAILURE_COLUMNS = ["model", "layer", "method", "label", "seed", "error"]
RAY_HINT = "the Ray backend needs Ray: pip install 'actclust[ray]'"


@dataclass
class SweepResult:
    """What a sweep produced.

    Attributes:
        table: the tidy results (``model, layer, method, label, metric, seed, value``).
        failures: one row per failed cell with its error.
        out: the output folder; ``results_path`` and ``report_path`` (None without a
            report) lie in it.
        ran, skipped: cells run now, and cells found finished by an earlier run.

    Example:
        >>> r = SweepResult(pd.DataFrame(columns=cellmod.TABLE_COLUMNS),
        ...                 pd.DataFrame(columns=FAILURE_COLUMNS), Path("o"),
        ...                 Path("o/results.parquet"), None, 0, 4)
        >>> print(r.summary().splitlines()[0])
        0 cells run, 4 already done, 0 failed: o/results.parquet (0 rows)
    """

    table: pd.DataFrame
    failures: pd.DataFrame
    out: Path
    results_path: Path
    report_path: Optional[Path]
    ran: int
    skipped: int

    def summary(self) -> str:
        """Mean ± sd over seeds of the headline metrics, then the failed cells."""
        from ..compare import summarize

        lines = [f"{self.ran} cells run, {self.skipped} already done, "
                 f"{len(self.failures)} failed: {self.results_path} ({len(self.table)} rows)"]
        wanted = self.table[self.table["metric"].isin(
            ["nmi", "probe_accuracy", "explained_variance"])]
        if len(wanted):
            many = wanted["model"].nunique() > 1
            for model, part in wanted.groupby("model", sort=False):
                s = summarize(part.drop(columns="model"))
                if many:
                    lines.append(f"model {model}")
                w = {c: max(len(c), *s[c].astype(str).str.len()) for c in
                     ("layer", "method", "label", "metric")}
                lines.append("  ".join(f"{c:<{w[c]}}" for c in w) + "  mean ± sd")
                for row in s.itertuples():
                    sd = 0.0 if row.n < 2 else row.sd
                    lines.append("  ".join(f"{getattr(row, c):<{w[c]}}" for c in w)
                                 + f"  {row.mean:.3f} ± {sd:.3f}")
        if len(self.failures):
            lines.append(f"failed cells ({len(self.failures)}; rerun with --resume to retry "
                         "them):")
            for row in self.failures.itertuples():
                what = row.method if row.method != PROBE_METHOD else f"probe[{row.label}]"
                lines.append(f"  {row.model} {row.layer} {what} seed {row.seed}: {row.error}")
        if self.report_path is not None:
            lines.append(f"report: {self.report_path}")
        return "\n".join(lines)


@dataclass
class _StorePlan:
    model: str  # the model as the table names it
    path: Path
    owned: bool  # inside the sweep's folder: may be recaptured
    layers: list
    target: object = None  # a loaded target when a capture may be needed
    dataset: object = None
    capture: Optional[dict] = None
    fits: bool = True
    store: object = None  # the open store, once it exists
    capture_layers: Optional[list] = None  # an interrupted capture's layers, to resume it


def run_sweep(sweep, *, backend: Optional[str] = None, jobs: Optional[int] = None,
              resume: bool = False, overwrite: bool = False, address: Optional[str] = None,
              report: Optional[bool] = None, progress: bool = True) -> SweepResult:
    """Run a sweep: a TOML path, TOML text, a dict with the file's keys, or a SweepSpec.

    Every check (keys, layers, labels, the output folder) runs before any work. The store
    is captured once, or reused when its manifest fits. Then every cell not already
    recorded in the output folder runs; a failing cell is recorded with its error and the
    rest go on.

    Args:
        sweep: the sweep (see ``docs/sweeps.md``).
        backend: ``"local"`` or ``"ray"``; overrides ``run.backend``.
        jobs: cells at once on the local backend (processes sharing the memory-mapped
            store); overrides ``run.jobs``.
        resume: skip the cells an earlier run of this sweep finished. Without it, an
            output folder that already holds finished cells is an error.
        overwrite: forget the finished cells and run them all again (a fitting store is
            kept).
        address: the Ray cluster to join (default ``run.address``, else a local one).
        report: write ``report.html`` with :func:`actclust.viz.write_report` when that
            exists (default ``run.report``, true).
        progress: show the progress bar and a line per finished cell.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> run_sweep({"out": d + "/sweep", "data": {"model": "minilm", "dataset": "topics",
        ...            "layers": "blocks.5.hook_out", "pool": "mean", "limit": 100},
        ...            "seeds": 2, "reporters": ["kmeans"], "probes": {"enabled": False},
        ...            "run": {"report": False}},
        ...           progress=False).table.groupby("method")["seed"].nunique().to_dict()
        {'kmeans': 2}
    """
    spec = load_sweep(sweep)
    backend = backend or spec.run["backend"]
    jobs = jobs if jobs is not None else spec.run["jobs"]
    address = address or spec.run["address"]
    report = spec.run["report"] if report is None else report
    check_run(backend, jobs)
    if resume and overwrite:
        raise ActclustError("choose one of --resume and --overwrite, not both")
    if backend == "ray":
        _import_ray()
    out = spec.out.resolve()
    _check_out(out, spec, resume, overwrite)
    pool = _Pool(jobs) if backend == "local" and jobs > 1 else None
    if pool is not None:
        pool.warm()  # workers import while this process plans and captures
    plans = [_plan_store(spec, model, out) for model in spec.models] if spec.models \
        else [_plan_given_store(spec)]
    for plan in plans:
        if plan.fits and plan.store is None:
            from ..store import ActivationStore

            plan.store = ActivationStore(plan.path)
        if plan.store is not None and spec.labels:  # the store exists: its columns are known
            _check_labels(plan.store, spec.labels)
    known = spec.labels or _known_labels(plans[0])
    if known is not None:
        _check_scorable(spec, known)
    # Every check passed: from here on, work.
    if overwrite:
        _clear(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_meta(out, spec)
    stores = [_ensure_store(plan, progress) for plan in plans]
    labels = spec.labels or stores[0].label_columns
    for store in stores:
        _check_labels(store, labels)
    _check_scorable(spec, labels)
    all_cells = _unique([c for plan, store in zip(plans, stores)
                         for c in _cells(spec, plan, store, labels)])
    cells_dir = out / "cells"
    cells_dir.mkdir(exist_ok=True)
    cellmod.remove_debris(cells_dir)
    done = cellmod.finished(cells_dir)
    pending = [c for c in all_cells if c["key"] not in done]
    skipped = len(all_cells) - len(pending)
    by_path = {str(store.root.resolve()): store for store in stores}
    ran = _run_all(pending, skipped, len(all_cells), backend, pool, address,
                   spec.run["gpus_per_cell"], cells_dir, by_path, progress, spec.name)
    return _assemble(out, all_cells, cells_dir, stores, plans, ran, skipped, report)


def _known_labels(plan: _StorePlan) -> Optional[list]:
    """The label columns the sweep will have, when they are known before capturing."""
    if plan.store is not None:
        return plan.store.label_columns
    if plan.dataset is not None and plan.dataset.token_labeler is None:
        return plan.dataset.label_columns
    return None


def _check_scorable(spec: SweepSpec, labels: list) -> None:
    """Clustering reporters score their clusters against labels: without any, stop now."""
    from ..reporters import get_reporter

    if labels:
        return
    clustering = [r.method for r in spec.reporters
                  if hasattr(get_reporter(r.name), "fit_predict")]
    if clustering:
        raise ActclustError(f"no label columns to score clusters against: {clustering[0]} "
                            "clusters, but the data has no label columns; use data with "
                            "labels, or only reporters that do not cluster (pca)")


def _check_labels(store, labels) -> None:
    missing = [label for label in labels if label not in store.label_columns]
    if missing:
        raise ActclustError(f"label column {missing[0]!r} is not in store {store.root}; "
                            f"label columns: {', '.join(store.label_columns) or 'none'}")


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ActclustError(RAY_HINT) from None
    return ray


# ------------------------------------------------------------------------ checks, stores

def _check_out(out: Path, spec: SweepSpec, resume: bool, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ActclustError(f"output {out} exists and is a file, not a folder")
    meta_path = out / "sweep.json"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = {}
        if meta.get("name") != spec.name and not overwrite:
            raise ActclustError(f"output {out} holds a different sweep "
                                f"({meta.get('name')!r}, this one is {spec.name!r}); choose "
                                "another out, or pass --overwrite to replace its results")
        then, now = meta.get("data"), _data_settings(spec)
        if then is not None and meta.get("data_hash") != cellmod.digest(now) and \
                not overwrite:
            what = next((k for k in now if then.get(k) != now[k]), "data")
            raise ActclustError(f"output {out} holds a different sweep: sweep "
                                f"{spec.name!r} there had other data ({what}: "
                                f"{then.get(what)!r} then, {now.get(what)!r} now); choose "
                                "another out, or pass --overwrite to replace its results")
        done = len(cellmod.finished(out / "cells"))
        if done and not resume and not overwrite:
            raise ActclustError(f"output {out} already holds {done} finished cells of sweep "
                                f"{spec.name!r}: pass --resume to skip them, or "
                                "--overwrite to run every cell again")
    elif out.exists() and any(not p.name.startswith(".") for p in out.iterdir()):
        raise ActclustError(f"output {out} is not empty and holds no sweep (no sweep.json); "
                            "choose a new or empty folder")


def _clear(out: Path) -> None:
    shutil.rmtree(out / "cells", ignore_errors=True)
    for path in [out / "results.parquet", out / "failures.json", *out.glob("report*.html")]:
        path.unlink(missing_ok=True)


# Capture settings that change the stored data (batch_size and device do not).
DATA_CAPTURE_KEYS = ("text_column", "pool", "limit", "max_length", "dtype", "exclude_special")


def _data_settings(spec: SweepSpec) -> dict:
    """What the sweep's data is: an output folder holds the sweep of one data setting."""
    return {"models": [spec.model_paths.get(m, m) for m in spec.models],
            "dataset": spec.dataset,
            "store": str(spec.store.resolve()) if spec.store is not None else None,
            "capture": {k: spec.capture[k] for k in DATA_CAPTURE_KEYS if k in spec.capture}}


def _write_meta(out: Path, spec: SweepSpec) -> None:
    from .._util.version import __version__

    data = _data_settings(spec)
    meta = {"name": spec.name, "actclust_version": __version__,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data": data, "data_hash": cellmod.digest(data), "sweep_file": spec.source}
    text = json.dumps(meta, indent=1).encode()
    atomic_write(out / "sweep.json", lambda tmp: tmp.write_bytes(text))


def _slug(model: str, taken: set) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model).name or model).strip("-.") or "model"
    slug, i = base, 2
    while slug in taken:
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug)
    return slug


def _plan_store(spec: SweepSpec, model: str, out: Path) -> _StorePlan:
    from .._util.devices import resolve_device
    from ..data import as_dataset
    from ..models import load_target

    cap = spec.capture
    ds = as_dataset(spec.dataset, text_column=cap.get("text_column", "text"))
    if cap.get("limit"):
        ds = ds.head(cap["limit"])
    target = load_target(spec.model_paths.get(model, model),
                         device=resolve_device(cap.get("device", "auto")))
    layers = target.resolve_layers(spec.layers)
    if spec.labels and ds.token_labeler is None:
        missing = [label for label in spec.labels if label not in ds.label_columns]
        if missing:
            raise ActclustError(f"label column {missing[0]!r} is not in dataset {ds.name!r}; "
                                f"its label columns: {', '.join(ds.label_columns) or 'none'}")
    if spec.store is not None:
        path, owned = spec.store.resolve(), False
    elif len(spec.models) == 1:
        path, owned = out / "store", True
    else:
        taken = set()
        slugs = {m: _slug(m, taken) for m in spec.models}
        path, owned = out / "stores" / slugs[model], True
    settings = {"pool": cap.get("pool", "none"), "dtype": cap.get("dtype", "float32"),
                "max_length": cap.get("max_length"),
                "exclude_special": cap.get("exclude_special", False),
                "batch_size": cap.get("batch_size", 32), "device": cap.get("device", "auto")}
    plan = _StorePlan(model, path, owned, layers, target, ds, settings)
    plan.fits, reason, plan.capture_layers = _fits(path, target, ds, settings, layers)
    if not plan.fits and reason and not owned and (path / "manifest.json").exists():
        raise ActclustError(f"store {path} holds a different capture ({reason}); remove "
                            "data.store to capture into the sweep's folder, or point it "
                            "elsewhere")
    return plan


def _fits(path: Path, target, ds, settings: dict, layers: list):
    """Whether the store at ``path`` already holds this capture, and if not, why (no
    reason: capture into it). An interrupted capture of the same settings is resumed with
    its own layers, returned third."""
    from ..store.format import read_manifest

    if not (path / "manifest.json").exists():
        return False, "", None
    m = read_manifest(path)
    cap = m["capture"]
    checks = [
        ("model", m["model"].get("name"), target.name),
        ("model weights", m["model"].get("config_hash"), target.config_hash),
        ("documents", m["dataset"].get("fingerprint"), ds.fingerprint()),
        ("pool", cap.get("pool"), settings["pool"]),
        ("dtype", cap.get("storage_dtype"), settings["dtype"]),
        ("max_length", cap.get("max_length"), settings["max_length"] or target.max_length),
        ("exclude_special", cap.get("exclude_special"), settings["exclude_special"]),
    ]
    for what, then, now in checks:
        if then != now:
            reason = f"{what}: {str(then)[:16]!r} in the store, {str(now)[:16]!r} asked"
            return False, reason, None
    stored = list(cap.get("layers") or m["layers"])
    lacking = [layer for layer in layers if layer not in stored]
    if lacking:
        return False, f"layer {lacking[0]!r} is not in it", None
    if not m.get("complete"):
        return False, "", stored  # interrupted: finish it
    return True, "", None


def _plan_given_store(spec: SweepSpec) -> _StorePlan:
    from .._util.names import select_names
    from ..store import ActivationStore

    store = ActivationStore(spec.store.resolve())

    def missing(pattern):
        raise ActclustError(f"layer {pattern!r} is not in store {store.root}; it holds "
                            f"{', '.join(store.layers)}")

    layers = store.layers if spec.layers is None else \
        select_names(spec.layers, store.layers, missing)
    return _StorePlan(store.model_name, store.root, False, layers, store=store)


def _ensure_store(plan: _StorePlan, progress: bool):
    from ..capture import capture
    from ..store import ActivationStore

    if plan.store is not None:
        return plan.store
    if plan.fits:
        return ActivationStore(plan.path)
    kwargs = dict(pool=plan.capture["pool"], dtype=plan.capture["dtype"],
                  max_length=plan.capture["max_length"],
                  exclude_special=plan.capture["exclude_special"],
                  batch_size=plan.capture["batch_size"], device=plan.capture["device"],
                  progress=progress)
    complete = (plan.path / "manifest.json").exists() and \
        ActivationStore(plan.path, allow_incomplete=True).complete
    if plan.owned and complete:  # a different capture in the sweep's own folder: redo it
        return capture(plan.target, plan.dataset, plan.layers, out=plan.path,
                       overwrite=True, **kwargs)
    try:
        return capture(plan.target, plan.dataset, plan.capture_layers or plan.layers,
                       out=plan.path, resume=True, **kwargs)
    except ActclustError:
        if not plan.owned:
            raise
        return capture(plan.target, plan.dataset, plan.layers, out=plan.path,
                       overwrite=True, **kwargs)


# ----------------------------------------------------------------------------- the cells

def _jsonable(value):
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _cells(spec: SweepSpec, plan: _StorePlan, store, labels: list) -> list:
    from ..probes import LinearProbe
    from ..reporters import get_reporter

    manifest = store.manifest
    common = {"model": plan.model, "dataset": manifest["dataset"].get("name"),
              "pool": manifest["capture"].get("pool"), "store": str(store.root.resolve()),
              "store_version": cellmod.digest(manifest)}
    out = []
    for layer in plan.layers:
        fingerprint = cellmod.layer_fingerprint(manifest, layer)
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
        params = spec.probes["params"]
        full = _jsonable(LinearProbe(**params).get_params(deep=False))
        full.pop("random_state", None)
        for label in labels:
            for seed in spec.seeds:
                out.append({"kind": "probe", **common, "layer": layer,
                            "layer_fingerprint": fingerprint, "label": label,
                            "probe_params": _jsonable(params), "full_params": full,
                            "group_column": spec.probes["group_column"], "seed": seed})
    for cell in out:
        cell["key"] = cellmod.cell_key(cell)
    return out


def _unique(cells: list) -> list:
    """Each cell once, in first-seen order (two equal cells would give duplicate rows)."""
    seen, out = set(), []
    for cell in cells:
        if cell["key"] not in seen:
            seen.add(cell["key"])
            out.append(cell)
    return out


def _cost(cell: dict) -> int:
    """A rough rank of a cell's run time, to start the longest first (a long cell started
    last would leave the other workers idle at the end)."""
    if cell["kind"] != "reporter":
        return 1
    from ..reporters._trainer import TrainedReporterMixin

    cls = cellmod.reporter_class(cell)
    if issubclass(cls, TrainedReporterMixin):
        return 3
    return 2 if cell["reporter"] == "agglomerative" else 0


def _longest_first(cells: list) -> list:
    return sorted(cells, key=_cost, reverse=True)  # stable: the sweep's order within a rank


def _needs_gpu(cell: dict, cluster_gpus: float) -> bool:
    if cell["kind"] != "reporter":
        return False
    from ..reporters._trainer import TrainedReporterMixin

    device = str(cell["full_params"].get("device", ""))
    if device.startswith("cuda"):
        return True
    return device == "auto" and cluster_gpus > 0 and \
        issubclass(cellmod.reporter_class(cell), TrainedReporterMixin)


def _run_all(pending, skipped, total, backend, pool, address, gpus_per_cell, cells_dir,
             stores, progress, name) -> int:
    from .._progress import tqdm

    if not pending:
        return 0
    bar = tqdm(total=total, initial=skipped, disable=not progress, desc=f"sweep {name}",
               unit="cell", dynamic_ncols=True)
    failed = 0
    by_key = {c["key"]: c for c in pending}
    running: dict = {}

    def show():
        names = [f"{c['layer']} {c.get('method') or 'probe[' + c['label'] + ']'} "
                 f"s{c['seed']}" for c in running.values()]
        text = "running: " + ", ".join(names[:3]) + (f" +{len(names) - 3}"
                                                     if len(names) > 3 else "")
        bar.set_postfix_str((f"{failed} failed; " if failed else "") +
                            (text if names else ""))

    def started(cell):
        running[cell["key"]] = cell
        show()

    try:
        if backend == "ray":
            results = _ray_cells(pending, address, gpus_per_cell, cells_dir)
        elif pool is None or len(pending) == 1:
            results = _in_process(pending, cells_dir, stores, started)
        else:
            results = pool.run(pending, cells_dir, started)
        for result in results:
            cell = by_key[result["key"]]
            running.pop(result["key"], None)
            failed += not result["ok"]
            status = "ok    " if result["ok"] else "FAILED"
            detail = "" if result["ok"] else f": {result['error']}"
            if progress:
                bar.write(f"{status} {cellmod.describe(cell)} ({result['seconds']:.1f} s)"
                          f"{detail}")
            show()
            bar.update(1)
    finally:
        bar.close()
    return len(pending)


def _in_process(pending, cells_dir, stores, started) -> Iterator[dict]:
    """One cell after another in this process, with the store already open and every
    core's threads (the thread policy of ``jobs = 1``)."""
    for cell in pending:
        started(cell)
        yield cellmod.run_cell(cell, str(cells_dir), store=stores.get(cell["store"]))


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def worker_threads(jobs: int) -> int:
    """The thread policy: ``jobs = 1`` runs in this process with every core's threads;
    with more jobs, each worker gets the cores shared out, at least one thread.

    Example:
        >>> worker_threads(10 ** 6)
        1
    """
    return max(1, cores() // jobs)


WORKER_DIED = ("its worker process died twice running it (killed, or out of memory?); "
               "rerun with --resume, perhaps with fewer --jobs")


class _Pool:
    """``jobs`` worker processes (loky's reusable executor) that run cells one by one.

    Workers receive a cell's description, open the store by path, memory-mapped, and
    write the cell's file themselves. A worker that dies (killed, out of memory) breaks
    the pool: the cells it was running are run once more, each alone, in a fresh pool, and
    a cell that kills its worker again is recorded as failed; the sweep goes on.
    """

    def __init__(self, jobs: int):
        self.jobs = jobs
        self.threads = worker_threads(jobs)

    def executor(self):
        from joblib.externals.loky import get_reusable_executor

        env = {variable: str(self.threads) for variable in cellmod.THREAD_VARIABLES}
        return get_reusable_executor(max_workers=self.jobs, timeout=300, env=env)

    def warm(self) -> None:
        executor = self.executor()
        for _ in range(self.jobs):
            executor.submit(cellmod.warm_up, self.threads)

    def run(self, pending, cells_dir, started) -> Iterator[dict]:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        queue, suspects = deque(_longest_first(pending)), deque()
        running: dict = {}  # future -> (cell, ran alone)
        executor = self.executor()

        def submit(cell, alone):
            started(cell)
            future = executor.submit(cellmod.run_cell, cell, str(cells_dir), self.threads)
            running[future] = (cell, alone)

        try:
            while queue or suspects or running:
                if suspects and not running:
                    submit(suspects.popleft(), True)
                elif not suspects:
                    while queue and len(running) < self.jobs:
                        submit(queue.popleft(), False)
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                broke = any(isinstance(f.exception(), BrokenProcessPool) for f in done)
                if broke:
                    done, _ = wait(list(running))  # the others fail with the pool, or finish
                for future in done:
                    cell, alone = running.pop(future)
                    err = future.exception()
                    if err is None:
                        yield future.result()
                    elif isinstance(err, BrokenProcessPool) and not alone:
                        suspects.append(cell)
                    else:
                        message = WORKER_DIED if isinstance(err, BrokenProcessPool) else \
                            f"{type(err).__name__}: {' '.join(str(err).split())[:500]}"
                        cellmod.write_failure(cells_dir, cell, message)
                        yield {"key": cell["key"], "ok": False, "seconds": 0.0,
                               "error": message}
                if broke:
                    executor = self.executor()  # a fresh pool replaces the broken one
        finally:
            for future in running:
                future.cancel()


def _ray_cells(pending, address, gpus_per_cell, cells_dir) -> Iterator[dict]:
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
        task = ray.remote(cellmod.run_cell)
        refs = {}
        for cell in _longest_first(pending):
            gpus = gpus_per_cell if _needs_gpu(cell, cluster_gpus) else 0
            # One CPU per task, so one thread each.
            ref = task.options(num_cpus=1, num_gpus=gpus, max_retries=1).remote(
                cell, str(cells_dir), 1)
            refs[ref] = cell
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            cell = refs.pop(ready[0])
            try:
                yield ray.get(ready[0])
            except Exception as err:  # the worker itself died (killed for memory)
                message = f"{type(err).__name__}: {' '.join(str(err).split())[:500]}"
                cellmod.write_failure(cells_dir, cell, message)
                yield {"key": cell["key"], "ok": False, "seconds": 0.0, "error": message}
    finally:
        if started:
            ray.shutdown()


# --------------------------------------------------------------------- table and report

def _assemble(out, all_cells, cells_dir, stores, plans, ran, skipped,
              want_report) -> SweepResult:
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts, failures = [], []
    for cell in all_cells:
        path = cells_dir / f"{cell['key']}.parquet"
        if path.exists():
            parts.append(pq.read_table(path))
            continue
        record = cellmod.read_failure(cells_dir, cell["key"]) or {"error": "not run"}
        failures.append({"model": cell["model"], "layer": cell["layer"],
                         "method": cell.get("method", PROBE_METHOD),
                         "label": cell.get("label"), "seed": cell["seed"],
                         "error": record["error"]})
    if parts:
        table = pa.concat_tables(parts).to_pandas()
    else:
        table = pd.DataFrame({c: pd.Series(dtype="float64" if c == "value" else
                                           "int64" if c == "seed" else "object")
                              for c in cellmod.TABLE_COLUMNS})
    failures = pd.DataFrame(failures, columns=FAILURE_COLUMNS)
    results_path = out / "results.parquet"
    digest = cellmod.digest([c["key"] for c in all_cells if
                             (cells_dir / f"{c['key']}.parquet").exists()])
    marker = out / ".results.digest"
    unchanged = ran == 0 and results_path.exists() and marker.exists() and \
        marker.read_text() == digest
    if not unchanged:
        failed = json.dumps(failures.to_dict("records"), indent=1, default=str).encode()
        atomic_write(results_path, lambda tmp: table.to_parquet(tmp, index=False))
        atomic_write(out / "failures.json", lambda tmp: tmp.write_bytes(failed))
        atomic_write(marker, lambda tmp: tmp.write_text(digest))
    report = _report(out, stores, plans, table, refresh=not unchanged) if want_report \
        else None
    return SweepResult(table, failures, out, results_path, report, ran, skipped)


def _report(out: Path, stores, plans, table: pd.DataFrame, refresh: bool) -> Optional[Path]:
    try:
        from ..viz import write_report
    except ImportError as err:
        log.debug("no report: actclust.viz.write_report is not available (%s)", err)
        return None
    from .._util.schema import RESULT_COLUMNS

    last = None
    if table.empty:
        return None
    for plan, store in zip(plans, stores):
        name = "report.html" if len(plans) == 1 else f"report-{store.root.name}.html"
        path = out / name
        if not refresh and path.exists():
            last = path
            continue
        part = table[(table["model"] == plan.model) & (table["label"] != "")]
        part = part[RESULT_COLUMNS].reset_index(drop=True)  # the report reads compare's table
        if part.empty:
            continue
        try:
            last = Path(write_report(store, results=part, out=path))
        except Exception as err:  # the results are safe on disk; a figure bug must not hide them
            import warnings

            warnings.warn(f"the report could not be written ({type(err).__name__}: {err}); "
                          f"the results are in {out / 'results.parquet'}", stacklevel=2)
    return last
