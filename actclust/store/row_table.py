"""A store's row table, read lazily: one column, or a few rows, at a time.

``rows.parquet`` holds one row per stored vector (``row``, ``doc_id``, ``position``,
``token``, token labels), ``docs.parquet`` one row per document (``doc_id``, ``text``,
document labels). The joined table, every row with its document's columns, is never built
for all rows unless asked for (:meth:`RowTable.to_pandas`): a column is read on its own (a
document column from ``docs.parquet``, spread over the rows by the position of each row's
document), and whole rows are joined only for the rows asked for (:meth:`RowTable.take`).
On ten million token rows a label column costs one pointer per row, not one string.
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
import pandas as pd

from ..errors import ActclustError
from . import format as fmt
from ._parquet import ParquetTable, is_list, is_text, text_values

# Above this many rows a DataFrame method on store.rows (which joins the whole table in
# memory) warns once and names the lazy way.
WARN_ROWS = 1_000_000
# Columns that locate a row or hold its text; every other column is a label.
NOT_LABELS = ("row", "doc_id", "position", "token", "token_id", "text")


class RowTable:
    """One row per stored vector, joined with its document's columns, read on demand.

    Row ``i`` describes row ``i`` of every layer. Columns: ``row``, ``doc_id``,
    ``position`` and ``token`` (token-level stores), token-level labels, then the
    document's columns (``text`` and document labels). Nothing is read until asked:

    - ``rows["topic"]``: one column as a pandas Series (a document column repeats its
      document's value per row, so ``rows["text"]`` of a token store holds every row's
      text; :meth:`ActivationStore.column` shares one string per distinct value);
    - ``rows[["doc_id", "token"]]``: a DataFrame of those columns only;
    - :meth:`take` / ``rows.iloc[index]``: whole rows, documents joined for those rows only;
    - :meth:`head`, ``len(rows)``, :attr:`columns`, :attr:`shape`;
    - :meth:`to_pandas`: the whole joined table in memory (small stores).

    Any other DataFrame attribute (``rows.groupby``, ``rows.merge``, ...) falls back to
    :meth:`to_pandas`: it joins and keeps the whole table in memory, as ``store.rows``
    did before it was lazy (text repeated on every token row: gigabytes on a store of
    millions of rows; a warning says so above a million rows).

    Example:
        >>> import tempfile
        >>> import actclust
        >>> X = np.zeros((4, 2), np.float32)
        >>> rows = pd.DataFrame({"doc_id": [0, 0, 1, 1], "token": ["a", "cat", "a", "dog"]})
        >>> docs = pd.DataFrame({"doc_id": [0, 1], "text": ["a cat", "a dog"],
        ...                      "animal": ["cat", "dog"]})
        >>> store = actclust.store.from_arrays(tempfile.mkdtemp() + "/s", {"h": X}, rows,
        ...                                    docs, progress=False)
        >>> table = store.rows
        >>> len(table), list(table.columns)
        (4, ['row', 'doc_id', 'token', 'text', 'animal'])
        >>> table["animal"].tolist()
        ['cat', 'cat', 'dog', 'dog']
        >>> table.take([3, 0])[["token", "text"]].values.tolist()
        [['dog', 'a dog'], ['a', 'a cat']]
    """

    def __init__(self, root, n_rows: int):
        self.root = root
        self._rows = ParquetTable(root, fmt.ROWS)
        self._docs = ParquetTable(root, fmt.DOCS)
        if self._rows.num_rows != n_rows:
            self._damaged(f"{fmt.ROWS} has {self._rows.num_rows} rows, its layers {n_rows}")
        if "doc_id" not in self._rows.names or "doc_id" not in self._docs.names:
            self._damaged(f"{fmt.ROWS} or {fmt.DOCS} has no doc_id column")
        self._row_columns = list(self._rows.names)
        self._doc_columns = [c for c in self._docs.names
                             if c != "doc_id" and c not in self._row_columns]
        self._positions: Optional[np.ndarray] = None
        self._checked = False
        self._full: Optional[pd.DataFrame] = None
        self._warned = False

    # ------------------------------------------------------------------ checks

    def _damaged(self, what: str):
        raise ActclustError(f"store {self.root} is damaged: {what}; run `actclust verify`")

    def _check(self) -> None:
        """Once, before any values are used: the ``row`` column is 0, 1, 2, ... (read a
        batch at a time) and every document id is unique, so each row has one document."""
        if self._checked:
            return
        if "row" in self._row_columns:
            at = 0
            for chunk in self._rows.iter_column("row"):
                if not np.array_equal(chunk, np.arange(at, at + len(chunk))):
                    self._damaged(f"the row column of {fmt.ROWS} is not 0, 1, 2, ...")
                at += len(chunk)
        self._doc_positions()
        self._checked = True

    def _doc_positions(self) -> np.ndarray:
        """Per row, the position of its document in ``docs.parquet`` (-1: none)."""
        if self._positions is not None:
            return self._positions
        import pyarrow as pa

        kinds = [t.field("doc_id").type for t in (self._rows.schema, self._docs.schema)]
        if any(pa.types.is_integer(t) for t in kinds) and not all(
                pa.types.is_integer(t) for t in kinds):
            self._damaged(f"its rows do not join its documents (doc_id is {kinds[0]} in "
                          f"{fmt.ROWS}, {kinds[1]} in {fmt.DOCS})")
        ids = self._docs.read(["doc_id"]).column(0).to_pandas()
        if ids.isna().any() or ids.duplicated().any():
            self._damaged(f"its rows do not join its documents (a doc_id of {fmt.DOCS} is "
                          "repeated or missing)")
        of_row = self._rows.read(["doc_id"]).column(0).to_numpy(zero_copy_only=False)
        small = np.int32 if len(ids) < 2 ** 31 else np.int64
        if ids.dtype.kind in "iu" and of_row.dtype.kind in "iu" and \
                np.array_equal(ids.to_numpy(), np.arange(len(ids))):
            # the usual store: documents numbered 0..n-1 in order, so the id is the position
            inside = (of_row >= 0) & (of_row < len(ids))
            positions = np.where(inside, of_row, -1).astype(small)
        else:
            positions = pd.Index(ids).get_indexer(of_row).astype(small)
        self._positions = positions
        return positions

    # ------------------------------------------------------------------ shape

    @property
    def columns(self) -> pd.Index:
        """Every column: ``rows.parquet``'s, then ``docs.parquet``'s (from the schemas)."""
        return pd.Index(self._row_columns + self._doc_columns)

    @property
    def label_columns(self) -> list:
        """Columns usable as labels: every column but ids, positions, tokens and text."""
        return [c for c in self.columns if c not in NOT_LABELS]

    @property
    def shape(self) -> tuple:
        return (len(self), len(self.columns))

    @property
    def index(self) -> pd.RangeIndex:
        return pd.RangeIndex(len(self))

    def __len__(self) -> int:
        return self._rows.num_rows

    def __iter__(self):
        return iter(self.columns)

    def __contains__(self, column) -> bool:
        return column in self.columns

    def is_list_column(self, column: str) -> bool:
        """Whether a column holds lists or records rather than one value per row."""
        table = self._rows if column in self._row_columns else self._docs
        return is_list(table.schema.field(column).type)

    def _unknown(self, column) -> ActclustError:
        return ActclustError(f"column {column!r} is not in store {self.root}; columns: "
                             f"{', '.join(map(str, self.columns))}")

    # ------------------------------------------------------------------ columns

    def values(self, column: str) -> np.ndarray:
        """One column as a numpy array, one value per row (see ActivationStore.column)."""
        if not isinstance(column, str) or column not in self.columns:
            raise self._unknown(column)
        self._check()
        if column in self._row_columns:
            return self._numpy(self._rows, column)
        values = self._numpy(self._docs, column)
        positions = self._doc_positions()
        if (positions < 0).any():  # a row without its document: missing, as a left join
            values = values.astype(float if values.dtype.kind in "iu" else object)
            values = np.append(values, np.nan)
        return values[positions]  # -1 picks the appended NaN

    @staticmethod
    def _numpy(table: ParquetTable, column: str) -> np.ndarray:
        if is_text(table.schema.field(column).type):
            return text_values(table.read([column], dictionary=True).column(0))
        return table.read([column]).to_pandas()[column].to_numpy()

    def _series(self, column: str) -> pd.Series:
        import pyarrow as pa

        self._check()
        if column in self._row_columns:
            return self._rows.read([column]).to_pandas()[column]
        positions = self._doc_positions()
        read = self._docs.read([column])
        index = pa.array(positions, mask=positions < 0)
        spread = read.take(index)  # null where a row has no document, as a left join
        return spread.to_pandas()[column]

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self.columns:
                raise KeyError(key)
            return self._series(key)
        if isinstance(key, slice):
            return self.take(np.arange(len(self))[key])
        if isinstance(key, (list, tuple, pd.Index)) and all(isinstance(c, str) for c in key):
            missing = [c for c in key if c not in self.columns]
            if missing:
                raise KeyError(f"{missing} not in the columns of store {self.root}")
            if not len(key):
                return pd.DataFrame(index=self.index)
            return pd.concat({c: self._series(c) for c in key}, axis=1)[list(key)]
        key = np.asarray(key)
        if key.dtype == bool:
            return self.take(key)
        raise KeyError(f"index rows with a column name, a list of names, a slice or a "
                       f"boolean mask (rows.take for row numbers), not {type(key).__name__}")

    # ------------------------------------------------------------------ rows

    def _row_numbers(self, index) -> np.ndarray:
        n = len(self)
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean index of shape {idx.shape} for {n} rows")
            return np.flatnonzero(idx)
        if idx.ndim == 0:
            idx = idx[None]
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise IndexError(f"row numbers must be integers, got {idx.dtype}")
        idx = idx.astype(np.int64).ravel()
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for a table of {n} rows")
        return np.where(idx < 0, idx + n, idx)

    def take(self, index, columns=None) -> pd.DataFrame:
        """The rows ``index`` (row numbers in any order, or a boolean mask) with every
        column (or only ``columns``), each joined with its document: the DataFrame's index
        is the row numbers. Only the row groups holding those rows, and only their
        documents, are read."""
        idx = self._row_numbers(index)
        wanted_columns = list(self.columns) if columns is None else list(columns)
        missing = [c for c in wanted_columns if c not in self.columns]
        if missing:
            raise KeyError(f"{missing} not in the columns of store {self.root}")
        self._check()
        unique, inverse = np.unique(idx, return_inverse=True)
        own = [c for c in self._row_columns if c in wanted_columns]
        frame = self._rows.gather(own, unique).to_pandas()
        of_docs = [c for c in self._doc_columns if c in wanted_columns]
        if of_docs:
            positions = self._doc_positions()[unique]
            wanted = np.unique(positions[positions >= 0])
            docs = self._docs.gather(of_docs, wanted).to_pandas()
            docs.index = wanted
            docs = docs.reindex(positions).reset_index(drop=True)  # -1: missing
            frame = pd.concat([frame.reset_index(drop=True), docs], axis=1)
        frame = frame.take(inverse)[wanted_columns]
        frame.index = pd.Index(idx)
        return frame

    @property
    def iloc(self) -> "_ILoc":
        """``rows.iloc[index]``: :meth:`take` (``rows.iloc[i]`` a Series of one row)."""
        return _ILoc(self)

    def head(self, n: int = 5) -> pd.DataFrame:
        """The first ``n`` rows with every column."""
        return self.take(np.arange(min(max(int(n), 0), len(self))))

    def tail(self, n: int = 5) -> pd.DataFrame:
        """The last ``n`` rows with every column."""
        return self.take(np.arange(max(len(self) - max(int(n), 0), 0), len(self)))

    def document_rows(self, index) -> np.ndarray:
        """Row numbers of every row that shares a document with a row of ``index``
        (sorted): what token rows need to be shown inside their document's text."""
        idx = self._row_numbers(index)
        self._check()
        positions = self._doc_positions()
        docs = np.unique(positions[idx])
        found = np.flatnonzero(np.isin(positions, docs[docs >= 0]))
        return np.union1d(found, idx)

    def to_pandas(self) -> pd.DataFrame:
        """The whole joined table in memory: every row with its document's columns (a
        token store repeats each document's text on each of its rows)."""
        self._check()
        frame = self._rows.read().to_pandas()
        if self._doc_columns:
            docs = self._docs.read(self._doc_columns).to_pandas()
            docs = docs.reindex(self._doc_positions()).reset_index(drop=True)
            frame = pd.concat([frame, docs], axis=1)
        return frame

    def __getattr__(self, name: str):
        # A column by attribute (rows.topic) reads that column, as a DataFrame would; only
        # DataFrame's own public names fall back; anything else is a plain miss (and
        # private names never recurse through a half-built object).
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        if name in self.__dict__.get("_row_columns", ()) or \
                name in self.__dict__.get("_doc_columns", ()):
            return self._series(name)
        if not hasattr(pd.DataFrame, name):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        if self._full is None:
            if len(self) > WARN_ROWS and not self._warned:
                self._warned = True
                warnings.warn(f"store.rows.{name} joins all {len(self):,} rows with their "
                              "documents in memory; store.column(name), store.rows[[...]] "
                              "or store.rows.take(index) read only what they need",
                              stacklevel=2)
            self._full = self.to_pandas()
        return getattr(self._full, name)

    def __repr__(self) -> str:
        head = self.head(5)
        return (f"RowTable of store {self.root}: {len(self):,} rows x "
                f"{len(self.columns)} columns (read on demand; first rows below)\n"
                f"{head.to_string(max_colwidth=48)}")

    def _repr_html_(self) -> str:
        from html import escape

        return (f"<p><b>RowTable</b> of store <code>{escape(str(self.root))}</code>: "
                f"{len(self):,} rows &times; {len(self.columns)} columns (read on demand; "
                f"first rows below)</p>{self.head(5).to_html(max_cols=20)}")


