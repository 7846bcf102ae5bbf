"""k-means: actclust's KMeans against raw faiss and scikit-learn, side by side.

200,000 x 256 float32 rows drawn around 256 random centres, k=256, 20 iterations, one run
each (``--repeats``, default 3, interleaved runs of the two timed against each other, actclust
and faiss with the same settings; the median counts): ``actclust.reporters.KMeans`` (defaults: greedy k-means++ seeding, Lloyd on at most
256 rows per centre); raw ``faiss.Kmeans`` with the same settings (256 rows per centre,
faiss' k-means++ seeding) and with faiss' defaults (random seeding); scikit-learn
``KMeans`` (lloyd, greedy k-means++ on every row) and ``MiniBatchKMeans``. Inertia is recomputed the same way for all (sum of squared distances
of every row to its nearest centre). Last line:
``kmeans_vs_faiss=<ours/faiss time> kmeans_vs_sklearn=<sklearn/ours time>
inertia_vs_sklearn=<ours/sklearn inertia>`` (targets <= 1.2, >= 20, <= 1.01).

    python benchmarks/kmeans.py [--rows 200000] [--dim 256] [--k 256] [--iters 20] [--repeats 3]
"""

import argparse
import statistics
import time

import faiss
import numpy as np
from sklearn.cluster import KMeans as SkKMeans
from sklearn.cluster import MiniBatchKMeans

from actclust.reporters import KMeans


def inertia(X: np.ndarray, centers: np.ndarray) -> float:
    index = faiss.IndexFlatL2(X.shape[1])
    index.add(np.ascontiguousarray(centers, dtype=np.float32))
    return float(index.search(X, 1)[0].sum())


def timed(fn):
    start = time.perf_counter()
    centers = fn()
    return time.perf_counter() - start, centers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    centres = rng.normal(size=(args.k, args.dim)).astype(np.float32) * 2
    X = (centres[rng.integers(0, args.k, args.rows)] +
         rng.normal(size=(args.rows, args.dim)).astype(np.float32) * 1.5)
    X = np.ascontiguousarray(X, dtype=np.float32)
    d, k, it = args.dim, args.k, args.iters

    def ours():
        return KMeans(k, max_iter=it, n_init=1, random_state=args.seed).fit(X).cluster_centers_

    def raw_faiss():
        km = faiss.Kmeans(d, k, niter=it, nredo=1, seed=args.seed,
                          max_points_per_centroid=256, min_points_per_centroid=1,
                          init_method=faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS)
        km.train(X)
        return km.centroids

    def raw_faiss_default():
        km = faiss.Kmeans(d, k, niter=it, seed=args.seed)  # random init, 256 rows/centre
        km.train(X)
        return km.centroids

    def sklearn_lloyd():
        return SkKMeans(k, n_init=1, max_iter=it, algorithm="lloyd",
                        random_state=args.seed).fit(X).cluster_centers_

    def sklearn_minibatch():
        return MiniBatchKMeans(k, n_init=1, max_iter=it, batch_size=4096,
                               random_state=args.seed).fit(X).cluster_centers_

    runs = [("actclust KMeans", ours), ("faiss.Kmeans (same settings)", raw_faiss)]
    timings, last = {name: [] for name, _ in runs}, {}
    for _ in range(max(1, args.repeats)):  # interleaved, so drift hits both alike
        for name, fn in runs:
            seconds, last[name] = timed(fn)
            timings[name].append(seconds)
    results = {}
    for name, fn in [*runs, ("faiss.Kmeans (defaults)", raw_faiss_default),
                     ("sklearn KMeans lloyd", sklearn_lloyd),
                     ("sklearn MiniBatchKMeans", sklearn_minibatch)]:
        if name in timings:  # the same seed each time: the centres of the last run
            seconds, centers = statistics.median(timings[name]), last[name]
        else:
            seconds, centers = timed(fn)
        results[name] = (seconds, inertia(X, centers))
        print(f"{name:<30} {seconds:8.2f} s   inertia {results[name][1]:.6e}", flush=True)
    ours_t, ours_i = results["actclust KMeans"]
    print(f"kmeans_vs_faiss={ours_t / results['faiss.Kmeans (same settings)'][0]:.2f} "
          f"kmeans_vs_sklearn={results['sklearn KMeans lloyd'][0] / ours_t:.1f} "
          f"inertia_vs_sklearn={ours_i / results['sklearn KMeans lloyd'][1]:.4f}")


if __name__ == "__main__":
    main()
