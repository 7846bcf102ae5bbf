"""The report's Concepts section: over-clusters and sparse-autoencoder features of every
layer aligned with every label (:mod:`actclust.concepts`), layer by layer.

For each layer, k-means with many clusters and a TopK sparse autoencoder (each latent's
top-activating rows taken as a group) are aligned with the same label columns. The curve of
the share aligned per label across layers shows where lexical labels give way to semantic
ones; the tables list the last layer's aligned clusters and the candidate novel features
(aligned with no label, ranked by label-free coherence) with their rows in context.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from ._common import base_layout, colour

MAX_K = 400
# Rows k-means and the autoencoder are fitted on per layer: a seeded sample above this, so
# a report of ten million token rows costs what one of 100,000 does (on 2 CPU cores about
# 15 s of k-means with 400 clusters and 70 s of autoencoder per layer, 1.3 GB at most).
MAX_ROWS = 100_000
ROWS_PER_CLUSTER = 20  # at most one cluster for this many rows
SAE_EPOCHS = 10  # a report's quick fit; the reporter's default is 50
SAE_TOP_ROWS = 50
SHOWN_ALIGNED = 15
SHOWN_NOVEL = 5


def concept_k(n_rows: int, k: int = MAX_K) -> int:
    """Clusters per layer: ``k``, fewer on a small layer so clusters keep some rows.

    Example:
        >>> concept_k(27_500), concept_k(1_000)
        (400, 50)
    """
    return int(max(2, min(k, n_rows // ROWS_PER_CLUSTER)))


def layer_concepts(store, layer: str, *, k: int = MAX_K, seed: int = 0, features: bool = True,
                   labels=None, max_rows: int | None = MAX_ROWS) -> dict:
    """One layer's concept tables: ``clusters`` (a :class:`~actclust.concepts.ConceptResult`)
    and, with ``features``, ``features`` (the sparse autoencoder's alignment table and
    summary, and its fit's FVU, L0 and dead share). Both are fitted on the same seeded
    sample of at most ``max_rows`` rows (``None``: every row)."""
    from ..concepts import align, concept_table, feature_groups, summarise
    from ..concepts._table import label_frame

    view = store.layer(layer)
    n_fit = len(view) if max_rows is None else min(len(view), max_rows)
    result = concept_table(store, layer, k=concept_k(n_fit, k), labels=labels, seed=seed,
                           n_novel=SHOWN_NOVEL, max_rows=max_rows)
    found = {"clusters": result}
    if features:
        from ..reporters import SparseAutoencoder

        columns = list(result.summary["label"].drop_duplicates())
        columns = [c for c in columns if c != "any"]
        X = view if result.sample is None else np.asarray(view[result.sample])
        # k = 32 active latents (the authors' value) unless the layer is narrow
        width = int(view.shape[1])
        sae = SparseAutoencoder(k=min(32, width), epochs=SAE_EPOCHS,
                                random_state=seed).fit(X)
        groups = {f"latent {i}": rows for i, rows in
                  feature_groups(sae, X, SAE_TOP_ROWS).items()}
        table = align(groups, label_frame(store, columns, result.sample), columns)
        found["features"] = {"table": table, "summary": summarise(table),
                             "metrics": {"fvu": sae.fvu_, "l0": sae.l0_,
                                         "dead_fraction": sae.dead_fraction_},
                             "n_latents": sae.n_latents_}
    return found


def shares(per_layer: dict) -> pd.DataFrame:
    """Long table: layer, source (clusters / SAE features), label, aligned share."""
    records = []
    for layer, found in per_layer.items():
        for source, summary in (("clusters", found["clusters"].summary),
                                ("SAE features", found.get("features", {}).get("summary"))):
            if summary is None:
                continue
            for row in summary.itertuples():
                records.append({"layer": layer, "source": source, "label": row.label,
                                "aligned_share": row.aligned_share,
                                "row_coverage": row.row_coverage})
    return pd.DataFrame.from_records(records)


def share_curve(table: pd.DataFrame, layers: list):
    """Share of clusters (solid) and of SAE features (dashed) aligned per label, by layer."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, label in enumerate(dict.fromkeys(table["label"])):
        for source, dash in (("clusters", "solid"), ("SAE features", "dash")):
            part = table[(table["label"] == label) & (table["source"] == source)]
            if part.empty:
                continue
            part = part.set_index("layer").reindex([x for x in layers if x in set(part["layer"])])
            fig.add_trace(go.Scatter(
                x=list(part.index), y=part["aligned_share"], mode="lines+markers",
                name=f"{label} · {source}", legendgroup=label,
                line={"color": colour(i), "dash": dash},
                hovertemplate=f"{html.escape(str(label))}, {source}: %{{y:.0%}} aligned at "
                              "%{x}<extra></extra>"))
    base_layout(fig, "Share of clusters and features aligned with each label",
                "solid: k-means clusters; dashed: sparse-autoencoder latents' top rows",
                height=460)
    fig.update_yaxes(title_text="share aligned", tickformat=".0%", range=[0, 1.02])
    fig.update_xaxes(title_text="layer")
    fig.layout.meta = {"labels": list(dict.fromkeys(table["label"])), "layers": layers}
    return fig


def _table(frame: pd.DataFrame, columns: dict) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for title in columns.values())
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in frame[list(columns)].itertuples(index=False))
    return f'<table class="results"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _marked(text: str) -> str:
    """An example in context, its token (between « and ») in bold."""
    return html.escape(text).replace("«", "<b>").replace("»", "</b>")


