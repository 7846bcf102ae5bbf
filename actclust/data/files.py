"""The user's own data: files, data frames, lists of texts and arrays as a :class:`Dataset`.

Every input goes through the same checks, and every error names where the data came from
(the file, or "DataFrame") and the column at fault:

* the text column must exist and hold non-empty strings (a missing text is an error);
* every other column is a label column; a missing value (NaN, None) is a missing label, but
  one column may not mix kinds of values (numbers with strings, say);
* ``doc_id`` is always ``0..n-1``. A user ``doc_id`` column must be unique; unless it is
  already ``0..n-1`` it is kept as ``user_doc_id`` and ``doc_id`` is renumbered.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from ..errors import ActclustError
from .base import Dataset

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
# Strings read from a CSV label column as a missing label (the text column keeps them).
_CSV_MISSING = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]


def from_file(path, text_column: str = "text", labels=None,
              name: Optional[str] = None) -> Dataset:
    """A dataset from a .jsonl, .json, .csv or .parquet file with a text column.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "reviews.csv"
        >>> _ = path.write_text("text,stars\\ngreat film,5\\ndull plot,2\\n")
        >>> ds = from_file(path)
        >>> ds.name, ds.label_columns, list(ds.docs["stars"])
        ('reviews', ['stars'], [5, 2])
    """
    path = Path(path).expanduser()
    where = f"file {str(path)!r}"
    if not path.is_file():
        raise ActclustError(f"{where} does not exist" if not path.exists()
                            else f"{where} is not a regular file")
    if path.suffix.lower() not in SUFFIXES:
        raise ActclustError(f"{where}: unsupported file type {path.suffix or '(none)'!r}; "
                            f"use one of {', '.join(SUFFIXES)}")
    frame = read_table(path, text_column)
    return from_frame(frame, text_column=text_column, labels=labels,
                      name=name or path.stem, source=where,
                      meta={"source": str(path)})


def read_table(path: Path, text_column: str = "text") -> pd.DataFrame:
    """The raw table in ``path``, chosen by its suffix; unreadable files raise ActclustError.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.jsonl"
        >>> _ = path.write_text('{"text": "hi", "y": 1}\\n\\n{"text": "yo", "y": 2}\\n')
        >>> read_table(path).shape
        (2, 2)
    """
    path = Path(path)
    where = f"file {str(path)!r}"
    suffix = path.suffix.lower()
    empty = ActclustError(f"{where} is empty: it needs a header or records with a "
                          f"{text_column!r} column")
    try:
        if path.stat().st_size == 0:
            raise empty
        if suffix == ".jsonl":
            frame = _read_jsonl(path, where)
        elif suffix == ".json":
            frame = _read_json(path, where)
        elif suffix == ".csv":
            frame = _read_csv(path, text_column)
        else:
            frame = pd.read_parquet(path)
    except ActclustError:
        raise
    except pd.errors.EmptyDataError:  # a CSV of blank lines
        raise empty from None
    except (OSError, ValueError) as err:
        raise ActclustError(f"{where} could not be read as {suffix[1:]}: {err}") from err
    except Exception as err:  # pyarrow raises its own types for a corrupt parquet file
        raise ActclustError(f"{where} could not be read as {suffix[1:]}: "
                            f"{type(err).__name__}: {err}") from err
    if frame.shape == (0, 0):  # blank lines only, or "[]"
        raise empty
    return frame


def _read_jsonl(path: Path, where: str) -> pd.DataFrame:
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ActclustError(f"{where} line {number} is not valid JSON: {err}") from err
            if not isinstance(record, dict):
                raise ActclustError(f"{where} line {number} is a JSON "
                                    f"{type(record).__name__}, not an object "
                                    f"({{\"text\": ..., \"label\": ...}})")
            records.append(record)
    return pd.DataFrame.from_records(records) if records else pd.DataFrame()


def _read_json(path: Path, where: str) -> pd.DataFrame:
    with path.open(encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as err:
            raise ActclustError(f"{where} is not valid JSON: {err}") from err
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return pd.DataFrame.from_records(data) if data else pd.DataFrame()
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
        lengths = {len(v) for v in data.values()}
        if len(lengths) > 1:
            raise ActclustError(f"{where}: its columns have different lengths {sorted(lengths)}")
        return pd.DataFrame(data)
    raise ActclustError(f"{where} must hold a list of records [{{\"text\": ...}}, ...] or "
                        f"an object of equal-length columns {{\"text\": [...], ...}}")


def _read_csv(path: Path, text_column: str) -> pd.DataFrame:
    # The text column is read verbatim (a review that says "NA" is a text, not a gap);
    # label columns get the usual missing-value markers.
    header = pd.read_csv(path, nrows=0).columns
    na_values = {c: _CSV_MISSING for c in header if c != text_column}
    return pd.read_csv(path, dtype={text_column: str} if text_column in header else None,
                       keep_default_na=False, na_values=na_values)


def from_frame(frame: pd.DataFrame, text_column: str = "text", labels=None,
               name: Optional[str] = None, source: str = "DataFrame",
               meta: Optional[dict] = None) -> Dataset:
    """A dataset from a pandas frame: ``text_column`` is the text, other columns labels.

    The frame is copied, never changed. ``source`` names the data in error messages.

    Example:
        >>> frame = pd.DataFrame({"body": ["a cat", "a dog"], "animal": ["cat", "dog"]})
        >>> ds = from_frame(frame, text_column="body")
        >>> list(ds.docs.columns)
        ['doc_id', 'text', 'animal']
    """
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    if frame.columns.duplicated().any():
        dup = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise ActclustError(f"{source}: duplicate column names {', '.join(dup)}")
    if text_column not in frame.columns:
        present = ", ".join(map(repr, frame.columns)) or "none"
        raise ActclustError(f"{source} has no text column {text_column!r}; columns present: "
                            f"{present}. Name the text column with text_column=... "
                            f"(--text-column on the command line)")
    if len(frame) == 0:
        raise ActclustError(f"{source} has no rows: no texts in column {text_column!r} to "
                            f"capture")
    if text_column != "text":
        if "text" in frame.columns:
            raise ActclustError(f"{source} has a column 'text' besides the text column "
                                f"{text_column!r}; rename one of them")
        frame = frame.rename(columns={text_column: "text"})
    frame = frame.reset_index(drop=True)
    _check_texts(frame["text"], source, text_column)
    for column, values in _label_dict(labels, source).items():
        if column in frame.columns:
            raise ActclustError(f"{source}: label {column!r} given in labels= is already a "
                                f"column")
        frame[column] = _label_values(values, len(frame), column, source)
    frame = _with_doc_ids(frame, source)
    for column in frame.columns:
        if column not in ("doc_id", "text"):
            check_label_column(frame[column], column, source)
    ordered = ["doc_id", "text"] + [c for c in frame.columns if c not in ("doc_id", "text")]
    return Dataset(name or "dataframe", frame[ordered], description=f"{len(frame)} documents "
                   f"from {source}", meta=dict(meta or {"source": source}))


def from_array(inputs, labels=None, name: Optional[str] = None) -> Dataset:
    """A non-text dataset: ``inputs[i]`` is one model input (numpy array or torch tensor).

    ``labels`` is a dict of column -> values, or one sequence (named ``label``).

    Example:
        >>> ds = from_array(np.eye(3), labels=[0, 1, 1])
        >>> ds.inputs.dtype.name, ds.label_columns, ds.is_text
        ('float32', ['label'], False)
    """
    source = "input array"
    if type(inputs).__module__.split(".")[0] == "torch":
        inputs = inputs.detach().cpu().numpy()
    try:
        array = np.ascontiguousarray(inputs, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ActclustError(f"{source}: could not convert to float32: {err}") from err
    if array.ndim == 0 or array.shape[0] == 0:
        raise ActclustError(f"{source} has no rows (shape {array.shape}): nothing to capture")
    bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if bad.any():
        raise ActclustError(f"{source}: row {int(np.argmax(bad))} holds NaN or infinity "
                            f"({int(bad.sum())} such rows)")
    docs = pd.DataFrame({"doc_id": np.arange(len(array), dtype=np.int64)})
    for column, values in _label_dict(labels, source).items():
        if column in ("doc_id", "text"):
            raise ActclustError(f"{source}: {column!r} cannot be a label name")
        docs[column] = _label_values(values, len(array), column, source)
        check_label_column(docs[column], column, source)
    return Dataset(name or "arrays", docs, inputs=array,
                   description=f"{len(array)} arrays of shape {tuple(array.shape[1:])}",
                   meta={"source": source, "input_shape": list(array.shape[1:])})


def _label_dict(labels, source: str) -> dict:
    """``labels=`` as a dict: a mapping as is, a single sequence as column ``label``."""
    if labels is None:
        return {}
    if isinstance(labels, Mapping):
        return {str(k): v for k, v in labels.items()}
    if isinstance(labels, (str, bytes)):
        raise ActclustError(f"{source}: labels= must be a dict of column -> values or one "
                            f"sequence of values, not a string")
    return {"label": labels}


def _label_values(values, n: int, column: str, source: str) -> list:
    if type(values).__module__.split(".")[0] == "torch":
        values = values.detach().cpu().numpy()
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray,
                                                                     pd.Series)):
        raise ActclustError(f"{source}: label {column!r} must be a sequence of values, got "
                            f"{type(values).__name__}")
    values = list(values)
    if len(values) != n:
        raise ActclustError(f"{source}: label {column!r} has {len(values)} values for {n} "
                            f"documents")
    return values


def _check_texts(texts: pd.Series, source: str, column: str) -> None:
    for row, value in enumerate(texts.tolist()):
        if not isinstance(value, str):
            what = "missing" if _is_missing(value) else \
                f"of type {type(value).__name__}, not a string"
            raise ActclustError(f"{source}: column {column!r} row {row} (0-based) is {what} "
                                f"({value!r}); every text must be a string")
        if not value.strip():
            raise ActclustError(f"{source}: column {column!r} row {row} (0-based) is an "
                                f"empty text")


def _with_doc_ids(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """``doc_id`` as 0..n-1; a user's other ids move to ``user_doc_id``."""
    n = len(frame)
    if "doc_id" in frame.columns:
        ids = frame["doc_id"]
        if ids.isna().any() or ids.duplicated().any():
            raise ActclustError(f"{source}: column 'doc_id' must hold unique, non-missing "
                                f"ids (rename it if it is a label)")
        if ids.dtype.kind in "iu" and np.array_equal(ids.to_numpy(), np.arange(n)):
            frame["doc_id"] = np.arange(n, dtype=np.int64)
            return frame
        if "user_doc_id" in frame.columns:
            raise ActclustError(f"{source}: has both 'doc_id' and 'user_doc_id'; actclust "
                                f"numbers documents itself and keeps yours as 'user_doc_id'")
        frame = frame.rename(columns={"doc_id": "user_doc_id"})
    frame.insert(0, "doc_id", np.arange(n, dtype=np.int64))
    return frame


