"""Reporters vs probes on the shared MiniLM store (``minilm_topics``): the tidy table, its
numbers, a probe on its own, the CLI."""

import pandas as pd
import pytest

from actclust.cli import main
from actclust.compare import RESULT_COLUMNS, compare, summarize
from actclust.errors import ActclustError

LAYERS = ["blocks.0.hook_out", "blocks.5.hook_out"]


def quick_probe():
    from actclust.probes import LinearProbe

    return LinearProbe(Cs=(0.1, 10.0), cv=3)


@pytest.fixture(scope="module")
def table(minilm_topics):
    return compare(minilm_topics, ["topic", "template"], layers=LAYERS,
                   reporters=["kmeans", "agglomerative"], seeds=2, probe=quick_probe(),
                   progress=False)


def test_table_is_tidy_and_complete(table, minilm_topics):
    assert list(table.columns) == RESULT_COLUMNS
    cluster_rows = 2 * 2 * 2 * 2 * 8   # layers x reporters x seeds x labels x metrics
    probe_rows = 2 * 2 * 2 * 4         # layers x labels x seeds x probe metrics
    neighbour_rows = 2 * 2             # layers x labels: knn_purity
    assert len(table) == cluster_rows + probe_rows + neighbour_rows
    assert set(table["method"]) == {"kmeans", "agglomerative", "linear_probe", "knn"}
    assert table["value"].notna().all()
    again = compare(minilm_topics, ["topic", "template"], layers=LAYERS,
                    reporters=["kmeans", "agglomerative"], seeds=2, probe=quick_probe(),
                    progress=False)
    timing = table["metric"] == "fit_seconds"
    pd.testing.assert_frame_equal(table[~timing].reset_index(drop=True),
                                  again[~timing].reset_index(drop=True))


def test_the_numbers_tell_where_topic_structure_appears(table):
    s = summarize(table).set_index(["layer", "method", "label", "metric"])["mean"]
    km_topic = [s[(layer, "kmeans", "topic", "nmi")] for layer in LAYERS]
    assert km_topic[1] > km_topic[0] + 0.1  # topics cluster at the last block, not the first
    for layer in LAYERS:
        assert s[(layer, "linear_probe", "topic", "probe_accuracy")] > \
               s[(layer, "linear_probe", "topic", "majority_baseline")] + 0.3
        assert s[(layer, "linear_probe", "topic", "selectivity")] > 0.2


def test_label_free_scores_sit_beside_the_labelled_ones(table, minilm_topics):
    from actclust.label_free import cluster_balance, knn_purity, self_probe_accuracy

    s = summarize(table).set_index(["layer", "method", "label", "metric"])["mean"]
    for layer in LAYERS:
        X = minilm_topics.layer(layer)
        for label in ("topic", "template"):
            assert s[(layer, "knn", label, "knn_purity")] == pytest.approx(
                knn_purity(X, minilm_topics.labels(label), k=20))
        one = table[(table["layer"] == layer) & (table["method"] == "kmeans")
                    & (table["seed"] == 0) & (table["label"] == "topic")]
        one = one.set_index("metric")["value"]
        clusters = compare_clusters(minilm_topics, layer)
        assert one["self_probe_accuracy"] == pytest.approx(self_probe_accuracy(X, clusters))
        assert one["cluster_balance"] == pytest.approx(cluster_balance(clusters, 10))
    # block 0 groups sentences by template, not topic: its neighbours say so
    assert s[(LAYERS[0], "knn", "template", "knn_purity")] > \
        s[(LAYERS[0], "knn", "topic", "knn_purity")] + 0.05


def compare_clusters(store, layer):
    from actclust.reporters import make_reporter

    return make_reporter("kmeans", n_clusters=10, seed=0).fit(store.layer(layer)).labels_


def test_without_label_free_scores(minilm_topics):
    table = compare(minilm_topics, "topic", layers=LAYERS[1], seeds=1, probes=False,
                    label_free=False, progress=False)
    assert set(table["method"]) == {"kmeans"}
    assert not {"self_probe_accuracy", "cluster_balance"} & set(table["metric"])


