"""Concept alignment (actclust.concepts) on planted groups and a tiny token store: what is
aligned, what is not, the unknown rule, overlapping groups, the novel candidates, the
command line."""

import numpy as np
import pandas as pd
import pytest

from actclust._util.schema import RESULT_COLUMNS
from actclust.cli import main
from actclust.concepts import (align, choose_label_columns, coherence, concept_table,
                               in_context, novel_candidates, summarise, to_results)
from actclust.errors import ActclustError
from tests.files import one_shard_store

LAYER = "blocks.0.hook_out"


def one(table, group, label="pos"):
    return table[(table["group"] == group) & (table["label"] == label)].iloc[0]


# ---------------------------------------------------------------- alignment


def test_a_planted_concept_is_aligned_and_a_50_50_mix_is_not():
    pos = ["NOUN"] * 20 + ["NOUN", "VERB"] * 10 + ["DET"] * 20
    clusters = np.repeat([0, 1, 2], 20)
    table = align(clusters, pd.DataFrame({"pos": pos}))
    planted, mixed = one(table, 0), one(table, 1)
    assert (planted["value"], planted["precision"], planted["aligned"]) == ("NOUN", 1.0, True)
    assert planted["recall"] == pytest.approx(20 / 30)  # 10 more nouns sit in the mix
    assert planted["f1"] == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))
    assert mixed["precision"] == 0.5 and not mixed["aligned"]
    # theta is the rule: at 0.5 the mix is aligned too
    assert one(align(clusters, pd.DataFrame({"pos": pos}), theta=0.5), 1)["aligned"]


def test_theta_is_a_lower_bound_that_counts():
    pos = ["NOUN"] * 9 + ["VERB"]
    assert one(align(np.zeros(10, int), pd.DataFrame({"pos": pos})), 0)["aligned"]
    assert not one(align(np.zeros(10, int), pd.DataFrame({"pos": pos}), theta=0.91),
                   0)["aligned"]


def test_unknown_rows_are_left_out_of_precision_and_capped_by_max_unknown():
    # group 0: 6 nouns, 4 unknown (40%): aligned; group 1: 5 nouns, 5 unknown (50%): not
    sem = ["animal"] * 6 + [None, "none", "O_UNK", "NONE"] + ["animal"] * 5 + [np.nan] * 5
    table = align(np.repeat([0, 1], 10), pd.DataFrame({"sem": sem}))
    a, b = one(table, 0, "sem"), one(table, 1, "sem")
    assert a["precision"] == 1.0 and a["unknown_share"] == pytest.approx(0.4) and a["aligned"]
    assert a["known"] == 6 and a["count"] == 6
    assert b["precision"] == 1.0 and b["unknown_share"] == 0.5 and not b["aligned"]
    assert one(align(np.repeat([0, 1], 10), pd.DataFrame({"sem": sem}), max_unknown=0.5),
               1, "sem")["aligned"]
    # "none" is a real value when the caller says nothing is unknown
    strict = align(np.repeat([0, 1], 10), pd.DataFrame({"sem": sem}), unknown=())
    assert one(strict, 0, "sem")["known"] == 8


def test_a_group_with_no_known_value_is_never_aligned():
    table = align(np.repeat([0, 1], 5), pd.DataFrame({"sem": [None] * 5 + ["a"] * 5}))
    empty = one(table, 0, "sem")
    assert pd.isna(empty["value"]) and np.isnan(empty["precision"]) and not empty["aligned"]
    assert empty["unknown_share"] == 1.0


def test_overlapping_index_groups_and_coverage():
    rows = pd.DataFrame({"pos": ["NOUN"] * 30 + ["VERB"] * 30})
    groups = {"f0": np.arange(0, 20), "f1": np.arange(10, 30),  # overlap on rows 10..19
              "f2": np.array([25, 35, 45, 55]), "dead": np.array([], int)}
    table = align(groups, rows)
    assert list(table["group"]) == ["f0", "f1", "f2", "dead"]
    assert list(table["size"]) == [20, 20, 4, 0]
    assert list(table["aligned"]) == [True, True, False, False]
    assert list(table["covered_rows"]) == [20, 10, 0, 0]  # f1 adds only rows 20..29
    summary = summarise(table).set_index("label")
    # the dead feature (no rows) is not a group; the union of f0 and f1 is 30 rows of 60
    assert summary.loc["pos", "groups"] == 3 and summary.loc["pos", "aligned"] == 2
    assert summary.loc["pos", "row_coverage"] == 0.5
    # the same rows as a partition give the same answer for the groups they share
    partition = align(np.r_[np.zeros(20, int), np.ones(10, int), -np.ones(30, int)], rows)
    assert list(partition["aligned"]) == [True, True]
    # a boolean mask is a group too, and a ragged object array holds one group per item
    assert align([rows["pos"].eq("VERB").to_numpy()], rows)["value"].tolist() == ["VERB"]
    ragged = np.empty(2, object)
    ragged[:] = [np.arange(0, 20), np.arange(40, 43)]
    assert align(ragged, rows)["value"].tolist() == ["NOUN", "VERB"]


