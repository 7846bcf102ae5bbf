"""One self-contained HTML report for a store and its results table."""

from __future__ import annotations

import html
import time
from pathlib import Path

import numpy as np

from ..errors import ActclustError
from ..store import open_store
from ._common import check_results, n_distinct
from .._util.schema import NOT_REPORTERS
from .figures import METRIC_NAMES, PROBE, contingency_heatmap, layer_sweep, pick_label
from .concepts_section import MAX_ROWS as CONCEPT_ROWS
from .concepts_section import concepts_html, is_token_store
from .maps import MAX_POINTS

MAX_SWEEP_LABELS = 4
MAX_AUTO_CLASSES = 30
# The report's own clustering fits (the quick comparison, the refits of the best and worst
# layers) keep at most this much of a layer in memory: a larger layer is fitted on a
# sample and assigned in batches (reporters with memory_budget_gb), so a report of ten
# million rows stays near the size of one of a million.
REPORT_MEMORY_GB = 0.5


def default_label(store) -> str:
    """The store's first label column with 2 to 30 distinct values (``topic`` on topics)."""
    for col in store.label_columns:
        if store.rows.is_list_column(col):
            continue
        if 2 <= n_distinct(store.labels(col)) <= MAX_AUTO_CLASSES:
            return col
    raise ActclustError(f"store {store.root} has no label column with 2 to "
                        f"{MAX_AUTO_CLASSES} values to compare clusters with; pass label=... "
                        f"(label columns: {', '.join(store.label_columns) or 'none'})")


