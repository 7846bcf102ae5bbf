"""Figures of a fitted reporter: a trained reporter's training curves, the Agglomerative
merge tree, PCA's explained variance and a Gaussian mixture's BIC over k. Each function
returns a plotly ``Figure`` whose ``layout.meta`` records what it shows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ActclustError
from ._common import base_layout, colour


# ---------------------------------------------------------------- training curves


HISTORY_PANELS = [
    ("loss", "loss"),
    ("nmi_previous", "NMI with previous epoch"),
    ("delta_label", "assignment change (share of rows)"),
    ("largest_cluster", "largest cluster (share of rows)"),
]
_NOT_PLOTTED = {"epoch", "stop", "degenerate", "head", "phase"}


def _history(source) -> pd.DataFrame:
    history = getattr(source, "history_", source)
    if not isinstance(history, (list, tuple)) or not history:
        name = type(source).__name__
        raise ActclustError(f"no training history in {name}: pass a trained reporter "
                            "(DEC, IDEC, IIC, DeepCluster, AEKMeans, CCS) after fit, or its "
                            "history_ list")
    return pd.DataFrame.from_records(list(history))


def training_curves(source, *, title: str | None = None):
    """A deep reporter's ``history_``: loss, NMI between epochs, assignment change, largest
    cluster share, one panel each (only the ones the history holds).

    Loss is split by ``phase`` (DEC: pretrain, cluster) or ``head`` (IIC) when recorded;
    epochs flagged ``degenerate`` are marked with red crosses.

    Example:
        >>> fig = training_curves([{"loss": 1.0, "nmi_previous": 0.2},
        ...                        {"loss": 0.5, "nmi_previous": 0.9}])
        >>> fig.layout.meta["panels"], fig.data[0].y.tolist()
        (['loss', 'nmi_previous'], [1.0, 0.5])
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    h = _history(source)
    x = h["epoch"].to_numpy() if "epoch" in h.columns else np.arange(len(h))
    panels = [(k, t) for k, t in HISTORY_PANELS if k in h.columns and h[k].notna().any()]
    panels += [(k, k.replace("_", " ")) for k in h.columns
               if k not in dict(HISTORY_PANELS) and k not in _NOT_PLOTTED
               and pd.api.types.is_numeric_dtype(h[k]) and h[k].notna().any()]
    if not panels:
        raise ActclustError(f"the history has no numeric columns to plot (columns: "
                            f"{', '.join(h.columns)})")
    fig = make_subplots(len(panels), 1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[t for _, t in panels])
    split = "phase" if "phase" in h.columns else "head" if "head" in h.columns else None
    for row, (key, text) in enumerate(panels, start=1):
        groups = [(None, np.ones(len(h), bool))] if split is None else \
            [(g, (h[split] == g).to_numpy()) for g in dict.fromkeys(h[split].dropna())]
        for i, (group, pick) in enumerate(groups):
            pick = pick & h[key].notna().to_numpy()
            if not pick.any():
                continue
            name = text if group is None else f"{text} ({split} {group})"
            fig.add_trace(go.Scatter(x=x[pick], y=h.loc[pick, key].to_numpy(dtype=float),
                                     mode="lines+markers", name=name, marker={"size": 4},
                                     line={"color": colour(i)}, showlegend=group is not None
                                     and row == 1, legendgroup=str(group)),
                          row=row, col=1)
        if "degenerate" in h.columns and h["degenerate"].fillna(False).astype(bool).any():
            bad = h["degenerate"].fillna(False).astype(bool).to_numpy() & h[key].notna().to_numpy()
            if bad.any():
                fig.add_trace(go.Scatter(x=x[bad], y=h.loc[bad, key].to_numpy(dtype=float),
                                         mode="markers", name="degenerate epoch",
                                         marker={"symbol": "x", "size": 9, "color": "#d62728"},
                                         showlegend=row == 1, legendgroup="degenerate"),
                              row=row, col=1)
        fig.update_yaxes(title_text=key, row=row, col=1)
    fig.update_xaxes(title_text="epoch", row=len(panels), col=1)
    name = type(source).__name__ if hasattr(source, "history_") else "reporter"
    base_layout(fig, title or f"Training of {name}", f"{len(h)} epochs recorded",
                height=170 + 190 * len(panels))
    fig.layout.meta = {"panels": [k for k, _ in panels], "epochs": len(h)}
    return fig


# ---------------------------------------------------------------- reporter structure


