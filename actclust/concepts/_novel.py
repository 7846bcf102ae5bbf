"""Groups that no label explains: label-free coherence, and their rows shown in context."""

from __future__ import annotations

import warnings
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from .._util.tokens import token_offsets
from ..errors import ActclustError
from ._align import Groups

CHUNK_ROWS = 8192
SEPARABILITY_ROWS = 128  # rows of the group (and as many of the rest) a probe sees
MIN_SIZE = 10  # smaller groups are too small to probe or to call a feature
MARK = ("«", "»")


def _as_rows(X):
    """An array, a torch tensor or a store layer, read lazily by index."""
    if hasattr(X, "iter_batches") and hasattr(X, "shape"):
        return X  # a store layer: indexing reads only the rows asked for
    if hasattr(X, "detach"):
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim != 2:
        raise ActclustError(f"X must be 2-D (rows x features), got shape {X.shape}")
    return X


def _read(X, rows: np.ndarray) -> np.ndarray:
    return np.asarray(X[np.sort(rows)], dtype=np.float64)


def _total_variance(X) -> float:
    """Mean squared distance of the rows to their mean (unbiased), in one streamed pass."""
    n = X.shape[0]
    total, sq = np.zeros(X.shape[1]), 0.0
    for start in range(0, n, CHUNK_ROWS * 4):
        block = np.asarray(X[start:start + CHUNK_ROWS * 4], dtype=np.float64)
        total += block.sum(0)
        sq += float(np.einsum("ij,ij->", block, block))
    return (sq - float(total @ total) / n) / max(n - 1, 1)


def _moments(X, rows: np.ndarray):
    """Centroid and unbiased mean squared distance to it, reading ``rows`` in chunks."""
    total, sq = np.zeros(X.shape[1]), 0.0
    for start in range(0, len(rows), CHUNK_ROWS):
        block = _read(X, rows[start:start + CHUNK_ROWS])
        total += block.sum(0)
        sq += float(np.einsum("ij,ij->", block, block))
    m = len(rows)
    centroid = total / m
    return centroid, (sq - m * float(centroid @ centroid)) / max(m - 1, 1)


def _rest_sample(rows: np.ndarray, n_rows: int, size: int, rng) -> np.ndarray:
    """``size`` distinct rows drawn uniformly from those not in ``rows``."""
    outside = n_rows - len(rows)
    size = min(size, outside)
    if size <= 0:
        return np.zeros(0, np.int64)
    inside = np.zeros(n_rows, bool)
    inside[rows] = True
    if outside < 4 * size:  # few rows outside: list them
        return rng.choice(np.flatnonzero(~inside), size, replace=False)
    picked = np.zeros(0, np.int64)
    while len(picked) < size:  # rejection: cheap when most rows are outside
        draw = rng.integers(0, n_rows, 2 * size)
        picked = np.unique(np.concatenate([picked, draw[~inside[draw]]]))
    return rng.permutation(picked)[:size]


