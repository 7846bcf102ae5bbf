"""Shared pieces of the figures: input checks, palettes, and hover text for store rows."""

from __future__ import annotations

import html
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from .._util.tokens import piece as _piece  # noqa: F401  (the dashboard's too)
from .._util.tokens import token_offsets  # noqa: F401  (public here for tests)
from ..errors import ActclustError

# Plotly's qualitative sets back to back: distinct hues for up to 20 categories.
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#e7ba52", "#637939", "#ad494a",
    "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363",
]
OTHER_COLOUR = "#c7c7c7"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


def colour(i: int) -> str:
    """The palette colour of category ``i`` (cycling past 20).

    Example:
        >>> colour(0), colour(20)
        ('#1f77b4', '#1f77b4')
    """
    return PALETTE[i % len(PALETTE)]


def rgba(hex_colour: str, alpha: float) -> str:
    """``'#1f77b4'`` -> ``'rgba(31,119,180,0.2)'``.

    Example:
        >>> rgba("#1f77b4", 0.2)
        'rgba(31,119,180,0.2)'
    """
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha:g})"


def base_layout(fig, title: str, subtitle: str | None = None, height: int | None = None):
    """The house style: white background, readable fonts, a title and an optional subtitle."""
    title_spec = {"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 17}}
    if subtitle:
        title_spec["subtitle"] = {"text": subtitle, "font": {"size": 12, "color": "#555"}}
    fig.update_layout(
        template="plotly_white", title=title_spec, font={"family": FONT, "size": 13},
        hoverlabel={"font": {"family": FONT, "size": 12}, "align": "left",
                    "bgcolor": "white", "bordercolor": "#888"},
        margin={"l": 60, "r": 30, "t": 90 if subtitle else 60, "b": 60})
    if height:
        fig.update_layout(height=height)
    return fig


def cluster_labels(clusters, n_rows: int, what: str = "clusters") -> np.ndarray:
    """Cluster ids from a fitted reporter (``labels_``) or an array, checked for length."""
    if hasattr(clusters, "get_params") and not isinstance(clusters, np.ndarray):
        if not hasattr(clusters, "labels_"):
            raise ActclustError(f"{type(clusters).__name__} is not fitted (it has no "
                                "labels_): fit it on the layer first, or pass cluster ids")
        clusters = clusters.labels_
    if hasattr(clusters, "detach"):  # a torch tensor
        clusters = clusters.detach().cpu().numpy()
    clusters = np.asarray(clusters)
    if clusters.ndim != 1 or len(clusters) != n_rows:
        raise ActclustError(f"{what} have shape {clusters.shape} but the layer has {n_rows} "
                            f"rows: give one cluster id per row, from a reporter fitted on "
                            "this whole layer")
    return clusters


def n_distinct(values) -> int:
    """Distinct known values of a column (as ``Series.nunique``), hashing the values as
    they are: a store's text columns share one string per value, so this is cheap.

    Example:
        >>> n_distinct(np.array(["a", "b", None, "a"], dtype=object))
        2
    """
    values = np.asarray(values)
    return int(len(pd.unique(values[np.asarray(pd.notna(values))])))


def category_names(values: np.ndarray, max_categories: int) -> tuple[np.ndarray, list]:
    """Values as strings, with all but the ``max_categories - 1`` commonest lumped as
    ``other``; returns the per-row names and the legend order (commonest... then other).

    Example:
        >>> names, order = category_names(np.array(["a", "b", "a", "c"]), 2)
        >>> names.tolist(), order
        (['a', 'other', 'a', 'other'], ['a', 'other'])
    """
    text = pd.Series(values).astype(object).where(pd.notna(values), "(missing)").astype(str)
    counts = text.value_counts(sort=True)
    keep = list(counts.index)
    if len(keep) > max_categories:
        keep = keep[:max_categories - 1]
        text = text.where(text.isin(keep), "other")
        return text.to_numpy(), _natural(keep) + ["other"]
    return text.to_numpy(), _natural(keep)


def _natural(names: list) -> list:
    """Numbers in numeric order ('2' before '10'), then text."""
    def key(s):
        try:
            return (0, float(s), "")
        except ValueError:
            return (1, 0.0, s)
    return sorted(names, key=key)


def check_results(results) -> pd.DataFrame:
    """The tidy results table from a DataFrame or a parquet path, with its columns checked."""
    from .._util.schema import RESULT_COLUMNS

    if isinstance(results, (str, Path)):
        path = Path(results)
        if not path.exists():
            raise ActclustError(f"results file {path} does not exist; write one with "
                                "`actclust compare STORE --labels COL --out results.parquet`")
        try:
            results = pd.read_parquet(path)
        except Exception as err:  # any parquet failure means an unreadable file
            raise ActclustError(f"results file {path} is not a readable parquet table "
                                f"({err})") from None
    if not isinstance(results, pd.DataFrame):
        raise ActclustError(f"results must be a DataFrame or a parquet path, got "
                            f"{type(results).__name__}")
    missing = [c for c in RESULT_COLUMNS if c not in results.columns]
    if missing:
        raise ActclustError(f"results lack the columns {', '.join(missing)}; expected the "
                            f"tidy table of actclust.compare ({', '.join(RESULT_COLUMNS)})")
    if results.empty:
        raise ActclustError("results are empty: nothing to plot")
    _check_result_types(results)
    return results


def _check_result_types(results: pd.DataFrame) -> None:
    """Text where the table has names and numbers where it has numbers: a table of the
    right columns but other contents would otherwise fail deep inside a figure."""
    for column in ("layer", "method", "label", "metric"):
        values = results[column].dropna() if column == "label" else results[column]
        if not all(isinstance(v, str) for v in values):
            bad = next(v for v in values if not isinstance(v, str))
            raise ActclustError(f"results column {column!r} holds {type(bad).__name__} "
                                f"values ({bad!r}); expected text, as actclust.compare writes")
    for column in ("seed", "value"):
        if not pd.api.types.is_numeric_dtype(results[column]) or \
                pd.api.types.is_bool_dtype(results[column]):
            raise ActclustError(f"results column {column!r} is {results[column].dtype}, not "
                                "numbers; expected the table actclust.compare writes")


# ---------------------------------------------------------------- hover text of rows


def _wrap_marked(context: str, width: int = 64) -> str:
    """Wrap text holding \\x01token\\x02 markers, escape it, then bold the marked part."""
    lines = textwrap.wrap(context, width=width, break_long_words=True) or [""]
    out = html.escape("\n".join(lines))
    return out.replace("\x01", "<b>").replace("\x02", "</b>").replace("\n", "<br>")


def token_context(text: str, span: tuple[int, int], token: str, window: int = 70) -> str:
    """Hover-ready HTML: the token in bold inside up to ``window`` characters each side.

    Example:
        >>> token_context("The cat sat on the mat.", (4, 7), "cat")
        'The <b>cat</b> sat on the mat.'
    """
    start, end = span
    if start < 0:
        head = text[:2 * window]
        return _wrap_marked(f"\x01{token}\x02 " + head + ("…" if len(text) > 2 * window else ""))
    lo, hi = max(0, start - window), min(len(text), end + window)
    left = ("…" if lo > 0 else "") + text[lo:start]
    right = text[end:hi] + ("…" if hi < len(text) else "")
    return _wrap_marked(left + "\x01" + text[start:end] + "\x02" + right)


def row_hover(rows, index: np.ndarray, label_columns: list[str],
              extra: dict | None = None) -> np.ndarray:
    """One hover text per selected row: its context (token in bold) and its labels.

    ``rows`` is ``store.rows`` (or a DataFrame of the whole joined table); ``index``
    selects the rows to describe; ``extra`` maps a name to an array (aligned with
    ``index``) shown first, such as the cluster. Only the selected rows are read with their
    documents' text, and for token rows the tokens (not the text) of those documents, to
    find where each token sits in its text.
    """
    from ..store.row_table import row_access

    rows = row_access(rows)
    index = np.asarray(index, dtype=np.int64)
    columns = list(rows.columns)
    wanted = [c for c in columns if c in ("doc_id", "position", "token", "text")
              or c in label_columns]
    sub = rows.take(index, columns=wanted)
    has_tokens = "token" in columns and "position" in columns
    spans = {}
    if has_tokens and len(index):
        # Offsets are found per document, over all its tokens, then looked up per row.
        texts = dict(zip(sub["doc_id"], sub["text"])) if "text" in columns else {}
        context = rows.take(rows.document_rows(index), columns=["doc_id", "token"])
        for doc, group in context.groupby("doc_id", sort=False):
            text = texts.get(doc, "")
            for row, span in zip(group.index, token_offsets(str(text), group["token"])):
                spans[row] = span
    out = []
    extra = extra or {}
    for i, (row_id, rec) in enumerate(zip(index.tolist(), sub.to_dict("records"))):
        if has_tokens:
            body = token_context(str(rec.get("text", "")), spans.get(row_id, (-1, -1)),
                                 str(rec["token"]))
            where = f"row {row_id} · doc {rec['doc_id']} · token {rec['position']}"
        elif "text" in rec:
            text = str(rec["text"])
            body = _wrap_marked(text[:280] + ("…" if len(text) > 280 else ""))
            where = f"row {row_id} · doc {rec.get('doc_id', row_id)}"
        else:
            body, where = "", f"row {row_id}"
        facts = [f"<b>{html.escape(k)}</b>: {html.escape(str(v[i]))}" for k, v in extra.items()]
        facts += [f"{html.escape(c)}: {html.escape(str(rec[c]))}" for c in label_columns
                  if c in rec]
        out.append(body + "<br><span style='color:#666'>" + where + "</span><br>"
                   + " · ".join(facts))
    return np.array(out, dtype=object)
