"""A store at a glance in Jupyter: :meth:`ActivationStore._repr_html_` renders this table.

It reads the manifest and the two tables' parquet schemas only, never their rows, so a store
of ten million token rows shows as fast as a small one.
"""

from __future__ import annotations

from html import escape

from . import format as fmt
from . import paths
from .row_table import NOT_LABELS as _NOT_LABELS


def column_names(store, table: str) -> list[str]:
    """The column names of one of the store's parquet tables, from its footer alone."""
    import pyarrow.parquet as pq

    try:
        with paths.open_in_store(store.root, table, what="table") as fh:
            return list(pq.ParquetFile(fh).schema_arrow.names)
    except Exception:  # an unreadable table is verify's to report; the summary says "?"
        return []


def store_html(store) -> str:
    """Compact HTML: where the store is, what it holds, its layers and label columns.

    Example:
        >>> import actclust, tempfile
        >>> out = tempfile.mkdtemp() + "/store"
        >>> store = actclust.capture("minilm", ["a cat", "a dog"], "blocks.0.hook_out",
        ...                          pool="mean", out=out, progress=False)
        >>> "blocks.0.hook_out" in store._repr_html_()
        True
    """
    m = store.manifest
    cap = m.get("capture", {})
    dataset = m.get("dataset", {})
    labels = [c for c in dict.fromkeys(column_names(store, fmt.ROWS)
                                       + column_names(store, fmt.DOCS))
              if c not in _NOT_LABELS]
    status = "complete" if store.complete else "<b>incomplete</b> (resume the capture)"
    head = (f"<b>ActivationStore</b> <code>{escape(str(store.root))}</code><br>"
            f"{len(store):,} rows &middot; {len(store.layers)} layer(s) &middot; {status}<br>"
            f"model <code>{escape(str(store.model_name))}</code> &middot; dataset "
            f"<code>{escape(str(dataset.get('name', '?')))}</code> "
            f"({dataset.get('n_docs', '?')} docs) &middot; pool "
            f"<code>{escape(str(cap.get('pool', '?')))}</code> &middot; stored as "
            f"<code>{escape(str(cap.get('storage_dtype', '?')))}</code>")
    layer_rows = "".join(
        f"<tr><td style='text-align:left'><code>{escape(name)}</code></td>"
        f"<td>{' x '.join(map(str, info.get('shape') or ['?']))}</td>"
        f"<td>{escape(str(info.get('dtype', '?')))}</td>"
        f"<td>{len(info.get('shards', []))}</td></tr>"
        for name, info in m["layers"].items())
    table = ("<table><thead><tr><th style='text-align:left'>layer</th><th>shape</th>"
             f"<th>dtype</th><th>shards</th></tr></thead><tbody>{layer_rows}</tbody></table>")
    label_line = ("label columns: " + ", ".join(f"<code>{escape(c)}</code>" for c in labels)
                  if labels else "no label columns")
    return f"<div class='actclust-store'>{head}{table}{label_line}</div>"
