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
    cluster_rows = 2 * 2 * 2 * 2 * 6   # layers x reporters x seeds x labels x metrics
    probe_rows = 2 * 2 * 2 * 4         # layers x labels x seeds x probe metrics
    assert len(table) == cluster_rows + probe_rows
    assert set(table["method"]) == {"kmeans", "agglomerative", "linear_probe"}
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
    assert set(saved["layer"]) == {"blocks.5.hook_out"} and len(saved) == 2 * 6 + 2 * 4
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
    assert set(table["method"]) == {"kmeans", "KMeans(spherical=True)"}
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