def _separability(inside: np.ndarray, outside: np.ndarray, seed: int, cv: int) -> float:
    """Cross-validated balanced accuracy of a logistic regression telling the two apart."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.r_[np.ones(len(inside), int), np.zeros(len(outside), int)]
    folds = min(cv, len(inside), len(outside))
    if folds < 2:
        return float("nan")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=200))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*failed to converge.*")
        predicted = cross_val_predict(probe, np.vstack([inside, outside]), y,
                                      cv=StratifiedKFold(folds, shuffle=True,
                                                         random_state=seed))
    return float(balanced_accuracy_score(y, predicted))


def coherence(X, groups, which: Optional[Sequence[int]] = None, *, seed: int = 0,
              max_rows: int = SEPARABILITY_ROWS, cv: int = 3) -> pd.DataFrame:
    """Label-free coherence of groups of rows: how tight, and how linearly separable.

    ``tightness`` = 1 - (the group's mean squared distance to its centroid) / (the layer's
    mean squared distance to its mean), both unbiased: the share of the layer's spread
    that the group does not have. A random sample of rows scores about 0 whatever its
    size, identical rows 1. It is measured in the euclidean geometry k-means clusters in,
    and it is not fooled by the common direction that makes every pair of transformer
    activations look alike by cosine (a random group's mean cosine to its centroid is
    high there too). It needs only the group's own rows, so it also scores groups that
    overlap or leave rows out (a silhouette needs the nearest other group).

    ``separability`` = the cross-validated (``cv`` folds) balanced accuracy of a logistic
    regression (standardised inputs, C = 0.1) telling up to ``max_rows`` of the group's
    rows from as many rows drawn from the rest: 0.5 for a random group, 1 for a group a
    hyperplane cuts off. k-means cells are convex, so they score high; it separates
    groups of other kinds (features' top rows, groups given by hand).

    ``coherence`` = the mean of the two on one scale, 0 at chance and 1 at best:
    ``(clip(tightness, 0, 1) + clip(2 * separability - 1, 0, 1)) / 2``.

    Args:
        X: the layer: an array, a tensor or a store layer (only the groups' rows and one
            streamed pass are read).
        groups: as :func:`~actclust.concepts.align` takes them.
        which: positions of the groups to score (default all).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(400, 8))
        >>> X[:40] = rng.normal(size=(40, 8)) * 0.1 + 4   # a tight, separate group
        >>> c = coherence(X, [np.arange(40), rng.choice(400, 40, replace=False)])
        >>> c["coherence"].round(1).tolist()  # the planted group, a random one
        [1.0, 0.1]
    """
    X = _as_rows(X)
    g = groups if isinstance(groups, Groups) else Groups(groups, X.shape[0])
    if g.n_rows != X.shape[0]:
        raise ActclustError(f"the groups describe {g.n_rows} rows, X has {X.shape[0]}")
    which = range(len(g.ids)) if which is None else which
    total = _total_variance(X)
    rng = np.random.default_rng(seed)
    records = []
    for i in which:
        rows = g.members(i)
        tight = sep = float("nan")
        if len(rows) >= 2:
            _, within = _moments(X, rows)
            tight = 1 - within / total if total > 0 else float("nan")
            inside = rows if len(rows) <= max_rows else rng.choice(rows, max_rows,
                                                                   replace=False)
            outside = _rest_sample(rows, g.n_rows, len(inside), rng)
            sep = _separability(_read(X, inside), _read(X, outside), seed, cv)
        score = (np.clip(tight, 0, 1) + np.clip(2 * sep - 1, 0, 1)) / 2
        records.append({"group": g.ids[i], "size": len(rows), "tightness": tight,
                        "separability": sep, "coherence": float(score)})
    return pd.DataFrame.from_records(
        records, columns=["group", "size", "tightness", "separability", "coherence"])


def nearest_to_centroid(X, rows: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` of ``rows`` closest to their centroid, closest first."""
    X = _as_rows(X)
    centroid, _ = _moments(X, rows)
    sorted_rows = np.sort(rows)
    distances = np.concatenate([
        ((_read(X, sorted_rows[s:s + CHUNK_ROWS]) - centroid) ** 2).sum(1)
        for s in range(0, len(sorted_rows), CHUNK_ROWS)]) if len(rows) else np.zeros(0)
    return sorted_rows[np.argsort(distances, kind="stable")[:n]]


def in_context(text: str, tokens: Sequence[str], index: int, window: int = 80) -> str:
    """``text`` with token ``index`` of ``tokens`` marked «so», cut to ``window``
    characters each side. A token not found in the text (a special token) is shown at
    its place between the tokens around it.

    Example:
        >>> in_context("Kenji slept.", ["[CLS]", "ken", "##ji", "slept", ".", "[SEP]"], 3)
        'Kenji «slept».'
        >>> in_context("Kenji slept.", ["[CLS]", "ken", "##ji", "slept", ".", "[SEP]"], 5)
        'Kenji slept. «[SEP]»'
    """
    spans = token_offsets(text, tokens)
    start, end = spans[index]
    if start < 0:  # after the last token before it that was found
        start = end = max([b for a, b in spans[:index] if a >= 0], default=0)
        mark = f"{MARK[0]}{tokens[index]}{MARK[1]}"
        mark = (" " if start > 0 else "") + mark + (" " if start == 0 and text else "")
    else:
        mark = f"{MARK[0]}{text[start:end]}{MARK[1]}"
    lo, hi = max(0, start - window), min(len(text), end + window)
    return ("…" if lo else "") + text[lo:start] + mark + text[end:hi] + \
        ("…" if hi < len(text) else "")


