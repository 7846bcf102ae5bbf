"""The cluster dashboard: one page per cluster of one fitted reporter on one layer.

For a cluster, "activation" is membership: the reporter's own probability when it has
``predict_proba`` (GMM); otherwise closeness to the cluster's mean, as the share of the
cluster's rows that lie farther from the mean than this row (1 at the centre, 0.5 for a
median member, 0 beyond the farthest member). It ranks the top examples and shades texts
and tokens, so context tokens light up where they sit inside the cluster.
"""

from __future__ import annotations

import html
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ActclustError
from ..store import open_store
from ._common import _piece, base_layout, cluster_labels, colour

BATCH_BYTES = 2 ** 27  # float64 rows per pass step: ~128 MB whatever the width
MAX_LABEL_VALUES = 12
WINDOW = 8


@dataclass
class Example:
    """One row shown on a cluster page: its membership and its tokens (with memberships)."""

    row: int
    strength: float
    tokens: list  # (text, membership, is_the_row, joins_previous) per shown token
    labels: dict
    where: str


@dataclass
class ClusterPage:
    """What one cluster's page shows.

    Attributes:
        cluster: the cluster id; size, share: its rows and their share of all rows.
        top: rows closest to the centre (highest membership), best first.
        bands: rows from evenly spaced membership bands, centre to edge.
        labels: per label column, a table of value, in_cluster and overall shares.
        neighbours: (cluster, distance between means) of the nearest other clusters.
        histogram: membership histogram figure (members against all other rows).
    """

    cluster: int
    size: int
    share: float
    top: list
    bands: list
    labels: dict
    neighbours: list
    histogram: object = field(repr=False)

    def summary(self) -> str:
        """Size and the dominant value of the first label, for navigation."""
        text = f"{self.cluster} · {self.size:,}"
        if self.labels:
            name, table = next(iter(self.labels.items()))
            if len(table):
                top = table.iloc[0]
                text += f" · {top['value']} {top['in_cluster']:.0%}"
        return text


class ClusterDashboard:
    """Pages for every cluster of a fitted reporter on one layer (see :func:`cluster_dashboard`).

    ``pages`` holds the data; :meth:`to_html` and :meth:`write` render it as a
    self-contained page; in Jupyter it shows inline.

    Example:
        >>> dash = ClusterDashboard("blocks.5.hook_out", "kmeans", "distance", [], 0, "demo")
        >>> dash
        ClusterDashboard(kmeans on 'blocks.5.hook_out': 0 clusters, 0 rows)
    """

    def __init__(self, layer, method, strength_kind, pages, n_rows, store_name, uid="dash"):
        self.layer, self.method, self.strength_kind = layer, method, strength_kind
        self.pages, self.n_rows, self.store_name, self.uid = pages, n_rows, store_name, uid

    def __repr__(self) -> str:
        return (f"ClusterDashboard({self.method} on {self.layer!r}: {len(self.pages)} clusters,"
                f" {self.n_rows} rows)")

    def fragment(self, page) -> str:
        """The dashboard as an HTML fragment whose figures are added to ``page``."""
        uid = self.uid
        buttons = "".join(
            f'<button data-dash="{uid}" data-page="{_page_id(uid, p.cluster)}" '
            f'title="cluster {html.escape(str(p.cluster))}: {p.size:,} rows">'
            f'{html.escape(p.summary())}</button>'
            for p in self.pages)
        body = [f'<div class="dash" id="{uid}"><div class="dash-nav">{buttons}</div>']
        for p in self.pages:
            body.append(_page_html(self, p, page))
        body.append("</div>")
        return "".join(body)

    def to_html(self, title: str | None = None) -> str:
        """A self-contained HTML page (plotly.js embedded, no network needed)."""
        from ._html import Page

        page = Page(title or f"Clusters of {self.method} on {self.layer}",
                    f"{self.store_name} · {len(self.pages)} clusters · {self.n_rows:,} rows "
                    f"· membership: {html.escape(self.strength_kind)}")
        page.add(f'<section class="card">{self.fragment(page)}</section>')
        return page.render()

    def write(self, out) -> Path:
        """Write :meth:`to_html` to ``out`` atomically; returns the path."""
        from ._html import write_atomic

        return write_atomic(self.to_html(), out)

    def _repr_html_(self) -> str:
        doc = html.escape(self.to_html(), quote=True)
        return (f'<iframe srcdoc="{doc}" style="width:100%;height:900px;border:1px solid '
                '#ddd"></iframe>')


