"""Where a stored token sits in its document's text.

Stores keep token strings, not character offsets; the concept tables and the report's
hovers and dashboards both find them again the same way.
"""

from __future__ import annotations

from typing import Sequence

SPECIAL_TOKENS = frozenset({"[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "<s>", "</s>",
                            "<pad>", "<unk>", "<|endoftext|>", "<bos>", "<eos>"})


def piece(token: str) -> str:
    """A token as it is written in text: WordPiece's ``##`` and the space marks of
    byte-level BPE (``Ġ``) and SentencePiece (``▁``) removed.

    Example:
        >>> piece("##ji"), piece("Ġcat")
        ('ji', 'cat')
    """
    token = token[2:] if token.startswith("##") else token
    return token.replace("Ġ", " ").replace("▁", " ").replace("Ċ", "\n").strip()


def token_offsets(text: str, tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Character span of each token inside ``text``, ``(-1, -1)`` where none is found.

    Tokens are matched left to right in the lower-cased text; special tokens and tokens the
    tokenizer normalised beyond case (stripped accents) get no span, and a match far beyond
    the previous token is refused as a wrong match.

    Example:
        >>> token_offsets("The cat sat.", ["[CLS]", "the", "cat", "sat", ".", "[SEP]"])
        [(-1, -1), (0, 3), (4, 7), (8, 11), (11, 12), (-1, -1)]
        >>> token_offsets("Kenji slept.", ["ken", "##ji", "slept"])
        [(0, 3), (3, 5), (6, 11)]
    """
    low, cursor, spans = text.lower(), 0, []
    for token in map(str, tokens):
        part = piece(token).lower()
        at = -1 if not part or token in SPECIAL_TOKENS else low.find(part, cursor)
        if at < 0 or at - cursor > 12 + len(part):
            spans.append((-1, -1))
            continue
        spans.append((at, at + len(part)))
        cursor = at + len(part)
    return spans