def examples(rows, index: Sequence[int], window: int = 80) -> list[str]:
    """How each of the rows ``index`` reads: for token rows, the document's text with the
    token marked «so»; for rows of whole documents, the text; else the row number.

    ``rows`` is ``store.rows`` (or a DataFrame of the joined table); only the rows asked
    for, and the tokens of their documents, are read.

    Example:
        >>> rows = pd.DataFrame({"doc_id": [7, 7, 7], "position": [0, 1, 2],
        ...                      "token": ["the", "cat", "."], "text": ["The cat."] * 3})
        >>> examples(rows, [1])
        ['The «cat».']
    """
    from ..store.row_table import row_access

    rows = row_access(rows)
    index = np.asarray(index, dtype=np.int64).ravel()
    columns = list(rows.columns)
    tokens = "token" in columns and "doc_id" in columns
    has_text = "text" in columns
    shown = rows.take(index, columns=[c for c in ("doc_id", "token", "text") if c in columns])
    documents = {}
    if tokens and has_text and len(index):
        located = [c for c in ("doc_id", "position", "token") if c in columns]
        context = rows.take(rows.document_rows(index), columns=located)
        for doc, mine in context.groupby("doc_id", sort=False):  # each in row order
            if "position" in columns:
                mine = mine.iloc[np.argsort(mine["position"].to_numpy(), kind="stable")]
            documents[doc] = mine
    out = []
    for i, rec in zip(index.tolist(), shown.to_dict("records")):
        text = str(rec["text"]) if has_text else None
        if tokens and text is not None:
            mine = documents[rec["doc_id"]]
            where = int(np.flatnonzero(mine.index.to_numpy() == i)[0])
            out.append(in_context(text, mine["token"].tolist(), where, window))
        elif tokens:
            out.append(f"{MARK[0]}{rec['token']}{MARK[1]}")
        elif text is not None:
            out.append(text if len(text) <= 2 * window else text[:2 * window] + "…")
        else:
            out.append(f"row {i}")
    return out


def novel_candidates(X, groups, table: pd.DataFrame, rows=None, *,
                     n: int = 20, n_examples: int = 5, min_size: int = MIN_SIZE,
                     seed: int = 0, row_numbers: Optional[np.ndarray] = None) -> pd.DataFrame:
    """Groups aligned with no label, best first by :func:`coherence`, with examples.

    A group is a candidate when the alignment ``table`` (from
    :func:`~actclust.concepts.align` on the same ``groups``) aligns it with no label and
    it has at least ``min_size`` rows. Every candidate is scored and ranked (``rank`` 1
    first); the ``n`` first get the ``n_examples`` rows nearest their centroid
    (``example_rows``) and, given ``rows`` (``store.rows``), how those rows read
    (``examples``, see :func:`examples`); the others get empty lists. When ``X`` holds a
    sample of the store's rows, ``row_numbers`` gives the store row of each of its rows,
    and ``example_rows`` are store rows.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(300, 6)); X[:30] += 5
        >>> rows = pd.DataFrame({"pos": rng.choice(["NOUN", "VERB"], 300)})
        >>> clusters = np.r_[np.zeros(30, int), rng.integers(1, 3, 270)]
        >>> from actclust.concepts import align
        >>> novel = novel_candidates(X, clusters, align(clusters, rows))
        >>> novel[["rank", "group", "size"]].values.tolist()[0]
        [1, 0, 30]
    """
    X = _as_rows(X)
    g = Groups(groups, X.shape[0])
    if "group" not in table.columns or "aligned" not in table.columns:
        raise ActclustError("table must be an alignment table (actclust.concepts.align)")
    aligned = table.groupby("group", sort=False)["aligned"].any()
    position = {gid: i for i, gid in enumerate(g.ids)}
    which = [position[gid] for gid in g.ids
             if not aligned.get(gid, False) and g.sizes[position[gid]] >= min_size]
    scores = coherence(X, g, which, seed=seed)
    scores = scores.sort_values(["coherence", "size"], ascending=False, kind="stable",
                                na_position="last").reset_index(drop=True)
    scores.insert(0, "rank", np.arange(1, len(scores) + 1))
    near = [nearest_to_centroid(X, g.members(position[gid]), n_examples) if r < n
            else np.zeros(0, np.int64) for r, gid in enumerate(scores["group"])]
    if row_numbers is not None:
        near = [np.asarray(row_numbers)[r] for r in near]
    scores["example_rows"] = [r.tolist() for r in near]
    if rows is not None:  # one read for all of them, then split per candidate
        texts = examples(rows, np.concatenate(near)) if near else []
        ends = np.cumsum([len(r) for r in near])
        scores["examples"] = [texts[end - len(r):end] for r, end in zip(near, ends)]
    return scores
