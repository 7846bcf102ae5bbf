"""``tokens``: sentences from a small grammar in which every word's labels are known.

The generator records the character span, part of speech and lexicon entry (semantic class,
number) of every word, so token-level labels can be computed for ANY tokenizer at capture
time: :class:`WordSpanLabeler` maps each model token to the word its characters fall in,
and the token carries that word's labels. The sentences mix rare long words (split into
several pieces by most tokenizers), numbers written as digits ("42", "1998") and as words
("twelve", "forty"), acronyms ("NASA") and punctuation, so every label column has every
value.

Token label columns (one value per token; special tokens get ``special``/``SPECIAL`` in the
first two and ``none`` in the word-level ones):

* ``token_kind``: ``word_start``, ``word_continuation``, ``digit`` (a piece of a number
  written in digits), ``punctuation``, ``special``;
* ``pos``: the word's part of speech (:data:`POS_TAGS`), ``SPECIAL`` for special tokens;
* ``position_bucket``: :func:`position_bucket` of the token's position;
* ``casing``, ``suffix``, ``number_form``, ``punct_kind``, ``word_class``,
  ``semantic_class``: the word's labels, by the rules of :func:`word_labels`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Optional

import numpy as np
import pandas as pd

from ..errors import ActclustError
from ._token_lexicon import (LEXICON, NUMBER_CLASSES, NUMBER_SYMBOLS, NUMBER_WORD_SHARE,
                             NUMBER_WORDS, PUNCTUATION, TEMPLATES)
from .base import Dataset

__all__ = ["LEXICON", "TEMPLATES", "TOKEN_LABELS", "WordSpanLabeler", "build", "casing",
           "position_bucket", "suffix_class", "word_labels"]

POS_TAGS = ("DET", "ADJ", "NOUN", "VERB", "ADV", "ADP", "PRON", "PROPN", "NUM", "CONJ",
            "PUNCT")
TOKEN_KINDS = ("word_start", "word_continuation", "digit", "punctuation", "special")
POSITION_BUCKETS = ("0", "1-3", "4-7", "8-15", "16-31", "32+")
CASINGS = ("lower", "capitalised", "upper", "none")
SUFFIXES = ("ly", "ed", "plural", "ous", "er", "ing", "tion", "none")
NUMBER_FORMS = ("digits", "word", "none")
PUNCT_KINDS = ("final", "clause", "none")
WORD_CLASSES = ("content", "function", "none")
# Read off the lexicon, so a class added there is a label value at once.
SEMANTIC_CLASSES = tuple(dict.fromkeys(
    [c for slot in LEXICON.values() for c in slot.classes if c != "none"]
    + list(NUMBER_CLASSES.values()) + ["none"]))
WORD_LABELS = ("casing", "suffix", "number_form", "punct_kind", "word_class",
               "semantic_class")
TOKEN_LABELS = ("token_kind", "pos", "position_bucket") + WORD_LABELS

DEFAULT_N_DOCS = 2000
DESCRIPTION = (f"{DEFAULT_N_DOCS:,} POS-tagged sentences with digits, number words and "
               f"punctuation (token labels: {', '.join(TOKEN_LABELS)})")

# Universal Dependencies' split: open-class (content) and closed-class (function) tags.
_CONTENT_POS = frozenset({"NOUN", "PROPN", "VERB", "ADJ", "ADV"})
_FUNCTION_POS = frozenset({"DET", "ADP", "PRON", "CONJ", "NUM"})
# Derivational and inflectional endings, tried in order; the stem before one must keep
# at least _MIN_STEM letters, so "red" is not an -ed word nor "her" an -er one.
_SUFFIX_RULES = (("tion", "tion"), ("ing", "ing"), ("ly", "ly"), ("ous", "ous"),
                 ("ed", "ed"), ("er", "er"), ("or", "er"))
_MIN_STEM = 3
_NO_WORD = dict.fromkeys(WORD_LABELS, "none")


def position_bucket(position: int) -> str:
    """The bucket of a token position: "0", "1-3", "4-7", "8-15", "16-31" or "32+".

    Example:
        >>> [position_bucket(p) for p in (0, 1, 3, 4, 15, 16, 40)]
        ['0', '1-3', '1-3', '4-7', '8-15', '16-31', '32+']
    """
    if position <= 0:
        return "0"
    # Bucket k holds 2**k .. 2**(k+1)-1, except the first: 1..3.
    k = max(int(position).bit_length() - 1, 1)
    return POSITION_BUCKETS[min(k, 5)]


def casing(word: str) -> str:
    """How a word is written: ``upper`` (two or more letters, all capitals), ``capitalised``
    (first letter a capital, "I" included), ``lower``, or ``none`` (no letters).

    Example:
        >>> [casing(w) for w in ("NASA", "Alice", "I", "cat", "1998", ",")]
        ['upper', 'capitalised', 'capitalised', 'lower', 'none', 'none']
    """
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return "none"
    if len(letters) >= 2 and all(c.isupper() for c in letters):
        return "upper"
    return "capitalised" if letters[0].isupper() else "lower"


def suffix_class(word: str, pos: str, plural: bool = False) -> str:
    """The morphology class of a whole word (never of a tokenizer piece).

    Only open-class words (``NOUN``, ``VERB``, ``ADJ``, ``ADV``) have one; names, numbers
    and function words are ``none``. A plural noun (``plural=True``, known from the
    lexicon) ending in s is ``plural`` ("boxes", "letters"): the outermost suffix wins.
    Otherwise the lower-cased word's ending, tried in this order, with at least three
    letters before it: ``tion``, ``ing``, ``ly``, ``ous``, ``ed``, ``er`` (-er or -or);
    else ``none``. The rule reads spelling, so "river" is an ``er`` word and "saw" none.

    Example:
        >>> [suffix_class(w, p) for w, p in (("quickly", "ADV"), ("painted", "VERB"),
        ...     ("curious", "ADJ"), ("sailor", "NOUN"), ("sparkling", "ADJ"),
        ...     ("station", "NOUN"), ("red", "ADJ"), ("under", "ADP"))]
        ['ly', 'ed', 'ous', 'er', 'ing', 'tion', 'none', 'none']
        >>> suffix_class("tomatoes", "NOUN", plural=True)
        'plural'
    """
    if pos not in _CONTENT_POS or pos == "PROPN":
        return "none"
    w = word.lower()
    if plural and pos == "NOUN" and w.endswith("s"):
        return "plural"
    for ending, cls in _SUFFIX_RULES:
        if w.endswith(ending) and len(w) - len(ending) >= _MIN_STEM:
            return cls
    return "none"


def word_labels(word: str, pos: str, semantic_class: str = "none",
                plural: bool = False) -> dict:
    """The word-level labels of one word, which every token of the word carries.

    * ``casing``: :func:`casing`; ``suffix``: :func:`suffix_class`;
    * ``number_form``: for a ``NUM`` word, ``digits`` when it has a digit, else ``word``
      ("forty"); ``none`` for other words;
    * ``punct_kind``: ``final`` (. ! ?), ``clause`` (, ; :), ``none`` otherwise;
    * ``word_class``: ``content`` for open-class tags (NOUN, PROPN, VERB, ADJ, ADV),
      ``function`` for closed-class ones (DET, ADP, PRON, CONJ, NUM), as Universal
      Dependencies splits them; ``none`` for punctuation;
    * ``semantic_class``: as given (the lexicon's class of the word).

    Example:
        >>> word_labels("Twelve", "NUM", "quantity")["number_form"]
        'word'
        >>> sorted(word_labels("?", "PUNCT").items())  # doctest: +NORMALIZE_WHITESPACE
        [('casing', 'none'), ('number_form', 'none'), ('punct_kind', 'final'),
         ('semantic_class', 'none'), ('suffix', 'none'), ('word_class', 'none')]
    """
    if pos == "NUM":
        number_form = "digits" if any(c.isdigit() for c in word) else "word"
    else:
        number_form = "none"
    punct_kind = "none"
    if pos == "PUNCT":
        punct_kind = "final" if word in ".!?" else "clause" if word in ",;:" else "none"
    word_class = ("content" if pos in _CONTENT_POS else
                  "function" if pos in _FUNCTION_POS else "none")
    return {"casing": casing(word), "suffix": suffix_class(word, pos, plural),
            "number_form": number_form, "punct_kind": punct_kind, "word_class": word_class,
            "semantic_class": semantic_class}


class WordSpanLabeler:
    """Token labels from known word spans; works with any tokenizer's character offsets.

    A token belongs to the word its first non-space character falls in, so byte-level BPE
    tokens that carry a leading space (" cat") label like WordPiece tokens ("cat"); a token
    of spaces only (BPE sometimes splits " " from the word) belongs to the word right after
    it. The first token of a word is ``word_start``, the rest ``word_continuation``; every
    token of a number written in digits is ``digit`` and of a punctuation mark
    ``punctuation`` (a number word such as "twelve" is a word like any other). Every token
    carries its word's :func:`word_labels`. Special tokens (offsets ``None``, or an empty
    span) and the rare token that touches no word are ``special`` with pos ``SPECIAL`` and
    ``none`` in every word-level column. Instances are plain data, so they pickle.

    Args:
        texts: the documents, in dataset order.
        spans: per document, one ``(start, end, pos)`` per word, sorted by ``start``.
        lexical: per document, one ``(semantic_class, plural)`` per word, from the lexicon;
            ``None`` (or a missing document) means ``("none", False)`` for every word.

    Example:
        >>> spans = [(0, 2, "ADP"), (3, 7, "NUM"), (7, 8, "PUNCT")]
        >>> lexical = [("none", False), ("time", False), ("none", False)]
        >>> lab = WordSpanLabeler(["In 1998."], [spans], [lexical])
        >>> out = lab(0, "In 1998.", [None, (0, 2), (2, 5), (5, 7), (7, 8)], [0, 1, 2, 3, 4])
        >>> out["token_kind"]
        ['special', 'word_start', 'digit', 'digit', 'punctuation']
        >>> out["pos"], out["position_bucket"]
        (['SPECIAL', 'ADP', 'NUM', 'NUM', 'PUNCT'], ['0', '1-3', '1-3', '1-3', '4-7'])
        >>> out["semantic_class"], out["punct_kind"][-1], out["casing"][1]
        (['none', 'none', 'time', 'time', 'none'], 'final', 'capitalised')
    """

    def __init__(self, texts: list[str], spans: list[list[tuple[int, int, str]]],
                 lexical: Optional[list[list[tuple[str, bool]]]] = None):
        self.texts = list(texts)
        self.spans = [list(s) for s in spans]
        self.lexical = None if lexical is None else [list(x) for x in lexical]
        if self.lexical is not None:
            bad = [i for i, (s, x) in enumerate(zip(self.spans, self.lexical))
                   if len(s) != len(x)]
            if len(self.lexical) != len(self.spans) or bad:
                raise ValueError("lexical needs one (semantic_class, plural) per word of "
                                 f"every document (document {bad[0] if bad else 'count'} "
                                 "differs)")
        self._by_text = {t: i for i, t in enumerate(self.texts)}

    def _doc(self, doc_index: int, text: str) -> int:
        # The index is right for the dataset or any head() of it; the text lookup covers
        # a reordered or filtered copy.
        if 0 <= doc_index < len(self.texts) and self.texts[doc_index] == text:
            return doc_index
        if text in self._by_text:
            return self._by_text[text]
        raise ActclustError(f"document {doc_index} ({text[:40]!r}) is not one this token "
                            f"labeler was built for; token labels need the generated text")

    def word_labels(self, doc: int) -> list[dict]:
        """:func:`word_labels` of every word of document ``doc`` (an index into texts)."""
        text, spans = self.texts[doc], self.spans[doc]
        lexical = (self.lexical[doc] if self.lexical is not None
                   else [("none", False)] * len(spans))
        return [word_labels(text[s:e], pos, sem, plural)
                for (s, e, pos), (sem, plural) in zip(spans, lexical)]

    def __call__(self, doc_index: int, text: str, offsets: list, positions: list) -> dict:
        doc = self._doc(doc_index, text)
        spans = self.spans[doc]
        per_word = self.word_labels(doc)
        starts = [s for s, _, _ in spans]
        out: dict[str, list] = {c: [] for c in TOKEN_LABELS if c != "position_bucket"}
        previous = None
        for span in offsets:
            word = _word_of(text, span, spans, starts)
            if word is None:
                out["token_kind"].append("special")
                out["pos"].append("SPECIAL")
                labels = _NO_WORD
            else:
                start, end, pos = spans[word]
                labels = per_word[word]
                if pos == "PUNCT":
                    kind = "punctuation"
                elif labels["number_form"] == "digits":
                    kind = "digit"
                else:
                    kind = "word_continuation" if word == previous else "word_start"
                out["token_kind"].append(kind)
                out["pos"].append(pos)
                previous = word
            for col in WORD_LABELS:
                out[col].append(labels[col])
        out["position_bucket"] = [position_bucket(int(p)) for p in positions]
        return {c: out[c] for c in TOKEN_LABELS}


def _word_of(text: str, span, spans: list, starts: list) -> Optional[int]:
    """Index of the word a token with character ``span`` belongs to (None: no word)."""
    if span is None:
        return None
    start, end = int(span[0]), int(span[1])
    if start >= end:
        return None
    first = start
    while first < end and text[first].isspace():  # byte-level BPE's leading space
        first += 1
    if first == end:  # spaces only: the word that follows them, if it follows at once
        i = bisect_left(starts, end)
        return i if i < len(spans) and not text[end:starts[i]].strip() else None
    i = bisect_right(starts, first) - 1
    if i >= 0 and first < spans[i][1]:
        return i
    # Starts between words: the next word, if the token reaches into it.
    return i + 1 if i + 1 < len(spans) and spans[i + 1][0] < end else None


# (word, pos, semantic class, plural) of one drawn word.
_Word = tuple[str, str, str, bool]
_ENTRIES = {symbol: slot.entries() for symbol, slot in LEXICON.items()}
_WORD_COUNTS = np.array(sorted(NUMBER_WORDS))


def _number(symbol: str, rng: np.random.Generator) -> str:
    """A drawn year or count; a count is written as a word with NUMBER_WORD_SHARE odds."""
    if symbol == "K" and rng.random() < NUMBER_WORD_SHARE:
        return NUMBER_WORDS[int(_WORD_COUNTS[rng.integers(len(_WORD_COUNTS))])]
    low, high = NUMBER_SYMBOLS[symbol]
    return str(int(rng.integers(low, high)))


def _sentence(template: list[str], rng: np.random.Generator) -> list[_Word]:
    """The drawn words of one template, the first word capitalised."""
    words: list[_Word] = []
    for symbol in template:
        if symbol in PUNCTUATION:
            words.append((symbol, "PUNCT", "none", False))
        elif symbol in NUMBER_SYMBOLS:
            words.append((_number(symbol, rng), "NUM", NUMBER_CLASSES[symbol], False))
        else:
            slot, entries = LEXICON[symbol], _ENTRIES[symbol]
            word, semantic = entries[int(rng.integers(len(entries)))]
            words.append((word, slot.pos, semantic, slot.plural))
    first = words[0]
    words[0] = (first[0][0].upper() + first[0][1:],) + first[1:]
    return words


def _layout(words: list[_Word]) -> tuple[str, list[tuple[int, int, str]], list]:
    """Join words with spaces (none before punctuation); the text, spans and lexical."""
    parts, spans, lexical, cursor = [], [], [], 0
    for word, pos, semantic, plural in words:
        if parts and pos != "PUNCT":
            parts.append(" ")
            cursor += 1
        spans.append((cursor, cursor + len(word), pos))
        lexical.append((semantic, plural))
        parts.append(word)
        cursor += len(word)
    return "".join(parts), spans, lexical


def build(n_docs: int = DEFAULT_N_DOCS, seed: int = 0) -> Dataset:
    """The ``tokens`` dataset: ``n_docs`` unique sentences with a token labeler.

    Columns: ``doc_id``, ``text``, ``template`` (grammar template id). The dataset's
    ``token_labeler`` adds the :data:`TOKEN_LABELS` columns per model token.

    Example:
        >>> ds = build(n_docs=3)
        >>> list(ds.docs.columns), ds.token_labeler is not None
        (['doc_id', 'text', 'template'], True)
    """
    if n_docs < 1:
        raise ValueError(f"n_docs must be at least 1, got {n_docs}")
    rng = np.random.default_rng(seed)
    texts, spans, lexical, template_ids = [], [], [], []
    seen: set[str] = set()
    for i in range(n_docs):
        t = i % len(TEMPLATES)
        for _ in range(1000):  # a repeat is rare: each template has billions of sentences
            text, word_spans, word_lexical = _layout(_sentence(TEMPLATES[t], rng))
            if text not in seen:
                break
        else:
            raise ValueError(f"n_docs={n_docs} is too large to keep every sentence unique")
        seen.add(text)
        texts.append(text)
        spans.append(word_spans)
        lexical.append(word_lexical)
        template_ids.append(t)
    order = rng.permutation(n_docs)
    texts = [texts[i] for i in order]
    spans = [spans[i] for i in order]
    lexical = [lexical[i] for i in order]
    docs = pd.DataFrame({"doc_id": np.arange(n_docs, dtype=np.int64), "text": texts,
                         "template": np.asarray(template_ids, dtype=np.int64)[order]})
    return Dataset("tokens", docs, token_labeler=WordSpanLabeler(texts, spans, lexical),
                   description=DESCRIPTION,
                   meta={"generator": "actclust.data.tokens", "n_docs": n_docs, "seed": seed,
                         "token_labels": list(TOKEN_LABELS)})