def cluster_dashboard(store, layer: str, reporter=None, *, clusters=None, n_examples: int = 8,
                      n_bands: int = 4, labels=None, method: str | None = None,
                      uid: str = "dash") -> ClusterDashboard:
    """Build the per-cluster pages for a reporter fitted on ``layer`` of ``store``.

    Args:
        store: an :class:`~actclust.ActivationStore` or its path.
        layer: the layer the reporter was fitted on (all its rows).
        reporter: the fitted reporter; or give ``clusters``, one id per row.
        n_examples: top examples per cluster (closest to the centre, or most probable).
        n_bands: further examples from evenly spaced membership bands, centre to edge.
        labels: label columns to compare inside each cluster with the whole set
            (default: every label column of the store).

    Each page lists its cluster's size, top examples as text (token rows: a window of the
    document, each token coloured by its membership of the cluster and the row's token
    outlined), the distribution of each label inside the cluster against all rows, the
    nearest other clusters and a membership histogram.

    Example:
        >>> import actclust, tempfile
        >>> from actclust.reporters import KMeans
        >>> store = actclust.capture("minilm", "topics", "blocks.5.hook_out", pool="mean",
        ...                          limit=40, out=tempfile.mkdtemp() + "/s", progress=False)
        >>> km = KMeans(4, random_state=0).fit(store.layer("blocks.5.hook_out"))
        >>> dash = cluster_dashboard(store, "blocks.5.hook_out", km)
        >>> len(dash.pages), sum(page.size for page in dash.pages)
        (4, 40)
        >>> path = dash.write(tempfile.mkdtemp() + "/clusters.html")
    """
    store = open_store(store)
    view = store.layer(layer)
    n = len(view)
    if reporter is None and clusters is None:
        raise ActclustError("give a fitted reporter or clusters (one cluster id per row)")
    ids = cluster_labels(reporter if clusters is None else clusters, n)
    codes, found = pd.factorize(ids, sort=True)
    k = len(found)
    if k < 2:
        raise ActclustError(f"only {k} cluster among the {n} rows: nothing to compare")
    rows = store.rows
    label_cols = store.label_columns if labels is None else \
        ([labels] if isinstance(labels, str) else list(labels))
    for col in label_cols:
        if col not in rows.columns:
            raise ActclustError(f"label column {col!r} is not in store {store.root}; label "
                                f"columns: {', '.join(store.label_columns)}")
    means = _means(view, codes, k)
    strength, dist, kind = _memberships(view, reporter if clusters is None else None, means,
                                        codes, k)
    from scipy.spatial.distance import cdist

    mean_dist = cdist(means, means)  # k x k, without a k x k x d intermediate
    pages = []
    for c in range(k):
        members = np.nonzero(codes == c)[0]
        # Highest membership (closest to the mean) first; ties broken by row number.
        order = members[np.lexsort((members, -strength[members, c]))]
        top = order[:n_examples]
        rest = order[n_examples:]
        bands = []
        if len(rest) and n_bands:
            at = np.unique(np.linspace(0, len(rest) - 1, n_bands).round().astype(int))
            bands = rest[at]
        neighbours = [(found[j], float(mean_dist[c, j]))
                      for j in np.argsort(mean_dist[c]) if j != c][:3]
        pages.append(ClusterPage(
            cluster=found[c], size=len(members), share=len(members) / n,
            top=[_example(rows, r, strength[:, c], label_cols) for r in top],
            bands=[_example(rows, r, strength[:, c], label_cols) for r in bands],
            labels={col: _label_table(rows[col].to_numpy(), codes == c) for col in label_cols},
            neighbours=neighbours,
            histogram=_histogram(strength[:, c] if kind == PROBA_KIND else dist[:, c],
                                 codes == c, found[c], kind)))
    method = method or (type(reporter).__name__ if reporter is not None else "clusters")
    return ClusterDashboard(layer, method, kind, pages, n, str(store.root.name), uid)


def _page_id(uid: str, cluster) -> str:
    """An HTML id for a cluster's page: cluster ids may be any label value."""
    name = str(cluster)
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
    if safe == name:
        return f"{uid}-c{name}"
    return f"{uid}-c{safe}-{zlib.crc32(name.encode()) % 10_000}"  # two names, one safe form