def write_report(store, results=None, out="report.html", *, label: str | None = None,
                 reporter: str | None = None, n_clusters: int | None = None, seed: int = 0,
                 map_method: str = "umap", max_points: int = MAX_POINTS,
                 dashboards: bool = True, concepts: bool | None = None,
                 concept_k: int = 400, concept_rows: int | None = CONCEPT_ROWS,
                 title: str | None = None) -> Path:
    """Write one self-contained HTML report (plotly.js embedded; opens offline).

    It holds the run's provenance (model, dataset, layers and capture settings from the
    manifest), the comparison table, the layer-sweep curves, a map and a contingency heatmap
    of the best and the worst layer (by the reporter's mean NMI on ``label``), and the
    cluster dashboards of those two layers. The file is written to a temporary name and
    renamed, so an interrupted run never leaves a complete-looking report.

    Args:
        store: an :class:`~actclust.ActivationStore` or its path.
        results: the tidy table of :func:`~actclust.compare.compare` (DataFrame or
            parquet path). ``None``: one quick k-means fit per layer (seed 0, k = classes of
            ``label``), scored against ``label``; no probes, so no probe curves.
        label: the label the maps, heatmaps and curves use; default: the first label in
            ``results`` that has both reporter and probe rows.
        reporter: the method whose best and worst layers are shown (default: the first
            reporter in ``results``). It is refitted on those two layers with ``seed`` and
            k = ``n_clusters`` or the number of classes, since results hold scores, not
            assignments; a method that is not a registered name is replaced by k-means.
            The report's fits hold at most ``REPORT_MEMORY_GB`` (0.5 GB) of a layer in
            memory: a reporter with ``memory_budget_gb`` fits a larger layer on a sample
            and assigns every row in batches.
        map_method: how the maps are drawn (``"umap"``, or ``"pca"``, which is faster).
        max_points: at most this many rows per map, a uniform random sample that the map
            states.
        dashboards: include the cluster dashboards.
        concepts: include the Concepts section: per layer, ``concept_k`` k-means clusters
            and a sparse autoencoder's features aligned with every label
            (:mod:`actclust.concepts`), the share aligned across layers, the last layer's
            aligned clusters and its candidate novel features in context. Default: on for
            a token store (``pool="none"``), where token-level labels give it concepts to
            find; it costs a k-means fit and a short autoencoder fit per layer, on a
            seeded sample of at most ``concept_rows`` rows (default 100,000; ``None``:
            every row), the same rows for every layer; the section says how many.

    Returns:
        The path of the report.

    Example:
        >>> import actclust, tempfile
        >>> d = tempfile.mkdtemp()
        >>> store = actclust.capture("minilm", "topics", "blocks.5.hook_out", pool="mean",
        ...                          limit=40, out=d + "/s", progress=False)
        >>> path = write_report(store, out=d + "/report.html", map_method="pca")
        >>> path.name, path.stat().st_size > 1_000_000
        ('report.html', True)
    """
    from ._html import Page, write_atomic

    started = time.perf_counter()
    store = open_store(store)
    label = label or None
    quick = results is None
    if quick:
        from ..compare import compare

        label = label or default_label(store)
        store.labels(label)  # an unknown column fails with the list of columns
        results = compare(store, label, reporters=dict([_bounded(reporter or "kmeans")]),
                          seeds=[seed], n_clusters=n_clusters, probes=False, progress=False)
    results = check_results(results)
    unknown = sorted(set(results["layer"]) - set(store.layers))
    if unknown:
        raise ActclustError(f"results name layers that store {store.root} does not hold: "
                            f"{', '.join(unknown)}; were they computed on another store?")
    label = pick_label(results, label)
    store.labels(label)
    method = _pick_method(results, label, reporter)
    best, worst, score_name = _best_and_worst(results, label, method, store.layers)

    dataset_name = str(store.manifest.get("dataset", {}).get("name", "?"))
    sub = (f"{html.escape(store.model_name)} on {html.escape(dataset_name)}"
           f" · {len(store):,} rows · {len(store.layers)} layers · label {html.escape(label)}")
    page = Page(title or f"actclust report: {store.model_name} on "
                         f"{dataset_name}", sub)
    page.section("provenance", "Provenance", _provenance(store, results, quick))
    page.section("comparison", "Comparison table", _comparison_tables(results, store.layers),
                 "mean ± sd over seeds; the best layer of each column in bold. Reporter "
                 "scores compare clusters with the label; probe accuracy is on held-out "
                 "rows, selectivity is accuracy minus a control task's.")
    sweep_labels = [label] + [lab for lab in dict.fromkeys(results["label"]) if lab != label]
    sweeps = "".join(_sweep_figure(page, results, lab, store.layers)
                     for lab in sweep_labels[:MAX_SWEEP_LABELS])
    page.section("sweep", "Layer sweep", sweeps,
                 "Where unsupervised structure appears: reporter scores (band: ± one sd over "
                 "seeds) against what a linear probe reads out on the same label.")
    fits = {}
    for role, layer in (("best", best), ("worst", worst)):
        if layer is None or layer in fits:
            continue
        fits[layer] = _refit(store, layer, method, label, n_clusters, seed)
        est, name = fits[layer]
        from .maps import layer_map

        fig_map = layer_map(store, layer, clusters=est, label=label, method=map_method,
                            max_points=max_points, random_state=seed, cluster_name=name,
                            title=f"{layer}: {name} clusters and {label}")
        fig_ct = contingency_heatmap(store.labels(label), est.labels_, label_name=label,
                                     cluster_name=name, title=f"{layer}: {name} clusters "
                                     f"versus {label}")
        extra = _structure_figures(est, page)
        score = _layer_score(results, label, method, layer, score_name)
        page.section(f"{role}-layer", f"{role.capitalize()} layer: {layer}",
                     page.figure(fig_map) + page.figure(fig_ct) + extra,
                     f"{METRIC_NAMES.get(score_name, score_name)} of {html.escape(method)} "
                     f"on {html.escape(label)} here: {score}. Clusters refitted with seed "
                     f"{seed} and k = {est.n_clusters}; hover a point for its text.")
        if dashboards:
            from .dashboard import cluster_dashboard

            others = [c for c in store.label_columns if c != label]
            try:
                dash = cluster_dashboard(store, layer, est, labels=[label] + others,
                                         method=name, uid=f"dash-{role}")
            except ActclustError as err:  # e.g. a collapsed fit with one cluster
                page.section(f"clusters-{role}", f"Clusters of the {role} layer",
                             f"<p>No dashboard: {html.escape(str(err))}</p>")
                continue
            page.section(f"clusters-{role}", f"Clusters of the {role} layer",
                         dash.fragment(page),
                         f"{html.escape(name)} on {html.escape(layer)}: one page per cluster "
                         f"(buttons: cluster · rows · commonest {html.escape(label)} and its "
                         "share). "
                         f"Tokens and texts are shaded by membership: "
                         f"{html.escape(dash.strength_kind)}.")
    if concepts or (concepts is None and is_token_store(store)):
        body, note = concepts_html(page, store, store.layers, k=concept_k, seed=seed,
                                   max_rows=concept_rows)
        page.section("concepts", "Concepts", body, note)
    seconds = time.perf_counter() - started
    page.add(f'<p class="note">Written by actclust {_version()} in {seconds:.1f} s.</p>')
    return write_atomic(page.render(), out)


