"""Fit PCA and KMeans on a store larger than the memory the process may use.

Writes a store of at least ``--gb`` GB (float32 rows around 16 centres, 384 dims), then in
a subprocess whose data segment is capped at ``--limit-gb`` (``RLIMIT_DATA``: heap and
private mappings; the store's shards are read-only file mappings and file reads) fits
``PCA(32)`` (streamed: one pass accumulating the covariance) and ``KMeans(16)`` (trained on a
sample, every row assigned in batches). Peak resident memory comes from ``getrusage``.
Last line: ``peak_rss_gb=<x> store_gb=<y>``.

    python benchmarks/out_of_core.py [--gb 4.2] [--limit-gb 1.5] [--keep DIR]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

DIM = 384
CHILD = r"""
import json, resource, sys, time
out = {}
limit = int(float(sys.argv[2]) * 2**30)
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
import numpy as np
from actclust import ActivationStore
from actclust.reporters import KMeans, PCA
from actclust.metrics import nmi
out["rss_after_imports_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

view = ActivationStore(sys.argv[1]).layer("layer")
t = time.perf_counter()
pca = PCA(32, memory_budget_gb=0.5).fit(view)
out["pca_s"] = time.perf_counter() - t
out["pca_incremental"] = bool(pca.incremental_)
out["pca_top5_ratio"] = float(pca.explained_variance_ratio_[:5].sum())
out["rss_after_pca_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
t = time.perf_counter()
km = KMeans(16, memory_budget_gb=0.5, random_state=0).fit(view)
out["kmeans_s"] = time.perf_counter() - t
out["kmeans_train_rows"] = km.n_train_points_
out["rss_after_kmeans_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
truth = np.load(sys.argv[3], mmap_mode="r")
out["kmeans_nmi_vs_planted"] = float(nmi(truth, km.labels_))
out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps(out))
"""


def write_store(root: Path, gb: float, seed: int = 0) -> Path:
    """A one-layer store of planted clusters, written in chunks through the real writer."""
    from actclust.store import StoreWriter

    n = int(np.ceil(gb * 1e9 / (DIM * 4)))
    chunk = 200_000
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(16, DIM)).astype(np.float32) * 3
    plan = [{"index": i, "doc_start": lo, "doc_stop": min(lo + chunk, n),
             "rows": min(lo + chunk, n) - lo} for i, lo in enumerate(range(0, n, chunk))]
    docs = pd.DataFrame({"doc_id": np.arange(n, dtype=np.int64)})
    writer = StoreWriter(root, {"model": {"name": "synthetic"}}, plan, ["layer"], docs,
                         "float32")
    truth = np.empty(n, np.int32)
    for shard in plan:
        lo, hi = shard["doc_start"], shard["doc_stop"]
        truth[lo:hi] = rng.integers(0, 16, hi - lo)
        X = centres[truth[lo:hi]] + rng.normal(size=(hi - lo, DIM)).astype(np.float32)
        writer.begin_shard(shard)
        writer.append({"layer": X.astype(np.float32)}, pd.DataFrame({"doc_id": np.arange(lo, hi)}))
        writer.commit_shard()
    writer.finalize()
    np.save(root.parent / "truth.npy", truth)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=4.2)
    parser.add_argument("--limit-gb", type=float, default=1.5)
    parser.add_argument("--keep", help="reuse or keep the store in this directory")
    args = parser.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp())
    store = base / "store"
    try:
        if not (store / "manifest.json").exists():
            start = time.perf_counter()
            write_store(store, args.gb)
            print(f"wrote the store in {time.perf_counter() - start:.1f} s", flush=True)
        layer_bytes = sum(p.stat().st_size for p in (store / "layers").rglob("*.npy"))
        store_gb = sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 1e9
        print(f"store {store_gb:.2f} GB ({layer_bytes / 1e9:.2f} GB of activations); "
              f"child limited to {args.limit_gb} GB of data segment", flush=True)
        child = subprocess.run([sys.executable, "-c", CHILD, str(store), str(args.limit_gb),
                                str(base / "truth.npy")], capture_output=True, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "2"})
        if child.returncode != 0:
            print(child.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"the capped fit failed (exit {child.returncode})")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        for key, value in result.items():
            print(f"{key:<24} {value}")
        print(f"peak_rss_gb={result['peak_rss_gb']:.2f} store_gb={store_gb:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