def _batches(view):
    step = max(1, BATCH_BYTES // (8 * int(np.prod(view.shape[1:]))))
    for start in range(0, len(view), step):
        yield start, np.asarray(view[start:start + step], dtype=np.float64)


def _means(view, codes, k) -> np.ndarray:
    sums = np.zeros((k, view.shape[1]))
    for start, X in _batches(view):
        part = codes[start:start + len(X)]
        for c in np.unique(part):  # k masked sums: np.add.at is far slower on wide rows
            sums[c] += X[part == c].sum(0)
    return sums / np.bincount(codes, minlength=k)[:, None]


DISTANCE_KIND = "closeness to the cluster mean (share of its rows lying farther out)"
PROBA_KIND = "assignment probability (predict_proba)"


def _memberships(view, reporter, means, codes, k):
    """(membership n x k, distance n x k to each mean, kind)."""
    n = len(view)
    dist = np.empty((n, k), np.float32)
    proba = np.empty((n, k), np.float32) if hasattr(reporter, "predict_proba") else None
    for start, X in _batches(view):
        d2 = np.einsum("ij,ij->i", X, X)[:, None] - 2 * X @ means.T + \
            np.einsum("ij,ij->i", means, means)[None, :]
        dist[start:start + len(X)] = np.sqrt(np.maximum(d2, 0))
        if proba is not None:
            try:
                p = np.asarray(reporter.predict_proba(X.astype(np.float32)))
            except Exception:  # a reporter whose proba needs other input: use distances
                proba = None
                continue
            if p.shape != (len(X), k):
                proba = None
                continue
            proba[start:start + len(X)] = p
    if proba is not None:
        return proba, dist, PROBA_KIND
    member = np.empty((n, k), np.float32)
    for c in range(k):
        # Rank against the cluster's own rows: scale-free, unlike raw distances in 384-D
        # where a member and an outsider can be almost equally far from the mean.
        own = np.sort(dist[codes == c, c])
        member[:, c] = 1 - np.searchsorted(own, dist[:, c], side="left") / len(own)
    return member, dist, DISTANCE_KIND


def _label_table(values, inside) -> pd.DataFrame:
    text = pd.Series(values).astype(object).where(pd.notna(values), "(missing)").astype(str)
    overall = text.value_counts(normalize=True)
    within = text[inside].value_counts(normalize=True)
    table = pd.DataFrame({"in_cluster": within, "overall": overall}).fillna(0.0)
    table = table.sort_values(["in_cluster", "overall"], ascending=False)
    if len(table) > MAX_LABEL_VALUES:
        head = table.iloc[:MAX_LABEL_VALUES - 1]
        other = table.iloc[MAX_LABEL_VALUES - 1:].sum().to_frame(
            f"other ({len(table) - MAX_LABEL_VALUES + 1} values)").T
        table = pd.concat([head, other])
    table["lift"] = table["in_cluster"] / table["overall"].where(table["overall"] > 0)
    return table.rename_axis("value").reset_index()


def _example(rows: pd.DataFrame, r: int, strength: np.ndarray, label_cols) -> Example:
    rec = rows.iloc[r]
    labels = {c: rec[c] for c in label_cols}
    if "token" in rows.columns:
        lo, hi = max(0, r - WINDOW), min(len(rows), r + WINDOW + 1)
        doc = rows["doc_id"].to_numpy()[lo:hi]
        window = np.arange(lo, hi)[doc == rec["doc_id"]]
        tokens = []
        for j in window:
            tok = str(rows["token"].iat[j])
            tokens.append((_piece(tok) or tok, float(strength[j]), j == r,
                           tok.startswith("##")))
        where = f"row {r} · doc {rec['doc_id']} · token {rec['position']}"
    else:
        text = str(rec.get("text", f"row {r}"))
        tokens = [(text, float(strength[r]), True, False)]
        where = f"row {r} · doc {rec.get('doc_id', r)}"
    return Example(int(r), float(strength[r]), tokens, labels, where)


def _histogram(values, inside, cluster, kind):
    import plotly.graph_objects as go

    proba = kind == PROBA_KIND
    lo, hi = (0.0, 1.0) if proba else (float(values.min()), float(np.quantile(values, 0.995)))
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 41)
    centres, width = (bins[:-1] + bins[1:]) / 2, bins[1] - bins[0]
    # Counts, not raw values, go into the figure: its size does not grow with the store.
    members, _ = np.histogram(np.clip(values[inside], lo, bins[-1]), bins)
    others, _ = np.histogram(np.clip(values[~inside], lo, bins[-1]), bins)
    what = "probability of the cluster" if proba else "distance to the cluster mean"
    fig = go.Figure([
        go.Bar(x=centres, y=others, name="other rows", marker_color="#b9c2cf", width=width,
               hovertemplate=f"{what} %{{x:.3g}}: %{{y:,}} other rows<extra></extra>"),
        go.Bar(x=centres, y=members, name=f"cluster {cluster}", marker_color=colour(0),
               opacity=0.85, width=width,
               hovertemplate=f"{what} %{{x:.3g}}: %{{y:,}} rows of the cluster<extra></extra>"),
    ])
    base_layout(fig, f"Cluster {cluster}: {what}",
                "members against all other rows" + ("" if proba else
                                                    " (far tail beyond 99.5% clipped)"),
                height=300)
    fig.update_layout(barmode="overlay", bargap=0, margin={"t": 70, "b": 50, "l": 55, "r": 10},
                      legend={"orientation": "h", "y": -0.3, "x": 0})
    fig.update_xaxes(title_text=what)
    fig.update_yaxes(title_text="rows (log scale)", type="log", dtick=1)
    fig.layout.meta = {"members": int(members.sum()), "others": int(others.sum()),
                       "x": what}
    return fig