def _kind(value) -> str:
    """A label value's kind; ints and floats are both ``number`` (CSV and JSON mix them)."""
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "number"
    if isinstance(value, str):
        return "str"
    return type(value).__name__


def _is_missing(value) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def check_label_column(values: pd.Series, column: str, source: str) -> None:
    """Raise ActclustError if a label column mixes kinds or holds non-scalar values.

    Missing values (NaN, None) are allowed: they are missing labels.

    Example:
        >>> check_label_column(pd.Series(["a", None, "b"]), "y", "DataFrame")
        >>> check_label_column(pd.Series([1, "b"]), "y", "DataFrame")
        Traceback (most recent call last):
        ...
        actclust.errors.ActclustError: DataFrame: label column 'y' mixes value types ...
    """
    if values.dtype.kind in "biufcmM" or isinstance(values.dtype, pd.StringDtype):
        return  # one numpy/pandas type: nothing to mix
    first: dict[str, object] = {}
    for value in values.tolist():
        if not _is_missing(value):
            first.setdefault(_kind(value), value)
    odd = [k for k in first if k not in ("bool", "number", "str")]
    if odd:
        raise ActclustError(f"{source}: label column {column!r} holds {odd[0]} values "
                            f"({first[odd[0]]!r}); labels must be strings, numbers or "
                            f"booleans")
    if len(first) > 1:
        found = ", ".join(f"{k}: {first[k]!r}" for k in sorted(first))
        raise ActclustError(f"{source}: label column {column!r} mixes value types ({found}); "
                            f"use one type per column")
