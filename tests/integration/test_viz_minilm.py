"""actclust.viz figures of real stores: the shared MiniLM store (``minilm_topics``) and a
small token-level one. Each test checks the data the figure carries (traces, axes, labels),
not only that it was drawn."""

import html
import json
import re

import numpy as np
import pytest

import actclust
from actclust.compare import summarize
from actclust.errors import ActclustError
from actclust.metrics import cluster_accuracy, cluster_matching, purity
from actclust.viz import (bic_curve, cluster_dashboard, contingency_heatmap, dendrogram, embed,
                          explained_variance, layer_map, layer_sweep)
from actclust.viz._common import token_offsets
from tests.conftest import TOPICS_LAYERS as LAYERS

TOP = "blocks.5.hook_out"


@pytest.fixture(scope="module")
def pooled(minilm_topics):
    return minilm_topics


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    out = tmp_path_factory.mktemp("viz") / "tokens"
    return actclust.capture("minilm", "topics", TOP, pool="none", limit=12, out=out,
                            progress=False)


@pytest.fixture(scope="module")
def kmeans(pooled):
    from actclust.reporters import KMeans

    return KMeans(10, random_state=0).fit(pooled.layer(TOP))


@pytest.fixture(scope="module")
def results(minilm_topics_results):
    return minilm_topics_results


def points(fig, panel):
    """(names, n points, row ids) of the traces drawn in subplot ``panel`` (1 or 2)."""
    axis = "x" if panel == 1 else f"x{panel}"
    traces = [t for t in fig.data if t.xaxis == axis]
    return [t.name for t in traces], sum(len(t.x) for t in traces), \
        np.concatenate([t.customdata for t in traces])


# ---------------------------------------------------------------- maps


def test_map_of_a_store_layer_by_cluster_and_label(pooled, kmeans):
    fig = layer_map(pooled, TOP, clusters=kmeans, label="topic", method="pca")
    n = len(pooled)
    meta = fig.layout.meta
    assert meta["n_shown"] == n and meta["n_total"] == n and not meta["subsampled"]
    assert meta["panels"] == ["cluster", "topic"]
    names, count, rows = points(fig, 1)
    assert sorted(names, key=int) == [str(c) for c in range(10)] and count == n
    assert sorted(rows.tolist()) == list(range(n))
    names, count, _ = points(fig, 2)
    assert set(names) == set(pooled.labels("topic")) and count == n
    assert fig.layout.xaxis.title.text == "PC 1" and fig.layout.yaxis2.title.text == "PC 2"
    assert fig.layout.legend.title.text == "<b>cluster</b>"
    assert fig.layout.legend2.title.text == "<b>topic</b>"
    assert "PCA" in fig.layout.title.subtitle.text and f"all {n} rows" in fig.layout.title.subtitle.text
    # Every point's hover names its own row: its text, cluster and labels.
    text, topic = pooled.rows["text"], pooled.labels("topic")
    for trace in fig.data[:3]:
        for row, hover in zip(trace.customdata[:5], trace.text[:5]):
            assert html.escape(text[row][:20]) in hover.replace("<br>", " ")
            assert f"topic: {topic[row]}" in hover
            assert f"<b>cluster</b>: {kmeans.labels_[row]}" in hover
            assert f"row {row} " in hover


def test_cluster_colours_follow_the_matched_label(pooled, kmeans):
    fig = layer_map(pooled, TOP, clusters=kmeans, label="topic", method="pca")
    colour_of = {(t.xaxis, t.name): t.marker.color for t in fig.data}
    matching = cluster_matching(pooled.labels("topic"), kmeans.labels_)
    for cluster, topic in matching.items():
        assert colour_of[("x", str(cluster))] == colour_of[("x2", topic)]


@pytest.mark.slow  # UMAP's first call compiles numba code: seconds, once per process
def test_umap_map(pooled):
    fig = layer_map(pooled.layer(TOP), label=pooled.labels("topic"), method="umap")
    assert fig.layout.meta["method"] == "umap" and fig.layout.xaxis.title.text == "UMAP 1"
    xs = np.concatenate([t.x for t in fig.data])
    assert len(xs) == len(pooled) and np.isfinite(xs).all() and xs.std() > 0
    assert "n_neighbors=15" in fig.layout.title.subtitle.text


