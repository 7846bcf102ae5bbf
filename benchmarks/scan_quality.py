"""SCAN against k-means on one input: NMI (mean ± sd over seeds), the label-free scores,
fit seconds.

Inputs: ``digits`` (``load_digits`` pixels, 1,797 x 64, 10 classes) or ``minilm-5``
(MiniLM ``blocks.5.hook_resid_post``, mean-pooled over the bundled ``topics`` set, 3,200 x
384, 10 topics; captured once into the system temp directory). For every seed both
``actclust.reporters.KMeans(n_init=10)`` and ``SCAN`` (its defaults, or ``--params``) are
fitted on the same rows; each reports NMI against the labels, ``self_probe_accuracy``
and ``cluster_balance`` (label-free: settings are chosen by these), and fit seconds.
Last line: ``kmeans_nmi=<mean> scan_nmi=<mean> ratio=<scan/kmeans>``.

    python benchmarks/scan_quality.py [--input digits] [--seeds 5] [--params "epochs=50"]
"""

import argparse
import ast
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from actclust.label_free import cluster_balance, self_probe_accuracy
from actclust.metrics import nmi
from actclust.reporters import SCAN, KMeans

MINILM_LAYER = "blocks.5.hook_resid_post"


def load_input(name: str):
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.data.astype(np.float32), digits.target
    if name == "minilm-5":
        import actclust

        path = Path(tempfile.gettempdir()) / "actclust-scan-bench" / "minilm-topics"
        if path.exists():
            store = actclust.ActivationStore(path)
        else:
            store = actclust.capture("minilm", "topics", MINILM_LAYER, pool="mean",
                                     out=path, progress=False)
        return np.asarray(store.layer(MINILM_LAYER).to_numpy()), store.labels("topic")
    raise SystemExit(f"unknown input {name!r}; choose digits or minilm-5")


def parse_params(text: str) -> dict:
    """``"a=1,b=(2, 3)"`` as keyword arguments (Python literals only)."""
    call = ast.parse(f"f({text})", mode="eval").body
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def run(make, X, y, seeds: int) -> dict:
    rows = []
    for seed in range(seeds):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # constant pixel columns
            labels = np.asarray(make(seed).fit(X).labels_)
        seconds = time.perf_counter() - start
        rows.append((nmi(y, labels), self_probe_accuracy(X, labels),
                     cluster_balance(labels, len(np.unique(y))), seconds))
    return dict(zip(("nmi", "probe", "balance", "seconds"), np.array(rows).T))


def show(name: str, result: dict) -> None:
    print(f"{name:8s} " + "  ".join(f"{key} {v.mean():.3f} ± {v.std():.3f}"
                                    for key, v in result.items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default="digits")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--params", default="", help='SCAN keyword arguments, "a=1,b=2"')
    parser.add_argument("--no-kmeans", action="store_true")
    args = parser.parse_args()
    params = parse_params(args.params)
    X, y = load_input(args.input)
    k = len(np.unique(y))
    print(f"{args.input}: {X.shape[0]} x {X.shape[1]}, {k} classes, {args.seeds} seeds; "
          f"SCAN {params or 'defaults'}", flush=True)
    kmeans = None if args.no_kmeans else run(
        lambda seed: KMeans(k, n_init=10, random_state=seed), X, y, args.seeds)
    if kmeans is not None:
        show("kmeans", kmeans)
    scan = run(lambda seed: SCAN(k, random_state=seed, device="cpu", **params), X, y,
               args.seeds)
    show("scan", scan)
    base = kmeans["nmi"].mean() if kmeans is not None else float("nan")
    print(f"kmeans_nmi={base:.4f} scan_nmi={scan['nmi'].mean():.4f} "
          f"ratio={scan['nmi'].mean() / base:.4f}")


if __name__ == "__main__":
    main()
