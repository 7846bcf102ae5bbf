"""The lazy row table (store.rows, store.column, store.labels): the same values as the whole
joined table it replaces, read a column or a few rows at a time, in bounded memory."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from actclust import ActivationStore
from actclust.errors import ActclustError
from actclust.store import from_arrays
from actclust.store.row_table import RowTable
from tests.files import one_shard_store
from tests.unit.test_concepts import token_store  # noqa: F401  (a fixture)

LAYER = "h"


def joined(store) -> pd.DataFrame:
    """The table store.rows was before it was lazy: rows.parquet merged with docs.parquet."""
    rows = pd.read_parquet(store.root / "rows.parquet")
    docs = pd.read_parquet(store.root / "docs.parquet")
    extra = [c for c in docs.columns if c == "doc_id" or c not in rows.columns]
    return rows.merge(docs[extra], on="doc_id", how="left", validate="many_to_one")


def same_values(a, b) -> bool:
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    return len(a) == len(b) and all((pd.isna(x) and pd.isna(y)) if pd.isna(x) or pd.isna(y)
                                    else x == y for x, y in zip(a, b))


def write(root, rows, docs, n_docs_planned=None) -> ActivationStore:
    """A store through the writer itself, which keeps the rows' order and the docs' ids."""
    X = np.arange(len(rows) * 2, dtype=np.float32).reshape(len(rows), 2)
    return one_shard_store(root, LAYER, X, rows, docs, doc_stop=n_docs_planned)


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    """Token rows in no document order, documents with ids that are not 0..n-1, a missing
    token label and an integer document label."""
    rng = np.random.default_rng(1)
    doc_of_row = rng.permutation(np.repeat([30, 10, 20, 40], [5, 3, 6, 4]))
    rows = pd.DataFrame({"doc_id": doc_of_row, "position": np.arange(18) % 7,
                         "token": rng.choice(["the", "cat", "sat", "##s"], 18),
                         "pos": rng.choice(["NOUN", "VERB", None], 18)})
    docs = pd.DataFrame({"doc_id": [40, 10, 30, 20],
                         "text": ["forty text", "ten text", "thirty text", "twenty text"],
                         "topic": ["d", "a", "c", "b"], "stars": [4, 1, 3, 2]})
    return write(tmp_path_factory.mktemp("rows") / "s", rows, docs)


def check_like_the_joined_table(store):
    old = joined(store)
    table = store.rows
    assert isinstance(table, RowTable) and len(table) == len(old) == len(store)
    assert list(table.columns) == list(old.columns) == store.columns
    pd.testing.assert_frame_equal(table.to_pandas(), old)
    for column in old.columns:
        values = store.column(column)
        assert isinstance(values, np.ndarray) and same_values(values, old[column].to_numpy())
        pd.testing.assert_series_equal(table[column], old[column])
    rng = np.random.default_rng(0)
    index = rng.choice(len(old), size=min(7, len(old)), replace=False)
    index = np.r_[index, index[:2]]  # repeated rows, any order
    pd.testing.assert_frame_equal(table.take(index), old.iloc[index])
    pd.testing.assert_frame_equal(table.iloc[index], old.iloc[index])
    pd.testing.assert_frame_equal(table.head(3), old.head(3))
    pd.testing.assert_frame_equal(table[["doc_id", old.columns[-1]]],
                                  old[["doc_id", old.columns[-1]]])
    for label in store.label_columns:
        assert same_values(store.labels(label), old[label].to_numpy())


def test_a_token_store_reads_like_its_joined_table(token_store):  # noqa: F811
    check_like_the_joined_table(token_store)
    assert token_store.label_columns == ["pos", "sem"]


def test_a_document_store_reads_like_its_joined_table(tmp_path):
    docs = pd.DataFrame({"doc_id": np.arange(6), "text": [f"doc {i}" for i in range(6)],
                         "topic": list("aabbcc"), "score": np.linspace(0, 1, 6)})
    rows = pd.DataFrame({"doc_id": np.arange(6)})
    store = write(tmp_path / "s", rows, docs)
    check_like_the_joined_table(store)
    assert store.label_columns == ["topic", "score"]


def test_document_columns_map_to_rows_in_no_document_order(shuffled):
    check_like_the_joined_table(shuffled)
    by_doc = {10: ("a", 1, "ten text"), 20: ("b", 2, "twenty text"),
              30: ("c", 3, "thirty text"), 40: ("d", 4, "forty text")}
    doc_ids = shuffled.column("doc_id")
    assert len(set(doc_ids[:6])) > 1  # the rows really are out of document order
    for column, at in (("topic", 0), ("stars", 1), ("text", 2)):
        assert shuffled.column(column).tolist() == [by_doc[d][at] for d in doc_ids]
    picked = shuffled.rows.take([17, 2])
    assert picked["text"].tolist() == [by_doc[d][2] for d in doc_ids[[17, 2]]]
    assert picked.index.tolist() == [17, 2]


def test_text_columns_share_one_string_per_value(shuffled):
    tokens = shuffled.column("token")
    assert tokens.dtype == object
    assert len({id(t) for t in tokens}) == len(set(tokens))
    texts = shuffled.column("text")
    assert len({id(t) for t in texts}) == 4
    pos = shuffled.labels("pos")
    assert pd.isna(pos).any() and not any(v is None for v in pos)  # missing as NaN


def test_rows_of_the_same_documents(shuffled):
    doc_ids = shuffled.column("doc_id")
    found = shuffled.rows.document_rows([0])
    assert found.tolist() == np.flatnonzero(doc_ids == doc_ids[0]).tolist()


def test_unknown_columns_and_lists_are_one_line_errors(shuffled, tmp_path):
    with pytest.raises(ActclustError, match="column 'nope' is not in store .*columns: row, "
                       "doc_id, position, token, pos, text, topic, stars"):
        shuffled.column("nope")
    with pytest.raises(ActclustError, match="label column 'nope' .* label columns: pos, "
                       "topic, stars"):
        shuffled.labels("nope")
    with pytest.raises(KeyError):
        shuffled.rows["nope"]
    with pytest.raises(IndexError):
        shuffled.rows.take([18])
    docs = pd.DataFrame({"doc_id": [0, 1], "spans": [[1, 2], [3]]})
    store = write(tmp_path / "s", pd.DataFrame({"doc_id": [0, 1]}), docs)
    with pytest.raises(ActclustError, match="holds lists or arrays"):
        store.labels("spans")


def test_other_dataframe_methods_fall_back_to_the_whole_table(shuffled):
    old = joined(shuffled)
    fresh = ActivationStore(shuffled.root)
    pd.testing.assert_series_equal(fresh.rows.groupby("doc_id").size(),
                                   old.groupby("doc_id").size())
    assert fresh.rows.shape == old.shape and "topic" in fresh.rows
    pd.testing.assert_series_equal(fresh.rows.topic, old.topic)  # a column by attribute
    with pytest.raises(AttributeError):
        fresh.rows.not_a_dataframe_method
    assert "18 rows x 8 columns" in repr(fresh.rows)
    assert "<table" in fresh.rows._repr_html_()


def damaged(tmp_path, rows=None, docs=None, rewrite=None):
    store = write(tmp_path / "s", pd.DataFrame({"doc_id": [0, 0, 1]}),
                  pd.DataFrame({"doc_id": [0, 1], "topic": ["a", "b"]}))
    if rewrite is not None:
        rewrite(store.root)
    return ActivationStore(store.root)


@pytest.mark.parametrize("rewrite, message", [
    (lambda root: pd.DataFrame({"row": [0, 2, 1], "doc_id": [0, 0, 1]}).to_parquet(
        root / "rows.parquet", index=False), "the row column of rows.parquet is not 0, 1, 2"),
    (lambda root: pd.DataFrame({"doc_id": [0, 0], "topic": ["a", "b"]}).to_parquet(
        root / "docs.parquet", index=False), "rows do not join its documents"),
    (lambda root: pd.DataFrame({"row": [0, 1, 2]}).to_parquet(
        root / "rows.parquet", index=False), "has no doc_id column"),
    (lambda root: (root / "docs.parquet").write_bytes(b"PAR1 garbage"),
     "docs.parquet is not a readable parquet table"),
])
def test_damaged_tables_are_one_line_errors(tmp_path, rewrite, message):
    store = damaged(tmp_path, rewrite=rewrite)
    with pytest.raises(ActclustError, match=message) as err:
        store.rows  # schemas are read here; values (the row check) on first use
        store.labels("topic")
    assert "\n" not in str(err.value)
    with pytest.raises(ActclustError, match=message):
        ActivationStore(store.root).rows.take([0])


def test_a_row_count_that_disagrees_is_refused(tmp_path):
    store = damaged(tmp_path)
    pd.DataFrame({"row": [0, 1], "doc_id": [0, 0]}).to_parquet(store.root / "rows.parquet",
                                                                 index=False)
    with pytest.raises(ActclustError, match="rows.parquet has 2 rows, its layers 3"):
        ActivationStore(store.root)


# ---------------------------------------------------------------- memory

MEMORY_ROWS = 1_500_000
DOC_TOKENS = 60
TEXT_CHARS = 2_000  # the whole joined table would repeat it on every row: 3 GB


@pytest.fixture(scope="module")
def large_token_store(tmp_path_factory):
    n_docs = MEMORY_ROWS // DOC_TOKENS
    rng = np.random.default_rng(0)
    vocab = np.array([f"tok{i}" for i in range(3000)], dtype=object)
    rows = pd.DataFrame({"doc_id": np.repeat(np.arange(n_docs), DOC_TOKENS),
                         "position": np.tile(np.arange(DOC_TOKENS), n_docs),
                         "token": vocab[rng.integers(0, 3000, MEMORY_ROWS)],
                         "pos": np.array(["NOUN", "VERB", "DET"], object)[
                             rng.integers(0, 3, MEMORY_ROWS)]})
    docs = pd.DataFrame({"doc_id": np.arange(n_docs),
                         "text": [f"{i:07d}" + "x" * (TEXT_CHARS - 7) for i in range(n_docs)],
                         "topic": np.array(["a", "b", "c", "d"], object)[np.arange(n_docs) % 4]})
    X = np.zeros((MEMORY_ROWS, 2), np.float16)
    return from_arrays(tmp_path_factory.mktemp("large") / "s", {LAYER: X}, rows, docs,
                       dtype="float16", progress=False)


MEASURE = textwrap.dedent("""
    import json, sys
    import numpy as np
    from actclust import ActivationStore

    def high_water():  # VmHWM: the peak resident set since it was last reset
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f
                        if line.startswith("VmHWM"))
    store = ActivationStore(sys.argv[1])
    store.layer("h")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak to the current resident set, imports done
    base = high_water()
    topic = store.labels("topic")
    tokens = store.column("token")
    sample = np.sort(np.random.default_rng(0).choice(len(store), 20_000, replace=False))
    shown = store.rows.take(sample)
    context = store.rows.take(store.rows.document_rows(sample[:50]))
    print(json.dumps({"base": base, "peak": high_water(),
                      "topic": [str(v) for v in topic[:2]],
                      "n_tokens": len(tokens), "shown": len(shown),
                      "text": shown["text"].iloc[0][:7], "doc": int(shown["doc_id"].iloc[0]),
                      "context_docs": int(context["doc_id"].nunique())}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_labels_columns_and_a_sample_stay_in_bounded_memory(large_token_store):
    out = subprocess.run([sys.executable, "-c", MEASURE, str(large_token_store.root)],
                         capture_output=True, text=True, check=True)
    found = json.loads(out.stdout)
    grown = (found["peak"] - found["base"]) / 2 ** 20
    # a pointer per row for each column (12 MB each), one 65,536-row batch at a time for
    # the sample, the sampled documents' text (40 MB); the joined table would be 3 GB
    assert grown < 400, f"reading labels and a sample took {grown:.0f} MB"
    assert found["topic"] == ["a", "a"] and found["n_tokens"] == MEMORY_ROWS
    assert found["shown"] == 20_000 and found["text"] == f"{found['doc']:07d}"
    assert found["context_docs"] <= 50


# ---------------------------------------------------------------- no whole table inside


@pytest.fixture
def whole_table_forbidden(monkeypatch):
    """store.rows.to_pandas (and so every DataFrame fallback) fails: what actclust itself
    does with rows must read columns and taken rows only."""
    def refuse(self):
        raise AssertionError("the whole row table was built")
    monkeypatch.setattr(RowTable, "to_pandas", refuse)


def test_the_report_never_builds_the_whole_table(token_store, tmp_path,  # noqa: F811
                                                 whole_table_forbidden):
    from actclust.viz import write_report

    store = ActivationStore(token_store.root)
    path = write_report(store, out=tmp_path / "r.html", label="pos", map_method="pca",
                        dashboards=True, concepts=True, concept_k=12)
    text = path.read_text()
    assert 'id="concepts"' in text and 'id="clusters-best"' in text
    with pytest.raises(AssertionError, match="whole row table"):
        store.rows.groupby("doc_id")  # the fallback is what was refused


def test_maps_dashboards_and_concepts_read_only_the_rows_shown(token_store,  # noqa: F811
                                                               whole_table_forbidden):
    from actclust.concepts import concept_table
    from actclust.reporters import KMeans
    from actclust.viz import cluster_dashboard, layer_map

    store = ActivationStore(token_store.root)
    layer = store.layers[0]
    km = KMeans(4, random_state=0).fit(store.layer(layer))
    fig = layer_map(store, layer, clusters=km, label="pos", method="pca", max_points=50)
    assert fig.layout.meta["n_shown"] == 50
    tokens = store.column("token")
    for trace in fig.data:  # each point's hover is its own row's token, in bold
        for row, hover in zip(trace.customdata, trace.text):
            assert f"<b>{tokens[row]}</b>" in hover.lower()
    dash = cluster_dashboard(store, layer, km)
    assert sum(page.size for page in dash.pages) == len(store)
    result = concept_table(store, layer, k=6, labels=["pos"], max_rows=200)
    assert result.n_fitted == 200 and result.n_rows == len(store)
