"""Labelled datasets: the bundled ones (generated, no downloads) and the user's own.

Bundled: ``topics`` (sentences over ten topics), ``tokens`` (POS-tagged sentences with
token-level labels), ``truth`` (true/false statements as Yes/No contrast pairs) and
``digits`` (8x8 images, non-text). :func:`as_dataset` turns anything a user may pass (a
bundled name, a file, a frame, a list of texts, an array) into a :class:`Dataset`.

Example:
    >>> ds = load("topics", n_per_topic=2)
    >>> len(ds), ds.label_columns
    (20, ['topic', 'template'])
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from ..errors import ActclustError, closest
from .base import Dataset, TokenLabeler
from .files import from_array, from_file, from_frame

# name -> module holding ``build`` and ``DESCRIPTION``; imported on use (digits needs sklearn).
_BUNDLED = {
    "topics": "actclust.data.topics",
    "tokens": "actclust.data.tokens",
    "truth": "actclust.data.truth",
    "digits": "actclust.data.digits",
}

__all__ = ["Dataset", "TokenLabeler", "available", "load", "as_dataset", "from_file",
           "from_frame", "from_array"]


def available() -> dict[str, str]:
    """Bundled dataset name -> one-line description.

    Example:
        >>> sorted(available())
        ['digits', 'tokens', 'topics', 'truth']
    """
    return {name: importlib.import_module(module).DESCRIPTION
            for name, module in _BUNDLED.items()}


def load(name: str, **kwargs) -> Dataset:
    """A bundled dataset by name; ``kwargs`` go to its generator (sizes, ``seed``).

    The same call always gives the same documents.

    Example:
        >>> load("truth").docs["answer"].head(4).tolist()
        ['Yes', 'No', 'Yes', 'No']
    """
    key = str(name).strip().lower()
    if key not in _BUNDLED:
        raise ActclustError(f"unknown dataset {name!r}; {closest(key, _BUNDLED)}")
    build = importlib.import_module(_BUNDLED[key]).build
    accepted = list(inspect.signature(build).parameters)
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise ActclustError(f"dataset {key!r} takes no option {unknown[0]!r}; it takes: "
                            f"{', '.join(accepted) or 'no options'}")
    try:
        return build(**kwargs)
    except ValueError as err:  # a bad size or seed
        raise ActclustError(f"dataset {key!r}: {err}") from err


def as_dataset(obj, text_column: str = "text", labels=None,
               name: Optional[str] = None) -> Dataset:
    """Whatever the user passed, as a :class:`Dataset`.

    * a ``Dataset``: returned as is;
    * a string naming a bundled dataset: :func:`load` (bundled names win over files);
    * a path (str or ``Path``) to a .jsonl/.json/.csv/.parquet file: read it; ``text_column``
      holds the text and every other column is a label column;
    * a pandas DataFrame or a Hugging Face ``datasets.Dataset``: as a file's table;
    * a list or tuple of strings: one document per string;
    * a numpy array or torch tensor: a non-text dataset, ``inputs`` as float32.

    ``labels`` adds label columns: a dict of column -> values, or one sequence (``label``).
    See :mod:`actclust.data.files` for the checks and for how a ``doc_id`` column is kept.

    Example:
        >>> as_dataset(["a cat", "a dog"], labels={"animal": ["cat", "dog"]}).label_columns
        ['animal']
        >>> as_dataset("topics").name
        'topics'
    """
    if isinstance(obj, Dataset):
        return obj
    if isinstance(obj, (str, Path)):
        return _from_name_or_path(obj, text_column, labels, name)
    if isinstance(obj, pd.DataFrame):
        return from_frame(obj, text_column=text_column, labels=labels, name=name)
    if hasattr(obj, "to_pandas") and hasattr(obj, "column_names"):
        # A Hugging Face datasets.Dataset, duck-typed so `datasets` stays optional.
        info_name = getattr(getattr(obj, "info", None), "dataset_name", None)
        return from_frame(obj.to_pandas(), text_column=text_column, labels=labels,
                          name=name or info_name or "hf_dataset",
                          source=f"Hugging Face dataset {info_name or ''}".rstrip())
    if isinstance(obj, np.ndarray) or type(obj).__module__.split(".")[0] == "torch":
        return from_array(obj, labels=labels, name=name)
    if isinstance(obj, (list, tuple)):
        return _from_texts(list(obj), labels, name)
    hint = ""
    if type(obj).__name__ in ("DatasetDict", "IterableDatasetDict"):
        hint = "; pick one split, e.g. ds['train']"
    raise ActclustError(f"cannot make a dataset from a {type(obj).__name__}: pass a bundled "
                        f"dataset name, a file path, a DataFrame, a list of texts or an "
                        f"array{hint}")


def _from_name_or_path(obj, text_column: str, labels, name: Optional[str]) -> Dataset:
    if isinstance(obj, str) and obj.strip().lower() in _BUNDLED:
        if labels is not None:
            raise ActclustError(f"bundled dataset {obj!r} has its own labels; labels= is "
                                f"for your own data")
        return load(obj)
    path = Path(obj).expanduser()
    if path.exists():
        return from_file(path, text_column=text_column, labels=labels, name=name)
    bundled = ", ".join(_BUNDLED)
    hint = ""
    if isinstance(obj, str) and not path.suffix:
        hint = f" ({closest(obj.strip().lower(), _BUNDLED)})"
    raise ActclustError(f"{str(obj)!r} is neither a bundled dataset ({bundled}){hint} nor an "
                        f"existing file (.jsonl, .json, .csv, .parquet)")


def _from_texts(items: list, labels, name: Optional[str]) -> Dataset:
    source = "list of texts"
    if items and not any(isinstance(x, str) for x in items):
        raise ActclustError(f"{source}: item 0 is of type {type(items[0]).__name__}, not a "
                            f"string; pass a numpy array or torch tensor for numeric inputs")
    return from_frame(pd.DataFrame({"text": pd.Series(items, dtype=object)}), labels=labels,
                      name=name or "texts", source=source)
