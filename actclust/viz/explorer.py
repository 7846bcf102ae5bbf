"""An interactive layer map for Jupyter (``pip install actclust[notebook]``).

Click a point to read its row: the text with the token marked, and its labels. Select points
with the box or lasso tool to see their label mix next to the whole layer's. The map is
:func:`~actclust.viz.layer_map`'s figure inside a plotly ``FigureWidget``.
"""

from __future__ import annotations

import html
from importlib.util import find_spec

import numpy as np
import pandas as pd

from ..errors import ActclustError
from ._common import row_hover
from .maps import MAX_POINTS, layer_map

MIX_VALUES = 5  # label values listed per column in a selection's mix


def _require_widgets() -> None:
    missing = [m for m in ("ipywidgets", "anywidget") if find_spec(m) is None]
    if missing:
        raise ActclustError(f"the explorer needs {' and '.join(missing)}: "
                            "pip install 'actclust[notebook]'")


class Explorer:
    """A clickable map of one store layer. Build it with :func:`explore`.

    Attributes:
        figure: the plotly ``FigureWidget``; every trace's ``customdata`` is the row number.
        details: an ``ipywidgets.HTML`` showing the last clicked row.
        mix: an ``ipywidgets.HTML`` showing the label mix of the last selection.
        widget: the whole layout (``display(explorer.widget)``; the explorer itself also
            displays as it).
    """

    def __init__(self, store, layer: str, *, clusters=None, label=None, method="pca",
                 max_points: int = MAX_POINTS, random_state: int = 0):
        _require_widgets()
        import ipywidgets as widgets
        import plotly.graph_objects as go

        self.store = store
        self.label_columns = store.label_columns
        figure = layer_map(store, layer, clusters=clusters, label=label, method=method,
                           max_points=max_points, random_state=random_state)
        self.figure = go.FigureWidget(figure)
        self.figure.update_layout(dragmode="lasso")
        for trace in self.figure.data:
            trace.on_click(self._clicked)
            trace.on_selection(self._selected)
        self.details = widgets.HTML("<i>click a point to read its row</i>")
        self.mix = widgets.HTML("<i>select points (box or lasso) to see their label mix</i>")
        self.widget = widgets.VBox([self.figure, widgets.HBox(
            [self.details, self.mix], layout=widgets.Layout(gap="24px"))])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    @staticmethod
    def _rows_of(trace, points) -> np.ndarray:
        data = np.asarray(trace.customdata)
        return np.asarray([int(data[i]) for i in points.point_inds], dtype=np.int64)

    def _clicked(self, trace, points, selector=None):
        found = self._rows_of(trace, points)
        if len(found):
            self.show_row(int(found[0]))

    def _selected(self, trace, points, selector=None):
        found = self._rows_of(trace, points)
        if len(found):
            self.show_selection(found)

    def show_row(self, row: int) -> str:
        """Show one row's text (token marked) and labels in :attr:`details`; returns the HTML."""
        rows = self.store.rows
        if not 0 <= row < len(rows):
            raise ActclustError(f"row {row} is not in the store ({len(rows)} rows)")
        # one row and the tokens of its document are read, not the table
        self.details.value = (f"<div style='max-width:480px'>"
                              f"{row_hover(rows, np.array([row]), self.label_columns)[0]}</div>")
        return self.details.value

    def label_mix(self, rows) -> pd.DataFrame:
        """Share of each label value among ``rows`` and among all rows, per label column."""
        picked = np.asarray(rows, dtype=np.int64)
        parts = []
        for column in self.label_columns:
            values = pd.Series(self.store.column(column), dtype=object)
            inside = values.iloc[picked].value_counts(normalize=True, dropna=False)
            overall = self._overall(column, values)
            top = inside.head(MIX_VALUES)
            parts.append(pd.DataFrame({"label": column, "value": top.index.astype(str),
                                       "selected": top.to_numpy(),
                                       "overall": overall.reindex(top.index).to_numpy()}))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            columns=["label", "value", "selected", "overall"])

    def _overall(self, column: str, values: pd.Series) -> pd.Series:
        """A column's value shares over all rows, counted once per column."""
        cache = self.__dict__.setdefault("_overall_shares", {})
        if column not in cache:
            cache[column] = values.value_counts(normalize=True, dropna=False)
        return cache[column]

    def show_selection(self, rows) -> pd.DataFrame:
        """Show the label mix of ``rows`` in :attr:`mix`; returns it as a table."""
        mix = self.label_mix(rows)
        body = "".join(
            f"<tr><td>{html.escape(r.label)}</td><td>{html.escape(r.value)}</td>"
            f"<td>{r.selected:.0%}</td><td>{r.overall:.0%}</td></tr>"
            for r in mix.itertuples())
        self.mix.value = (f"<b>{len(rows):,} rows selected</b><table><thead><tr><th>label</th>"
                          "<th>value</th><th>selected</th><th>all rows</th></tr></thead>"
                          f"<tbody>{body}</tbody></table>")
        return mix


def explore(store, layer: str, *, clusters=None, label=None, method: str = "pca",
            max_points: int = MAX_POINTS, random_state: int = 0) -> Explorer:
    """A clickable layer map for Jupyter: click a point for its text and labels, select
    points for their label mix.

    Args:
        store: an :class:`~actclust.ActivationStore` (or its path).
        layer: the layer to map.
        clusters: one cluster id per row, or a reporter fitted on the layer (as
            :func:`layer_map`).
        label: a label column (or one value per row) to colour by.
        method: ``"pca"`` (default, fast) or ``"umap"``.
        max_points: at most this many rows drawn, a uniform random sample.
        random_state: the sample's and the map's seed.

    Example:
        >>> from actclust.viz import explore          # doctest: +SKIP
        >>> explore(store, "blocks.5.hook_out", label="topic")   # doctest: +SKIP
    """
    from ..store import ActivationStore

    if not isinstance(store, ActivationStore):
        store = ActivationStore(store)
    return Explorer(store, layer, clusters=clusters, label=label, method=method,
                    max_points=max_points, random_state=random_state)
