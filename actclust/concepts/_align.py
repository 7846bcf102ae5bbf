"""Aligning groups of rows (clusters, features) with every label column; the summary."""

from __future__ import annotations

import numbers
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from .._util.schema import RESULT_COLUMNS
from ..errors import ActclustError

# Columns of a store's rows that describe where a row comes from, not what it is.
NOT_LABELS = frozenset({"row", "doc_id", "position", "token", "token_id", "text"})
# Values that say "this label does not apply here" (ConceptX: labels ending in _UNK, and
# "O" of named entities and chunks): compared case-blind, besides missing values.
UNKNOWN_VALUES = ("none", "unknown", "unk", "n/a", "")
MAX_VALUES = 100
ANY_LABEL = "any"  # the label of the summary row "aligned with any label"

ALIGN_COLUMNS = ["group", "size", "label", "value", "count", "known", "precision", "recall",
                 "f1", "unknown_share", "aligned", "covered_rows", "covered_rows_any",
                 "n_rows"]


class Groups:
    """Groups of rows as flat arrays: ``ids`` (one per group), and per membership the
    ``rows`` index and the ``owner`` (position in ``ids``); ``partition`` when every row
    is in at most one group."""

    def __init__(self, groups, n_rows: int):
        self.n_rows = n_rows
        if isinstance(groups, pd.Series):
            groups = groups.to_numpy()
        if isinstance(groups, dict):
            ids, lists = list(groups), list(groups.values())
        elif _is_id_array(groups):
            self._from_ids(np.asarray(groups))
            return
        elif isinstance(groups, (list, tuple)) or \
                isinstance(groups, np.ndarray) and groups.dtype == object:
            ids, lists = list(range(len(groups))), list(groups)  # ragged: one array a group
        else:
            raise ActclustError(f"groups must be a cluster id per row or a list/dict of "
                                f"row-index arrays, got {type(groups).__name__}")
        members = [self._indices(g, key) for key, g in zip(ids, lists)]
        self.ids = ids
        self.sizes = np.array([len(m) for m in members], np.int64)
        self.rows = np.concatenate(members) if members else np.zeros(0, np.int64)
        self.owner = np.repeat(np.arange(len(ids)), self.sizes)
        self.partition = len(np.unique(self.rows)) == len(self.rows)

    def _from_ids(self, ids: np.ndarray):
        if len(ids) != self.n_rows:
            raise ActclustError(f"groups has {len(ids)} cluster ids but there are "
                                f"{self.n_rows} rows; give one id per row")
        ids = ids.astype(np.int64)
        self.rows = np.flatnonzero(ids >= 0)  # a negative id: the row is in no group
        unique, self.owner = np.unique(ids[self.rows], return_inverse=True)
        self.ids = unique.tolist()
        self.sizes = np.bincount(self.owner, minlength=len(unique)).astype(np.int64)
        self.partition = True

    def _indices(self, members, key) -> np.ndarray:
        arr = np.asarray(members)
        if arr.dtype == bool:
            if arr.shape != (self.n_rows,):
                raise ActclustError(f"group {key!r} is a mask of {arr.shape} for "
                                    f"{self.n_rows} rows")
            return np.flatnonzero(arr)
        if arr.size == 0:
            return np.zeros(0, np.int64)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ActclustError(f"group {key!r} must be a 1-D array of row indices")
        if arr.min() < 0 or arr.max() >= self.n_rows:
            raise ActclustError(f"group {key!r} has a row index outside 0..{self.n_rows - 1}")
        return np.unique(arr.astype(np.int64))

    def members(self, g: int) -> np.ndarray:
        """Row indices of the group at position ``g``."""
        if not hasattr(self, "_starts"):
            order = np.argsort(self.owner, kind="stable")
            self._sorted = self.rows[order]
            self._starts = np.concatenate([[0], np.cumsum(self.sizes)])
        return self._sorted[self._starts[g]:self._starts[g + 1]]


def _is_id_array(groups) -> bool:
    if isinstance(groups, np.ndarray):
        return groups.ndim == 1 and (np.issubdtype(groups.dtype, np.integer) or groups.size == 0)
    if isinstance(groups, (list, tuple)):
        return len(groups) > 0 and all(isinstance(g, numbers.Integral) and
                                       not isinstance(g, bool) for g in groups)
    return False