def test_bad_groups_are_one_line_errors():
    rows = pd.DataFrame({"pos": ["NOUN", "VERB", "DET"]})
    with pytest.raises(ActclustError, match="3 rows"):
        align(np.array([0, 1]), rows)
    with pytest.raises(ActclustError, match="outside 0..2"):
        align([np.array([0, 5])], rows)
    with pytest.raises(ActclustError, match="'nope' is not in the rows"):
        align([0, 1, 2], rows, ["nope"])
    with pytest.raises(ActclustError, match="theta"):
        align([0, 1, 2], rows, theta=0)


def test_label_columns_are_chosen_by_a_stated_rule():
    n = 200
    rows = pd.DataFrame({"row": np.arange(n), "doc_id": np.arange(n) // 10,
                         "position": np.arange(n) % 10, "token": ["t"] * n,
                         "text": ["x"] * n, "pos": ["NOUN", "VERB"] * 100,
                         "template": np.arange(n) % 7, "truth": [True, False] * 100,
                         "score": np.linspace(0, 1, n), "constant": ["c"] * n,
                         "word": [f"w{i}" for i in range(n)],
                         "animal": ["none"] * (n - 1) + ["yes"],
                         "unknown": [None, "none"] * 100})
    # ids, positions, tokens and text by name; measurements, one-valued, 200-valued and
    # all-unknown columns by their values; one known value besides unknown ones is a label
    assert choose_label_columns(rows) == ["pos", "template", "truth", "animal"]


def test_summary_and_results_rows():
    rows = pd.DataFrame({"pos": ["NOUN"] * 10 + ["VERB"] * 10 + ["DET", "ADJ"] * 5,
                         "kind": ["word"] * 20 + ["w", "x"] * 5})
    table = align(np.repeat([0, 1, 2], 10), rows)
    summary = summarise(table).set_index("label")
    assert summary.loc["pos", "aligned_share"] == pytest.approx(2 / 3)
    assert summary.loc["pos", "values_found"] == 2
    assert summary.loc["kind", "aligned"] == 2 and summary.loc["kind", "values_found"] == 1
    assert summary.loc["any", "aligned"] == 2
    assert summary.loc["any", "row_coverage"] == pytest.approx(20 / 30)
    results = to_results(summarise(table), LAYER, "kmeans(n_clusters=3)")
    assert list(results.columns) == RESULT_COLUMNS
    share = results[(results["label"] == "pos") & (results["metric"] == "concepts_aligned_share")]
    assert share["value"].item() == pytest.approx(2 / 3)
    assert set(results["metric"]) == {"concepts_aligned_share", "concepts_row_coverage",
                                      "concepts_aligned", "concepts_groups"}
    with pytest.raises(ActclustError, match="layer and the method"):
        to_results(summarise(table))


# ---------------------------------------------------------------- novel candidates


