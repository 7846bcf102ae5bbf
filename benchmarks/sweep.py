"""Sweep wall time: one process against two, and a resumed sweep with nothing left to do.

A 6-layer x 3-reporter (k-means, diagonal Gaussian mixture, agglomerative) x 3-seed sweep
of the bundled ``topics`` dataset, mean-pooled MiniLM block outputs (54 cells, no probes):

  (a) ``run_sweep(..., jobs=1)``: every cell in this process
  (b) ``run_sweep(..., jobs=2)``: two worker processes sharing the memory-mapped store
      (their start-up included)
  (c) the same sweep again with ``resume=True``: every cell is found finished

The store is captured once into the system temp directory and reused by later runs;
capturing is outside every timing. Thread policy (as in ``docs/sweeps.md``): ``--jobs 1``
runs every cell in this process with all cores' threads (numpy's and scipy's OpenBLAS one
each); ``--jobs N`` gives each worker ``cores // N`` threads (at least one). The (a) and (b) tables must be equal except for the
timing metrics (``fit_seconds``); the script stops if they are not.

(c) is timed in this warm process, which has already imported actclust, torch and
friends; ``actclust sweep --resume`` from a shell also pays those imports (about 5 s).

Last line: ``parallel_speedup=<(a)/(b)> resume_noop_s=<(c)>`` (targets: speedup >= 1.7 on
two free cores, resume_noop_s <= 2).

    python benchmarks/sweep.py [--docs 3200] [--repeats 1]
    python benchmarks/sweep.py --quick     # 200 documents, to check that it runs
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402

import actclust  # noqa: E402
from actclust.sweep import run_sweep  # noqa: E402
from actclust.sweep.cells import TIMING_METRICS  # noqa: E402
from actclust.sweep.backends import cores, worker_threads  # noqa: E402

LAYERS = "blocks.*.hook_out"
REPORTERS = ["kmeans", {"name": "gmm", "params": {"covariance_type": "diag"}},
             "agglomerative"]


def topics_store(docs: int):
    out = Path(tempfile.gettempdir()) / f"actclust-bench-sweep-topics-{docs}"
    return actclust.capture("minilm", "topics", LAYERS, pool="mean", limit=docs, out=out,
                            resume=True, progress=False)


def spec(store, out: Path) -> dict:
    return {"name": "bench", "out": str(out), "data": {"store": str(store.root)},
            "labels": ["topic"], "seeds": 3, "reporters": REPORTERS,
            "probes": {"enabled": False}, "run": {"report": False}}


def timed_sweep(store, out: Path, jobs: int) -> tuple:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = run_sweep(spec(store, out), jobs=jobs, progress=False)
    seconds = time.perf_counter() - start
    if len(result.failures):
        raise SystemExit(f"cells failed: {result.failures['error'].iloc[0]}")
    return seconds, result


def untimed(table: pd.DataFrame) -> pd.DataFrame:
    return table[~table["metric"].isin(TIMING_METRICS)].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=3200, help="topics documents")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="200 documents")
    args = parser.parse_args()
    docs = 200 if args.quick else args.docs
    store = topics_store(docs)
    times = {"jobs1": [], "jobs2": [], "noop": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for _ in range(args.repeats):  # interleaved, so drift hits both alike
            t1, one = timed_sweep(store, tmp / "one", 1)
            t2, two = timed_sweep(store, tmp / "two", 2)
            times["jobs1"].append(t1)
            times["jobs2"].append(t2)
            start = time.perf_counter()
            again = run_sweep(spec(store, tmp / "two"), resume=True, progress=False)
            times["noop"].append(time.perf_counter() - start)
            assert again.ran == 0 and again.skipped == one.ran == two.ran
            pd.testing.assert_frame_equal(untimed(one.table), untimed(two.table))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{len(store)} topics docs, {len(store.layers)} layers x {len(REPORTERS)} reporters "
          f"x 3 seeds = {one.ran} cells, {cores()} cores; threads: --jobs 1 all {cores()} in "
          f"process, --jobs 2 {worker_threads(2)} per worker; tables equal but for "
          f"{', '.join(TIMING_METRICS)}")
    labels = {"jobs1": "(a) --jobs 1", "jobs2": "(b) --jobs 2",
              "noop": "(c) resumed, nothing to do"}
    for key, label in labels.items():
        print(f"{label:<30} {med[key]:7.2f} s  ({', '.join(f'{t:.2f}' for t in times[key])})")
    print(f"parallel_speedup={med['jobs1'] / med['jobs2']:.2f} resume_noop_s={med['noop']:.2f}")


if __name__ == "__main__":
    main()
