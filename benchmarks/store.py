"""Store write/read throughput against plain ``np.save`` / ``np.load(mmap_mode="r")``.

Same data both ways: N x D float32 rows arriving in batches, as a capture produces them.
Ours streams them into a shard (header first, checksum on the way, fsync, atomic rename)
and writes the manifest and row table. A store gives guarantees a bare ``np.save`` does not
(a checksum of every shard, and nothing visible before it is on disk), so the reference
for writing is the same guarantees done by hand: ``np.save`` of the whole array, the same
checksum of the file (``--checksum``, default the store's own, xxh3), and fsync
(``write_durable``). A bare ``np.save``, which only copies into the page cache, is timed
and printed too (``write_raw``). Reading is a full pass over the layer (sum of every value)
through ``LayerView.iter_batches`` vs one memory-mapped ``np.load``. Median of several runs;
last line: ``store_write_ratio=<durable_time/ours_time> store_read_ratio=<raw_time/ours_time>``
(throughput ratios: 1.0 means as fast as the reference; targets: write >= 0.9, read >= 0.8).

    python benchmarks/store.py [--rows 200000] [--dim 384] [--repeats 5] [--checksum xxh3]
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from actclust import ActivationStore
from actclust.store import StoreWriter
from actclust.store.format import checksum_field
from actclust.store.shards import new_hash


def write_ours(root: Path, data: np.ndarray, batch: int, checksum: str) -> float:
    n = len(data)
    plan = [{"index": 0, "doc_start": 0, "doc_stop": n, "rows": n}]
    docs = pd.DataFrame({"doc_id": np.arange(n)})
    start = time.perf_counter()
    writer = StoreWriter(root, {"model": {"name": "bench"}}, plan, ["layer"], docs, "float32",
                         checksum=checksum)
    writer.begin_shard(plan[0])
    for lo in range(0, n, batch):
        writer.append({"layer": data[lo:lo + batch]},
                      pd.DataFrame({"doc_id": np.arange(lo, min(lo + batch, n))}))
    writer.commit_shard()
    writer.finalize()
    return time.perf_counter() - start


def write_raw(path: Path, data: np.ndarray) -> float:
    start = time.perf_counter()
    np.save(path, data)
    return time.perf_counter() - start


def write_raw_durable(path: Path, data: np.ndarray, checksum: str) -> float:
    """np.save, then what a store adds: the checksum of the file and fsync."""
    start = time.perf_counter()
    with open(path, "wb") as fh:
        np.save(fh, data)
        fh.flush()
        os.fsync(fh.fileno())
    digest = new_hash(checksum_field(checksum))
    digest.update(path.read_bytes())
    digest.hexdigest()
    return time.perf_counter() - start


def read_ours(root: Path, batch: int) -> float:
    start = time.perf_counter()
    total = 0.0
    for X in ActivationStore(root).layer("layer").iter_batches(batch):
        total += float(X.sum(dtype=np.float64))
    return time.perf_counter() - start


def read_raw(path: Path, batch: int) -> float:
    start = time.perf_counter()
    arr = np.load(path, mmap_mode="r")
    total = 0.0
    for lo in range(0, len(arr), batch):
        total += float(arr[lo:lo + batch].sum(dtype=np.float64))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--checksum", default="xxh3", choices=["xxh3", "sha256"])
    args = parser.parse_args()
    data = np.random.default_rng(0).normal(size=(args.rows, args.dim)).astype(np.float32)
    mb = data.nbytes / 2**20
    times = {"write_ours": [], "write_raw": [], "write_durable": [], "read_ours": [],
             "read_raw": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for _ in range(args.repeats):  # interleaved, so drift hits both sides alike
            shutil.rmtree(tmp / "store", ignore_errors=True)
            times["write_ours"].append(write_ours(tmp / "store", data, args.batch,
                                                  args.checksum))
            times["write_raw"].append(write_raw(tmp / "raw.npy", data))
            times["write_durable"].append(write_raw_durable(tmp / "durable.npy", data,
                                                            args.checksum))
            times["read_ours"].append(read_ours(tmp / "store", args.batch))
            times["read_raw"].append(read_raw(tmp / "raw.npy", args.batch))
    med = {k: statistics.median(v) for k, v in times.items()}
    for key, value in med.items():
        print(f"{key:<13} {value * 1000:8.1f} ms  {mb / value:8.0f} MiB/s")
    print(f"(write_durable: np.save + {args.checksum} + fsync, the guarantees a store gives; "
          f"a bare np.save, no checksum or fsync, is {med['write_ours'] / med['write_raw']:.1f}x "
          f"faster than ours)")
    print(f"store_write_ratio={med['write_durable'] / med['write_ours']:.2f} "
          f"store_read_ratio={med['read_raw'] / med['read_ours']:.2f}")


if __name__ == "__main__":
    main()