def test_subsampled_map_says_so(pooled):
    fig = layer_map(pooled, TOP, label="topic", method="pca", max_points=50)
    meta = fig.layout.meta
    assert meta["subsampled"] and meta["n_shown"] == 50 and meta["max_points"] == 50
    notes = " ".join(a.text for a in fig.layout.annotations)
    assert f"Subsampled: 50 of {len(pooled)} rows shown (cap max_points=50)" in notes
    again = embed(pooled.layer(TOP), "pca", 50)
    assert np.array_equal(again.rows, np.sort(again.rows)) and len(set(again.rows)) == 50


def test_token_rows_hover_shows_the_token_inside_its_text(tokens):
    rows = tokens.rows
    found = total = 0
    for _, doc in rows.groupby("doc_id"):
        spans = token_offsets(doc["text"].iloc[0], doc["token"])
        for tok, (a, b) in zip(doc["token"], spans):
            if tok in ("[CLS]", "[SEP]"):
                continue
            total += 1
            found += a >= 0 and doc["text"].iloc[0][a:b].lower() == tok.lstrip("#")
    assert found / total > 0.95
    fig = layer_map(tokens, TOP, label="topic", method="pca")
    trace = fig.data[0]
    for row, hover in zip(trace.customdata[:20], trace.text[:20]):
        token = rows["token"][row]
        if token in ("[CLS]", "[SEP]"):
            continue
        bold = hover.split("<b>")[1].split("</b>")[0]
        assert bold.lower() == html.escape(token.lstrip("#"))
        assert f"token {rows['position'][row]}" in hover


def test_real_stores_read_lazily_like_their_joined_tables(tokens, pooled):
    from tests.unit.test_row_table import check_like_the_joined_table

    for store in (tokens, pooled):  # opened afresh: nothing read yet
        check_like_the_joined_table(actclust.ActivationStore(store.root))
    assert tokens.column("text")[0] == pooled.column("text")[0]  # the same first document


def test_map_errors(pooled, kmeans):
    with pytest.raises(ActclustError, match="layer 'blocks.4.hook_out' is not in store"):
        layer_map(pooled, "blocks.4.hook_out", method="pca")
    with pytest.raises(ActclustError, match="label column 'colour'"):
        layer_map(pooled, TOP, label="colour", method="pca")
    with pytest.raises(ActclustError, match=f"have shape \\(5,\\) but the layer has {len(pooled)} rows"):
        layer_map(pooled, TOP, clusters=np.zeros(5), method="pca")
    with pytest.raises(ActclustError, match="unknown map method 'tsne'"):
        layer_map(pooled, TOP, method="tsne")
    with pytest.raises(ActclustError, match="not fitted"):
        from actclust.reporters import KMeans

        layer_map(pooled, TOP, clusters=KMeans(3), method="pca")
    with pytest.raises(ActclustError, match="which layer"):
        layer_map(pooled, method="pca")


# ---------------------------------------------------------------- contingency


def test_contingency_heatmap_puts_the_matching_on_the_diagonal(pooled, kmeans):
    y, found = pooled.labels("topic"), kmeans.labels_
    fig = contingency_heatmap(y, kmeans, label_name="topic", cluster_name="kmeans")
    heat = fig.data[0]
    counts = np.array(heat.text, dtype=int)
    meta = fig.layout.meta
    assert counts.shape == (10, 10) and counts.sum() == len(y)
    matching = cluster_matching(y, found)
    for i, (cluster, topic) in enumerate(zip(meta["rows"], meta["columns"])):
        assert matching[int(cluster)] == topic
        assert counts[i, i] == int(((found == int(cluster)) & (y == topic)).sum())
    assert meta["accuracy"] == pytest.approx(cluster_accuracy(y, found))
    assert meta["purity"] == pytest.approx(purity(y, found))
    assert list(heat.x) == meta["columns"] and heat.y[0].startswith(f"kmeans {meta['rows'][0]}")
    assert "purity" in heat.y[0] and fig.layout.yaxis.autorange == "reversed"
    assert np.allclose(np.array(heat.z).sum(1), 1)  # row shares
    assert fig.layout.xaxis.title.text == "topic"


