"""Feature reporters (a sparse autoencoder) in the results table: each latent's
top-activating rows aligned with every label like a cluster, beside the fit's own metrics."""

from __future__ import annotations

import time

import pandas as pd

from ._align import align, summarise

FEATURE_ROWS = 50  # rows that stand for a latent: its largest activations
# A latent that fires on fewer rows is left out: a handful of rows agree on a label by
# chance (on a label drawn at random, 5 % of a small autoencoder's latents "aligned").
MIN_FEATURE_ROWS = 10


def feature_groups(estimator, X, n_rows: int = FEATURE_ROWS,
                   min_rows: int = MIN_FEATURE_ROWS) -> dict:
    """Latent -> the rows of its ``n_rows`` largest activations, for latents that fire on at
    least ``min_rows`` rows: the groups concept alignment treats like clusters."""
    return {i: rows for i, rows in enumerate(estimator.top_rows(X, n_rows=n_rows))
            if len(rows) >= min_rows}


def is_feature_reporter(estimator) -> bool:
    """Whether ``estimator`` reports features with rows of their own (``top_rows``) rather
    than clusters.

    Example:
        >>> from actclust.reporters import KMeans, SparseAutoencoder
        >>> is_feature_reporter(SparseAutoencoder()), is_feature_reporter(KMeans())
        (True, False)
    """
    return hasattr(estimator, "top_rows") and hasattr(estimator, "metrics")


def feature_scores(base, view, layer: str, name: str, seed: int, targets: dict,
                   n_rows: int = FEATURE_ROWS) -> list:
    """Fit a clone of ``base`` with ``seed`` and score its features: for every label, the
    share of latents aligned with it (``concepts_aligned_share``, ConceptX's rule on each
    latent's ``n_rows`` top rows; latents firing on fewer than 10 rows left out) and the rows they cover (``concepts_row_coverage``), with
    the fit's ``fvu``, ``l0``, ``dead_fraction`` and ``fit_seconds``. Rows of the results
    table, as dicts.

    Example:
        >>> import numpy as np
        >>> from actclust.reporters import SparseAutoencoder
        >>> X = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
        >>> y = np.where(X[:, 0] > 0, "a", "b")
        >>> rows = feature_scores(SparseAutoencoder(k=2, epochs=2), X, "h", "sae", 0, {"y": y})
        >>> sorted({r["metric"] for r in rows})  # doctest: +NORMALIZE_WHITESPACE
        ['concepts_aligned_share', 'concepts_row_coverage', 'dead_fraction', 'fit_seconds',
         'fvu', 'l0']
    """
    from sklearn.base import clone

    from ..reporters import configure

    est = configure(clone(base), seed=seed)
    start = time.perf_counter()
    est.fit(view)
    seconds = time.perf_counter() - start
    own = {"fvu": est.fvu_, "l0": est.l0_, "dead_fraction": est.dead_fraction_} \
        if hasattr(est, "fvu_") else est.metrics(view)
    groups = feature_groups(est, view, n_rows)
    records = []
    for label, values in targets.items():
        summary = summarise(align(groups, pd.DataFrame({label: values}), [label]))
        row = summary[summary["label"] == label].iloc[0]
        scores = {**own, "fit_seconds": seconds,
                  "concepts_aligned_share": row["aligned_share"],
                  "concepts_row_coverage": row["row_coverage"]}
        records += [{"layer": layer, "method": name, "label": label, "metric": metric,
                     "seed": seed, "value": float(value)} for metric, value in scores.items()]
    return records