def choose_label_columns(rows: pd.DataFrame, max_values: int = MAX_VALUES) -> list[str]:
    """The columns of ``rows`` that :func:`align` uses when none are named.

    The rule: a column is a label when it is not one that locates a row (``row``,
    ``doc_id``, ``position``, ``token``, ``token_id``, ``text``), holds text, categories,
    booleans or whole numbers (not measurements), has a known value, and has 2 to
    ``max_values`` (100) distinct values, all unknown ones counting as one (so free text
    and per-row ids are left out, and a column such as ``animal``/``none`` is kept).

    Example:
        >>> rows = pd.DataFrame({"doc_id": [0, 0, 1], "token": ["a", "b", "c"],
        ...                      "pos": ["DET", "NOUN", "NOUN"], "score": [0.1, 0.5, 0.2],
        ...                      "constant": ["x", "x", "x"]})
        >>> choose_label_columns(rows)
        ['pos']
    """
    chosen = []
    for column in rows.columns:
        if column in NOT_LABELS:
            continue
        values = rows[column]
        if pd.api.types.is_float_dtype(values) and not _whole(values):
            continue
        unknown = unknown_mask(values)
        try:
            n = values[~unknown].nunique() + bool(unknown.any())
        except TypeError:  # lists or arrays in the cells: not one label per row
            continue
        if 2 <= n <= max_values and not unknown.all():
            chosen.append(column)
    return chosen


def _whole(values: pd.Series) -> bool:
    v = values.dropna().to_numpy()
    return bool(len(v)) and bool(np.all(v == np.round(v)))


def unknown_mask(values, unknown: Sequence = UNKNOWN_VALUES) -> np.ndarray:
    """True where a label value is unknown: missing, one of ``unknown`` (text compared
    case-blind), or text ending in ``_UNK`` as ConceptX's label files write it.

    Example:
        >>> unknown_mask(pd.Series(["NOUN", None, "none", "O_UNK", "VERB"])).tolist()
        [False, True, True, True, False]
    """
    values = pd.Series(values)
    mask = values.isna().to_numpy(copy=True)
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        text = values.astype(str).str.lower()
        lowered = {str(u).lower() for u in unknown}
        mask |= (text.isin(lowered) | text.str.endswith("_unk")).to_numpy(dtype=bool)
    return mask