# ---------------------------------------------------------------- layer sweep


def test_layer_sweep_reads_the_results_table(results):
    fig = layer_sweep(results, "topic")
    named = {t.name: t for t in fig.data if t.showlegend is not False}
    assert {"kmeans NMI", "kmeans cluster accuracy", "probe accuracy", "probe selectivity",
            "majority baseline"} <= set(named)
    s = summarize(results).set_index(["layer", "method", "label", "metric"])["mean"]
    assert list(named["kmeans NMI"].x) == LAYERS
    assert named["kmeans NMI"].y.tolist() == pytest.approx(
        [s[(layer, "kmeans", "topic", "nmi")] for layer in LAYERS])
    assert named["probe accuracy"].y.tolist() == pytest.approx(
        [s[(layer, "linear_probe", "topic", "probe_accuracy")] for layer in LAYERS])
    bands = [t for t in fig.data if t.fill == "tonexty"]
    assert len(bands) >= 2  # sd bands for the reporter lines (2 seeds)
    assert fig.layout.xaxis.title.text == "layer" and fig.layout.yaxis.title.text == "score"
    assert fig.layout.meta["label"] == "topic"
    template = layer_sweep(results, "template")  # no probe rows for template
    assert not any(t.name and t.name.startswith("probe") for t in template.data)
    # the neighbour diagnostic is a line of its own, never a reporter
    assert "knn NMI" not in named
    assert named["kNN label purity"].y.tolist() == pytest.approx(
        [s[(layer, "knn", "topic", "knn_purity")] for layer in LAYERS])


def test_layer_sweep_errors(results, tmp_path):
    with pytest.raises(ActclustError, match="no rows for label 'colour'.*topic, template"):
        layer_sweep(results, "colour")
    with pytest.raises(ActclustError, match="no rows for method\\(s\\) gmm"):
        layer_sweep(results, "topic", reporters=["gmm"])
    with pytest.raises(ActclustError, match="lack the columns seed, value"):
        layer_sweep(results.drop(columns=["seed", "value"]))
    with pytest.raises(ActclustError, match="does not exist"):
        layer_sweep(tmp_path / "missing.parquet")


# ---------------------------------------------------------------- reporter figures


def test_dendrogram_explained_variance_and_bic(pooled):
    from actclust.reporters import PCA, Agglomerative, select_k

    X = pooled.layer(TOP)
    agg = Agglomerative(10).fit(X)
    fig = dendrogram(agg)
    meta = fig.layout.meta
    links = [t for t in fig.data if t.mode == "lines"]
    assert meta["n_clusters"] == 10 and meta["leaves"] == 30 and len(links) == 29
    assert agg.linkage_[-10, 2] <= meta["cut"] <= agg.linkage_[-9, 2]
    below = {t.line.color for t in links if max(t.y) <= meta["cut"]}
    assert len(below) >= 2 and "#8c8c8c" not in below  # branches below the cut coloured
    assert fig.layout.yaxis.title.text == "merge distance"

    pca = PCA(20, random_state=0).fit(X)
    fig = explained_variance(pca)
    assert fig.data[0].y.tolist() == pytest.approx(pca.explained_variance_ratio_.tolist())
    assert fig.data[1].y[-1] == pytest.approx(pca.explained_variance_ratio_.sum())
    assert fig.layout.xaxis.title.text == "principal component"

    table = select_k(X, [2, 4, 6], covariance_type="diag", random_state=0)
    fig = bic_curve(table)
    assert fig.layout.meta["best_k"] == int(table.loc[table["bic"].idxmin(), "k"])
    assert fig.data[0].y.tolist() == pytest.approx(table["bic"].tolist())
    with pytest.raises(ActclustError, match="linkage matrix"):
        dendrogram(np.zeros((3, 2)))


# ---------------------------------------------------------------- dashboard


