"""A 1,000,000-row layer: the map reads only its sample, in bounded time and memory, and
says on the figure that it subsampled and under which cap."""

import time
import tracemalloc

import numpy as np
import pytest

from actclust.viz import layer_map

N_ROWS, WIDTH = 1_000_000, 16


@pytest.fixture(scope="module")
def big_layer(tmp_path_factory):
    path = tmp_path_factory.mktemp("large") / "layer.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(N_ROWS, WIDTH))
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4, size=(5, WIDTH)).astype(np.float32)
    for start in range(0, N_ROWS, 200_000):
        ids = np.arange(start, start + 200_000) % 5
        out[start:start + 200_000] = centres[ids] + rng.normal(size=(200_000, WIDTH))
    out.flush()
    del out
    return np.load(path, mmap_mode="r")  # 64 MB on disk, nothing loaded yet


def test_million_row_map_is_bounded_and_says_it_subsampled(big_layer):
    clusters = (np.arange(N_ROWS) % 5).astype(np.int32)
    tracemalloc.start()
    start = time.perf_counter()
    fig = layer_map(big_layer, clusters=clusters, method="pca", max_points=10_000)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    meta = fig.layout.meta
    assert meta["subsampled"] and meta["n_total"] == N_ROWS and meta["n_shown"] == 10_000
    assert meta["max_points"] == 10_000
    notes = " ".join(a.text for a in fig.layout.annotations)
    assert "Subsampled: 10,000 of 1,000,000 rows shown (cap max_points=10,000)" in notes
    assert "10,000 of 1,000,000 rows shown" in fig.layout.title.subtitle.text
    assert sum(len(t.x) for t in fig.data) == 10_000
    # The whole layer is 64 MB; the map may hold the sample and the row choice, not the layer.
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert seconds < 60
    rows = np.concatenate([t.customdata for t in fig.data])
    for trace in fig.data:  # every point keeps its own cluster
        assert set(clusters[trace.customdata].astype(str)) == {trace.name}
    assert rows.min() >= 0 and rows.max() < N_ROWS and len(np.unique(rows)) == 10_000