def planted_layer(seed=0, n=600, d=16):
    """Rows in a broad cloud, and 40 rows (0..39) in a tight, far-off blob whose labels
    are random: a feature no label explains."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:40] = rng.normal(size=(40, d)) * 0.2 + 3.0
    rows = pd.DataFrame({"pos": rng.choice(["NOUN", "VERB", "DET", "ADJ"], n)})
    return X, rows


def test_a_planted_unlabeled_group_is_a_novel_candidate_above_a_random_group():
    X, rows = planted_layer()
    rng = np.random.default_rng(1)
    groups = {"planted": np.arange(40), "random": rng.choice(600, 40, replace=False)}
    table = align(groups, rows)
    assert not table["aligned"].any()
    novel = novel_candidates(X, groups, table, n_examples=3)
    assert novel["group"].tolist() == ["planted", "random"]
    planted, random = novel.iloc[0], novel.iloc[1]
    assert planted["tightness"] > 0.9 and planted["separability"] > 0.95
    assert abs(random["tightness"]) < 0.15 and random["separability"] < 0.7
    assert planted["coherence"] > 0.9 > 0.3 > random["coherence"]
    assert len(planted["example_rows"]) == 3 and set(planted["example_rows"]) <= set(range(40))


def test_aligned_and_small_groups_are_not_candidates():
    X, rows = planted_layer()
    rows.loc[:39, "pos"] = "NOUN"  # now a label explains the blob
    groups = [np.arange(40), np.arange(100, 105), np.arange(200, 260)]
    novel = novel_candidates(X, groups, align(groups, rows))
    assert novel["group"].tolist() == [2]  # 0 is aligned, 1 has fewer than 10 rows


def test_coherence_reads_a_store_layer_like_an_array(tmp_path):
    X, rows = planted_layer(n=200)
    docs = pd.DataFrame({"doc_id": np.arange(200), "text": [f"doc {i}" for i in range(200)]})
    store = write_store(tmp_path / "s", X.astype(np.float32),
                        pd.DataFrame({"doc_id": np.arange(200)}), docs)
    groups = [np.arange(40), np.arange(100, 160)]
    a = coherence(X.astype(np.float32), groups)
    b = coherence(store.layer(LAYER), groups)
    pd.testing.assert_frame_equal(a, b)


def test_the_token_is_marked_in_its_text():
    tokens = ["[CLS]", "ken", "##ji", "slept", ",", "then", "ken", "##ji", "woke", "[SEP]"]
    text = "Kenji slept, then Kenji woke"
    assert in_context(text, tokens, 6) == "Kenji slept, then «Ken»ji woke"
    assert in_context(text, tokens, 7) == "Kenji slept, then Ken«ji» woke"
    assert in_context(text, tokens, 0) == "«[CLS]» Kenji slept, then Kenji woke"
    assert in_context(text, tokens, 9) == "Kenji slept, then Kenji woke «[SEP]»"
    assert in_context("a " * 50 + "cat", ["a"] * 50 + ["cat"], 50, window=6) == "…a a a «cat»"


# ---------------------------------------------------------------- a tiny token store

WORDS = {"cat": ("NOUN", "animal", 0), "dog": ("NOUN", "animal", 0),
         "owl": ("NOUN", "animal", 0),
         "run": (None, "none", 1), "hop": (None, "none", 1),        # half NOUN, half VERB
         "ah": (None, "none", 2), "oh": (None, "none", 2), "uh": (None, "none", 2),
         "the": ("DET", "none", 3), "so": ("ADV", "none", 3)}
CENTRES = np.eye(4, 6) * 12.0
SPREAD = [0.5, 0.5, 0.2, 1.5]  # blob 2 (ah/oh/uh) is the tightest, blob 3 the broadest


def write_store(root, X, rows, docs):
    return one_shard_store(root, LAYER, X, rows, docs)


@pytest.fixture(scope="module")
def token_store(tmp_path_factory):
    """60 sentences of 8 words; each word's rows lie in its blob: animals (pos NOUN, sem
    animal), run/hop (pos half NOUN, half VERB), ah/oh/uh (pos drawn at random: a tight
    blob no label explains), the/so (a broad blob)."""
    rng = np.random.default_rng(0)
    vocab = list(WORDS)
    texts, cols, X = [], {"doc_id": [], "position": [], "token": [], "pos": [], "sem": []}, []
    mixed = 0
    for doc in range(60):
        words = rng.choice(vocab, 8)
        texts.append(" ".join(words).capitalize() + ".")
        for position, word in enumerate(words):
            pos, sem, blob = WORDS[word]
            if blob == 1:  # exactly half and half
                pos, mixed = ["NOUN", "VERB"][mixed % 2], mixed + 1
            elif pos is None:
                pos = rng.choice(["DET", "ADV", "ADJ", "PRON"])
            for key, value in zip(cols, (doc, position, word, pos, sem)):
                cols[key].append(value)
            X.append(CENTRES[blob] + rng.normal(size=6) * SPREAD[blob])
    docs = pd.DataFrame({"doc_id": np.arange(60), "text": texts})
    return write_store(tmp_path_factory.mktemp("concepts") / "s",
                       np.array(X, np.float32), pd.DataFrame(cols), docs)


def blob_of(store, clusters, words):
    tokens = store.rows["token"].to_numpy()
    found = np.unique(clusters[np.isin(tokens, words)])
    assert len(found) == 1, f"{words} split over clusters {found}"
    return int(found[0])


def test_concept_table_on_a_token_store(token_store):
    result = concept_table(token_store, LAYER, k=4, seed=0, n_examples=4)
    clusters = result.clusters
    animals, mix, planted, broad = (blob_of(token_store, clusters, w) for w in
                                    (["cat", "dog", "owl"], ["run", "hop"],
                                     ["ah", "oh", "uh"], ["the", "so"]))
    table = result.table
    assert result.method == "kmeans(n_clusters=4)"
    assert list(table.columns[:4]) == ["layer", "method", "k", "seed"]
    assert set(table["label"]) == {"pos", "sem"}  # token, position and doc_id left out
    assert one(table, animals)["aligned"] and one(table, animals, "sem")["value"] == "animal"
    assert not one(table, mix)["aligned"] and one(table, mix)["precision"] < 0.51
    assert not table.loc[table["group"] == planted, "aligned"].any()
    # unaligned: the tightest blob first, then the mix, then the broad blob
    assert result.novel["group"].tolist() == [planted, mix, broad]
    assert one(table, planted)["novel_rank"] == 1 and np.isnan(one(table, animals)["novel_rank"])
    for text in result.novel["examples"].iloc[0]:
        assert any(f"«{w}»" in text.lower() for w in ("ah", "oh", "uh")), text
    results = result.to_results()
    assert list(results.columns) == RESULT_COLUMNS
    assert set(results["method"]) == {"kmeans(n_clusters=4)"} and set(results["layer"]) == {LAYER}


def test_concept_table_takes_a_fitted_clusterer_and_settings(token_store):
    from actclust.reporters import KMeans

    fitted = KMeans(4, random_state=0).fit(token_store.layer(LAYER))
    result = concept_table(token_store, LAYER, method=fitted, labels=["pos"])
    np.testing.assert_array_equal(result.clusters, fitted.labels_)
    assert result.k == 4 and list(result.summary["label"]) == ["pos", "any"]
    named = concept_table(token_store, LAYER, k=4, method="kmeans(n_init=2)", labels="sem")
    assert named.method == "kmeans(n_init=2, n_clusters=4)"
    with pytest.raises(ActclustError, match="does not cluster"):
        concept_table(token_store, LAYER, k=4, method="pca")
    with pytest.raises(ActclustError, match="more than the 480 rows"):
        concept_table(token_store, LAYER, k=1000)


# ---------------------------------------------------------------- the command


def test_cli_writes_the_table_and_refuses_to_overwrite(token_store, tmp_path, capsys):
    out = tmp_path / "concepts.parquet"
    argv = ["concepts", str(token_store.root), "--layer", LAYER, "--k", "4", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "kmeans(n_clusters=4) on blocks.0.hook_out" in printed
    assert "novel candidates" in printed and "«" in printed
    table = pd.read_parquet(out)
    assert {"layer", "group", "label", "value", "precision", "aligned"} <= set(table.columns)
    assert len(table) == 4 * 2
    before = out.read_bytes()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already exists; pass --overwrite" in err
    assert out.read_bytes() == before
    assert main(argv + ["--overwrite", "--labels", "pos"]) == 0
    assert set(pd.read_parquet(out)["label"]) == {"pos"}
    assert f"over {len(token_store):,} rows" in capsys.readouterr().out
    assert main(argv + ["--overwrite", "--max-rows", "200"]) == 0
    assert f"over 200 of {len(token_store):,} rows (a seeded sample)" in \
        capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--layer", "blocks.9.hook_out"], "layer 'blocks.9.hook_out' is not in store"),
    (["--layer", LAYER, "--labels", "pos,nope"], "label column 'nope' is not in store"),
    (["--layer", LAYER, "--method", "nope"], "unknown reporter 'nope'"),
])
def test_cli_errors_are_one_line(token_store, tmp_path, capsys, extra, message):
    out = tmp_path / "c.parquet"
    assert main(["concepts", str(token_store.root), "--k", "4", "--out", str(out)] + extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("actclust: error: ") and message in err and "\n" not in err
    assert not out.exists()
