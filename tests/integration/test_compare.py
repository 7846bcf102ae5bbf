"""Reporters vs probes on a real MiniLM store: the tidy table, its numbers, the CLI."""

import pandas as pd
import pytest

import actclust
from actclust.cli import main
from actclust.compare import RESULT_COLUMNS, compare, summarize
from actclust.errors import ActclustError

LAYERS = ["blocks.0.hook_out", "blocks.5.hook_out"]


@pytest.fixture(scope="module")
def topics_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "store"
    return actclust.capture("minilm", "topics", LAYERS, pool="mean", limit=300, out=out,
                            progress=False)


def quick_probe():
    from actclust.probes import LinearProbe

    return LinearProbe(Cs=(0.1, 10.0), cv=3)


@pytest.fixture(scope="module")
def table(topics_store):
    return compare(topics_store, ["topic", "template"], reporters=["kmeans", "agglomerative"],
                   seeds=2, probe=quick_probe(), progress=False)


def test_table_is_tidy_and_complete(table, topics_store):
    assert list(table.columns) == RESULT_COLUMNS
    cluster_rows = 2 * 2 * 2 * 2 * 6   # layers x reporters x seeds x labels x metrics
    probe_rows = 2 * 2 * 2 * 4         # layers x labels x seeds x probe metrics
    assert len(table) == cluster_rows + probe_rows
    assert set(table["method"]) == {"kmeans", "agglomerative", "linear_probe"}
    assert table["value"].notna().all()
    again = compare(topics_store, ["topic", "template"], reporters=["kmeans", "agglomerative"],
                    seeds=2, probe=quick_probe(), progress=False)
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


def test_bad_input(topics_store):
    with pytest.raises(ActclustError, match="label column 'colour'"):
        compare(topics_store, "colour", progress=False)
    with pytest.raises(ActclustError, match="layer 'blocks.3.hook_out' is not in store"):
        compare(topics_store, "topic", layers="blocks.3.hook_out", progress=False)
    with pytest.raises(ActclustError, match="unknown reporter 'kmean'"):
        compare(topics_store, "topic", reporters=["kmean"], progress=False)
    with pytest.raises(ActclustError, match="'pca' does not cluster"):
        compare(topics_store, "topic", reporters=["pca"], progress=False)


def test_cli_compare_and_fit(topics_store, tmp_path, capsys):
    out = tmp_path / "results.parquet"
    code = main(["compare", str(topics_store.root), "--labels", "topic", "--layers",
                 "blocks.5.*", "--seeds", "2", "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "blocks.5.hook_out" in printed and "linear_probe" in printed and "±" in printed
    saved = pd.read_parquet(out)
    assert set(saved["layer"]) == {"blocks.5.hook_out"} and len(saved) == 2 * 6 + 2 * 4
    code = main(["fit", str(topics_store.root), "--layer", "blocks.5.hook_out", "--labels",
                 "topic", "--out", str(tmp_path / "clusters.parquet")])
    assert code == 0
    assert "10 clusters over 300 rows" in capsys.readouterr().out
    clusters = pd.read_parquet(tmp_path / "clusters.parquet")
    assert len(clusters) == 300 and clusters["cluster"].between(0, 9).all()


def test_probes_only_and_distinct_settings(topics_store, tmp_path, capsys):
    from actclust.reporters import KMeans

    table = compare(topics_store, "topic", layers="blocks.5.hook_out",
                    reporters=["kmeans", KMeans(spherical=True)], seeds=1, probes=False,
                    progress=False)
    assert set(table["method"]) == {"kmeans", "KMeans(spherical=True)"}
    out = tmp_path / "probes.parquet"
    assert main(["compare", str(topics_store.root), "--labels", "topic", "--layers",
                 "blocks.5.hook_out", "--reporters", "", "--seeds", "1", "--out", str(out),
                 "--quiet"]) == 0
    assert set(pd.read_parquet(out)["method"]) == {"linear_probe"}
    assert main(["fit", str(topics_store.root), "--layer", "blocks.5.hook_out",
                 "--reporter", "pca"]) == 2
    assert "'pca' does not cluster" in capsys.readouterr().err
