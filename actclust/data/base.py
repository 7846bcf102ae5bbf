"""The dataset contract shared by bundled datasets and the user's own data.

A :class:`Dataset` is a table of documents (``docs``) with a ``doc_id`` column, the text
(for text models) and any number of document-level label columns. Non-text datasets
(images for ``digits-mlp``, arrays for a plain ``nn.Module``) carry their model inputs in
``inputs``, row-aligned with ``docs``. Token-level labels that depend on the model's
tokenizer are produced at capture time by ``token_labeler``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pandas as pd

# (doc_index, text, offsets, positions) -> {column: values}. ``offsets`` holds one
# (start, end) character span per kept token of that document, in order, or None for a
# special token ([CLS], <bos>, ...); ``positions`` the token's index in the model's input
# sequence. Every returned list has one value per kept token.
TokenLabeler = Callable[[int, str, list, list], dict]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Documents to capture, with their ground-truth label columns.

    Attributes:
        name: short name recorded in the store manifest.
        docs: one row per document; ``doc_id`` (0..n-1), ``text`` for text data, label columns.
        inputs: model inputs for non-text data, ``inputs[i]`` belongs to ``docs.iloc[i]``.
        token_labeler: adds token-level label columns at capture time (text data only).
        description: one line shown by ``actclust datasets``.

    Example:
        >>> ds = Dataset.from_texts(["a cat", "a dog"], name="pets")
        >>> list(ds.docs.columns), len(ds)
        (['doc_id', 'text'], 2)
    """

    name: str
    docs: pd.DataFrame
    inputs: Optional[np.ndarray] = None
    token_labeler: Optional[TokenLabeler] = None
    description: str = ""
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.docs)

    @property
    def is_text(self) -> bool:
        return "text" in self.docs.columns and self.inputs is None

    @property
    def label_columns(self) -> list[str]:
        """Document-level label columns (everything except ``doc_id`` and ``text``)."""
        return [c for c in self.docs.columns if c not in ("doc_id", "text")]

    def fingerprint(self) -> str:
        """sha256 of the documents and inputs: two datasets with the same content match.

        Example:
            >>> Dataset.from_texts(["x"]).fingerprint() == Dataset.from_texts(["x"]).fingerprint()
            True
        """
        digest = hashlib.sha256()
        digest.update(pd.util.hash_pandas_object(self.docs, index=False).values.tobytes())
        digest.update(",".join(map(str, self.docs.columns)).encode())
        if self.inputs is not None:
            arr = np.ascontiguousarray(self.inputs)
            digest.update(str(arr.dtype).encode() + str(arr.shape).encode())
            digest.update(memoryview(arr).cast("B"))
        return digest.hexdigest()

    def head(self, n: int) -> "Dataset":
        """The first ``n`` documents (for quick runs and ``--limit``).

        Example:
            >>> len(Dataset.from_texts(["a", "b", "c"]).head(2))
            2
        """
        docs = self.docs.iloc[:n].reset_index(drop=True)
        inputs = None if self.inputs is None else self.inputs[:n]
        return Dataset(self.name, docs, inputs, self.token_labeler, self.description,
                       {**self.meta, "limit": n})

    @classmethod
    def from_texts(cls, texts, name: str = "texts", labels: Optional[dict] = None) -> "Dataset":
        """A dataset from a list of strings and optional label columns.

        Example:
            >>> Dataset.from_texts(["hi"], labels={"mood": ["happy"]}).label_columns
            ['mood']
        """
        docs = pd.DataFrame({"doc_id": np.arange(len(texts), dtype=np.int64),
                             "text": list(texts)})
        for col, values in (labels or {}).items():
            docs[col] = list(values)
        return cls(name, docs)