def _tokens_html(ex: Example) -> str:
    out = []
    single = len(ex.tokens) == 1  # a pooled row: its whole text, shaded more lightly
    for text, s, is_row, joins in ex.tokens:
        style = f"background:rgba(255,127,14,{min(max(s, 0), 1) * (0.45 if single else 0.85):.2f})"
        cls = "tok target" if is_row and len(ex.tokens) > 1 else "tok"
        space = "" if joins or not out else " "
        out.append(f'{space}<span class="{cls}" style="{style}" title="membership {s:.2f}">'
                   f"{html.escape(text)}</span>")
    return "".join(out)


def _example_html(ex: Example) -> str:
    labels = " · ".join(f"{html.escape(str(k))}: {html.escape(str(v))}"
                        for k, v in ex.labels.items())
    return (f'<div class="example"><div>{_tokens_html(ex)}</div><div class="meta">'
            f"membership {ex.strength:.2f} · {ex.where}" + (f" · {labels}" if labels else "")
            + "</div></div>")


def _bars_html(table: pd.DataFrame) -> str:
    top = max(float(table[["in_cluster", "overall"]].to_numpy().max()), 1e-9)
    cells = []
    for rec in table.itertuples(index=False):
        cells.append(
            f'<div title="{html.escape(str(rec.value))}">{html.escape(str(rec.value))}</div>'
            f'<div class="bar"><span class="in" style="width:{rec.in_cluster / top:.1%}"></span>'
            f'<span class="all" style="width:{rec.overall / top:.1%}"></span></div>'
            f'<div class="num">{rec.in_cluster:.0%} vs {rec.overall:.0%}</div>')
    return f'<div class="bars">{"".join(cells)}</div>'


def _page_html(dash: ClusterDashboard, p: ClusterPage, page) -> str:
    uid = dash.uid
    top = "".join(_example_html(e) for e in p.top)
    bands = "".join(_example_html(e) for e in p.bands)
    labels = "".join(f"<p style='margin:8px 0 2px'><b>{html.escape(col)}</b></p>"
                     + _bars_html(t) for col, t in p.labels.items())
    neigh = "".join(
        f'<li><a data-dash="{uid}" data-page="{_page_id(uid, c)}" href="#{_page_id(uid, c)}">'
        f"cluster {html.escape(str(c))}</a>"
        f" · distance between means {d:.3g}</li>" for c, d in p.neighbours)
    return (
        f'<section class="dash-page" id="{_page_id(uid, p.cluster)}" hidden>'
        f"<h3>Cluster {html.escape(str(p.cluster))} <small>{p.size:,} rows · {p.share:.1%} of the layer</small>"
        f"</h3><div class=\"grid2\"><div><h4>Closest to the centre (highest membership)</h4>{top}"
        + (f"<h4>Across the cluster, centre to edge</h4>{bands}" if bands else "")
        + f"<h4>How separate it is</h4>{page.figure(p.histogram, 300)}"
        + "</div><div><h4>Labels: this cluster vs all rows</h4>"
        "<div class='legend-keys'><i style='background:#1f77b4'></i>in cluster"
        "<i style='background:#b9c2cf'></i>all rows</div>"
        f"{labels}<h4>Nearest clusters</h4><ul class='neigh'>{neigh}</ul>"
        "</div></div></section>")
