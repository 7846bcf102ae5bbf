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
from ._memberships import DISTANCE_KIND, PROBA_KIND, Memberships, means  # noqa: F401

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
    centres = _means(view, codes, k)
    strength = Memberships(view, reporter if clusters is None else None, centres, codes, k)
    kind = strength.kind
    from scipy.spatial.distance import cdist

    mean_dist = cdist(centres, centres)  # k x k, without a k x k x d intermediate
    shown = []
    for c in range(k):
        # Highest membership (closest to the mean) first; ties broken by row number.
        order = strength.ranked(c, np.flatnonzero(codes == c))
        top = order[:n_examples]
        rest = order[n_examples:]
        bands = []
        if len(rest) and n_bands:
            at = np.unique(np.linspace(0, len(rest) - 1, n_bands).round().astype(int))
            bands = rest[at]
        shown.append((top, np.asarray(bands, dtype=np.int64), len(order)))
    examples = _Examples(rows, np.concatenate([np.r_[t, b] for t, b, _ in shown]),
                         strength, label_cols)
    tables = _label_tables(store, label_cols, codes, k)
    pages = []
    for c, (top, bands, size) in enumerate(shown):
        neighbours = [(found[j], float(mean_dist[c, j]))
                      for j in np.argsort(mean_dist[c]) if j != c][:3]
        pages.append(ClusterPage(
            cluster=found[c], size=size, share=size / n,
            top=[examples.example(r, c) for r in top],
            bands=[examples.example(r, c) for r in bands],
            labels={col: tables[col][c] for col in label_cols},
            neighbours=neighbours,
            histogram=_histogram(*strength.histograms[c], found[c], kind)))
    method = method or (type(reporter).__name__ if reporter is not None else "clusters")
    return ClusterDashboard(layer, method, kind, pages, n, str(store.root.name), uid)


def _page_id(uid: str, cluster) -> str:
    """An HTML id for a cluster's page: cluster ids may be any label value."""
    name = str(cluster)
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
    if safe == name:
        return f"{uid}-c{name}"
    return f"{uid}-c{safe}-{zlib.crc32(name.encode()) % 10_000}"  # two names, one safe form


def _means(view, codes, k) -> np.ndarray:
    return means(view, codes, k)


def _label_tables(store, columns, codes, k) -> dict:
    """Per label column, per cluster: the table of value, in_cluster and overall shares,
    from one count of (cluster, value) pairs over all rows."""
    out = {}
    for col in columns:
        values = store.column(col)
        known = pd.notna(values)
        found, uniques = pd.factorize(values[known])
        names = np.array([str(u) for u in uniques] + ["(missing)"], dtype=object)
        value_codes = np.full(len(values), len(uniques), np.int64)
        value_codes[known] = found
        # values that read alike (1 and "1") are one value, as text
        value_codes, names = _merge_alike(value_codes, names)
        nv = len(names)
        counts = np.bincount(codes * nv + value_codes, minlength=k * nv).reshape(k, nv)
        out[col] = [_label_table(names, counts[c], counts.sum(0)) for c in range(k)]
    return out


def _merge_alike(value_codes, names):
    merged, unique_names = pd.factorize(names)
    return merged[value_codes], np.asarray(unique_names, dtype=object)


def _label_table(names, inside, overall) -> pd.DataFrame:
    """Value, share in the cluster (``inside``: its counts) and overall (``overall``)."""
    present = overall > 0
    table = pd.DataFrame({"in_cluster": inside[present] / max(inside.sum(), 1),
                          "overall": overall[present] / max(overall.sum(), 1)},
                         index=pd.Index(names[present], dtype=object))
    table = table.sort_index().sort_values(["in_cluster", "overall"], ascending=False,
                                           kind="stable")
    if len(table) > MAX_LABEL_VALUES:
        head = table.iloc[:MAX_LABEL_VALUES - 1]
        other = table.iloc[MAX_LABEL_VALUES - 1:].sum().to_frame(
            f"other ({len(table) - MAX_LABEL_VALUES + 1} values)").T
        table = pd.concat([head, other])
    table["lift"] = table["in_cluster"] / table["overall"].where(table["overall"] > 0)
    return table.rename_axis("value").reset_index()


class _Examples:
    """The rows the pages show, read once: their labels, and for token rows the tokens
    around them (a window inside their document) with their memberships."""

    def __init__(self, rows, shown: np.ndarray, strength, label_cols):
        self.tokens = "token" in rows.columns
        self.strength, self.label_cols = strength, label_cols
        shown = np.unique(shown)
        n = len(rows)
        if self.tokens:
            near = [np.arange(max(0, r - WINDOW), min(n, r + WINDOW + 1)) for r in shown]
            needed = np.unique(np.concatenate(near)) if near else shown
            columns = ["doc_id", "position", "token"]
        else:
            needed = shown
            columns = [c for c in ("doc_id", "text") if c in rows.columns]
        columns += [c for c in label_cols if c not in columns]
        self.table = rows.take(needed, columns=columns)
        self.rows = needed
        self.member = strength.of(needed) if self.tokens else None
        self.own = {int(r): float(strength.own[r]) for r in shown}

    def example(self, r: int, c: int) -> Example:
        rec = self.table.loc[r]
        labels = {col: rec[col] for col in self.label_cols}
        if self.tokens:
            lo, hi = np.searchsorted(self.rows, [r - WINDOW, r + WINDOW + 1])
            part = self.table.iloc[lo:hi]
            same = (part["doc_id"] == rec["doc_id"]).to_numpy()
            tokens = []
            for j, tok, s in zip(part.index[same], part["token"][same],
                                 self.member[lo:hi][same, c]):
                tok = str(tok)
                s = self.own[r] if j == r else float(s)
                tokens.append((_piece(tok) or tok, s, j == r, tok.startswith("##")))
            where = f"row {r} · doc {rec['doc_id']} · token {rec['position']}"
        else:
            text = str(rec.get("text", f"row {r}"))
            tokens = [(text, self.own[r], True, False)]
            where = f"row {r} · doc {rec.get('doc_id', r)}"
        return Example(int(r), self.own[r], tokens, labels, where)


def _histogram(edges, members, others, cluster, kind):
    import plotly.graph_objects as go

    proba = kind == PROBA_KIND
    bins = edges
    centres, width = (bins[:-1] + bins[1:]) / 2, bins[1] - bins[0]
    # Counts, not raw values, go into the figure: its size does not grow with the store.
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