def aligned_table(result) -> str:
    """The largest aligned clusters of one layer: cluster, size, label, value, precision."""
    t = result.table
    t = t[t["aligned"]].sort_values(["size", "precision"], ascending=False)
    t = t.drop_duplicates("group").head(SHOWN_ALIGNED).copy()
    if t.empty:
        return "<p>No cluster is aligned with a label here.</p>"
    t["precision"] = t["precision"].map(lambda v: f"{v:.0%}")
    for column in ("group", "label", "value"):
        t[column] = t[column].map(lambda v: html.escape(str(v)))
    return _table(t, {"group": "cluster", "size": "rows", "label": "label",
                      "value": "value", "precision": "precision"})


def novel_table(result) -> str:
    """The candidate novel features of one layer with their rows in context."""
    novel = result.novel.head(SHOWN_NOVEL).copy()
    if novel.empty:
        return "<p>Every cluster is aligned with some label: no novel candidate.</p>"
    novel["examples"] = novel["examples"].map(
        lambda xs: "<br>".join(_marked(str(x)) for x in list(xs)[:3]))
    for column in ("tightness", "separability", "coherence"):
        novel[column] = novel[column].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    return _table(novel, {"group": "cluster", "size": "rows", "coherence": "coherence",
                          "tightness": "tightness", "separability": "separability",
                          "examples": "rows nearest its centre"})


def concepts_html(page, store, layers: list, *, k: int = MAX_K, seed: int = 0,
                  features: bool = True, labels=None,
                  max_rows: int | None = MAX_ROWS) -> tuple[str, str]:
    """The section body and its note."""
    if labels is None:  # chosen once for every layer (the rule reads each column whole)
        from ..concepts import choose_label_columns

        labels = choose_label_columns(store.rows) or None
    per_layer = {layer: layer_concepts(store, layer, k=k, seed=seed, features=features,
                                       labels=labels, max_rows=max_rows) for layer in layers}
    table = shares(per_layer)
    last = layers[-1]
    result = per_layer[last]["clusters"]
    body = page.figure(share_curve(table, layers))
    if features:
        metrics = pd.DataFrame([{"layer": html.escape(layer),
                                 **{m: f"{v:.3f}" for m, v in
                                    found["features"]["metrics"].items()}}
                                for layer, found in per_layer.items()])
        body += ("<h3>Sparse autoencoder per layer</h3>"
                 + _table(metrics, {"layer": "layer", "fvu": "FVU", "l0": "L0",
                                    "dead_fraction": "dead share"}))
    body += (f"<h3>Aligned clusters of {html.escape(last)}</h3>" + aligned_table(result)
             + f"<h3>Candidate novel features of {html.escape(last)}</h3>"
             + novel_table(result))
    k_used = result.k
    fitted = (f"fitted on {result.n_fitted:,} of {result.n_rows:,} rows (a uniform sample, "
              f"seed {seed}, the same rows for every layer)" if result.sample is not None
              else f"fitted on all {result.n_rows:,} rows")
    note = (f"k-means with {k_used} clusters per layer (seed {seed}), {fitted}; a cluster is "
            "aligned "
            f"with a label when at least {result.theta:.0%} of its labelled rows share one "
            f"value and at most {result.max_unknown:.0%} are unknown (ConceptX's rule). "
            + (f"Sparse autoencoder: {SAE_EPOCHS} epochs, each latent's {SAE_TOP_ROWS} "
               "top-activating rows aligned like a cluster (latents firing on fewer than 10 "
               "rows left out). " if features else "")
            + "Novel candidates are aligned with no label, ranked by tightness and by how "
            "well a linear probe separates them from the rest.")
    return body, note


def is_token_store(store) -> bool:
    """Whether the store has one row per token (where concepts are most telling)."""
    return store.manifest.get("capture", {}).get("pool") == "none" and len(store) > 0