def _version() -> str:
    from .._util.version import __version__

    return __version__


def _bounded(method: str) -> tuple:
    """``(name, reporter)`` for ``method`` (settings allowed), within the report's memory."""
    from ..reporters.settings import reporter_from_text

    name, est = reporter_from_text(method)
    return name, _within_budget(est)


def _within_budget(est):
    params = est.get_params(deep=False)
    if "memory_budget_gb" in params and (params["memory_budget_gb"] is None
                                         or params["memory_budget_gb"] > REPORT_MEMORY_GB):
        est.set_params(memory_budget_gb=REPORT_MEMORY_GB)
    return est


def _pick_method(results, label, reporter):
    # concept-alignment rows (metric concepts_*) name a clusterer that has no scores here
    scored = results[(results["label"] == label)
                     & ~results["metric"].astype(str).str.startswith("concepts_")]
    methods = [m for m in dict.fromkeys(scored["method"]) if m not in NOT_REPORTERS]
    if reporter is not None:
        if reporter not in methods:
            raise ActclustError(f"results have no rows for reporter {reporter!r} on label "
                                f"{label!r}; reporters present: {', '.join(methods) or 'none'}")
        return reporter
    return methods[0] if methods else PROBE


def _layer_order(results, label, layers):
    present = set(results.loc[results["label"] == label, "layer"])
    return [layer for layer in layers if layer in present]


def _sweep_figure(page, results, label, layers) -> str:
    """The sweep curves of one label; a label whose rows have nothing to draw is skipped
    (the main label's problems surface earlier, with their error)."""
    try:
        return page.figure(layer_sweep(results, label,
                                       layers=_layer_order(results, label, layers)))
    except ActclustError:
        return ""


def _best_and_worst(results, label, method, layers):
    from ..compare import summarize

    part = results[(results["label"] == label) & (results["method"] == method)]
    for metric in ("nmi", "accuracy", "probe_accuracy"):
        rows = part[part["metric"] == metric]
        if len(rows):
            means = summarize(rows).set_index("layer")["mean"]
            means = means.reindex([layer for layer in layers if layer in means.index]).dropna()
            if means.empty:
                continue
            best, worst = means.idxmax(), means.idxmin()
            return best, (worst if worst != best else None), metric
    raise ActclustError(f"results for {method!r} on label {label!r} have no nmi, accuracy or "
                        "probe_accuracy rows to rank layers by")


def _layer_score(results, label, method, layer, metric) -> str:
    v = results[(results["label"] == label) & (results["method"] == method)
                & (results["layer"] == layer) & (results["metric"] == metric)]["value"]
    return f"{v.mean():.3f}" + (f" ± {v.std():.3f} over {len(v)} seeds" if len(v) > 1 else "")


def _refit(store, layer, method, label, n_clusters, seed):
    from ..errors import ActclustError as SettingsError
    from ..reporters import capabilities, configure
    from ..reporters.settings import reporter_from_text

    # A method that is not a registered clusterer with a number of clusters, with or
    # without settings (a probe, a user's estimator, CCS), is shown with k-means' clusters.
    try:
        name, est = reporter_from_text(method)
        caps = capabilities(est)
        usable = caps.kind == "clusterer" and caps.k_param == "n_clusters"
    except SettingsError:
        usable = False
    if not usable:
        name, est = reporter_from_text("kmeans")
    k = n_clusters or n_distinct(store.labels(label))
    est = _within_budget(configure(est, n_clusters=max(k, 2), seed=seed))
    est.fit(store.layer(layer))
    return est, name


def _structure_figures(est, page) -> str:
    from .reporter_figures import dendrogram, training_curves

    if getattr(est, "linkage_", None) is not None:
        return page.figure(dendrogram(est))
    if getattr(est, "history_", None):
        return page.figure(training_curves(est))
    return ""


