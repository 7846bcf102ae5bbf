"""Figures over results: the contingency of clusters and labels, and the layer sweep of
reporters against probes. Each function returns a plotly ``Figure`` whose ``layout.meta``
records what it shows; the figures of a fitted reporter are in
:mod:`~actclust.viz.reporter_figures`."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from .._util.schema import NEIGHBOUR_METHOD, NOT_REPORTERS
from .._util.schema import PROBE_METHOD as PROBE
from ..errors import ActclustError
from ._common import base_layout, check_results, colour, rgba

CLUSTER_METRICS = ("nmi", "accuracy")
METRIC_NAMES = {"nmi": "NMI", "accuracy": "cluster accuracy", "ari": "ARI",
                "purity": "purity", "v_measure": "V-measure",
                "probe_accuracy": "probe accuracy", "selectivity": "probe selectivity",
                "control_accuracy": "control accuracy",
                "majority_baseline": "majority baseline",
                "self_probe_accuracy": "self-probe accuracy (no labels)",
                "cluster_balance": "cluster balance", "knn_purity": "kNN label purity"}


# ---------------------------------------------------------------- contingency


def contingency_heatmap(labels_true, clusters, *, label_name: str = "label",
                        cluster_name: str = "cluster", title: str | None = None,
                        max_cells_with_text: int = 600):
    """Clusters x label values, rows ordered so the Hungarian matching lies on the diagonal.

    Cells show counts; colour is the share of the cluster (row) in that class, so small
    clusters read as clearly as large ones. Each row is labelled with the cluster's size and
    purity. Matched pairs come first, in the label's sorted order; unmatched clusters (more
    clusters than classes) and unmatched classes follow. ``clusters`` may be cluster ids or
    a fitted reporter. Rows with a missing label are left out.

    Example:
        >>> fig = contingency_heatmap(["a", "a", "b", "b", "c"], [2, 2, 0, 0, 1])
        >>> fig.layout.meta["rows"], fig.layout.meta["columns"]
        (['2', '0', '1'], ['a', 'b', 'c'])
        >>> fig.data[0].text[0].tolist()
        ['2', '0', '0']
    """
    import plotly.graph_objects as go

    from ..metrics import contingency

    if hasattr(clusters, "labels_"):
        clusters = clusters.labels_
    table = contingency(labels_true, clusters)
    counts = table.to_numpy()
    from scipy.optimize import linear_sum_assignment

    r, c = linear_sum_assignment(counts, maximize=True)
    pairs = sorted(zip(r.tolist(), c.tolist()), key=lambda p: p[1])
    matched_rows = [p[0] for p in pairs]
    matched_cols = [p[1] for p in pairs]
    sizes = counts.sum(1)
    rest_rows = sorted(set(range(len(counts))) - set(matched_rows), key=lambda i: -sizes[i])
    rest_cols = [j for j in range(counts.shape[1]) if j not in set(matched_cols)]
    row_order, col_order = matched_rows + rest_rows, matched_cols + rest_cols
    counts = counts[row_order][:, col_order]
    clusters_sorted = [table.index[i] for i in row_order]
    classes_sorted = [table.columns[j] for j in col_order]
    sizes = counts.sum(1)
    share = counts / np.maximum(sizes[:, None], 1)
    class_share = counts / np.maximum(counts.sum(0)[None, :], 1)
    purity_rows = counts.max(1) / np.maximum(sizes, 1)
    total = counts.sum()
    accuracy = float(np.trace(counts[:len(pairs), :len(pairs)]) / total)
    purity = float(counts.max(1).sum() / total)
    y_text = [f"{cluster_name} {k} · n={n} · purity {p:.2f}"
              for k, n, p in zip(clusters_sorted, sizes, purity_rows)]
    x_text = [str(v) for v in classes_sorted]
    custom = np.dstack([share, class_share])
    show_text = counts.size <= max_cells_with_text
    fig = go.Figure(go.Heatmap(
        z=share, x=x_text, y=y_text, text=counts.astype(str), customdata=custom,
        texttemplate="%{text}" if show_text else None, textfont={"size": 11},
        colorscale="Blues", zmin=0, zmax=1, xgap=1, ygap=1,
        colorbar={"title": {"text": "share of<br>cluster"}, "tickformat": ".0%"},
        hovertemplate=(f"{html.escape(cluster_name)}: %{{y}}<br>{html.escape(label_name)}: "
                       "%{x}<br>%{text} rows · %{customdata[0]:.0%} of the cluster · "
                       "%{customdata[1]:.0%} of the class<extra></extra>")))
    sub = (f"{len(clusters_sorted)} clusters x {len(classes_sorted)} values of {label_name}; "
           f"matched pairs on the diagonal · cluster accuracy {accuracy:.2f} · purity "
           f"{purity:.2f} · {total:,} rows")
    base_layout(fig, title or f"Clusters versus {label_name}", sub,
                height=max(360, 150 + 30 * len(clusters_sorted)))
    fig.update_xaxes(title_text=label_name, side="bottom", tickangle=-35 if
                     max(map(len, x_text)) > 4 else 0, type="category")
    fig.update_yaxes(title_text=None, autorange="reversed", type="category")
    fig.update_layout(margin={"l": 230})
    fig.layout.meta = {"rows": [str(k) for k in clusters_sorted], "columns": x_text,
                       "accuracy": accuracy, "purity": purity,
                       "matching": {str(table.index[a]): str(table.columns[b])
                                    for a, b in pairs}}
    return fig


# ---------------------------------------------------------------- layer sweep


def pick_label(results: pd.DataFrame, label: str | None = None) -> str:
    """The label a sweep is drawn for: ``label`` if given and present, else the first label
    that has both reporter and probe rows, else the first label.

    Example:
        >>> t = pd.DataFrame({"layer": ["a"] * 2, "method": ["kmeans", "linear_probe"],
        ...                   "label": ["template", "topic"], "metric": ["nmi", "selectivity"],
        ...                   "seed": [0, 0], "value": [0.5, 0.4]})
        >>> pick_label(t)
        'template'
    """
    labels = list(dict.fromkeys(results["label"]))
    if label is not None:
        if label not in labels:
            raise ActclustError(f"results have no rows for label {label!r}; labels in the "
                                f"results: {', '.join(map(str, labels))}")
        return label
    for candidate in labels:
        methods = set(results.loc[results["label"] == candidate, "method"])
        if PROBE in methods and methods - NOT_REPORTERS:
            return candidate
    return labels[0]


def layer_sweep(results, label: str | None = None, *, reporters=None,
                metrics=CLUSTER_METRICS, layers=None, title: str | None = None):
    """Per layer: reporter scores (mean ± sd band over seeds) against the linear probe.

    Reporter lines show ``metrics`` (NMI and cluster accuracy by default); the probe's
    accuracy (solid black), selectivity (dashed) and majority baseline (grey dots) come from
    the ``linear_probe`` rows when present. The x axis follows ``layers`` or the order the
    table lists them in (capture order for :func:`~actclust.compare.compare`).

    Args:
        results: the tidy results table (DataFrame or parquet path).
        label: which label; default: the first with both reporter and probe rows.
        reporters: which methods to draw (default: every non-probe method).

    Example:
        >>> t = pd.DataFrame({"layer": ["l0", "l0", "l1", "l1"], "method": "kmeans",
        ...                   "label": "y", "metric": "nmi", "seed": [0, 1, 0, 1],
        ...                   "value": [0.1, 0.2, 0.5, 0.7]})
        >>> fig = layer_sweep(t)
        >>> [t.name for t in fig.data if t.showlegend is not False]
        ['kmeans NMI']
        >>> fig.data[-1].y.round(2).tolist()
        [0.15, 0.6]
    """
    import plotly.graph_objects as go

    from ..compare import summarize

    results = check_results(results)
    label = pick_label(results, label)
    table = results[results["label"] == label]
    all_methods = list(dict.fromkeys(table["method"]))
    if reporters is None:
        reporters = [m for m in all_methods if m not in NOT_REPORTERS]
    else:
        reporters = [reporters] if isinstance(reporters, str) else list(reporters)
        missing = [r for r in reporters if r not in all_methods]
        if missing:
            raise ActclustError(f"results have no rows for method(s) {', '.join(missing)} on "
                                f"label {label!r}; methods present: {', '.join(all_methods)}")
    order = list(layers) if layers is not None else list(dict.fromkeys(table["layer"]))
    s = summarize(table).set_index(["method", "metric", "layer"]).sort_index()
    fig = go.Figure()
    drawn = []

    def line(method, metric, name, col, dash, width=2.5, band=True):
        if (method, metric) not in s.index.droplevel("layer"):
            return
        part = s.loc[(method, metric)].reindex(order)
        if part["mean"].isna().all():
            return
        mean, sd, n = part["mean"].to_numpy(), part["sd"].fillna(0).to_numpy(), part["n"]
        if band and (part["n"] > 1).any():
            fig.add_trace(go.Scatter(x=order, y=mean + sd, mode="lines", line={"width": 0},
                                     showlegend=False, hoverinfo="skip", legendgroup=name))
            fig.add_trace(go.Scatter(x=order, y=mean - sd, mode="lines", line={"width": 0},
                                     fill="tonexty", fillcolor=rgba(col, 0.18),
                                     showlegend=False, hoverinfo="skip", legendgroup=name))
        fig.add_trace(go.Scatter(
            x=order, y=mean, mode="lines+markers", name=name, legendgroup=name,
            line={"color": col, "dash": dash, "width": width}, marker={"size": 7},
            customdata=np.column_stack([sd, n.fillna(0).to_numpy()]),
            hovertemplate=f"{html.escape(name)}<br>%{{x}}: %{{y:.3f}} ± %{{customdata[0]:.3f}}"
                          " (%{customdata[1]:.0f} seeds)<extra></extra>"))
        drawn.append(name)

    dashes = ["solid", "dash", "dot", "dashdot"]
    for i, method in enumerate(reporters):
        for j, metric in enumerate(metrics):
            line(method, metric, f"{method} {METRIC_NAMES.get(metric, metric)}", colour(i),
                 dashes[j % len(dashes)])
    if PROBE in all_methods:
        line(PROBE, "probe_accuracy", "probe accuracy", "#222222", "solid", 3)
        line(PROBE, "selectivity", "probe selectivity", "#222222", "dash", 2)
        line(PROBE, "majority_baseline", "majority baseline", "#999999", "dot", 1.5, False)
    line(NEIGHBOUR_METHOD, "knn_purity", "kNN label purity", "#7f7f7f", "dashdot", 2, False)
    if not drawn:
        raise ActclustError(f"results for label {label!r} have none of the metrics "
                            f"{', '.join(metrics)} nor probe rows; metrics present: "
                            f"{', '.join(sorted(set(table['metric'])))}")
    n_seeds = int(table.loc[~table["method"].isin(NOT_REPORTERS), "seed"].nunique()) \
        if reporters else 0
    sub = (f"label {label} · reporter lines: mean ± sd over {n_seeds} seeds"
           if reporters else f"label {label}") + \
        (" · black: linear probe on held-out rows" if PROBE in all_methods else "")
    base_layout(fig, title or f"Where structure appears, layer by layer: {label}", sub,
                height=460)
    values = [np.asarray(t.y, dtype=float) for t in fig.data if t.y is not None]
    low = min(0.0, float(np.nanmin(np.concatenate(values)))) if values else 0.0
    fig.update_yaxes(title_text="score", range=[low - 0.05, 1.05], zeroline=True)
    fig.update_xaxes(title_text="layer", type="category", tickangle=-30)
    fig.update_layout(legend={"orientation": "v", "x": 1.01, "y": 1}, hovermode="x unified")
    fig.layout.meta = {"label": label, "layers": order, "lines": drawn}
    return fig