def test_auto_n_clusters_is_chosen_by_agreement_between_seeds(minilm_topics):
    from actclust.selection import choose_n_clusters

    X = minilm_topics.layer(LAYERS[1])
    table = compare(minilm_topics, "topic", layers=LAYERS[1], seeds=2, probes=False,
                    n_clusters=[3, 10], progress=False)
    chosen = choose_n_clusters("kmeans", X, candidates=[3, 10], seeds=[0, 1])
    k = table.loc[table["metric"] == "n_clusters", "value"]
    assert (k == chosen.n_clusters).all() and len(k) == 2
    stab = table.loc[table["metric"] == "stability", "value"]
    assert stab.iloc[0] == pytest.approx(chosen.stability)
    assert chosen.stability == chosen.scores["stability"].max()
    with pytest.raises(ActclustError, match="at least 2 seeds"):
        compare(minilm_topics, "topic", seeds=1, n_clusters="auto", progress=False)
    with pytest.raises(ActclustError, match="integers >= 2"):
        compare(minilm_topics, "topic", seeds=2, n_clusters=[1, 4], progress=False)
    with pytest.raises(ActclustError, match="n_neighbors must be"):
        compare(minilm_topics, "topic", n_neighbors=0, progress=False)
    with pytest.raises(ActclustError, match="'auto'"):
        compare(minilm_topics, "topic", seeds=2, n_clusters="many", progress=False)


def test_bad_input(minilm_topics):
    with pytest.raises(ActclustError, match="label column 'colour'"):
        compare(minilm_topics, "colour", progress=False)
    with pytest.raises(ActclustError, match="layer 'blocks.4.hook_out' is not in store"):
        compare(minilm_topics, "topic", layers="blocks.4.hook_out", progress=False)
    with pytest.raises(ActclustError, match="unknown reporter 'kmean'"):
        compare(minilm_topics, "topic", reporters=["kmean"], progress=False)
    with pytest.raises(ActclustError, match="'pca' does not cluster"):
        compare(minilm_topics, "topic", reporters=["pca"], progress=False)


