"""Running a sweep: check everything, capture once, run the cells that are not done,
assemble the results table, write the report.

The stores are planned and captured by :mod:`~actclust.sweep.stores`, the cells are listed
and run by :mod:`~actclust.sweep.cells`, on a backend of :mod:`~actclust.sweep.backends`.

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
import re
import logging
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import pandas as pd

from ..errors import ActclustError
from .._util.files import atomic_write
from .._util.schema import PROBE_METHOD, RESULT_COLUMNS
from .._util.version import __version__
from . import cells as cellmod
from .backends import CellPool, import_ray, in_process, ray_cells
from .spec import SweepSpec, check_run, load_sweep
from .stores import check_labels, ensure_store, known_labels, plan_given_store, plan_store

log = logging.getLogger("actclust.sweep")

FAILURE_COLUMNS = ["model", "layer", "method", "label", "seed", "error"]


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
        import_ray()
    out = spec.out.resolve()
    _check_out(out, spec, resume, overwrite)
    pool = CellPool(jobs) if backend == "local" and jobs > 1 else None
    if pool is not None:
        pool.warm()  # workers import while this process plans and captures
    plans = [plan_store(spec, model, out) for model in spec.models] if spec.models \
        else [plan_given_store(spec)]
    for plan in plans:
        if plan.fits and plan.store is None:
            from ..store import ActivationStore

            plan.store = ActivationStore(plan.path)
        if plan.store is not None and spec.labels:  # the store exists: its columns are known
            check_labels(plan.store, spec.labels)
    known = spec.labels or known_labels(plans[0])
    if known is not None:
        _check_scorable(spec, known)
    # Every check passed: from here on, work.
    if overwrite:
        _clear(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_meta(out, spec)
    stores = [ensure_store(plan, progress) for plan in plans]
    labels = spec.labels or stores[0].label_columns
    for store in stores:
        check_labels(store, labels)
    _check_scorable(spec, labels)
    all_cells = cellmod.unique([c for plan, store in zip(plans, stores)
                                for c in cellmod.plan_cells(spec, plan, store, labels)])
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


def _check_scorable(spec: SweepSpec, labels: list) -> None:
    """Clustering reporters score their clusters against labels: without any, stop now."""
    from ..reporters import is_clusterer

    if labels:
        return
    clustering = [r.method for r in spec.reporters if is_clusterer(r.name)]
    if clustering:
        raise ActclustError(f"no label columns to score clusters against: {clustering[0]} "
                            "clusters, but the data has no label columns; use data with "
                            "labels, or only reporters that do not cluster (pca)")


# ------------------------------------------------------------------- the output folder

# What a sweep itself leaves hidden in its folder; any other entry, hidden or not, is a
# user's (a .git, a .env) and makes the folder not the sweep's to write into.
_OWN_HIDDEN = re.compile(r"\.results\.digest|\..*\.tmp")


def _check_out(out: Path, spec: SweepSpec, resume: bool, overwrite: bool) -> None:
    from ..store.paths import check_output_path

    check_output_path(out, destructive=False)  # never /, the home folder or the cwd
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
    elif out.exists() and any(not _OWN_HIDDEN.fullmatch(p.name) for p in out.iterdir()):
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
    data = _data_settings(spec)
    meta = {"name": spec.name, "actclust_version": __version__,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data": data, "data_hash": cellmod.digest(data), "sweep_file": spec.source}
    text = json.dumps(meta, indent=1).encode()
    atomic_write(out / "sweep.json", lambda tmp: tmp.write_bytes(text))


# ----------------------------------------------------------------------- running cells

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
            results = ray_cells(pending, address, gpus_per_cell, cells_dir)
        elif pool is None or len(pending) == 1:
            results = in_process(pending, cells_dir, stores, started)
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
