"""A scattered gather from a large layer keeps little of it resident, and reads the right
rows."""

import re
import sys

import numpy as np
import pandas as pd
import pytest

from actclust.store import from_arrays


def _rss_file_mb() -> float:
    status = open("/proc/self/status").read()
    return int(re.search(r"RssFile:\s+(\d+)", status).group(1)) / 1024


@pytest.fixture(scope="module")
def layer(tmp_path_factory):
    n, d = 400_000, 128  # 205 MB of float32 in two shards
    X = np.arange(n, dtype=np.float32)[:, None] + np.zeros((1, d), np.float32)
    store = from_arrays(tmp_path_factory.mktemp("gather") / "s", {"h": X},
                        pd.DataFrame({"doc_id": np.arange(n)}), shard_rows=250_000,
                        progress=False)
    return store.layer("h")


def test_a_gather_returns_the_rows_asked_for_in_their_order(layer):
    rows = np.random.default_rng(0).choice(len(layer), 9_000, replace=False)
    np.testing.assert_array_equal(layer[rows][:, 0], rows.astype(np.float32))
    np.testing.assert_array_equal(layer[rows[:5]][:, 3], rows[:5].astype(np.float32))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_scattered_gather_releases_the_pages_it_read(layer):
    view = layer.store.layer("h")  # its own fresh mappings, untouched by other tests
    rows = np.sort(np.random.default_rng(1).choice(len(view), 6_000, replace=False))
    view[:1]  # map the shards first
    before = _rss_file_mb()
    sample = view[rows]
    grown = _rss_file_mb() - before
    assert sample.shape == (6_000, 128)
    # 6,000 rows are 3 MB; the kernel's read-around would map most of the 205 MB layer.
    assert grown < 40, f"{grown:.0f} MB of the layer stayed resident"
