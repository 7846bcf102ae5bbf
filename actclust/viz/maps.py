"""2-D maps of a layer: UMAP (default) or PCA of a bounded random sample of its rows."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ActclustError
from ..store import open_store
from ._common import (OTHER_COLOUR as OTHER, PALETTE, base_layout, category_names, cluster_labels,
                      colour, row_hover)

MAX_POINTS = 10_000
METHODS = ("umap", "pca")
UMAP_PCA_DIMS = 50


@dataclass
class Embedding:
    """2-D coordinates of a sample of a layer's rows.

    Attributes:
        coords: ``(n_shown, 2)`` coordinates.
        rows: the row numbers (sorted) the coordinates belong to.
        n_total: rows in the layer.
        method: ``"umap"`` or ``"pca"``.
        max_points: the cap the sample was drawn under.
        settings: what else shaped the map (neighbours, PCA dimensions, seed).

    Example:
        >>> e = embed(np.random.default_rng(0).normal(size=(500, 8)), method="pca",
        ...           max_points=100)
        >>> e.coords.shape, e.subsampled
        ((100, 2), True)
    """

    coords: np.ndarray
    rows: np.ndarray
    n_total: int
    method: str
    max_points: int
    settings: dict

    @property
    def subsampled(self) -> bool:
        return len(self.rows) < self.n_total

    def describe(self) -> str:
        """One line saying what the map shows, the sample and its cap included.

        Example:
            >>> e = Embedding(np.zeros((2, 2)), np.array([3, 9]), 1_000_000, "pca", 2, {})
            >>> e.describe()
            'PCA · 2 of 1,000,000 rows shown (uniform random sample, cap max_points=2)'
        """
        name = "UMAP" if self.method == "umap" else "PCA"
        if self.subsampled:
            shown = (f"{len(self.rows):,} of {self.n_total:,} rows shown (uniform random "
                     f"sample, cap max_points={self.max_points:,})")
        else:
            shown = f"all {self.n_total:,} rows"
        details = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return f"{name} · {shown}" + (f" · {details}" if details else "")


def _n_rows(X) -> int:
    shape = getattr(X, "shape", None)
    if shape is None:
        raise ActclustError(f"cannot map {type(X).__name__}: give a store layer, an array or "
                            "a tensor of shape (rows, features)")
    return int(shape[0])


def embed(X, method: str = "umap", max_points: int = MAX_POINTS, random_state: int = 0,
          n_neighbors: int = 15) -> Embedding:
    """Project a layer (array, tensor or store layer) to 2-D, on at most ``max_points`` rows.

    Larger inputs are subsampled uniformly at random (sorted row numbers, so a store layer
    reads only those rows from its memory map). UMAP runs on the first 50 principal
    components, the usual speed-up; PCA is the fast option.

    Example:
        >>> X = np.random.default_rng(0).normal(size=(500, 8))
        >>> e = embed(X, method="pca", max_points=100)
        >>> e.coords.shape, e.n_total, e.subsampled
        ((100, 2), 500, True)
    """
    if method not in METHODS:
        raise ActclustError(f"unknown map method {method!r}; choose 'umap' or 'pca' (faster)")
    if int(max_points) < 3:
        raise ActclustError(f"max_points must be at least 3, got {max_points}")
    n = _n_rows(X)
    if n < 3:
        raise ActclustError(f"a map needs at least 3 rows; this layer has {n}")
    rng = np.random.default_rng(random_state)
    rows = np.arange(n) if n <= max_points else \
        np.sort(rng.choice(n, size=int(max_points), replace=False))
    if hasattr(X, "detach"):
        X = X.detach().cpu().numpy()
    sample = np.asarray(X[rows] if len(rows) < n else X[:], dtype=np.float32)
    if sample.ndim != 2:
        raise ActclustError(f"a map needs rows of features (2-D); got shape {sample.shape}")
    if not np.isfinite(sample).all():
        bad = int((~np.isfinite(sample).all(1)).sum())
        raise ActclustError(f"{bad} sampled rows hold NaN or inf; a map needs finite values")
    settings: dict = {"seed": random_state}
    if method == "pca" or len(rows) <= n_neighbors + 1:
        from sklearn.decomposition import PCA

        if method == "umap":
            warnings.warn(f"only {len(rows)} rows: too few for UMAP, using PCA instead")
            method = "pca"
        pca = PCA(2, random_state=random_state).fit(sample)
        coords = pca.transform(sample)
        ratio = pca.explained_variance_ratio_
        settings = {"variance explained": f"{ratio[0]:.0%} + {ratio[1]:.0%}"}
    else:
        coords, settings = _umap(sample, n_neighbors, random_state)
    return Embedding(np.asarray(coords, np.float32), rows, n, method, int(max_points),
                     settings)


def _umap(sample: np.ndarray, n_neighbors: int, random_state: int):
    import umap
    from sklearn.decomposition import PCA

    settings = {"n_neighbors": n_neighbors, "epochs": 200, "seed": random_state}
    if sample.shape[1] > UMAP_PCA_DIMS and len(sample) > UMAP_PCA_DIMS:
        sample = PCA(UMAP_PCA_DIMS, random_state=random_state).fit_transform(sample)
        settings["input"] = f"{UMAP_PCA_DIMS} PCA dims"
    from sklearn.neighbors import NearestNeighbors

    # Exact neighbours by BLAS take well under a second at the row cap, and spare UMAP
    # compiling and running its approximate search (tens of seconds from a cold start).
    dist, ind = NearestNeighbors(n_neighbors=n_neighbors).fit(sample).kneighbors(sample)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_jobs=1 with a seed, no search index kept
        model = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=0.1,
                          n_epochs=200, random_state=random_state, n_jobs=1,
                          precomputed_knn=(ind, dist, None))
        coords = model.fit_transform(sample)
    return coords, settings


def _source(source, layer):
    """(store or None, X, layer name) from a store + layer, a store layer or an array."""
    from ..store import ActivationStore
    from ..store.reader import LayerView

    if isinstance(source, LayerView):
        return source.store, source, source.name
    if isinstance(source, (ActivationStore, str)) or hasattr(source, "__fspath__"):
        store = open_store(source)
        if layer is None:
            raise ActclustError(f"which layer? pass layer=..., one of {', '.join(store.layers)}")
        return store, store.layer(layer), layer
    return None, source, layer or "array"


def layer_map(source, layer: str | None = None, *, clusters=None, label=None,
              method: str = "umap", max_points: int = MAX_POINTS, random_state: int = 0,
              embedding: Embedding | None = None, cluster_name: str = "cluster",
              max_categories: int = 20, title: str | None = None):
    """A 2-D map of a layer, coloured by reporter cluster and by a label, side by side.

    Args:
        source: an :class:`~actclust.ActivationStore` (or its path) with ``layer``, a store
            layer, or an array / tensor of rows.
        clusters: one cluster id per row of the layer, or a reporter fitted on it.
        label: a label column of the store, or one value per row.
        method: ``"umap"`` (default) or ``"pca"`` (fast).
        max_points: at most this many rows are drawn, a uniform random sample; the figure
            says so when it subsamples.
        embedding: reuse coordinates from :func:`embed` instead of computing them.
        max_categories: legend entries per colouring; rarer values are lumped as "other".

    Hover shows each row's text (for token rows, the token in bold inside its text), its
    cluster and its labels. ``fig.layout.meta`` records the layer, method, rows shown, the
    total and the cap.

    Example:
        >>> X = np.random.default_rng(0).normal(size=(60, 5))
        >>> fig = layer_map(X, clusters=(X[:, 0] > 0).astype(int), method="pca")
        >>> fig.layout.meta["n_shown"], [t.name for t in fig.data]
        (60, ['0', '1'])
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    store, X, layer = _source(source, layer)
    n = _n_rows(X)
    if embedding is None:
        embedding = embed(X, method, max_points, random_state)
    elif embedding.n_total != n:
        raise ActclustError(f"the embedding covers {embedding.n_total} rows but the layer has "
                            f"{n}; compute it with embed() on this layer")
    idx = embedding.rows
    cluster_ids = None if clusters is None else cluster_labels(clusters, n)
    label_name, label_values = None, None
    if label is not None:
        if isinstance(label, str):
            if store is None:
                raise ActclustError(f"label {label!r} names a column, but an array has no "
                                    "label columns: pass the values, one per row")
            label_name, label_values = label, store.labels(label)
        else:
            label_name, label_values = "label", np.asarray(label)
            if len(label_values) != n:
                raise ActclustError(f"label has {len(label_values)} values but the layer "
                                    f"has {n} rows")
    panels = []
    if cluster_ids is not None:
        panels.append((cluster_name, cluster_ids[idx]))
    if label_values is not None:
        panels.append((label_name, label_values[idx]))
    if not panels:
        panels.append(("rows", np.full(len(idx), "all rows", dtype=object)))

    hover = _hover(store, idx, cluster_ids, cluster_name, label_name, label_values)
    named = [(name, *category_names(values, max_categories)) for name, values in panels]
    colours = [{value: colour(i) for i, value in enumerate(order)} for _, _, order in named]
    if cluster_ids is not None and label_values is not None:
        colours[0] = _matched_colours(cluster_ids, label_values, named[0][2], colours[1])
    fig = make_subplots(1, len(panels), horizontal_spacing=0.06,
                        subplot_titles=[f"coloured by {name}" for name, _ in panels])
    axis = "UMAP" if embedding.method == "umap" else "PC"
    two = len(panels) == 2
    for col, (name, names, order) in enumerate(named, start=1):
        legend = "legend" if col == 1 else "legend2"
        for value in order:
            pick = names == value
            fig.add_trace(go.Scatter(
                x=embedding.coords[pick, 0], y=embedding.coords[pick, 1], mode="markers",
                name=value, legend=legend,
                marker={"size": 5 if len(idx) > 2000 else 7, "opacity": 0.8,
                        "color": OTHER if value == "other" else colours[col - 1][value],
                        "line": {"width": 0}},
                customdata=idx[pick], text=hover[pick],
                hovertemplate="%{text}<extra>%{fullData.name}</extra>"), row=1, col=col)
        fig.update_xaxes(title_text=f"{axis} 1", showticklabels=False, zeroline=False,
                         row=1, col=col)
        fig.update_yaxes(title_text=f"{axis} 2", showticklabels=False, zeroline=False,
                         row=1, col=col)
    default = f"{'UMAP' if embedding.method == 'umap' else 'PCA'} map of {layer}"
    base_layout(fig, title or default, embedding.describe(), height=540)
    # Each colouring keeps its own legend, right beside its own panel.
    if two:
        domains = [(0.0, 0.39), (0.52, 0.91)]
        for col, (lo, hi) in enumerate(domains, start=1):
            fig.update_xaxes(domain=[lo, hi], row=1, col=col)
            fig.layout.annotations[col - 1].x = (lo + hi) / 2
    for col, (name, _, _) in enumerate(named, start=1):
        key = "legend" if col == 1 else "legend2"
        fig.update_layout({key: {
            "title": {"text": f"<b>{name}</b>"}, "itemsizing": "constant",
            "bgcolor": "rgba(0,0,0,0)", "x": (0.40 if col == 1 else 0.92) if two else 1.02,
            "xanchor": "left", "y": 1, "yanchor": "top"}})
    fig.update_layout(hovermode="closest")
    fig.layout.meta = {"layer": layer, "method": embedding.method, "n_shown": len(idx),
                       "n_total": embedding.n_total, "max_points": embedding.max_points,
                       "subsampled": embedding.subsampled,
                       "panels": [name for name, _ in panels]}
    if embedding.subsampled:
        fig.add_annotation(
            text=(f"Subsampled: {len(idx):,} of {embedding.n_total:,} rows shown "
                  f"(cap max_points={embedding.max_points:,})"),
            xref="paper", yref="paper", x=1, y=1.13, xanchor="right", yanchor="bottom",
            showarrow=False, font={"size": 12, "color": "#a33"})
    return fig


