"""One parquet table of a store, read a column or a few rows at a time with pyarrow, always
opened inside the store; whatever pyarrow raises on a damaged file is one line."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import numpy as np

from ..errors import ActclustError
from . import paths

READ_BATCH = 65_536  # rows decoded at a time when gathering rows or checking a column


class ParquetTable:
    """One parquet table of a store, opened inside the store for every read (never
    through a symlink); any failure to read it is one :class:`ActclustError` line."""

    def __init__(self, root, name: str):
        self.root, self.name = root, name
        with self._file() as (f, guard):
            with guard:
                self.schema = f.schema_arrow
                self.num_rows = int(f.metadata.num_rows)
                sizes = [f.metadata.row_group(i).num_rows
                         for i in range(f.metadata.num_row_groups)]
        self.starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.names = list(self.schema.names)

    def unreadable(self, err: Exception) -> ActclustError:
        return ActclustError(f"{self.root / self.name} is not a readable parquet table "
                             f"({type(err).__name__}); run `actclust verify {self.root}`")

    @contextmanager
    def _file(self, **options):
        import pyarrow.parquet as pq

        with paths.open_in_store(self.root, self.name, what="table") as fh:
            guard = _Guard(self)
            with guard:
                f = pq.ParquetFile(fh, **options)
            yield f, guard

    def read(self, columns: Optional[list] = None, dictionary: bool = False):
        """Whole columns as a pyarrow table (``dictionary``: string columns dictionary
        encoded, one copy of each distinct value per row group)."""
        options = {"read_dictionary": columns} if dictionary else {}
        with self._file(**options) as (f, guard):
            with guard:
                return f.read(columns=columns)

    def gather(self, columns: list, positions: np.ndarray):
        """The rows at ``positions`` (sorted, unique) of ``columns``, as a pyarrow table.

        Only the row groups holding them are read, ``READ_BATCH`` rows at a time, so the
        memory taken is a batch and what is kept, whatever the table's size.
        """
        import pyarrow as pa

        pieces = []
        with self._file() as (f, guard):
            with guard:
                schema = f.schema_arrow
            for group in np.unique(np.searchsorted(self.starts, positions, "right") - 1):
                lo, hi = self.starts[group], self.starts[group + 1]
                wanted = positions[(positions >= lo) & (positions < hi)] - lo
                at = 0
                with guard:
                    for batch in f.iter_batches(READ_BATCH, row_groups=[int(group)],
                                                columns=columns, use_threads=False):
                        mine = wanted[(wanted >= at) & (wanted < at + batch.num_rows)] - at
                        if len(mine):
                            pieces.append(batch.take(pa.array(mine)))
                        at += batch.num_rows
        # the file's pandas metadata kept, so dtypes come back as they were written
        wanted_schema = pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)
        with guard:
            return pa.Table.from_batches(pieces, schema=wanted_schema) if pieces \
                else wanted_schema.empty_table()

    def iter_column(self, column: str) -> Iterator[np.ndarray]:
        """One column as numpy arrays of ``READ_BATCH`` rows."""
        with self._file() as (f, guard):
            with guard:
                for batch in f.iter_batches(READ_BATCH, columns=[column], use_threads=False):
                    yield batch.column(0).to_numpy(zero_copy_only=False)


class _Guard:
    """Turns whatever pyarrow raises on a damaged file into the table's one-line error."""

    def __init__(self, table: ParquetTable):
        self.table = table

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        # (AttributeError and NameError are mistakes in the code, not in the file)
        if err is not None and not isinstance(err, (ActclustError, KeyboardInterrupt,
                                                    MemoryError, GeneratorExit,
                                                    AttributeError, NameError)):
            raise self.table.unreadable(err) from None
        return False


def is_text(arrow_type) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def text_values(chunked) -> np.ndarray:
    """A dictionary-encoded text column as an object array whose equal values are one
    Python string (missing values NaN, as pandas gives them)."""
    import pyarrow.compute as pc

    out = np.empty(len(chunked), object)
    at = 0
    for chunk in chunked.chunks:
        if not hasattr(chunk, "dictionary"):  # a row group the reader left plain
            chunk = chunk.dictionary_encode()
        words = np.append(chunk.dictionary.to_numpy(zero_copy_only=False).astype(object),
                          np.nan)
        codes = pc.fill_null(chunk.indices, len(words) - 1).to_numpy(zero_copy_only=False)
        out[at:at + len(chunk)] = words[codes]
        at += len(chunk)
    return out


def is_list(arrow_type) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)
            or pa.types.is_fixed_size_list(arrow_type) or pa.types.is_struct(arrow_type)
            or pa.types.is_map(arrow_type))