def _check_share(value, name: str, low_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not (0 < value <= 1 if low_open else 0 <= value <= 1):
        raise ActclustError(f"{name} must be a share in {'(0, 1]' if low_open else '[0, 1]'}"
                            f", got {value!r}")
    return float(value)


def align(groups, rows: pd.DataFrame, label_columns: Optional[Sequence[str]] = None, *,
          theta: float = 0.9, max_unknown: float = 0.4,
          unknown: Sequence = UNKNOWN_VALUES) -> pd.DataFrame:
    """How well each group of rows matches each label: one row per (group, label).

    For every group and label column, the group's most common known value (``value``,
    ties to the first in sorted order) and its ``count`` in the group;
    ``precision`` = count / the group's rows with a known value (``known``);
    ``recall`` = count / all rows carrying that value; ``f1``; ``unknown_share`` = the
    group's rows with an unknown value / its ``size``. The group is ``aligned`` with the
    label when ``precision >= theta`` and ``unknown_share <= max_unknown`` (ConceptX's
    rule: a concept is a cluster whose rows share one label, judged only where enough of
    its rows are labelled). ``covered_rows`` counts the rows an aligned group adds to
    those covered by earlier aligned groups of the same label (its size, for a partition),
    ``covered_rows_any`` the same for groups aligned with any label, so that
    :func:`summarise` gets exact row coverage from the table alone.

    Args:
        groups: a cluster id per row (a negative id: in no group), or a list or dict of
            row-index arrays (or boolean masks), which may overlap or leave rows out (a
            feature's top-activating rows).
        rows: a DataFrame of the rows' label columns, in row order (of a store:
            ``store.rows[columns]``, only the columns aligned with).
        label_columns: the columns to align with; default :func:`choose_label_columns`.
        theta: the precision a group needs to be aligned (0.9, as ConceptX).
        max_unknown: the largest unknown share an aligned group may have (0.4, as
            ConceptX).
        unknown: label values that mean "does not apply" (see :func:`unknown_mask`).

    Example:
        >>> rows = pd.DataFrame({"pos": ["NOUN"] * 5 + ["VERB", "NOUN", "VERB", "DET", "DET"]})
        >>> t = align([0, 0, 0, 0, 0, 1, 1, 1, 1, 1], rows)
        >>> t[["group", "value", "precision", "aligned"]].values.tolist()
        [[0, 'NOUN', 1.0, True], [1, 'DET', 0.4, False]]
    """
    theta = _check_share(theta, "theta", low_open=True)
    max_unknown = _check_share(max_unknown, "max_unknown", low_open=False)
    if not isinstance(rows, pd.DataFrame):
        raise ActclustError(f"rows must be a DataFrame of label columns (store.rows[columns]), "
                            f"got {type(rows).__name__}")
    columns = choose_label_columns(rows) if label_columns is None else \
        [label_columns] if isinstance(label_columns, str) else list(label_columns)
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise ActclustError(f"label column {missing[0]!r} is not in the rows; columns: "
                            f"{', '.join(map(str, rows.columns))}")
    if not columns:
        raise ActclustError("no label columns to align with: name them (labels=...)")
    g = Groups(groups, len(rows))
    covered_any = np.zeros(len(g.ids), bool)
    parts = []
    for li, column in enumerate(columns):
        part = _align_one(g, rows[column], theta, max_unknown, unknown)
        part.insert(2, "label", column)
        part["_order"] = np.arange(len(part)) * len(columns) + li
        covered_any |= part["aligned"].to_numpy()
        parts.append(part)
    table = pd.concat(parts, ignore_index=True).sort_values("_order", kind="stable")
    new_any = _new_rows(g, covered_any)
    table["covered_rows_any"] = new_any[table["_order"].to_numpy() // len(columns)]
    table["n_rows"] = len(rows)
    table = table.drop(columns="_order").reset_index(drop=True)
    table.attrs.update(theta=theta, max_unknown=max_unknown)
    return table[ALIGN_COLUMNS]


def _align_one(g: Groups, values: pd.Series, theta, max_unknown, unknown) -> pd.DataFrame:
    unknown_rows = unknown_mask(values, unknown)
    known_values = pd.Series(values.to_numpy(), dtype=object)[~unknown_rows]
    codes = np.full(len(values), -1, np.int64)
    try:
        found, uniques = pd.factorize(known_values, sort=True)
    except TypeError:  # values of mixed types do not sort: first-seen order
        found, uniques = pd.factorize(known_values)
    codes[~unknown_rows] = found
    n_values, n_groups = len(uniques), len(g.ids)
    member_codes = codes[g.rows]
    known = member_codes >= 0
    n_known = np.bincount(g.owner[known], minlength=n_groups)
    counts = np.bincount(g.owner[known] * max(n_values, 1) + member_codes[known],
                         minlength=n_groups * max(n_values, 1)).reshape(n_groups, -1)
    best = counts.argmax(1)
    count = counts[np.arange(n_groups), best]
    totals = np.bincount(codes[codes >= 0], minlength=max(n_values, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(n_known > 0, count / np.maximum(n_known, 1), np.nan)
        recall = np.where(n_known > 0, count / np.maximum(totals[best], 1), np.nan)
        f1 = np.where(precision + recall > 0,
                      2 * precision * recall / (precision + recall), 0.0)
        f1 = np.where(n_known > 0, f1, np.nan)
        unknown_share = np.where(g.sizes > 0, (g.sizes - n_known) / np.maximum(g.sizes, 1),
                                 np.nan)
    aligned = (n_known > 0) & (precision >= theta) & (unknown_share <= max_unknown)
    value = [str(uniques[b]) if k else None for b, k in zip(best, n_known > 0)]
    return pd.DataFrame({
        "group": g.ids, "size": g.sizes, "value": value, "count": count, "known": n_known,
        "precision": precision, "recall": recall, "f1": f1, "unknown_share": unknown_share,
        "aligned": aligned, "covered_rows": _new_rows(g, aligned)})


def _new_rows(g: Groups, aligned: np.ndarray) -> np.ndarray:
    """Per group: rows it adds to the union of the aligned groups before it (0 if it is
    not aligned)."""
    if g.partition:
        return np.where(aligned, g.sizes, 0)
    covered = np.zeros(g.n_rows, bool)
    new = np.zeros(len(g.ids), np.int64)
    for i in np.flatnonzero(aligned):
        rows = g.members(i)
        new[i] = int((~covered[rows]).sum())
        covered[rows] = True
    return new


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per label column (and ``any``: aligned with any label): how many groups there are
    (with at least one row), how many are aligned, their share (``aligned_share``), the
    share of all rows that aligned groups cover (``row_coverage``), and how many distinct
    values the aligned groups stand for (``values_found``). Tables of several layers or
    methods (columns ``layer``, ``method``, ``seed``) are summarised per layer and method.

    Example:
        >>> rows = pd.DataFrame({"pos": ["NOUN"] * 5 + ["VERB", "NOUN", "VERB", "DET", "DET"]})
        >>> s = summarise(align([0] * 5 + [1] * 5, rows))
        >>> s[["label", "groups", "aligned", "aligned_share", "row_coverage"]].values.tolist()
        [['pos', 2, 1, 0.5, 0.5], ['any', 2, 1, 0.5, 0.5]]
    """
    missing = [c for c in ALIGN_COLUMNS if c not in table.columns]
    if missing:
        raise ActclustError(f"not an alignment table: it lacks {', '.join(missing)}; "
                            "make one with actclust.concepts.align")
    keys = [c for c in ("layer", "method", "k", "seed") if c in table.columns]
    records = []
    for key, part in (table.groupby(keys, sort=False) if keys else [((), table)]):
        key = key if isinstance(key, tuple) else (key,)
        part = part[part["size"] > 0]
        n_rows = int(part["n_rows"].iloc[0]) if len(part) else 0
        for label, sub in part.groupby("label", sort=False):
            records.append(_summary_row(keys, key, label, sub["group"].nunique(),
                                        int(sub["aligned"].sum()),
                                        sub["covered_rows"].sum(), n_rows,
                                        sub.loc[sub["aligned"], "value"].nunique()))
        any_aligned = part.groupby("group", sort=False)["aligned"].any()
        covered = part.groupby("group", sort=False)["covered_rows_any"].first().sum()
        records.append(_summary_row(keys, key, ANY_LABEL, len(any_aligned),
                                    int(any_aligned.sum()), covered, n_rows,
                                    part.loc[part["aligned"], ["label", "value"]]
                                    .drop_duplicates().shape[0]))
    return pd.DataFrame.from_records(records, columns=keys + [
        "label", "groups", "aligned", "aligned_share", "row_coverage", "values_found"])


def _summary_row(keys, key, label, groups, aligned, covered, n_rows, values) -> dict:
    return {**dict(zip(keys, key)), "label": label, "groups": int(groups),
            "aligned": aligned, "aligned_share": aligned / groups if groups else float("nan"),
            "row_coverage": float(covered) / n_rows if n_rows else float("nan"),
            "values_found": int(values)}


def to_results(summary: pd.DataFrame, layer: Optional[str] = None,
               method: Optional[str] = None, seed: int = 0) -> pd.DataFrame:
    """The summary as rows of the tidy results table (``layer, method, label, metric,
    seed, value``), beside what :func:`actclust.compare.compare` writes: per label (and
    ``any``) ``concepts_aligned_share``, ``concepts_row_coverage``, ``concepts_aligned``
    and ``concepts_groups``. ``layer``, ``method`` and ``seed`` come from the summary's
    columns when it has them.

    Example:
        >>> s = pd.DataFrame({"label": ["pos"], "groups": [4], "aligned": [1],
        ...                   "aligned_share": [0.25], "row_coverage": [0.1],
        ...                   "values_found": [1]})
        >>> to_results(s, "blocks.0.hook_out", "kmeans(n_clusters=4)")[["metric", "value"]
        ...                                                            ].values.tolist()[:2]
        [['concepts_aligned_share', 0.25], ['concepts_row_coverage', 0.1]]
    """
    metrics = {"concepts_aligned_share": "aligned_share",
               "concepts_row_coverage": "row_coverage",
               "concepts_aligned": "aligned", "concepts_groups": "groups"}
    records = []
    for row in summary.to_dict("records"):
        where = {"layer": row.get("layer", layer), "method": row.get("method", method),
                 "label": row["label"], "seed": int(row.get("seed", seed))}
        if where["layer"] is None or where["method"] is None:
            raise ActclustError("to_results needs the layer and the method: pass them, or "
                                "summarise a table from concept_table")
        records += [{**where, "metric": metric, "value": float(row[column])}
                    for metric, column in metrics.items()]
    return pd.DataFrame.from_records(records, columns=RESULT_COLUMNS)
