"""Self-contained HTML pages: plotly.js embedded once, figures as JSON drawn on demand."""

from __future__ import annotations

import html
import json
from pathlib import Path

CSS = """
:root { --ink:#1d2430; --muted:#5b6472; --line:#e3e6eb; --card:#ffffff; --bg:#f5f6f8;
        --accent:#1f77b4; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif; }
header.top { background:#1d2430; color:#fff; padding:18px 32px 14px; }
header.top h1 { margin:0; font-size:22px; font-weight:600; }
header.top p { margin:4px 0 0; color:#c9d1dc; font-size:13px; }
nav.sections { position:sticky; top:0; z-index:10; background:#fff; border-bottom:1px solid var(--line);
               padding:8px 32px; display:flex; flex-wrap:wrap; gap:6px 18px; font-size:14px; }
nav.sections a { color:var(--accent); text-decoration:none; }
nav.sections a:hover { text-decoration:underline; }
main { max-width:1280px; margin:0 auto; padding:20px 32px 60px; }
section.card { scroll-margin-top:56px; background:var(--card); border:1px solid var(--line); border-radius:8px;
               padding:18px 22px; margin:0 0 22px; }
section.card > h2 { margin:0 0 6px; font-size:19px; }
p.note { color:var(--muted); margin:4px 0 12px; font-size:13.5px; }
table.data { border-collapse:collapse; font-size:13px; font-variant-numeric:tabular-nums; }
table.data th, table.data td { padding:5px 10px; border-bottom:1px solid var(--line); text-align:right; }
table.data th { background:#f0f2f5; font-weight:600; position:sticky; top:0; }
table.data td:first-child, table.data th:first-child { text-align:left; }
table.data td.best { font-weight:700; color:#0b5394; }
table.kv td { padding:3px 14px 3px 0; vertical-align:top; border:0; }
table.kv td:first-child { color:var(--muted); white-space:nowrap; }
.scroll { overflow-x:auto; }
.fig { width:100%; min-height:120px; }
.dash-nav { display:flex; flex-wrap:wrap; gap:6px; margin:10px 0 14px; }
.dash-nav button { border:1px solid var(--line); background:#f7f8fa; border-radius:6px;
                   padding:5px 10px; cursor:pointer; font:inherit; font-size:13px; color:var(--ink); }
.dash-nav button.active { background:var(--accent); color:#fff; border-color:var(--accent); }
.dash-page { scroll-margin-top:56px; }
.dash-page h3 { margin:4px 0 10px; font-size:18px; }
.dash-page h3 small { color:var(--muted); font-weight:400; font-size:14px; }
.dash-page h4 { margin:14px 0 6px; font-size:14px; color:var(--muted); text-transform:uppercase;
                letter-spacing:.04em; }
.grid2 { display:grid; grid-template-columns: minmax(0,1.35fr) minmax(0,1fr); gap:26px; }
@media (max-width: 900px) { .grid2 { grid-template-columns: 1fr; } }
.example { border-left:3px solid var(--line); padding:4px 10px; margin:6px 0; font-size:14px; }
.example .meta { color:var(--muted); font-size:12px; }
.tok { border-radius:3px; padding:0 1px; }
.tok.target { outline:2px solid #222; font-weight:700; }
.bars { display:grid; grid-template-columns: minmax(70px,max-content) 1fr 92px; gap:2px 8px;
        align-items:center; font-size:13px; margin-bottom:8px; }
.bars .bar { position:relative; height:14px; }
.bars .bar span { position:absolute; left:0; height:7px; border-radius:2px; }
.bars .bar span.in { top:0; background:var(--accent); }
.bars .bar span.all { top:7px; background:#b9c2cf; }
.bars .num { color:var(--muted); font-variant-numeric:tabular-nums; text-align:right; }
.legend-keys { font-size:12px; color:var(--muted); }
.legend-keys i { display:inline-block; width:18px; height:7px; margin:0 4px 1px 8px; vertical-align:middle; }
ul.neigh { margin:4px 0; padding-left:18px; font-size:14px; }
ul.neigh a { color:var(--accent); cursor:pointer; }
"""