def _matched_colours(cluster_ids, label_values, cluster_order, label_colours) -> dict:
    """Each cluster takes the colour of the label value it is matched to (Hungarian), so
    the two panels read alike; unmatched clusters take the colours left over."""
    from ..metrics import cluster_matching

    known = np.asarray(pd.notna(label_values))
    matching = cluster_matching(label_values[known], cluster_ids[known]) if known.any() else {}
    by_name = {str(c): str(v) for c, v in matching.items()}
    used = set()
    out = {}
    for name in cluster_order:
        match = label_colours.get(by_name.get(name))
        if match is not None and match not in used:
            out[name] = match
            used.add(match)
    spare = [c for c in PALETTE if c not in used]
    for name in cluster_order:
        if name not in out:
            out[name] = spare.pop(0) if spare else OTHER
    return out


def _hover(store, idx, cluster_ids, cluster_name, label_name, label_values):
    extra = {}
    if cluster_ids is not None:
        extra[cluster_name] = cluster_ids[idx]
    if store is None:
        if label_values is not None:
            extra[label_name] = label_values[idx]
        return np.array(["row " + str(r) + "<br>" + " · ".join(
            f"{k}: {v[i]}" for k, v in extra.items()) for i, r in enumerate(idx)], dtype=object)
    # only the shown rows are read with their documents (a sample, never the whole layer)
    return row_hover(store.rows, idx, store.label_columns, extra)