def _provenance(store, results, quick) -> str:
    m = store.manifest
    # an imported store records less than a capture: what it lacks reads "?"
    cap, ds, model = m.get("capture", {}), m.get("dataset", {}), m.get("model", {})
    shapes = ", ".join(f"{name} {'x'.join(map(str, info['shape'] or []))}"
                       for name, info in m["layers"].items())
    extra_ds = ", ".join(f"{k}={v}" for k, v in ds.items()
                         if k not in ("name", "fingerprint", "n_docs"))
    methods = sorted(set(results["method"]))
    seeds = results.groupby("method")["seed"].nunique().to_dict()
    items = [
        ("model", f"{model.get('name', '?')} ({model.get('kind', '?')}"
                  + (f", {model['architecture']}" if model.get("architecture") else "")
                  + f", config {model.get('config_hash', '?')})"),
        ("dataset", f"{ds.get('name', '?')}: {ds.get('n_docs', '?')} documents, sha256 "
                    f"{str(ds.get('fingerprint', '?'))[:12]}" + (f" ({extra_ds})" if extra_ds
                                                                  else "")),
        ("capture", f"pool={cap.get('pool', '?')}, dtype={cap.get('storage_dtype', '?')}, "
                    f"max_length={cap.get('max_length', '?')}, "
                    f"exclude_special={cap.get('exclude_special', '?')}, "
                    f"truncated_docs={cap.get('truncated_docs', 0)}"),
        ("rows", f"{m['n_rows']:,}" + (" (one per token)" if cap.get("pool") == "none"
                                       else " (one per document)")),
        ("layers", shapes),
        ("store", f"{store.root} · written by actclust {m['actclust_version']} on "
                  f"{m['created']}"),
        ("labels", ", ".join(store.label_columns)),
        ("results", f"{len(results):,} rows · methods "
                    + ", ".join(f"{k} ({seeds[k]} seed{'s' if seeds[k] > 1 else ''})"
                                for k in methods)
                    + f" · labels {', '.join(map(str, dict.fromkeys(results['label'])))}"
                    + (" · no results were given: one quick k-means fit per layer, no probes"
                       if quick else "")),
    ]
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in items)
    return f'<table class="kv">{body}</table>'


TABLE_METHOD_NAMES = {PROBE: "probe", "knn": "neighbours"}
TABLE_METRICS = ["nmi", "accuracy", "self_probe_accuracy", "probe_accuracy", "selectivity",
                 "knn_purity"]


def _comparison_tables(results, layers) -> str:
    from ..compare import summarize

    s = summarize(results)
    s = s[s["metric"].isin(TABLE_METRICS)]
    if s.empty:
        s = summarize(results)
    out = []
    for label in dict.fromkeys(s["label"]):
        part = s[s["label"] == label]
        cols = list(dict.fromkeys(zip(part["method"], part["metric"])))
        cols.sort(key=lambda c: (c[0] in NOT_REPORTERS, TABLE_METRICS.index(c[1])
                                 if c[1] in TABLE_METRICS else 99))
        idx = part.set_index(["method", "metric", "layer"]).sort_index()
        order = [layer for layer in layers if layer in set(part["layer"])]
        head = "".join(f"<th>{html.escape(TABLE_METHOD_NAMES.get(m, m))}<br>"
                       f"{html.escape(METRIC_NAMES.get(k, k))}</th>" for m, k in cols)
        best = {}
        for c in cols:
            vals = idx.loc[c]["mean"].reindex(order)
            best[c] = vals.idxmax() if vals.notna().any() else None
        body = []
        for layer in order:
            cells = []
            for c in cols:
                key = (*c, layer)
                if key not in idx.index:
                    cells.append("<td></td>")
                    continue
                r = idx.loc[key]
                sd = "" if r["n"] < 2 or np.isnan(r["sd"]) else f" ± {r['sd']:.3f}"
                cls = ' class="best"' if best[c] == layer else ""
                cells.append(f"<td{cls}>{r['mean']:.3f}{sd}</td>")
            body.append(f"<tr><td>{html.escape(layer)}</td>{''.join(cells)}</tr>")
        out.append(f"<p style='margin:12px 0 4px'><b>label: {html.escape(str(label))}</b></p>"
                   f'<div class="scroll"><table class="data"><thead><tr><th>layer</th>{head}'
                   f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>")
    return "".join(out)