def test_dashboard_pages_for_every_cluster(pooled, kmeans):
    dash = cluster_dashboard(pooled, TOP, kmeans, n_examples=5)
    found = kmeans.labels_
    assert [p.cluster for p in dash.pages] == list(range(10))
    assert sum(p.size for p in dash.pages) == len(pooled)
    for p in dash.pages:
        assert p.size == int((found == p.cluster).sum())
        shown = p.top + p.bands
        assert all(found[e.row] == p.cluster for e in shown)
        strengths = [e.strength for e in shown]
        assert strengths == sorted(strengths, reverse=True)  # centre first, then outwards
        assert p.top[0].strength == 1.0  # the most central row
        assert p.top[0].tokens[0][0] == pooled.rows["text"][p.top[0].row]
        topic = p.labels["topic"]
        assert topic["in_cluster"].sum() == pytest.approx(1)
        assert topic["overall"].sum() == pytest.approx(1)
        assert p.cluster not in [c for c, _ in p.neighbours] and len(p.neighbours) == 3
        assert p.histogram.layout.meta["members"] == p.size
        assert p.histogram.layout.meta["others"] == len(pooled) - p.size
    assert "closeness to the cluster mean" in dash.strength_kind
    page = dash.to_html()
    assert page.count('class="dash-page"') == 10 and "Plotly.newPlot" in page
    assert 'data-page="dash-c3"' in page


def test_dashboard_on_token_rows_colours_the_context(tokens):
    from actclust.reporters import GMM

    gmm = GMM(4, covariance_type="diag", pca_components=16, random_state=0)
    gmm.fit(tokens.layer(TOP))
    dash = cluster_dashboard(tokens, TOP, gmm, n_examples=3)
    assert dash.strength_kind.startswith("assignment probability")
    rows = tokens.rows
    for p in dash.pages:
        for ex in p.top:
            marked = [t for t in ex.tokens if t[2]]
            assert len(marked) == 1 and len(ex.tokens) > 1
            assert marked[0][1] == pytest.approx(ex.strength)
            assert marked[0][0] == rows["token"][ex.row].lstrip("#") or \
                rows["token"][ex.row].startswith("[")
            assert all(0 <= t[1] <= 1 for t in ex.tokens)
    text = dash.to_html()
    assert 'class="tok target"' in text


def test_dashboard_errors(pooled, kmeans):
    with pytest.raises(ActclustError, match="give a fitted reporter or clusters"):
        cluster_dashboard(pooled, TOP)
    with pytest.raises(ActclustError, match="label column 'colour'"):
        cluster_dashboard(pooled, TOP, kmeans, labels=["colour"])
    with pytest.raises(ActclustError, match=f"but the layer has {len(pooled)} rows"):
        cluster_dashboard(pooled, TOP, clusters=[0, 1])


def test_figures_serialise_to_json(pooled, kmeans, results):
    for fig in (layer_map(pooled, TOP, clusters=kmeans, method="pca"),
                contingency_heatmap(pooled.labels("topic"), kmeans), layer_sweep(results)):
        spec = json.loads(fig.to_json())
        assert spec["data"] and spec["layout"]["title"]["text"]


def test_results_parquet_path(results, tmp_path):
    path = tmp_path / "r.parquet"
    results.to_parquet(path)
    from_path = layer_sweep(path)
    assert from_path.layout.meta["layers"] == LAYERS
    assert from_path.to_json() == layer_sweep(results).to_json()  # the same figure, line by line
    with pytest.raises(ActclustError, match="not a readable parquet"):
        (tmp_path / "bad.parquet").write_text("nope")
        layer_sweep(tmp_path / "bad.parquet")
    with pytest.raises(ActclustError, match="DataFrame or a parquet path"):
        layer_sweep(42)


def test_dashboard_escapes_cluster_names_taken_from_text(pooled):
    names = np.where(pooled.labels("topic") == pooled.labels("topic")[0], '<b>"a" b</b>', "c d")
    dash = cluster_dashboard(pooled, TOP, clusters=names)
    page = dash.to_html()
    assert '<b>"a" b</b>' not in page and "&lt;b&gt;" in page
    assert len(dash.pages) == 2
    # every link to a page names an id that exists
    ids = set(re.findall(r'id="(dash-c[^"]+)"', page))
    links = set(re.findall(r'data-page="([^"]+)"', page))
    assert len(ids) == 2 and links <= ids
