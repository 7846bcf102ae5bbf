"""``actclust demo``: the pipeline end to end on the bundled MiniLM and ``topics`` set."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

SEEDS = (0, 1, 2, 3, 4)
LABELS = ("topic", "template")


def run_demo(out: Path, limit: Optional[int] = None, overwrite: bool = False) -> pd.DataFrame:
    """Capture mean-pooled block outputs of MiniLM on ``topics``, verify the store, and
    measure per layer how well k-means clusters line up with the topic and template labels.

    Re-running finishes or reuses the store already in ``out`` (``overwrite`` replaces one
    captured with other settings).

    Example:
        >>> import tempfile
        >>> table = run_demo(Path(tempfile.mkdtemp()), limit=64)  # doctest: +SKIP
    """
    import faiss
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from .capture import capture
    from .errors import ActclustError
    from .store import verify_store

    out.mkdir(parents=True, exist_ok=True)
    store_dir = out / "store"
    print(f"[1/3] capturing MiniLM block outputs (mean-pooled) over 'topics' into {store_dir}")
    store = capture("minilm", "topics", "blocks.*.hook_out", pool="mean", out=store_dir,
                    limit=limit, resume=not overwrite, overwrite=overwrite)
    print(f"[2/3] verifying {len(store.layers)} layers x {len(store)} rows")
    problems = verify_store(store_dir)
    if problems:
        raise ActclustError("store failed verification: " + "; ".join(problems))
    labels = {name: store.labels(name) for name in LABELS}
    print(f"[3/3] k-means ({len(SEEDS)} seeds, k = number of classes) on each layer against "
          f"the {' and '.join(LABELS)} labels")
    records = []
    for layer in store.layers:
        X = np.ascontiguousarray(store.layer(layer).to_numpy(), dtype=np.float32)
        for label, y in labels.items():
            k = len(np.unique(y))
            for seed in SEEDS:
                km = faiss.Kmeans(X.shape[1], k, niter=25, nredo=3, seed=seed, verbose=False)
                km.train(X)
                found = km.index.search(X, 1)[1].ravel()
                records += [{"layer": layer, "method": "kmeans", "label": label,
                             "metric": metric, "seed": seed, "value": value}
                            for metric, value in (
                                ("nmi", normalized_mutual_info_score(y, found)),
                                ("ari", adjusted_rand_score(y, found)))]
    table = pd.DataFrame.from_records(records)
    results = out / "kmeans_vs_labels.csv"
    table.to_csv(results, index=False)
    summary = table.groupby(["layer", "label", "metric"], sort=False)["value"] \
        .agg(["mean", "std"])
    print("\nk-means clusters vs labels: NMI, mean ± sd over seeds")
    print(f"  {'layer':<20}" + "".join(f"{label:>18}" for label in LABELS))
    for layer in store.layers:
        cells = [summary.loc[(layer, label, "nmi")] for label in LABELS]
        print(f"  {layer:<20}" + "".join(f"{c['mean']:10.3f} ± {c['std']:.3f}" for c in cells))
    print("(template: which of the sentence templates a text came from; topic: its subject)")
    print(f"\noutput: {out.resolve()}\n  store:   {store_dir.resolve()}"
          f"\n  results: {results.resolve()}")
    return table
