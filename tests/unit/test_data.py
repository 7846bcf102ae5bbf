"""Bundled datasets (determinism, balance, labels) and the user-data loaders (round trips,
every error names the file and the column)."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from actclust.data import as_dataset, available, load
from actclust.data import topics as topics_mod
from actclust.data import truth as truth_mod
from actclust.data.base import Dataset
from actclust.data.tokens import (POSITION_BUCKETS, WORD_LABELS, WordSpanLabeler,
                                   position_bucket)
from actclust.errors import ActclustError


@pytest.fixture(scope="module")
def topics():
    return load("topics")


@pytest.fixture(scope="module")
def tokens():
    return load("tokens")


@pytest.fixture(scope="module")
def truth():
    return load("truth")


# ---------------------------------------------------------------- registry


def test_available_names_and_descriptions():
    names = available()
    assert set(names) == {"topics", "tokens", "truth", "digits"}
    assert all(isinstance(d, str) and len(d) > 20 for d in names.values())


def test_load_unknown_name_suggests_closest():
    with pytest.raises(ActclustError, match=r"unknown dataset 'topic'.*topics"):
        load("topic")


def test_load_unknown_option_lists_accepted():
    with pytest.raises(ActclustError, match=r"n_docs.*n_per_topic"):
        load("topics", n_docs=5)


def test_load_bad_size_is_actclust_error():
    with pytest.raises(ActclustError, match="n_per_topic"):
        load("topics", n_per_topic=0)


@pytest.mark.parametrize("name,kwargs", [("topics", {"n_per_topic": 40}),
                                         ("tokens", {"n_docs": 300}), ("truth", {})])
def test_bundled_is_deterministic_and_seeded(name, kwargs):
    a, b = load(name, **kwargs), load(name, **kwargs)
    pd.testing.assert_frame_equal(a.docs, b.docs)
    assert a.fingerprint() == b.fingerprint()
    assert a.description and a.name == name
    other = load(name, seed=1, **kwargs)
    assert other.fingerprint() != a.fingerprint()


# ---------------------------------------------------------------- topics


def test_topics_counts_and_columns(topics):
    docs = topics.docs
    assert list(docs.columns) == ["doc_id", "text", "topic", "template"]
    assert docs["doc_id"].tolist() == list(range(len(docs)))
    counts = docs["topic"].value_counts()
    assert len(counts) >= 8
    assert len(docs) == 320 * len(counts) and (counts == 320).all()
    assert not docs["text"].duplicated().any()
    # Shuffled: the first rows already mix topics (so --limit gives every topic).
    assert docs["topic"].head(50).nunique() >= 8


def test_topics_text_shape(topics):
    texts = topics.docs["text"]
    lengths = texts.str.split().str.len()
    assert lengths.min() >= 8 and lengths.max() <= 30 and lengths.std() > 2
    assert not texts.str.contains(r"[{}]").any()  # every field filled
    assert texts.str.match(r"^[A-Z]").all()
    assert texts.str.contains(r"[.?]$").all()
    assert not texts.str.contains(r"\b(?:a [aeio]\w+|an [bcdfgkmnpst]\w+)").any()


def test_topics_templates_shared_across_topics(topics):
    docs = topics.docs
    assert len(topics_mod.TEMPLATES) >= 40
    per_template = docs.groupby("template")["topic"].nunique()
    assert len(per_template) == len(topics_mod.TEMPLATES)
    assert (per_template == docs["topic"].nunique()).all()
    # The template alone says nothing about the topic: each topic uses each template
    # about equally often.
    table = pd.crosstab(docs["template"], docs["topic"])
    assert table.values.max() - table.values.min() <= 1


def test_topics_fillers_are_rich_and_topic_specific():
    for slots in topics_mod.TOPICS.values():
        assert all(len(options) >= 15 for options in slots.values())
    for slot in ("person", "place", "thing", "event", "adj", "action", "subject"):
        owners = Counter(w for s in topics_mod.TOPICS.values() for w in set(s[slot]))
        assert max(owners.values()) == 1, f"{slot} filler shared by two topics"


def test_with_article():
    assert topics_mod.with_article("IT technician") == "an IT technician"
    assert topics_mod.with_article("unanimous") == "a unanimous"
    assert topics_mod.with_article("referee") == "a referee"


# ---------------------------------------------------------------- tokens


def test_tokens_docs(tokens):
    docs = tokens.docs
    assert len(docs) == 2000 and list(docs.columns) == ["doc_id", "text", "template"]
    assert not docs["text"].duplicated().any()
    assert docs["text"].str.contains(r"\b(?:19|20)\d\d\b").sum() > 100  # years as digits
    assert docs["text"].str.contains(r"[,;:!?]").sum() > 500
    tags = {pos for spans in tokens.token_labeler.spans for _, _, pos in spans}
    assert {"DET", "ADJ", "NOUN", "VERB", "ADV", "ADP", "PRON", "NUM", "CONJ",
            "PUNCT"} <= tags
    # The stored spans are exactly the words and marks of the text.
    for text, spans in zip(docs["text"][:200], tokens.token_labeler.spans[:200]):
        assert [text[s:e] for s, e, _ in spans] == re.findall(r"\w+|[^\w\s]", text)


def test_position_bucket():
    assert [position_bucket(p) for p in (0, 1, 3, 4, 7, 8, 15, 16, 31, 32, 500)] == \
        ["0", "1-3", "1-3", "4-7", "4-7", "8-15", "8-15", "16-31", "16-31", "32+", "32+"]
    assert set(POSITION_BUCKETS) == {position_bucket(p) for p in range(64)}


def _check_token_labels(ds, i, offsets):
    """Invariants of one labelled document that hold for any tokenizer (MiniLM's WordPiece
    in tests/integration/test_bundled.py)."""
    text = ds.docs["text"][i]
    positions = list(range(len(offsets)))
    out = ds.token_labeler(i, text, offsets, positions)
    assert {len(v) for v in out.values()} == {len(offsets)}
    spans = ds.token_labeler.spans[i]
    kinds = out["token_kind"]
    # Words are everything but punctuation and numbers in digits ("twelve" is a word).
    words = [p for s, e, p in spans if p != "PUNCT" and not text[s:e].isdigit()]
    assert kinds.count("word_start") == len(words)
    assert kinds.count("punctuation") == sum(p == "PUNCT" for _, _, p in spans)
    for j, (span, kind, pos, position) in enumerate(zip(offsets, kinds, out["pos"], positions)):
        assert out["position_bucket"][j] == position_bucket(position)
        form = out["number_form"][j]
        if span is None:
            assert (kind, pos) == ("special", "SPECIAL")
            assert {out[c][j] for c in WORD_LABELS} == {"none"}
            continue
        piece = text[span[0]:span[1]].strip()
        if kind == "digit":
            assert pos == "NUM" and form == "digits" and (piece == "" or piece.isdigit())
        elif kind == "punctuation":
            assert pos == "PUNCT" and piece in ".,;:!?"
        else:
            assert kind in ("word_start", "word_continuation") and pos != "PUNCT"
            assert pos != "NUM" or (form == "word" and not any(c.isdigit() for c in piece))
    return out


def test_tokens_labeler_with_byte_level_bpe(tokens):
    tk = pytest.importorskip("tokenizers")
    texts = tokens.docs["text"].tolist()
    # A GPT-2 style tokenizer, trained small so that words split into several pieces.
    bpe = tk.Tokenizer(tk.models.BPE())
    bpe.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(texts, tk.trainers.BpeTrainer(
        vocab_size=400, show_progress=False,
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet()))
    leading_space = 0
    for i in range(150):
        offsets = [None] + list(bpe.encode(texts[i]).offsets)  # None: a <bos> token
        for s, e in offsets[1:]:
            leading_space += texts[i][s] == " " and e - s > 1
        out = _check_token_labels(tokens, i, offsets)
        assert out["token_kind"][0] == "special"
        assert "word_continuation" in out["token_kind"]
    assert leading_space > 100  # the " word" case really was exercised


def test_tokens_labeler_space_only_token_joins_next_word():
    text = "an owl"
    labeler = WordSpanLabeler([text], [[(0, 2, "DET"), (3, 6, "NOUN")]])
    out = labeler(0, text, [(0, 2), (2, 3), (3, 6)], [0, 1, 2])
    assert out["token_kind"] == ["word_start", "word_start", "word_continuation"]
    assert out["pos"] == ["DET", "NOUN", "NOUN"]


def test_tokens_labeler_finds_doc_by_text_and_rejects_foreign_text(tokens):
    labeler = tokens.token_labeler
    text = tokens.docs["text"][5]
    assert labeler(0, text, [(0, 1)], [1])["pos"] == [labeler.spans[5][0][2]]
    with pytest.raises(ActclustError, match="not one this token labeler"):
        labeler(0, "Some other sentence.", [(0, 4)], [1])


def test_tokens_labeler_pickles(tokens):
    import pickle

    clone = pickle.loads(pickle.dumps(tokens.token_labeler))
    text = tokens.docs["text"][3]
    assert clone(3, text, [None, (0, 3)], [0, 1]) == \
        tokens.token_labeler(3, text, [None, (0, 3)], [0, 1])


# ---------------------------------------------------------------- truth


def test_truth_pairs_adjacent_and_balanced(truth):
    docs = truth.docs
    assert list(docs.columns) == ["doc_id", "text", "statement_id", "statement", "answer",
                                  "truth", "kind", "category", "label"]
    n = len(docs) // 2
    assert len(docs) == 2 * n and n >= 300
    assert docs["statement_id"].tolist() == [i // 2 for i in range(2 * n)]
    assert docs["answer"].tolist() == ["Yes", "No"] * n
    yes, no = docs.iloc[0::2].reset_index(drop=True), docs.iloc[1::2].reset_index(drop=True)
    assert (yes["statement"] == no["statement"]).all() and (yes["truth"] == no["truth"]).all()
    assert not yes["statement"].duplicated().any()
    assert set(docs["kind"]) == {"arithmetic", "comparison", "fact"}
    for _, group in yes.groupby("kind"):
        assert (group["truth"] == "true").sum() == (group["truth"] == "false").sum()
    assert (docs["label"] == "true").sum() == n


def test_truth_text_and_label_logic(truth):
    docs = truth.docs
    expected = "Is it true that " + docs["statement"] + "? " + docs["answer"]
    assert (docs["text"] == expected).all()
    correct = (docs["answer"] == "Yes") == (docs["truth"] == "true")
    assert (docs["label"] == np.where(correct, "true", "false")).all()


def test_truth_numeric_statements_evaluate_correctly(truth):
    yes = truth.docs.iloc[0::2]
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
    checked = 0
    for statement, truth_value, kind in zip(yes["statement"], yes["truth"], yes["kind"]):
        if kind == "arithmetic":
            a, op, b, result = re.fullmatch(r"(\d+) ([-+*]) (\d+) = (\d+)", statement).groups()
            actual = ops[op](int(a), int(b)) == int(result)
        elif kind == "comparison":
            a, word, b = re.fullmatch(r"(\d+) is (greater|less) than (\d+)", statement).groups()
            actual = (int(a) > int(b)) if word == "greater" else (int(a) < int(b))
        else:
            continue
        assert actual == (truth_value == "true"), statement
        checked += 1
    assert checked == 240


def test_truth_facts_match_the_shipped_tables(truth):
    yes = truth.docs.iloc[0::2]
    capitals = dict(truth_mod.CAPITALS)
    facts = yes[yes["category"] == "capital"]
    assert len(facts) == 2 * len(capitals)
    for statement, truth_value in zip(facts["statement"], facts["truth"]):
        city, country = re.fullmatch(r"(.+) is the capital of (.+)", statement).groups()
        assert (capitals[country] == city) == (truth_value == "true"), statement


# ---------------------------------------------------------------- digits


def test_digits():
    ds = load("digits")
    assert ds.inputs.shape == (1797, 64) and ds.inputs.dtype == np.float32
    assert ds.inputs.min() == 0.0 and ds.inputs.max() == 1.0
    assert list(ds.docs.columns) == ["doc_id", "digit"] and not ds.is_text
    assert sorted(ds.docs["digit"].unique()) == list(range(10))
    assert ds.label_columns == ["digit"]


# ---------------------------------------------------------------- as_dataset


def test_as_dataset_passes_datasets_and_names_through(topics):
    assert as_dataset(topics) is topics
    assert as_dataset("truth").name == "truth"


def test_as_dataset_texts_and_labels():
    ds = as_dataset(("a cat", "a dog"), labels=["cat", "dog"])
    assert ds.is_text and ds.docs["label"].tolist() == ["cat", "dog"]
    with pytest.raises(ActclustError, match="item 0 is of type int"):
        as_dataset([1, 2])
    with pytest.raises(ActclustError, match=r"row 1 \(0-based\) is of type int"):
        as_dataset(["fine", 3])
    with pytest.raises(ActclustError, match="label 'label' has 1 values for 2"):
        as_dataset(["a", "b"], labels=["x"])


def test_as_dataset_dataframe_is_copied_and_renamed():
    frame = pd.DataFrame({"body": ["x y", "z"], "y": [1, 0]})
    ds = as_dataset(frame, text_column="body", name="mine")
    assert list(ds.docs.columns) == ["doc_id", "text", "y"] and ds.name == "mine"
    assert list(frame.columns) == ["body", "y"]
    with pytest.raises(ActclustError, match=r"DataFrame has no text column 'text'.*'body'"):
        as_dataset(frame)


def test_as_dataset_hugging_face_duck_type():
    class FakeHF:
        column_names = ["sentence", "label"]

        def to_pandas(self):
            return pd.DataFrame({"sentence": ["good", "bad"], "label": [1, 0]})

    ds = as_dataset(FakeHF(), text_column="sentence")
    assert ds.docs["text"].tolist() == ["good", "bad"] and ds.label_columns == ["label"]


def test_as_dataset_arrays_and_tensors():
    torch = pytest.importorskip("torch")
    ds = as_dataset(torch.arange(12).reshape(4, 3), labels={"parity": [0, 1, 0, 1]})
    assert ds.inputs.dtype == np.float32 and ds.inputs.shape == (4, 3) and not ds.is_text
    assert ds.docs.columns.tolist() == ["doc_id", "parity"]
    arr = np.ones((2, 8, 8))
    assert as_dataset(arr).inputs.shape == (2, 8, 8)
    arr[1, 3, 3] = np.nan
    with pytest.raises(ActclustError, match="row 1 holds NaN"):
        as_dataset(arr)
    with pytest.raises(ActclustError, match="mixes value types"):
        as_dataset(np.zeros((2, 2)), labels=[1, "b"])


def test_as_dataset_unknown_string_and_type():
    with pytest.raises(ActclustError, match=r"neither a bundled dataset \(topics, tokens, "
                                            r"truth, digits\).*closest valid: truth"):
        as_dataset("trut")
    with pytest.raises(ActclustError, match="nor an existing file"):
        as_dataset("missing/file.csv")
    with pytest.raises(ActclustError, match="cannot make a dataset from a dict"):
        as_dataset({"text": ["a"]})


# ---------------------------------------------------------------- files


def _at(path) -> str:
    """Regex for how messages name a file."""
    return re.escape(f"file {str(path)!r}")


def _frame():
    return pd.DataFrame({"text": ["The cat sat.", "NA", "Dogs bark loudly."],
                         "sentiment": ["pos", None, "neg"], "stars": [5, 3, 1]})


def _write(frame, path):
    suffix = path.suffix
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    elif suffix == ".json":
        path.write_text(json.dumps(frame.to_dict("records")))
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_file_round_trip(tmp_path, suffix):
    path = _write(_frame(), tmp_path / f"reviews{suffix}")
    ds = as_dataset(str(path))
    assert ds.name == "reviews" and ds.is_text
    assert ds.docs["text"].tolist() == _frame()["text"].tolist()  # "NA" stays a text
    assert ds.docs["stars"].tolist() == [5, 3, 1]
    assert ds.docs["sentiment"][0] == "pos" and pd.isna(ds.docs["sentiment"][1])
    assert ds.label_columns == ["sentiment", "stars"]
    assert as_dataset(path).fingerprint() == ds.fingerprint()


def test_file_text_column_option(tmp_path):
    path = _write(_frame().rename(columns={"text": "review"}), tmp_path / "r.csv")
    assert as_dataset(path, text_column="review").docs["text"][0] == "The cat sat."


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_file_missing_text_column(tmp_path, suffix):
    path = _write(_frame().rename(columns={"text": "review"}), tmp_path / f"r{suffix}")
    with pytest.raises(ActclustError) as err:
        as_dataset(path)
    message = str(err.value)
    assert str(path) in message and "no text column 'text'" in message
    assert "'review', 'sentiment', 'stars'" in message


@pytest.mark.parametrize("suffix,content", [(".jsonl", ""), (".json", ""), (".csv", ""),
                                            (".parquet", ""), (".jsonl", "\n\n"),
                                            (".csv", "\n \n"), (".json", "[]")])
def test_file_empty(tmp_path, suffix, content):
    path = tmp_path / f"empty{suffix}"
    path.write_text(content)
    with pytest.raises(ActclustError, match=_at(path) + " is empty.*'text'"):
        as_dataset(path)


def test_file_zero_rows(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("text,label\n")
    with pytest.raises(ActclustError, match=_at(path) + " has no rows.*'text'"):
        as_dataset(path)
    path = _write(_frame().iloc[:0], tmp_path / "none.parquet")
    with pytest.raises(ActclustError, match=_at(path) + " has no rows"):
        as_dataset(path)


@pytest.mark.parametrize("bad,what", [(None, "missing"), (7, "of type int"),
                                      (["x"], "of type list")])
def test_file_non_string_text(tmp_path, bad, what):
    path = tmp_path / "bad.jsonl"
    rows = [{"body": "fine"}, {"body": "also fine"}, {"body": bad}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ActclustError) as err:
        as_dataset(path, text_column="body")
    message = str(err.value)
    assert str(path) in message and "column 'body' row 2" in message and what in message


def test_file_empty_text_in_csv(tmp_path):
    path = tmp_path / "gap.csv"
    path.write_text("text,label\nhello,a\n,b\n")
    with pytest.raises(ActclustError, match=_at(path) +
                       r": column 'text' row 1 \(0-based\) is an empty text"):
        as_dataset(path)


def test_file_mixed_label_types(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [{"text": "a", "grade": 1}, {"text": "b", "grade": None}, {"text": "c", "grade": "B"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ActclustError) as err:
        as_dataset(path)
    message = str(err.value)
    assert str(path) in message and "label column 'grade' mixes value types" in message
    assert "number: 1" in message and "str: 'B'" in message


def test_file_nested_label_values(tmp_path):
    path = tmp_path / "nested.jsonl"
    path.write_text('{"text": "a", "tags": ["x", "y"]}\n')
    with pytest.raises(ActclustError, match=_at(path) +
                       ": label column 'tags' holds list values"):
        as_dataset(path)


def test_file_nan_labels_are_allowed(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("text,topic,score\nhello,a,1.5\nworld,,\n")
    docs = as_dataset(path).docs
    assert pd.isna(docs["topic"][1]) and pd.isna(docs["score"][1]) and docs["score"][0] == 1.5


@pytest.mark.parametrize("name,content,pattern", [
    ("notes.txt", "hello", "unsupported file type '.txt'"),
    ("broken.jsonl", '{"text": "ok"}\n{"text": \n', "line 2 is not valid JSON"),
    ("list.jsonl", '["text"]\n', "line 1 is a JSON list, not an object"),
    ("broken.json", "{nope", "is not valid JSON"),
    ("scalar.json", "3", "must hold a list of records"),
    ("broken.parquet", "not parquet at all", "could not be read as parquet"),
])
def test_file_unreadable_or_unsupported(tmp_path, name, content, pattern):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ActclustError, match=_at(path) + ".*" + re.escape(pattern)):
        as_dataset(path)


def test_file_directory_is_not_a_file(tmp_path):
    with pytest.raises(ActclustError, match="is not a regular file"):
        as_dataset(tmp_path)


def test_doc_id_column_handling(tmp_path):
    keep = as_dataset(pd.DataFrame({"doc_id": [0, 1], "text": ["a", "b"]}))
    assert keep.docs.columns.tolist() == ["doc_id", "text"]
    moved = as_dataset(pd.DataFrame({"doc_id": ["r7", "r3"], "text": ["a", "b"]}))
    assert moved.docs["doc_id"].tolist() == [0, 1]
    assert moved.docs["user_doc_id"].tolist() == ["r7", "r3"]
    path = tmp_path / "dup.csv"
    path.write_text("doc_id,text\n4,a\n4,b\n")
    with pytest.raises(ActclustError, match=_at(path) + ": column 'doc_id' must hold unique"):
        as_dataset(path)


def test_user_dataset_shape_matches_contract(tmp_path):
    ds = as_dataset(_write(_frame(), tmp_path / "c.csv"))
    assert isinstance(ds, Dataset) and ds.inputs is None and ds.token_labeler is None
    assert ds.docs["doc_id"].dtype == np.int64
    assert len(ds.head(2)) == 2