def test_cli_compare_and_fit(minilm_topics, tmp_path, capsys):
    out = tmp_path / "results.parquet"
    code = main(["compare", str(minilm_topics.root), "--labels", "topic", "--layers",
                 "blocks.5.*", "--seeds", "2", "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "blocks.5.hook_out" in printed and "linear_probe" in printed and "±" in printed
    saved = pd.read_parquet(out)
    assert set(saved["layer"]) == {"blocks.5.hook_out"} and len(saved) == 2 * 8 + 2 * 4 + 1
    assert "self_probe_accuracy" in printed and "knn_purity" in printed
    code = main(["compare", str(minilm_topics.root), "--labels", "topic", "--layers",
                 "blocks.5.*", "--seeds", "2", "--n-clusters", "3,10", "--no-probes",
                 "--no-label-free", "--out", str(out), "--quiet"])
    assert code == 0 and "n_clusters" in capsys.readouterr().out
    saved = pd.read_parquet(out)
    assert set(saved["method"]) == {"kmeans"}
    assert saved.loc[saved["metric"] == "n_clusters", "value"].isin([3, 10]).all()
    with pytest.raises(SystemExit) as exited:
        main(["compare", str(minilm_topics.root), "--labels", "topic", "--seeds", "2",
              "--n-clusters", "1", "--out", str(out)])
    assert exited.value.code == 2
    code = main(["fit", str(minilm_topics.root), "--layer", "blocks.5.hook_out", "--labels",
                 "topic", "--out", str(tmp_path / "clusters.parquet")])
    assert code == 0
    n = len(minilm_topics)
    assert f"10 clusters over {n} rows" in capsys.readouterr().out
    clusters = pd.read_parquet(tmp_path / "clusters.parquet")
    assert len(clusters) == n and clusters["cluster"].between(0, 9).all()


def test_probes_only_and_distinct_settings(minilm_topics, tmp_path, capsys):
    from actclust.reporters import KMeans

    table = compare(minilm_topics, "topic", layers="blocks.5.hook_out",
                    reporters=["kmeans", KMeans(spherical=True)], seeds=1, probes=False,
                    progress=False)
    assert set(table["method"]) == {"kmeans", "kmeans(spherical=true)", "knn"}
    out = tmp_path / "probes.parquet"
    assert main(["compare", str(minilm_topics.root), "--labels", "topic", "--layers",
                 "blocks.5.hook_out", "--reporters", "", "--seeds", "1", "--out", str(out),
                 "--quiet"]) == 0
    assert set(pd.read_parquet(out)["method"]) == {"linear_probe"}
    assert main(["fit", str(minilm_topics.root), "--layer", "blocks.5.hook_out",
                 "--reporter", "pca"]) == 2
    assert "'pca' does not cluster" in capsys.readouterr().err


def test_topic_probe_beats_the_majority_baseline(minilm_topics):
    from actclust.probes import LinearProbe, probe_scores

    view = minilm_topics.layer("blocks.5.hook_out")
    s = probe_scores(view, minilm_topics.labels("topic"),
                     groups=minilm_topics.labels("template"), probe=LinearProbe(cv=3))
    assert s["probe_accuracy"] >= s["majority_baseline"] + 0.4
    assert s["selectivity"] >= 0.4
    assert s["n_train"] + s["n_test"] == len(minilm_topics)


def test_the_streamed_probe_agrees_with_the_logistic_one_on_topics(minilm_topics, tmp_path):
    out = tmp_path / "ridge.parquet"
    assert main(["compare", str(minilm_topics.root), "--labels", "topic", "--layers",
                 "blocks.5.hook_out", "--reporters", "", "--seeds", "2", "--probe", "ridge",
                 "--out", str(out), "--quiet"]) == 0
    ridge = pd.read_parquet(out).groupby("metric")["value"].mean()
    logistic = compare(minilm_topics, "topic", layers="blocks.5.hook_out", reporters=[],
                       seeds=2, probe="logistic", progress=False)
    logistic = logistic.groupby("metric")["value"].mean()
    assert ridge["majority_baseline"] == pytest.approx(logistic["majority_baseline"])
    assert ridge["probe_accuracy"] >= ridge["majority_baseline"] + 0.4
    assert abs(ridge["probe_accuracy"] - logistic["probe_accuracy"]) < 0.05


def test_settings_from_text_and_named_reporters(minilm_topics, tmp_path, capsys):
    from actclust.reporters import GMM

    table = compare(minilm_topics, "topic", layers=LAYERS[1], seeds=1, probes=False,
                    label_free=False, progress=False,
                    reporters={"gmm-diag": GMM(covariance_type="diag", pca_components=10),
                               "gmm-text": "gmm(covariance_type=diag, pca_components=10)"})
    nmi = table[table["metric"] == "nmi"].set_index("method")["value"]
    assert set(nmi.index) == {"gmm-diag", "gmm-text"}
    assert nmi["gmm-diag"] == nmi["gmm-text"]  # the same settings, however written
    with pytest.raises(ActclustError, match="both called 'kmeans'"):
        compare(minilm_topics, "topic", reporters=["kmeans", "kmeans"], progress=False)
    out = tmp_path / "r.parquet"
    assert main(["compare", str(minilm_topics.root), "--labels", "topic", "--layers",
                 LAYERS[1], "--reporters", "kmeans,gmm(covariance_type=diag)", "--param",
                 "n_init=2", "--seeds", "1", "--no-probes", "--out", str(out), "--quiet"]) == 0
    assert set(pd.read_parquet(out)["method"]) >= {"kmeans(n_init=2)",
                                                   "gmm(covariance_type=diag, n_init=2)"}
    assert main(["fit", str(minilm_topics.root), "--layer", LAYERS[1], "--reporter",
                 "gmm(covariance_type=round)"]) == 2
    assert "'covariance_type' parameter of GMM" in capsys.readouterr().err
