"""The HTML report on the shared MiniLM store (``minilm_topics``): its contents, the `report`
command, and a headless Chromium that opens it offline."""

import argparse
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from actclust.errors import ActclustError
from actclust.viz import write_report
from actclust.viz.cli import add_command
from tests.conftest import TOPICS_LAYERS as LAYERS

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def store(minilm_topics):
    return minilm_topics


@pytest.fixture(scope="module")
def results(minilm_topics_results):
    return minilm_topics_results


@pytest.fixture(scope="module")
def report(store, results, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    return write_report(store, results, out, map_method="pca")


def figures(text: str) -> dict:
    block = re.search(r'<script type="application/json" id="actclust-figures">(.*?)</script>',
                      text, re.S).group(1)
    return json.loads(block.replace("<\\/", "</"))


def test_report_holds_every_part(report, store, results):
    text = report.read_text()
    for anchor in ("provenance", "comparison", "sweep", "best-layer", "worst-layer",
                   "clusters-best", "clusters-worst"):
        assert f'id="{anchor}"' in text
    # Provenance from the manifest.
    n = len(store)
    assert "minilm" in text and "BertModel" in text and f"topics: {n} documents" in text
    assert "pool=mean" in text and f"blocks.3.hook_out {n}x384" in text
    # The comparison table lists every layer, best value in bold.
    table = text[text.index('id="comparison"'):text.index('id="sweep"')]
    assert all(layer in table for layer in LAYERS) and 'class="best"' in table
    assert "probe accuracy" in table and "label: template" in table
    figs = figures(text)
    titles = [f["layout"]["title"]["text"] for f in figs.values()]
    assert "Where structure appears, layer by layer: topic" in titles
    assert "Where structure appears, layer by layer: template" in titles
    assert "blocks.5.hook_out: kmeans clusters and topic" in titles  # the best layer
    assert "blocks.5.hook_out: kmeans clusters versus topic" in titles
    assert sum(t.startswith("Cluster ") for t in titles) == 2 * 10  # two dashboards
    assert text.count('class="dash-page"') == 20
    # Self-contained: plotly.js inline, nothing fetched from anywhere.
    assert not re.search(r"<script[^>]+src=", text) and not re.search(r"<link[^>]+href=", text)
    assert len(text) > 3_000_000  # plotly.js itself is embedded
    assert not list(report.parent.glob(".report.html.*"))  # no temporary file left


def test_the_report_refits_a_reporter_with_its_settings(store):
    from actclust.viz.report import _refit

    est, name = _refit(store, LAYERS[-1], "gmm(covariance_type=diag)", "topic", None, 0)
    assert name == "gmm(covariance_type=diag)" and est.covariance_type == "diag"
    assert len(set(est.labels_.tolist())) == 10
    for method in ("linear_probe", "knn", "my-own-estimator", "pca"):
        assert _refit(store, LAYERS[-1], method, "topic", 3, 0)[1] == "kmeans"


def test_write_is_atomic(store, results, tmp_path, monkeypatch):
    from actclust._util import files

    out = tmp_path / "report.html"
    out.write_text("old report")

    def interrupted(*args):  # the write is cut off after the new text is on disk
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", interrupted)  # the one atomic writer
    with pytest.raises(KeyboardInterrupt):
        write_report(store, results, out, map_method="pca", dashboards=False)
    assert out.read_text() == "old report" and os.listdir(tmp_path) == ["report.html"]


def test_report_without_results_fits_quick_kmeans(store, tmp_path):
    path = write_report(store.root, None, tmp_path / "quick.html", map_method="pca",
                        dashboards=False)
    text = path.read_text()
    assert "one quick k-means fit per layer, no probes" in text
    assert 'id="clusters-best"' not in text
    titles = [f["layout"]["title"]["text"] for f in figures(text).values()]
    assert "Where structure appears, layer by layer: topic" in titles


def test_report_errors(store, results, tmp_path):
    with pytest.raises(ActclustError, match="no rows for label 'colour'"):
        write_report(store, results, tmp_path / "r.html", label="colour")
    with pytest.raises(ActclustError, match="no rows for reporter 'gmm'"):
        write_report(store, results, tmp_path / "r.html", reporter="gmm")
    other = results.assign(layer=results["layer"].str.replace("blocks.0", "blocks.9"))
    with pytest.raises(ActclustError, match="layers that store .* does not hold: blocks.9"):
        write_report(store, other, tmp_path / "r.html")
    with pytest.raises(ActclustError, match="lack the columns value"):
        write_report(store, results.drop(columns="value"), tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_report_command(store, results, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="actclust")
    add_command(parser.add_subparsers())
    results.to_parquet(tmp_path / "results.parquet")
    args = parser.parse_args(["report", str(store.root), "--results",
                              str(tmp_path / "results.parquet"), "-o", str(tmp_path / "r.html"),
                              "--map", "pca", "--no-dashboards"])
    assert args.func(args) == 0
    assert "report: " in capsys.readouterr().out and (tmp_path / "r.html").stat().st_size
    args = parser.parse_args(["report", str(tmp_path / "nowhere"), "-o", "x.html"])
    with pytest.raises(ActclustError, match="is not a directory"):
        args.func(args)
    args = parser.parse_args(["report", str(store.root), "--results",
                              str(tmp_path / "none.parquet")])
    with pytest.raises(ActclustError, match="does not exist"):
        args.func(args)


# ---------------------------------------------------------------- in a browser


def browser(width=1400, height=1000):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="actclust-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=opts), profile


SCREENSHOT_STATS = """
const done = arguments[arguments.length - 1];
const img = new Image();
img.onload = () => {
  const c = document.createElement('canvas');
  c.width = img.width; c.height = img.height;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  const seen = new Set(); let sum = 0, sum2 = 0, n = 0;
  for (let i = 0; i < d.length; i += 4 * 3) {
    const v = 0.3 * d[i] + 0.59 * d[i + 1] + 0.11 * d[i + 2];
    sum += v; sum2 += v * v; n++; seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
  }
  done({width: c.width, height: c.height, colours: seen.size,
        sd: Math.sqrt(sum2 / n - (sum / n) ** 2)});
};
img.onerror = () => done(null);
img.src = 'data:image/png;base64,' + arguments[0];
"""


@pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(DRIVER).exists()),
                    reason="headless Chromium is not installed: apt-get install chromium "
                           "chromium-driver (CI's .ci/run does)")
