"""The notebook explorer: clicking a point shows its row, selecting points their label mix."""

import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")

from plotly.callbacks import Points  # noqa: E402

from actclust.errors import ActclustError  # noqa: E402
from actclust.viz import explore  # noqa: E402
from actclust.viz import explorer as explorer_module  # noqa: E402
from tests.unit.test_store import LAYERS, make_store  # noqa: E402


@pytest.fixture
def explorer(tmp_path):
    store, _ = make_store(tmp_path / "s", n_docs=10, rows_per_doc=3)
    return explore(store, LAYERS[0], label="topic", method="pca")


def _point(explorer, row):
    for i, trace in enumerate(explorer.figure.data):
        where = np.flatnonzero(np.asarray(trace.customdata) == row)
        if len(where):
            return trace, Points(point_inds=[int(where[0])], xs=[0], ys=[0],
                                 trace_name=trace.name, trace_index=i)
    raise AssertionError(f"row {row} is not drawn")


def test_clicking_a_point_shows_its_text_and_labels(explorer):
    trace, points = _point(explorer, 7)  # doc 2 -> topic "a"
    trace._dispatch_on_click(points, None)
    assert "doc 2" in explorer.details.value and "topic: a" in explorer.details.value
    trace, points = _point(explorer, 4)  # doc 1 -> topic "b"
    trace._dispatch_on_click(points, None)
    assert "doc 1" in explorer.details.value and "topic: b" in explorer.details.value


def test_selecting_points_shows_their_label_mix(explorer):
    trace = explorer.figure.data[0]
    rows = np.asarray(trace.customdata)
    points = Points(point_inds=list(range(len(rows))), xs=[0] * len(rows), ys=[0] * len(rows),
                    trace_name=trace.name, trace_index=0)
    trace._dispatch_on_selection(points, None)
    assert f"{len(rows)} rows selected" in explorer.mix.value
    mix = explorer.label_mix(rows)
    topic = mix[mix["label"] == "topic"]
    assert topic["selected"].tolist() == [1.0]  # one trace is one topic
    assert topic["overall"].tolist() == [0.5]


def test_every_trace_answers_clicks_and_selections(explorer):
    assert len(explorer.figure.data) == 2
    for trace in explorer.figure.data:
        assert len(trace._click_callbacks) == 1 and len(trace._select_callbacks) == 1


def test_missing_widgets_is_one_line_saying_what_to_install(monkeypatch, tmp_path):
    store, _ = make_store(tmp_path / "s")
    monkeypatch.setattr(explorer_module, "find_spec",
                        lambda name: None if name == "ipywidgets" else object())
    with pytest.raises(ActclustError, match=r"needs ipywidgets: pip install 'actclust\[notebook\]'"):
        explore(store, LAYERS[0])


def test_a_row_outside_the_store_is_refused(explorer):
    with pytest.raises(ActclustError, match="row 99 is not in the store"):
        explorer.show_row(99)
