"""Integer codes for a column of labels, in bounded memory.

``pandas.factorize`` sizes its hash table by the number of values, about 48 bytes a row
for strings: 480 MB for ten million token rows, however few the distinct labels. Coding
one chunk at a time keeps that to a chunk's worth, with the same result.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CHUNK_ROWS = 1 << 18


def factorize(values, sort: bool = False, chunk_rows: int = CHUNK_ROWS) -> tuple:
    """``(codes, uniques)`` as ``pandas.factorize`` gives them (missing values coded -1),
    computed ``chunk_rows`` values at a time; codes are int32 below 2**31 values.

    Example:
        >>> codes, uniques = factorize(["b", "a", None, "b"], sort=True)
        >>> codes.tolist(), list(uniques)
        ([1, 0, -1, 1], ['a', 'b'])
    """
    values = values if isinstance(values, (np.ndarray, pd.Series, pd.Index)) \
        else np.asarray(values, dtype=object)
    n = len(values)
    if n <= chunk_rows:
        codes, uniques = pd.factorize(values, sort=sort)
        return codes.astype(_code_dtype(n), copy=False), np.asarray(uniques)
    index: dict = {}
    seen: list = []
    codes = np.empty(n, _code_dtype(n))
    for start in range(0, n, chunk_rows):
        local, found = pd.factorize(values[start:start + chunk_rows])
        mapping = np.empty(len(found) + 1, np.int64)
        mapping[-1] = -1  # local code -1 (missing) stays -1
        for i, value in enumerate(np.asarray(found)):
            code = index.get(value)
            if code is None:
                code = index[value] = len(seen)
                seen.append(value)
            mapping[i] = code
        codes[start:start + len(local)] = mapping[local]
    uniques = np.asarray(pd.Index(seen).to_numpy())
    if sort and len(seen):
        rank, uniques = pd.factorize(uniques, sort=True)
        remap = np.append(rank, -1).astype(codes.dtype)
        codes = remap[codes]
        uniques = np.asarray(uniques)
    return codes, uniques


def _code_dtype(n: int) -> type:
    return np.int32 if n < 2**31 else np.int64  # n values have fewer than n distinct ones
