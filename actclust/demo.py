"""``actclust demo``: the pipeline end to end on the bundled MiniLM and ``topics`` set."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

SEEDS = 5
PROBE_SEEDS = 3


def run_demo(out: Path, limit: Optional[int] = None, overwrite: bool = False) -> pd.DataFrame:
    """Capture mean-pooled block outputs of MiniLM on ``topics``, verify the store, then
    ask on every layer whether k-means clusters line up with the topic (and with the
    sentence template) and how well a linear probe reads the topic; end by writing the
    HTML report (``report.html`` in ``out``).

    Re-running finishes or reuses the store already in ``out`` (``overwrite`` replaces one
    captured with other settings).

    Example:
        >>> import tempfile
        >>> table = run_demo(Path(tempfile.mkdtemp()), limit=64)  # doctest: +SKIP
    """
    from ._util.schema import PROBE_METHOD
    from .capture import capture
    from .compare import compare, summarize, write_results
    from .errors import ActclustError
    from .probes import LinearProbe
    from .store import verify_store

    out.mkdir(parents=True, exist_ok=True)
    store_dir = out / "store"
    print(f"[1/4] capturing MiniLM block outputs (mean-pooled) over 'topics' into {store_dir}")
    store = capture("minilm", "topics", "blocks.*.hook_out", pool="mean", out=store_dir,
                    limit=limit, resume=not overwrite, overwrite=overwrite)
    print(f"[2/4] verifying {len(store.layers)} layers x {len(store)} rows")
    problems = verify_store(store_dir)
    if problems:
        raise ActclustError("store failed verification: " + "; ".join(problems))
    print(f"[3/4] k-means (k = number of classes, {SEEDS} seeds) on every layer, against "
          "the topic and the sentence template")
    clusters = compare(store, ["topic", "template"], reporters=["kmeans"], seeds=SEEDS,
                       probes=False, progress=True)
    print(f"[4/4] a linear probe for the topic on every layer ({PROBE_SEEDS} splits grouped "
          "by template, fixed C=1 to stay quick, with a control task)")
    probes = compare(store, "topic", reporters=[], seeds=PROBE_SEEDS,
                     probe=LinearProbe(C=1.0), progress=True)
    table = pd.concat([clusters, probes], ignore_index=True)
    results = write_results(table, out / "results.parquet")
    s = summarize(table).set_index(["layer", "method", "label", "metric"])

    def cell(layer, method, label, metric):
        row = s.loc[(layer, method, label, metric)]
        return f"{row['mean']:.3f} ± {row['sd']:.3f}"

    print("\nmean ± sd over seeds")
    print(f"  {'layer':<20}{'k-means NMI topic':>20}{'k-means NMI template':>23}"
          f"{'probe acc topic':>18}{'selectivity':>16}")
    for layer in store.layers:
        print(f"  {layer:<20}{cell(layer, 'kmeans', 'topic', 'nmi'):>20}"
              f"{cell(layer, 'kmeans', 'template', 'nmi'):>23}"
              f"{cell(layer, PROBE_METHOD, 'topic', 'probe_accuracy'):>18}"
              f"{cell(layer, PROBE_METHOD, 'topic', 'selectivity'):>16}")
    print("(template: which sentence template a text came from; topic: its subject. A probe "
          "tests on templates it never saw.)")
    from .viz import write_report

    print("\nwriting the report (maps, heatmaps, layer-sweep curves, cluster pages)")
    report = write_report(store, table, out / "report.html", label="topic")
    print(f"\noutput: {out.resolve()}\n  store:   {store_dir.resolve()}"
          f"\n  results: {results.resolve()} (tidy: layer, method, label, metric, seed, value)"
          f"\n  report:  {report.resolve()} (open it in a browser; works offline)")
    return table
