"""One layer end to end: over-cluster, align, summarise, rank the novel candidates."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd

from ..errors import ActclustError
from ..store import open_store
from ._align import _check_share, align, choose_label_columns, summarise, to_results
from ._novel import novel_candidates


@dataclass
class ConceptResult:
    """What :func:`concept_table` found on one layer.

    Attributes:
        layer: the layer clustered.
        method: the clusterer with its number of clusters, as the results table names
            it (``kmeans(n_clusters=400)``).
        k: the number of clusters.
        seed: the clusterer's seed.
        theta: the alignment's precision threshold.
        max_unknown: the alignment's largest unknown share.
        table: one row per (cluster, label): :func:`~actclust.concepts.align`'s columns
            after ``layer, method, k, seed``, and the novel candidates' ``tightness``,
            ``separability``, ``coherence`` and ``novel_rank`` (NaN for other clusters).
        summary: :func:`~actclust.concepts.summarise` of the table.
        novel: the candidate novel features, best first, with examples in context.
        clusters: the cluster of each row (of each sampled row, with ``sample``).
        seconds: time taken by the ``fit``, the ``align`` step and the ``novel`` ranking.
        sample: the store rows clustered and aligned, sorted, when ``max_rows`` drew a
            sample; ``None`` when every row was.
        n_rows: rows in the layer.
    """

    layer: str
    method: str
    k: int
    seed: int
    theta: float
    max_unknown: float
    table: pd.DataFrame = field(repr=False)
    summary: pd.DataFrame = field(repr=False)
    novel: pd.DataFrame = field(repr=False)
    clusters: np.ndarray = field(repr=False)
    seconds: dict = field(default_factory=dict)
    sample: Optional[np.ndarray] = field(default=None, repr=False)
    n_rows: int = 0

    @property
    def n_fitted(self) -> int:
        """Rows the clusters were fitted on and aligned over."""
        return len(self.clusters)

    def to_results(self) -> pd.DataFrame:
        """The summary as tidy results rows (see :func:`~actclust.concepts.to_results`)."""
        return to_results(self.summary)


def _clusterer(method, k: int, seed: int):
    """(name, estimator, fitted) from a registered name (with settings), an unfitted
    clustering estimator, or one already fitted (its ``labels_`` are used as they are)."""
    from ..reporters import capabilities, configure
    from ..reporters.settings import reporter_from_text

    if isinstance(method, str):
        name, est = reporter_from_text(method)
        fitted = False
    else:
        est = method
        name = getattr(type(est), "registry_name", type(est).__name__)
        fitted = hasattr(est, "labels_")
    if capabilities(est).kind != "clusterer":
        raise ActclustError(f"method {name!r} does not cluster rows; use a clustering "
                            "reporter such as kmeans or agglomerative")
    if not fitted:
        from sklearn.base import clone

        est = configure(est if isinstance(method, str) else clone(est),
                        n_clusters=k, seed=seed)
    return name.split("(")[0], est, fitted


def _method(base: str, est, k: int) -> str:
    """How the results table names the clusterer: ``kmeans(n_clusters=400)``."""
    from ..reporters.settings import method_name

    return method_name(base, {**_changed(est), "n_clusters": int(k)})


def _changed(est) -> dict:
    """Settings that differ from the class defaults, other than k and the seed."""
    try:
        defaults = type(est)().get_params(deep=False)
    except TypeError:
        return {}
    out = {}
    for key, value in est.get_params(deep=False).items():
        if key in ("n_clusters", "n_components", "random_state"):
            continue
        try:
            same = bool(value == defaults.get(key))
        except (TypeError, ValueError):
            same = value is defaults.get(key)
        if not same:
            out[key] = value
    return out


def concept_table(store, layer: str, *, k: int = 400, method="kmeans",
                  labels: Optional[Union[str, Sequence[str]]] = None, theta: float = 0.9,
                  max_unknown: float = 0.4, seed: int = 0, n_examples: int = 5,
                  n_novel: int = 20, max_rows: Optional[int] = None) -> ConceptResult:
    """Over-cluster one layer and align every cluster with every label (ConceptX).

    Args:
        store: an :class:`~actclust.ActivationStore` or its path.
        layer: the layer to cluster.
        k: the number of clusters: many more than any label has values (ConceptX uses
            400 to 1,200 on BERT).
        method: a registered clusterer's name, with settings if wanted
            (``"agglomerative(linkage=ward)"``), an unfitted clustering estimator, or a
            fitted one (its ``labels_`` are used and ``k`` is what it found).
        labels: label columns (default: :func:`~actclust.concepts.choose_label_columns`).
        theta: the precision an aligned cluster needs (see
            :func:`~actclust.concepts.align`).
        max_unknown: the largest unknown share of an aligned cluster.
        seed: the clusterer's seed, and the probes' and samples' of the ranking.
        n_examples: rows shown per novel candidate, nearest its centroid first.
        n_novel: novel candidates shown with examples (all are ranked).
        max_rows: cluster and align a seeded uniform sample of at most this many rows
            (read into memory), so that a layer of millions of token rows costs a bounded
            time and memory; ``None``: every row. Ignored for a fitted ``method``.

    Example:
        >>> import actclust, tempfile
        >>> store = actclust.capture("minilm", "tokens", "blocks.0.hook_out", limit=40,
        ...                          out=tempfile.mkdtemp() + "/s", progress=False)
        >>> result = concept_table(store, "blocks.0.hook_out", k=20, labels="pos")
        >>> result.method, list(result.summary["label"])
        ('kmeans(n_clusters=20)', ['pos', 'any'])
    """
    store = open_store(store)
    view = store.layer(layer)  # an unknown layer fails here, with the closest names
    theta = _check_share(theta, "theta", low_open=True)  # before the fit, not after it
    max_unknown = _check_share(max_unknown, "max_unknown", low_open=False)
    all_rows = store.rows
    if labels is None:
        columns = choose_label_columns(all_rows)
        if not columns:
            raise ActclustError(f"store {store.root} has no label column with 2 to 100 "
                                "values; name the labels to align with (--labels)")
    else:
        columns = [labels] if isinstance(labels, str) else list(labels)
        for column in columns:
            if column not in all_rows.columns or all_rows.is_list_column(column):
                store.labels(column)  # fails, listing the label columns
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ActclustError(f"k must be a whole number of clusters >= 2, got {k!r}")
    base, est, fitted = _clusterer(method, int(k), seed)
    sample = _sample(len(view), max_rows, seed) if not fitted else None
    X = view if sample is None else np.asarray(view[sample])
    if k > len(X):
        raise ActclustError(f"k={k} clusters is more than the {len(X)} rows of {layer}"
                            + (" sampled" if sample is not None else "") + "; use a smaller k")
    start = time.perf_counter()
    if not fitted:
        est.fit(X)
    clusters = np.asarray(est.labels_)
    if len(clusters) != len(X):
        raise ActclustError(f"the fitted clusterer has {len(clusters)} labels, the layer "
                            f"{len(X)} rows; fit it on {layer} of this store")
    if fitted:
        k = int(len(np.unique(clusters[clusters >= 0])))
    name = _method(base, est, k)
    seconds = {"fit": time.perf_counter() - start}
    start = time.perf_counter()
    table = align(clusters, label_frame(store, columns, sample), columns, theta=theta,
                  max_unknown=max_unknown)
    for position, (column, value) in enumerate(
            [("layer", layer), ("method", name), ("k", int(k)), ("seed", int(seed))]):
        table.insert(position, column, value)
    summary = summarise(table)
    seconds["align"] = time.perf_counter() - start
    start = time.perf_counter()
    novel = novel_candidates(X, clusters, table, all_rows, n=n_novel,
                             n_examples=n_examples, seed=seed, row_numbers=sample)
    seconds["novel"] = time.perf_counter() - start
    scores = novel.set_index("group")[["tightness", "separability", "coherence", "rank"]]
    table = table.join(scores.rename(columns={"rank": "novel_rank"}), on="group")
    return ConceptResult(layer=layer, method=name, k=int(k), seed=int(seed),
                         theta=float(theta),
                         max_unknown=float(max_unknown), table=table, summary=summary,
                         novel=novel, clusters=clusters, seconds=seconds, sample=sample,
                         n_rows=len(view))


def _sample(n: int, max_rows: Optional[int], seed: int) -> Optional[np.ndarray]:
    """Sorted row numbers of a seeded uniform sample of ``max_rows`` of ``n`` rows, or
    ``None`` when every row fits."""
    if max_rows is None or n <= max_rows:
        return None
    if isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer)) or \
            max_rows < 2:
        raise ActclustError(f"max_rows must be a whole number of rows >= 2, got {max_rows!r}")
    return np.sort(np.random.default_rng(seed).choice(n, int(max_rows), replace=False))


def label_frame(store, columns, sample: Optional[np.ndarray] = None) -> pd.DataFrame:
    """The label columns ``align`` takes, of every row or of the ``sample`` rows; text
    stays as the store's shared strings (object), never one copy per row."""
    frame = {}
    for column in columns:
        values = store.labels(column)
        frame[column] = pd.Series(values if sample is None else values[sample],
                                  dtype=object if values.dtype == object else None)
    return pd.DataFrame(frame)
