"""The report's Concepts section on a small token store."""

import re

import numpy as np
import pandas as pd

from actclust.store import ActivationStore, StoreWriter
from actclust.viz import write_report
from actclust.viz.concepts_section import concept_k, layer_concepts, share_curve, shares
from tests.unit.test_concepts import LAYER, token_store  # noqa: F401  (a fixture)


def test_each_layer_aligns_clusters_and_features_with_the_same_labels(token_store):  # noqa: F811
    found = layer_concepts(token_store, LAYER, k=12, labels=["pos", "sem"])
    clusters, features = found["clusters"], found["features"]
    assert clusters.k == 12
    assert set(features["summary"]["label"]) == set(clusters.summary["label"]) == {
        "pos", "sem", "any"}
    # the animal words are one blob: some cluster and some latent align with sem=animal
    for table in (clusters.table, features["table"]):
        hits = table[(table["label"] == "sem") & table["aligned"]]
        assert "animal" in set(hits["value"])
    assert 0 <= features["metrics"]["fvu"] < 0.5 and features["metrics"]["l0"] > 0
    long = shares({LAYER: found})
    assert set(long["source"]) == {"clusters", "SAE features"}
    fig = share_curve(long, [LAYER])
    assert fig.layout.meta["labels"] == ["pos", "sem", "any"] and len(fig.data) == 6


def test_the_report_holds_the_concepts_section_with_novel_rows_in_context(
        token_store, tmp_path):  # noqa: F811
    path = write_report(token_store, out=tmp_path / "r.html", label="pos", map_method="pca",
                        dashboards=False, concepts=True, concept_k=12)
    text = path.read_text()
    section = text[text.index('id="concepts"'):]
    assert "Aligned clusters of" in section and "Sparse autoencoder per layer" in section
    # ah/oh/uh is a tight blob that no label explains: a novel candidate, its token in bold
    novel = section[section.index("Candidate novel features"):]
    assert re.search(r"<b>(ah|oh|uh)</b>", novel, re.IGNORECASE)


def _token_store(root, pool):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4)).astype(np.float32)
    rows = pd.DataFrame({"doc_id": np.repeat(np.arange(10), 4), "position": np.tile(range(4), 10),
                         "token": ["a", "b", "c", "d"] * 10, "kind": ["x", "y"] * 20})
    docs = pd.DataFrame({"doc_id": np.arange(10), "text": ["a b c d"] * 10})
    plan = [{"index": 0, "doc_start": 0, "doc_stop": 10, "rows": 40}]
    with StoreWriter(root, {"model": {"name": "toy"}, "capture": {"pool": pool}}, plan, ["h"],
                     docs, "float32") as w:
        w.begin_shard(plan[0])
        w.append({"h": X}, rows)
        w.commit_shard()
        w.finalize()
    return ActivationStore(root)


def test_the_section_is_on_by_default_for_token_stores_only(tmp_path):
    tokens = _token_store(tmp_path / "t", "none")
    pooled = _token_store(tmp_path / "p", "mean")
    for store, expected in ((tokens, True), (pooled, False)):
        path = write_report(store, out=tmp_path / f"{expected}.html", label="kind",
                            map_method="pca", dashboards=False)
        assert ('id="concepts"' in path.read_text()) is expected
    path = write_report(tokens, out=tmp_path / "off.html", label="kind", map_method="pca",
                        dashboards=False, concepts=False)
    assert 'id="concepts"' not in path.read_text()


def test_clusters_per_layer_shrink_with_the_layer():
    assert concept_k(1_000_000) == 400 and concept_k(100) == 5 and concept_k(10) == 2