def dendrogram(source, *, n_clusters: int | None = None, max_leaves: int = 30,
               title: str | None = None):
    """The merge tree of an :class:`~actclust.reporters.Agglomerative` fit (or a SciPy
    linkage matrix), its top ``max_leaves`` branches, coloured below the cut into
    ``n_clusters`` (the reporter's own by default), with the cut drawn.

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> from actclust.reporters import Agglomerative
        >>> X, _ = make_blobs(60, centers=3, random_state=0)
        >>> fig = dendrogram(Agglomerative(3).fit(X))
        >>> fig.layout.meta["n_clusters"], fig.layout.meta["leaves"]
        (3, 30)
    """
    import plotly.graph_objects as go
    from scipy.cluster import hierarchy

    Z = getattr(source, "linkage_", source)
    Z = np.asarray(Z, dtype=float)
    if Z.ndim != 2 or Z.shape[1] != 4 or len(Z) < 1:
        raise ActclustError("dendrogram needs a fitted Agglomerative reporter or a SciPy "
                            f"linkage matrix of shape (n - 1, 4); got shape {Z.shape}")
    k = n_clusters or getattr(source, "n_clusters", None) or 2
    k = int(min(max(k, 2), len(Z) + 1))
    # The cut sits between the merges that leave k and k - 1 clusters.
    cut = float((Z[-k, 2] + Z[-k + 1, 2]) / 2) if k <= len(Z) else float(Z[-1, 2])
    tree = hierarchy.dendrogram(Z, truncate_mode="lastp", p=max_leaves, no_plot=True,
                                color_threshold=cut, above_threshold_color="#8c8c8c")
    fig = go.Figure()
    codes = sorted({c for c in tree["color_list"] if c != "#8c8c8c"})
    for xs, ys, c in zip(tree["icoord"], tree["dcoord"], tree["color_list"]):
        col = "#8c8c8c" if c == "#8c8c8c" else colour(codes.index(c))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": col, "width": 1.6},
                                 hovertemplate="merge at %{y:.3g}<extra></extra>",
                                 showlegend=False))
    fig.add_hline(y=cut, line={"dash": "dash", "color": "#d62728", "width": 1.2},
                  annotation_text=f"cut: {k} clusters", annotation_position="top right")
    leaves = len(tree["ivl"])
    positions = [5 + 10 * i for i in range(leaves)]
    linkage = getattr(source, "linkage", "ward")
    pre = getattr(source, "precluster_", False)
    sub = (f"top {leaves} branches (rows per branch in brackets) · {linkage} linkage"
           + (" over k-means centroids" if pre else ""))
    base_layout(fig, title or "Agglomerative merge tree", sub, height=440)
    fig.update_xaxes(tickvals=positions, ticktext=tree["ivl"], tickangle=-60,
                     title_text="branches (leaf index or (rows))", showgrid=False)
    fig.update_yaxes(title_text="merge distance", rangemode="tozero")
    fig.layout.meta = {"n_clusters": k, "cut": cut, "leaves": leaves}
    return fig


def explained_variance(source, *, max_components: int = 50, title: str | None = None):
    """Share of variance per principal component (bars) and cumulative (line), from a fitted
    :class:`~actclust.reporters.PCA` or an array of ratios.

    Example:
        >>> fig = explained_variance(np.array([0.5, 0.3, 0.2]))
        >>> fig.data[1].y.tolist()
        [0.5, 0.8, 1.0]
    """
    import plotly.graph_objects as go

    ratio = np.asarray(getattr(source, "explained_variance_ratio_", source), dtype=float)
    if ratio.ndim != 1 or len(ratio) == 0:
        raise ActclustError("explained_variance needs a fitted PCA reporter or a 1-D array "
                            f"of variance ratios; got shape {ratio.shape}")
    ratio = ratio[:max_components]
    comps = np.arange(1, len(ratio) + 1)
    cum = np.round(np.cumsum(ratio), 12)
    fig = go.Figure([
        go.Bar(x=comps, y=ratio, name="per component", marker_color=colour(0),
               hovertemplate="PC %{x}: %{y:.1%}<extra></extra>"),
        go.Scatter(x=comps, y=cum, name="cumulative", mode="lines+markers",
                   line={"color": colour(1)}, hovertemplate="PCs 1-%{x}: %{y:.1%}<extra></extra>"),
    ])
    n90 = int(np.searchsorted(cum, 0.9) + 1) if cum[-1] >= 0.9 else None
    sub = f"{len(ratio)} components shown" + (f" · {n90} reach 90%" if n90 else "")
    base_layout(fig, title or "Explained variance", sub, height=400)
    fig.update_xaxes(title_text="principal component")
    fig.update_yaxes(title_text="share of variance", tickformat=".0%", range=[0, 1.02])
    fig.layout.meta = {"components": len(ratio), "n90": n90}
    return fig


def bic_curve(source, *, title: str | None = None):
    """BIC (and AIC) against the number of mixture components; the lowest BIC is starred.

    ``source`` is the table of :func:`~actclust.reporters.select_k` (columns ``k``,
    ``bic``, ``aic``) or a list of fitted :class:`~actclust.reporters.GMM`.

    Example:
        >>> t = pd.DataFrame({"k": [2, 3, 4], "bic": [10.0, 7.0, 8.0], "aic": [9.0, 6.0, 6.5]})
        >>> bic_curve(t).layout.meta["best_k"]
        3
    """
    import plotly.graph_objects as go

    if isinstance(source, pd.DataFrame):
        table = source
    else:
        try:
            table = pd.DataFrame([{"k": m.n_clusters, "bic": m.bic_, "aic": m.aic_}
                                  for m in source])
        except (AttributeError, TypeError):
            raise ActclustError("bic_curve needs select_k's table or a list of fitted GMM "
                                "reporters") from None
    if not {"k", "bic"} <= set(table.columns) or table.empty:
        raise ActclustError("bic_curve needs columns k and bic (as select_k returns)")
    table = table.sort_values("k")
    best = table.loc[table["bic"].idxmin()]
    fig = go.Figure(go.Scatter(x=table["k"], y=table["bic"], mode="lines+markers", name="BIC",
                               line={"color": colour(0)}))
    if "aic" in table.columns:
        fig.add_trace(go.Scatter(x=table["k"], y=table["aic"], mode="lines+markers",
                                 name="AIC", line={"color": colour(1), "dash": "dash"}))
    fig.add_trace(go.Scatter(x=[best["k"]], y=[best["bic"]], mode="markers",
                             name=f"lowest BIC (k={int(best['k'])})",
                             marker={"symbol": "star", "size": 16, "color": "#d62728"}))
    base_layout(fig, title or "Gaussian mixture: choosing k", "lower is better", height=400)
    fig.update_xaxes(title_text="components (k)", dtick=1)
    fig.update_yaxes(title_text="information criterion")
    fig.layout.meta = {"best_k": int(best["k"])}
    return fig