class _ILoc:
    def __init__(self, table: RowTable):
        self.table = table

    def __getitem__(self, key):
        columns = None
        if isinstance(key, tuple):
            key, columns = key
        if isinstance(key, slice):
            key = np.arange(len(self.table))[key]
        one = np.ndim(key) == 0
        frame = self.table.take(key)
        if columns is not None:
            frame = frame.iloc[:, columns]
        return frame.iloc[0] if one else frame


class FrameRows:
    """A DataFrame already in memory (a whole joined row table) with the row-reading
    methods of :class:`RowTable`, so functions that show rows take either."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame.reset_index(drop=True)
        self.columns = self.frame.columns

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, key):
        return self.frame[key]

    def take(self, index, columns=None) -> pd.DataFrame:
        part = self.frame.iloc[np.asarray(index, dtype=np.int64)]
        return part if columns is None else part[list(columns)]

    def document_rows(self, index) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64)
        if "doc_id" not in self.columns:
            return np.unique(index)
        ids = self.frame["doc_id"].to_numpy()
        return np.union1d(np.flatnonzero(np.isin(ids, ids[index])), index)


def row_access(rows):
    """``rows`` itself when it reads rows lazily (a :class:`RowTable`), else the DataFrame
    wrapped as a :class:`FrameRows`."""
    if hasattr(rows, "document_rows") and hasattr(rows, "take"):
        return rows
    if isinstance(rows, pd.DataFrame):
        return FrameRows(rows)
    raise ActclustError(f"rows must be a store's rows (store.rows) or a DataFrame, got "
                        f"{type(rows).__name__}")
