"""``tokens``: sentences from a small grammar in which every word's part of speech is known.

The generator records the character span and part of speech of every word, so token-level
labels can be computed for ANY tokenizer at capture time: :class:`WordSpanLabeler` maps each
model token to the word its characters fall in. The sentences mix rare long words (split
into several pieces by most tokenizers), numbers written as digits ("42", "1998") and
punctuation, so ``token_kind`` has every value.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Optional

import numpy as np
import pandas as pd

from ..errors import ActclustError
from .base import Dataset

# Symbol -> (part of speech, words). Rare words are there on purpose: tokenizers split them.
LEXICON: dict[str, tuple[str, tuple[str, ...]]] = {
    "D": ("DET", ("the", "this", "that", "every", "each", "another")),
    "A": ("ADJ", ("old", "small", "quiet", "bright", "heavy", "ancient", "curious",
                  "enormous", "fragile", "gigantic", "luminous", "peculiar", "ambidextrous",
                  "iridescent", "melancholic", "red", "green", "tired", "happy", "wooden")),
    "N": ("NOUN", ("cat", "dog", "teacher", "river", "machine", "garden", "letter", "window",
                   "bicycle", "mountain", "kaleidoscope", "xylophone", "hippopotamus",
                   "astronaut", "library", "violin", "engine", "photograph", "lighthouse",
                   "umbrella", "cathedral", "philosopher", "rhinoceros", "chandelier",
                   "saxophone")),
    "NS": ("NOUN", ("apples", "books", "chairs", "birds", "stones", "candles", "windows",
                    "letters", "bottles", "coins", "pebbles", "marbles", "flamingos",
                    "dictionaries", "telescopes", "trombones")),
    "VT": ("VERB", ("saw", "found", "painted", "carried", "opened", "pushed", "noticed",
                    "repaired", "borrowed", "photographed", "described", "admired",
                    "discovered", "rearranged", "memorized", "unscrambled", "juggled")),
    "VI": ("VERB", ("slept", "arrived", "laughed", "waited", "vanished", "disappeared",
                    "wandered", "shivered", "collapsed", "hesitated", "stumbled",
                    "reappeared")),
    "R": ("ADV", ("quickly", "slowly", "quietly", "suddenly", "carefully", "happily",
                  "often", "nervously", "gracefully", "reluctantly", "unexpectedly",
                  "meticulously", "ferociously")),
    "P": ("ADP", ("in", "on", "under", "near", "behind", "beside", "through", "across",
                  "from", "with", "without", "before", "after", "inside")),
    "PS": ("PRON", ("she", "he", "they", "we", "I", "you", "someone", "everyone", "nobody")),
    "PO": ("PRON", ("them", "her", "him", "us", "it", "me")),
    "C": ("CONJ", ("and", "but", "or", "yet")),
    "NP": ("PROPN", ("Alice", "Omar", "Priya", "Kenji", "Lucia", "Tobias", "Ngozi", "Sven",
                     "Mateo", "Zofia", "Leila", "Dmitri")),
}
PUNCTUATION = (".", ",", "!", "?", ";", ":")
# Numbers are drawn, not listed: "Y" a year, "K" a count of two or more (before a plural).
NUMBER_SYMBOLS = {"Y": (1900, 2031), "K": (2, 1000)}

TEMPLATES = tuple(t.split() for t in (
    "D A N VT D N P D N .",
    "NP VT K NS P Y .",
    "PS R VT D A N , C PS VI .",
    "D N VI P D N P Y !",
    "NP C NP VT D N ; PS VI R .",
    "P Y , D A N VI R .",
    "PS VT PO P D N , C NP VI .",
    "K NS VI P D A N .",
    "D N VT K A NS P NP .",
    "R , NP VT D N C D N VI .",
    "NP VI P D N : PS VT K NS .",
    "D A A N R VT PO .",
    "P D N , PS VT D N C VI R .",
    "Y : D N VT K NS !",
    "NP R VT D N P D A N ?",
    "PS VI , C D N VT PO ?",
    "D N P D N VT NP P Y .",
    "NP VT K NS , K NS , C D N .",
    "D A N VI ; D A N VT PO .",
    "P Y , K NS VT D N R .",
))
POS_TAGS = ("DET", "ADJ", "NOUN", "VERB", "ADV", "ADP", "PRON", "PROPN", "NUM", "CONJ",
            "PUNCT")
TOKEN_KINDS = ("word_start", "word_continuation", "digit", "punctuation", "special")
POSITION_BUCKETS = ("0", "1-3", "4-7", "8-15", "16-31", "32+")

DEFAULT_N_DOCS = 2000
DESCRIPTION = (f"{DEFAULT_N_DOCS:,} POS-tagged sentences with digits and punctuation "
               f"(token labels: token_kind, pos, position_bucket)")


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


class WordSpanLabeler:
    """Token labels from known word spans; works with any tokenizer's character offsets.

    A token belongs to the word its first non-space character falls in, so byte-level BPE
    tokens that carry a leading space (" cat") label like WordPiece tokens ("cat"); a token
    of spaces only (BPE sometimes splits " " from the word) belongs to the word right after
    it. The first token of a word is ``word_start``, the rest ``word_continuation``; every
    token of a number is ``digit`` and of a punctuation mark ``punctuation``. Special
    tokens (offsets ``None``, or an empty span) and the rare token that touches no word are
    ``special`` with pos ``SPECIAL``. Instances are plain data, so they pickle.

    Args:
        texts: the documents, in dataset order.
        spans: per document, one ``(start, end, pos)`` per word, sorted by ``start``.

    Example:
        >>> spans = [(0, 2, "ADP"), (3, 7, "NUM"), (7, 8, "PUNCT")]
        >>> lab = WordSpanLabeler(["In 1998."], [spans])
        >>> out = lab(0, "In 1998.", [None, (0, 2), (2, 5), (5, 7), (7, 8)], [0, 1, 2, 3, 4])
        >>> out["token_kind"]
        ['special', 'word_start', 'digit', 'digit', 'punctuation']
        >>> out["pos"], out["position_bucket"]
        (['SPECIAL', 'ADP', 'NUM', 'NUM', 'PUNCT'], ['0', '1-3', '1-3', '1-3', '4-7'])
    """

    def __init__(self, texts: list[str], spans: list[list[tuple[int, int, str]]]):
        self.texts = list(texts)
        self.spans = [list(s) for s in spans]
        self._by_text = {t: i for i, t in enumerate(self.texts)}

    def _spans_for(self, doc_index: int, text: str) -> list:
        # The index is right for the dataset or any head() of it; the text lookup covers
        # a reordered or filtered copy.
        if 0 <= doc_index < len(self.texts) and self.texts[doc_index] == text:
            return self.spans[doc_index]
        if text in self._by_text:
            return self.spans[self._by_text[text]]
        raise ActclustError(f"document {doc_index} ({text[:40]!r}) is not one this token "
                            f"labeler was built for; token labels need the generated text")

    def __call__(self, doc_index: int, text: str, offsets: list, positions: list) -> dict:
        spans = self._spans_for(doc_index, text)
        starts = [s for s, _, _ in spans]
        kinds, pos_tags = [], []
        previous = None
        for span in offsets:
            word = _word_of(text, span, spans, starts)
            if word is None:
                kinds.append("special")
                pos_tags.append("SPECIAL")
                continue
            pos = spans[word][2]
            kinds.append(_KIND_OF_POS.get(pos) or
                         ("word_continuation" if word == previous else "word_start"))
            pos_tags.append(pos)
            previous = word
        return {"token_kind": kinds, "pos": pos_tags,
                "position_bucket": [position_bucket(int(p)) for p in positions]}


_KIND_OF_POS = {"NUM": "digit", "PUNCT": "punctuation"}


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


def _sentence(template: list[str], rng: np.random.Generator) -> list[tuple[str, str]]:
    """(word, pos) pairs for one template, the first word capitalised."""
    words = []
    for symbol in template:
        if symbol in PUNCTUATION:
            words.append((symbol, "PUNCT"))
        elif symbol in NUMBER_SYMBOLS:
            low, high = NUMBER_SYMBOLS[symbol]
            words.append((str(int(rng.integers(low, high))), "NUM"))
        else:
            pos, options = LEXICON[symbol]
            words.append((options[int(rng.integers(len(options)))], pos))
    first, pos = words[0]
    words[0] = (first[0].upper() + first[1:], pos)
    return words


def _layout(words: list[tuple[str, str]]) -> tuple[str, list[tuple[int, int, str]]]:
    """Join words with spaces (none before punctuation) and return the text and spans."""
    parts, spans, cursor = [], [], 0
    for word, pos in words:
        if parts and pos != "PUNCT":
            parts.append(" ")
            cursor += 1
        spans.append((cursor, cursor + len(word), pos))
        parts.append(word)
        cursor += len(word)
    return "".join(parts), spans


def build(n_docs: int = DEFAULT_N_DOCS, seed: int = 0) -> Dataset:
    """The ``tokens`` dataset: ``n_docs`` unique sentences with a token labeler.

    Columns: ``doc_id``, ``text``, ``template`` (grammar template id). The dataset's
    ``token_labeler`` adds ``token_kind``, ``pos`` and ``position_bucket`` per model token.

    Example:
        >>> ds = build(n_docs=3)
        >>> list(ds.docs.columns), ds.token_labeler is not None
        (['doc_id', 'text', 'template'], True)
    """
    if n_docs < 1:
        raise ValueError(f"n_docs must be at least 1, got {n_docs}")
    rng = np.random.default_rng(seed)
    texts, spans, template_ids = [], [], []
    seen: set[str] = set()
    for i in range(n_docs):
        t = i % len(TEMPLATES)
        for _ in range(1000):  # a repeat is rare: each template has billions of sentences
            text, word_spans = _layout(_sentence(TEMPLATES[t], rng))
            if text not in seen:
                break
        else:
            raise ValueError(f"n_docs={n_docs} is too large to keep every sentence unique")
        seen.add(text)
        texts.append(text)
        spans.append(word_spans)
        template_ids.append(t)
    order = rng.permutation(n_docs)
    texts = [texts[i] for i in order]
    spans = [spans[i] for i in order]
    docs = pd.DataFrame({"doc_id": np.arange(n_docs, dtype=np.int64), "text": texts,
                         "template": np.asarray(template_ids, dtype=np.int64)[order]})
    return Dataset("tokens", docs, token_labeler=WordSpanLabeler(texts, spans),
                   description=DESCRIPTION,
                   meta={"generator": "actclust.data.tokens", "n_docs": n_docs, "seed": seed,
                         "token_labels": ["token_kind", "pos", "position_bucket"]})