@pytest.mark.slow
def test_report_opens_offline_in_chromium(report, store, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    driver, profile = browser()
    try:
        driver.set_page_load_timeout(60)
        driver.get(report.as_uri())
        n_visible = len(figures(report.read_text())) - 2 * 10 + 2  # first page of each dashboard
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(
            "return document.querySelectorAll('.js-plotly-plot').length") >= n_visible)
        state = driver.execute_script("""return {
            plotly: typeof Plotly, version: Plotly.version,
            drawn: document.querySelectorAll('.js-plotly-plot').length,
            points: document.querySelectorAll('.js-plotly-plot .scatterlayer .point').length,
            heat: document.querySelectorAll('.js-plotly-plot .heatmaplayer image').length,
            pages: Array.from(document.querySelectorAll('.dash-page')).filter(p => !p.hidden).length,
            title: document.title}""")
        assert state["plotly"] == "object" and state["drawn"] == n_visible
        assert state["points"] >= 2 * 2 * len(store)  # two maps, two panels, every row
        assert state["heat"] >= 2 and state["pages"] == 2
        assert state["title"] == "actclust report: minilm on topics"
        png = driver.get_screenshot_as_png()
        (tmp_path / "report-top.png").write_bytes(png)
        stats = driver.execute_async_script(SCREENSHOT_STATS, driver.get_screenshot_as_base64())
        assert stats and stats["width"] >= 1000
        assert stats["colours"] > 50 and stats["sd"] > 10, stats  # not blank
        # Navigating the dashboard shows another cluster's page and draws its figure.
        driver.execute_script("document.querySelector('[data-page=\"dash-best-c3\"]').click()")
        WebDriverWait(driver, 20).until(lambda d: d.execute_script(
            "const p = document.getElementById('dash-best-c3');"
            "return !p.hidden && p.querySelector('.js-plotly-plot') !== null"))
        driver.execute_script("document.getElementById('dash-best-c3').scrollIntoView()")
        (tmp_path / "report-dashboard.png").write_bytes(driver.get_screenshot_as_png())
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        if os.environ.get("ACTCLUST_SCREENSHOTS"):
            for name in ("report-top.png", "report-dashboard.png"):
                shutil.copy(tmp_path / name, Path(os.environ["ACTCLUST_SCREENSHOTS"]) / name)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.slow
def test_demo_runs_every_step(tmp_path, monkeypatch, capsys):
    """The demo on 64 documents, its report's maps drawn with PCA: UMAP's first call compiles
    numba code for seconds, so the UMAP demo below is slow."""
    import functools

    import pandas as pd

    from actclust import viz
    from actclust.demo import PROBE_SEEDS, SEEDS, run_demo

    monkeypatch.setattr(viz, "write_report", functools.partial(viz.write_report,
                                                               map_method="pca"))
    table = run_demo(tmp_path, limit=64)
    printed = capsys.readouterr().out
    layers = [f"blocks.{i}.hook_out" for i in range(6)]
    assert sorted(set(table["layer"])) == layers
    kmeans = table[table["method"] == "kmeans"]
    assert set(kmeans["label"]) == {"topic", "template"} and kmeans["seed"].nunique() == SEEDS
    probe = table[table["method"] == "linear_probe"]
    assert set(probe["label"]) == {"topic"} and probe["seed"].nunique() == PROBE_SEEDS
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "results.parquet"), table)
    assert "[4/4]" in printed and all(f"\n  {layer} " in printed for layer in layers)
    text = (tmp_path / "report.html").read_text()
    assert 'id="clusters-best"' in text and "topics: 64 documents" in text
    assert "PCA" in text and "UMAP" not in text


@pytest.mark.slow
def test_demo_ends_with_the_report(tmp_path):
    from actclust.demo import run_demo

    run_demo(tmp_path, limit=64)
    text = (tmp_path / "report.html").read_text()
    assert 'id="clusters-best"' in text and "minilm" in text