def test_compare_scores_a_sparse_autoencoders_features_against_each_label(token_store):  # noqa: F811
    from actclust.compare import compare
    from actclust.reporters import SparseAutoencoder

    table = compare(token_store, ["sem", "pos"], reporters={
        "sae": SparseAutoencoder(k=4, epochs=20)}, seeds=2, probes=False, label_free=False,
        progress=False)
    sae = table[table["method"] == "sae"]
    assert set(sae["metric"]) == {"concepts_aligned_share", "concepts_row_coverage", "fvu",
                                  "l0", "dead_fraction", "fit_seconds"}
    assert set(sae["seed"]) == {0, 1} and set(sae["label"]) == {"sem", "pos"}
    share = sae[sae["metric"] == "concepts_aligned_share"].groupby("label")["value"].mean()
    assert 0 < share["sem"] <= 1 and 0 < share["pos"] <= 1  # the animal blob is one class
    # a label drawn at random per row: no latent's top rows agree on it
    from actclust.concepts import feature_scores

    noise = np.random.default_rng(1).choice(["p", "q", "r"], len(token_store))
    rows = feature_scores(SparseAutoencoder(k=4, epochs=20), token_store.layer(LAYER), LAYER,
                          "sae", 0, {"noise": noise})
    assert [r["value"] for r in rows if r["metric"] == "concepts_aligned_share"] == [0.0]
    assert (sae.loc[sae["metric"] == "l0", "value"] <= 4).all()
    assert (sae.loc[sae["metric"] == "fvu", "value"] < 1).all()


def test_fit_refuses_a_feature_reporter_with_a_pointer_to_compare(token_store, capsys):  # noqa: F811
    from actclust.cli import main

    assert main(["fit", str(token_store.root), "--layer", LAYER, "--reporter", "sae",
                 "--n-clusters", "3"]) == 2
    assert "use `actclust compare --reporters sae`" in capsys.readouterr().err


def test_a_large_layer_is_fitted_on_a_sample_that_the_section_states(token_store,  # noqa: F811
                                                                      tmp_path):
    from actclust.concepts import concept_table

    result = concept_table(token_store, LAYER, k=8, labels=["pos", "sem"], max_rows=300,
                           seed=3)
    assert result.n_fitted == 300 and result.n_rows == len(token_store)
    assert len(result.sample) == 300 and np.all(np.diff(result.sample) > 0)
    assert result.table["n_rows"].iloc[0] == 300  # shares are of the rows fitted
    tokens = token_store.column("token")
    for rows, texts in zip(result.novel["example_rows"], result.novel["examples"]):
        assert set(rows) <= set(result.sample)  # store rows, not positions in the sample
        for row, text in zip(rows, texts):  # each example marks its own row's token
            assert f"«{tokens[row]}»".lower() in text.lower()
    again = concept_table(token_store, LAYER, k=8, labels=["pos", "sem"], max_rows=300,
                          seed=3)
    assert np.array_equal(again.sample, result.sample)  # seeded
    from actclust.viz.concepts_section import concepts_html
    from actclust.viz._html import Page

    _, note = concepts_html(Page("t", "s"), token_store, [LAYER], k=8, max_rows=300)
    assert f"fitted on 300 of {len(token_store):,} rows" in note
    _, note = concepts_html(Page("t", "s"), token_store, [LAYER], k=8, max_rows=None)
    assert f"fitted on all {len(token_store):,} rows" in note


def test_the_report_command_takes_the_concept_sample_size(token_store, tmp_path,  # noqa: F811
                                                          capsys):
    from actclust.cli import main

    out = tmp_path / "r.html"
    assert main(["report", str(token_store.root), "-o", str(out), "--label", "pos", "--map",
                 "pca", "--no-dashboards", "--concepts", "--concept-k", "6",
                 "--concept-rows", "250"]) == 0
    assert f"fitted on 250 of {len(token_store):,} rows" in out.read_text()
    capsys.readouterr()
    assert main(["report", str(token_store.root), "-o", str(out), "--concept-rows", "1"]) == 2
    assert "--concept-rows must be 0 (every row) or at least 2" in capsys.readouterr().err
