"""Ten million token rows on one machine: compare and the report in bounded memory.

Writes a synthetic token-level store through the store's own writer
(:func:`actclust.store.from_arrays`, streamed in batches): ``--rows`` rows (default ten
million) of ``--dim`` (384) floats in ``--dtype`` (float16), documents of about 60 tokens
each with a text of about 400 characters, token labels (``kind``: the planted cluster of
each row; ``token``) and a document label (``topic``). Each row is one of 16 planted
centres plus noise, so k-means and the probe have structure to find.

Then, each in a child process whose data segment is capped at ``--cap-gb``
(``RLIMIT_DATA``: heap and private mappings; the store's shards are file mappings, released
batch by batch), runs

* ``actclust compare STORE --labels kind --reporters kmeans --seeds 1`` (k-means, the probe
  streamed from the layer, the control task, kNN purity and the self-probe score), and
* ``actclust report STORE`` (maps, dashboards and the concepts section, on samples),

and reads each child's peak resident memory (``VmHWM``; ``getrusage`` would report the
parent's peak from before the child started, when the parent wrote the store). Targets at ten million
rows: peak RSS <= 2 GB, compare of one layer <= 5 min.
Last line: ``rows=... store_gb=... peak_rss_gb=... compare_s=... report_s=...``.

    python benchmarks/scale.py [--rows 10000000] [--dtype float16] [--cap-gb 3] [--keep DIR]
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

TOKENS_PER_DOC = 60
N_CENTRES = 16
BATCH = 250_000
WORDS = ("the of and to in is was for on that with as by at from his her an were are which "
         "this be or had not but what all when can there one their has been if more who "
         "will no out so up said about into than them only other new some could time these "
         "two may first then do any like my now over such our man me even most made after "
         "also did many before must through back years where much your way well down should "
         "because each just those people how too little state good very make world still "
         "own see men work long get here between both life being under never day same "
         "another know while last might us great old year off come since against go came "
         "right used take three").split()

CHILD = r"""
import json, resource, sys, time
limit = int(float(sys.argv[1]) * 2**30)
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
from actclust.cli import main
start = time.perf_counter()
code = main(sys.argv[2:])
seconds = time.perf_counter() - start
try:  # this process's own high-water mark: ru_maxrss keeps the parent's from before exec
    status = open("/proc/self/status").read()
    peak = int(status.split("VmHWM:")[1].split()[0]) / 2**20
except (OSError, IndexError):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"exit": code, "seconds": seconds, "peak_rss_gb": peak}))
"""


def synthetic_tables(n_rows: int, seed: int = 0):
    """The row and document tables, and each row's planted centre."""
    rng = np.random.default_rng(seed)
    n_docs = -(-n_rows // TOKENS_PER_DOC)
    doc_id = np.arange(n_rows, dtype=np.int64) // TOKENS_PER_DOC
    centre = rng.integers(0, N_CENTRES, n_rows).astype(np.int16)
    # Each centre draws its tokens from its own slice of the vocabulary, so token and kind
    # agree the way a part of speech and a word do.
    per_centre = len(WORDS) // N_CENTRES
    word = centre.astype(np.int64) * per_centre + rng.integers(0, per_centre, n_rows)
    vocabulary = pd.Categorical.from_codes(word, categories=WORDS[:per_centre * N_CENTRES])
    rows = pd.DataFrame({
        "doc_id": doc_id,
        "position": (np.arange(n_rows) % TOKENS_PER_DOC).astype(np.int32),
        "token": vocabulary,
        "kind": pd.Categorical.from_codes(centre, categories=[f"k{i:02d}"
                                                              for i in range(N_CENTRES)]),
    })
    topics = np.array(["sports", "cooking", "science", "music", "travel", "history"])
    texts = [" ".join(rng.choice(WORDS, 70)) for _ in range(min(n_docs, 5_000))]
    docs = pd.DataFrame({"doc_id": np.arange(n_docs, dtype=np.int64),
                         "text": [texts[i % len(texts)] for i in range(n_docs)],
                         "topic": topics[rng.integers(0, len(topics), n_docs)]})
    return rows, docs, centre


def activation_batches(centre: np.ndarray, dim: int, dtype: str, seed: int = 1):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_CENTRES, dim)).astype(np.float32) * 1.5
    for start in range(0, len(centre), BATCH):
        c = centre[start:start + BATCH]
        X = centres[c] + rng.standard_normal((len(c), dim), dtype=np.float32)
        yield X.astype(dtype)


def write_store(root: Path, n_rows: int, dim: int, dtype: str) -> None:
    from actclust.store import from_arrays

    rows, docs, centre = synthetic_tables(n_rows)
    from_arrays(root, {"blocks.0.hook_out": activation_batches(centre, dim, dtype)}, rows,
                docs, dtype=dtype, model="synthetic", dataset="synthetic-tokens",
                progress=True)


def run_capped(cap_gb: float, argv: list) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1"}
    child = subprocess.run([sys.executable, "-c", CHILD, str(cap_gb), *argv],
                           stdout=subprocess.PIPE, stderr=sys.stderr, text=True, env=env)
    lines = child.stdout.strip().splitlines()
    if child.returncode != 0 or not lines or not lines[-1].startswith("{") \
            or json.loads(lines[-1])["exit"] != 0:
        print("\n".join(lines[-20:]))
        raise SystemExit(f"`actclust {' '.join(argv)}` failed under the {cap_gb} GB cap "
                         f"(exit {child.returncode})")
    print("\n".join(lines[:-1][-25:]))
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    parser.add_argument("--cap-gb", type=float, default=3.0,
                        help="data-segment limit of each child (default 3 GB)")
    parser.add_argument("--keep", help="reuse or keep the store in this directory")
    args = parser.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="actclust-scale-"))
    store = base / "store"
    try:
        if not (store / "manifest.json").exists():
            start = time.perf_counter()
            write_store(store, args.rows, args.dim, args.dtype)
            print(f"wrote {args.rows:,} rows in {time.perf_counter() - start:.0f} s", flush=True)
        store_gb = sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 1e9
        compare = run_capped(args.cap_gb, ["compare", str(store), "--labels", "kind",
                                           "--reporters", "kmeans", "--seeds", "1",
                                           "--out", str(base / "results.parquet")])
        report = run_capped(args.cap_gb, ["report", str(store), "--results",
                                          str(base / "results.parquet"),
                                          "-o", str(base / "report.html")])
        table = pd.read_parquet(base / "results.parquet")
        shown = table[table["metric"].isin(["nmi", "probe_accuracy", "control_accuracy",
                                            "knn_purity", "self_probe_accuracy"])]
        print(shown[["method", "label", "metric", "value"]].to_string(index=False))
        for name, result in (("compare", compare), ("report", report)):
            print(f"{name}: {result['seconds']:.1f} s, peak RSS {result['peak_rss_gb']:.2f} GB")
        peak = max(compare["peak_rss_gb"], report["peak_rss_gb"])
        print(f"rows={args.rows} store_gb={store_gb:.2f} peak_rss_gb={peak:.2f} "
              f"compare_s={compare['seconds']:.1f} report_s={report['seconds']:.1f}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
