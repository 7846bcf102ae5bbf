"""``actclust demo``: the pipeline end to end on the bundled MiniLM and ``topics`` set."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

SEEDS = (0, 1, 2, 3, 4)


def run_demo(out: Path, limit: Optional[int] = None) -> pd.DataFrame:
    """Capture mean-pooled block outputs of MiniLM on ``topics``, verify the store, and
    measure per layer how well k-means clusters line up with the topic label.

    Re-running finishes or reuses the store already in ``out``.

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
                    limit=limit, resume=True)
    print(f"[2/3] verifying {len(store.layers)} layers x {len(store)} rows")
    problems = verify_store(store_dir)
    if problems:
        raise ActclustError("store failed verification: " + "; ".join(problems))
    topics = store.labels("topic")
    k = len(np.unique(topics))
    print(f"[3/3] k-means (k={k}, {len(SEEDS)} seeds) on each layer against the topic label")
    records = []
    for layer in store.layers:
        X = np.ascontiguousarray(store.layer(layer).to_numpy(), dtype=np.float32)
        for seed in SEEDS:
            km = faiss.Kmeans(X.shape[1], k, niter=25, nredo=3, seed=seed, verbose=False)
            km.train(X)
            labels = km.index.search(X, 1)[1].ravel()
            records += [{"layer": layer, "method": "kmeans", "label": "topic",
                         "metric": metric, "seed": seed, "value": value}
                        for metric, value in (
                            ("nmi", normalized_mutual_info_score(topics, labels)),
                            ("ari", adjusted_rand_score(topics, labels)))]
    table = pd.DataFrame.from_records(records)
    table.to_csv(out / "kmeans_vs_topic.csv", index=False)
    summary = table.groupby(["layer", "metric"], sort=False)["value"].agg(["mean", "std"])
    summary = summary.unstack("metric")
    print("\nk-means clusters vs topic labels, mean ± sd over seeds:")
    print(f"  {'layer':<20} {'NMI':>15} {'ARI':>15}")
    for layer in store.layers:
        row = summary.loc[layer]
        print(f"  {layer:<20} {row[('mean', 'nmi')]:7.3f} ± {row[('std', 'nmi')]:.3f}"
              f" {row[('mean', 'ari')]:7.3f} ± {row[('std', 'ari')]:.3f}")
    print(f"\noutput: {out.resolve()}\n  store:   {store_dir.resolve()}"
          f"\n  results: {(out / 'kmeans_vs_topic.csv').resolve()}")
    return table