JS = """
(function () {
  var specs = JSON.parse(document.getElementById('actclust-figures').textContent);
  var config = {displaylogo: false, responsive: true};
  function render(el) {
    if (el.getAttribute('data-done')) return;
    var spec = specs[el.id];
    if (!spec) return;
    el.setAttribute('data-done', '1');
    Plotly.newPlot(el, spec.data, spec.layout || {}, config);
  }
  function renderVisible(root) {
    root.querySelectorAll('.fig').forEach(function (el) {
      if (el.offsetParent !== null) render(el);
    });
  }
  function show(dashId, pageId) {
    var dash = document.getElementById(dashId);
    if (!dash) return;
    dash.querySelectorAll('.dash-page').forEach(function (p) { p.hidden = p.id !== pageId; });
    dash.querySelectorAll('.dash-nav button').forEach(function (b) {
      b.classList.toggle('active', b.getAttribute('data-page') === pageId);
    });
    var page = document.getElementById(pageId);
    if (page) renderVisible(page);
  }
  document.addEventListener('click', function (e) {
    var t = e.target.closest('[data-page]');
    if (!t) return;
    e.preventDefault();
    show(t.getAttribute('data-dash'), t.getAttribute('data-page'));
  });
  function fromHash() {
    var id = decodeURIComponent(location.hash.slice(1));
    var page = id && document.getElementById(id);
    if (page && page.classList.contains('dash-page')) {
      show(page.closest('.dash').id, id);
      page.scrollIntoView();
    }
  }
  window.addEventListener('hashchange', fromHash);
  document.querySelectorAll('.dash').forEach(function (d) {
    var first = d.querySelector('.dash-page');
    if (first) show(d.id, first.id);
  });
  renderVisible(document);
  fromHash();
})();
"""


class Page:
    """Collects body fragments and figures, then renders one self-contained HTML page.

    Example:
        >>> import plotly.graph_objects as go
        >>> page = Page("demo")
        >>> page.add(page.figure(go.Figure(go.Bar(y=[1, 2]))))
        >>> text = page.render()
        >>> "Plotly.newPlot" in text and '"fig-1"' in text
        True
    """

    def __init__(self, title: str, subtitle: str = ""):
        self.title, self.subtitle = title, subtitle
        self.parts: list[str] = []
        self.nav: list[tuple[str, str]] = []
        self.figures: dict[str, str] = {}

    def figure(self, fig, height: int | None = None) -> str:
        """A placeholder div for ``fig``; it is drawn when it becomes visible."""
        fid = f"fig-{len(self.figures) + 1}"
        self.figures[fid] = fig.to_json(validate=False)
        h = height or (fig.layout.height or 450)
        return f'<div class="fig" id="{fid}" style="height:{int(h)}px"></div>'

    def add(self, fragment: str) -> None:
        self.parts.append(fragment)

    def section(self, anchor: str, heading: str, body: str, note: str = "") -> None:
        """A card with a heading, listed in the navigation bar."""
        self.nav.append((anchor, heading))
        note_html = f'<p class="note">{note}</p>' if note else ""
        self.parts.append(f'<section class="card" id="{html.escape(anchor)}"><h2>'
                          f'{html.escape(heading)}</h2>{note_html}{body}</section>')

    def render(self) -> str:
        from plotly.offline import get_plotlyjs

        specs = "{" + ",".join(f'"{k}":{v}' for k, v in self.figures.items()) + "}"
        # "<" only occurs inside JSON strings, where \u003c reads the same: nothing in the
        # block can then close the script element or open a comment
        specs = specs.replace("<", "\\u003c")
        nav = "".join(f'<a href="#{html.escape(a)}">{html.escape(h)}</a>' for a, h in self.nav)
        nav_html = f'<nav class="sections">{nav}</nav>' if nav else ""
        sub = f"<p>{self.subtitle}</p>" if self.subtitle else ""
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(self.title)}</title><style>{CSS}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>"
            f"<header class=\"top\"><h1>{html.escape(self.title)}</h1>{sub}</header>"
            f"{nav_html}<main>{''.join(self.parts)}</main>"
            f"<script type=\"application/json\" id=\"actclust-figures\">{specs}</script>"
            f"<script>{JS}</script></body></html>\n")


def write_atomic(text: str, out) -> Path:
    """Write ``text`` to ``out`` (folders made as needed) via a temporary file and a
    rename: an interrupted write never leaves a complete-looking file behind.

    Example:
        >>> import tempfile
        >>> write_atomic("<p>hi</p>", tempfile.mkdtemp() + "/a.html").read_text()
        '<p>hi</p>'
    """
    from .._util.files import atomic_write

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def json_attr(value) -> str:
    return html.escape(json.dumps(value), quote=True)
