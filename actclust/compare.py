"""Reporters versus probes on one store: the tidy results table.

For each layer, each reporter is fitted with several seeds and its clusters are scored
against each label column; a linear probe is fitted on the same rows for each label. The
answer to "on this layer, does unsupervised structure line up with the feature the probe
finds?" is then one groupby away.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import pandas as pd
from sklearn.base import clone

# compare.RESULT_COLUMNS stays public
from ._util.schema import PROBE_METHOD, RESULT_COLUMNS  # noqa: F401
from .errors import ActclustError
from .metrics import cluster_scores
from .reporters import capabilities, configure, get_reporter
from .store import open_store


def compare(store, labels: Union[str, Sequence[str]], layers=None,
            reporters: Iterable = ("kmeans",), seeds: Union[int, Sequence[int]] = 3,
            n_clusters: Optional[int] = None, probes: bool = True, probe=None,
            group_column: Optional[str] = None, progress: bool = True) -> pd.DataFrame:
    """Fit reporters and probes on each layer of ``store``; return the tidy results table.

    Args:
        store: an :class:`~actclust.ActivationStore` or its path.
        labels: label column(s) of ``store.rows`` to score against.
        layers: layer names or globs (default: every layer of the store).
        reporters: registered names (``"kmeans"``, ``"gmm"``...) or unfitted estimators;
            empty for probes only.
        seeds: how many seeds (0..n-1), or the seeds themselves.
        n_clusters: clusters per reporter; default: the number of classes of each label.
        probes: also fit a linear probe (with a control task) per layer and label.
        probe: an unfitted :class:`~actclust.probes.LinearProbe` to use as the template
            (fewer ``Cs`` or folds make probing cheaper).
        group_column: rows sharing a value never straddle a probe's train/test split;
            default ``template`` when the store has it, else ``doc_id`` for token stores.
        progress: show a progress bar.

    Returns:
        One row per (layer, method, label, metric, seed, value). Cluster metrics are
        ``accuracy`` (Hungarian), ``nmi`` (arithmetic averaging), ``ari``, ``purity``,
        ``v_measure`` and ``fit_seconds``; probe rows (method ``linear_probe``) hold
        ``probe_accuracy``, ``control_accuracy``, ``selectivity`` and ``majority_baseline``.

    Example:
        >>> import actclust, tempfile
        >>> store = actclust.capture("minilm", "topics", "blocks.5.hook_out", pool="mean",
        ...                          limit=120, out=tempfile.mkdtemp() + "/s", progress=False)
        >>> table = compare(store, "topic", seeds=2, progress=False)
        >>> sorted(table["method"].unique())
        ['kmeans', 'linear_probe']
    """
    from ._progress import tqdm

    from ._util.names import select_names

    store = open_store(store)
    labels = [labels] if isinstance(labels, str) else list(labels)
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seeds:
        raise ActclustError("seeds is empty: give a number of seeds or a list of them")
    layer_names = store.layers if layers is None else \
        select_names(layers, store.layers, store.layer)  # store.layer raises "not in store"
    targets = {label: store.labels(label) for label in labels}
    estimators = [reporter_for(r) for r in reporters]
    groups, types = _probe_groups(store, group_column)
    cells = len(layer_names) * (len(estimators) * len(seeds) + (len(labels) if probes else 0))
    bar = tqdm(total=cells, disable=not progress, desc="compare", unit="fit")
    records = []
    for layer in layer_names:
        view = store.layer(layer)
        for name, base in estimators:
            for seed in seeds:
                bar.set_postfix_str(f"{layer} {name} seed {seed}")
                records += _score_reporter(view, layer, name, base, seed, targets, n_clusters)
                bar.update(1)
        if probes:
            X = view.to_numpy()
            for label, y in targets.items():
                bar.set_postfix_str(f"{layer} probe {label}")
                records += _score_probe(X, layer, label, y, groups, types, seeds, probe)
                bar.update(1)
    bar.close()
    return pd.DataFrame.from_records(records, columns=RESULT_COLUMNS)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds for each (layer, method, label, metric).

    Example:
        >>> t = pd.DataFrame({"layer": ["a"] * 2, "method": ["kmeans"] * 2,
        ...                   "label": ["y"] * 2, "metric": ["nmi"] * 2, "seed": [0, 1],
        ...                   "value": [0.4, 0.6]})
        >>> summarize(t)[["mean", "sd", "n"]].round(3).values.tolist()
        [[0.5, 0.141, 2.0]]
    """
    keys = ["layer", "method", "label", "metric"]
    out = table.groupby(keys, sort=False)["value"].agg(mean="mean", sd="std", n="count")
    return out.reset_index()


def write_results(table: pd.DataFrame, path) -> Path:
    """Write the table as parquet atomically (a crash never leaves a partial file).

    Example:
        >>> import tempfile
        >>> t = pd.DataFrame({"layer": ["a"], "method": ["kmeans"], "label": ["y"],
        ...                   "metric": ["nmi"], "seed": [0], "value": [0.5]})
        >>> path = write_results(t, Path(tempfile.mkdtemp()) / "results.parquet")
        >>> pd.read_parquet(path)["value"].tolist()
        [0.5]
    """
    from .store.writer import write_parquet_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(table, path)
    return path


def reporter_cell(store, layer: str, reporter, seed: int, labels: Sequence[str],
                  n_clusters: Optional[int] = None, method: Optional[str] = None) -> list:
    """One cell of :func:`compare`: fit one reporter with one seed on one layer and score
    its clusters against each label. Returns the table's rows as dicts.

    ``method`` names the reporter in the rows (default: as :func:`compare` names it).

    Example:
        >>> import actclust, tempfile
        >>> store = actclust.capture("minilm", "topics", "blocks.5.hook_out", pool="mean",
        ...                          limit=60, out=tempfile.mkdtemp() + "/s", progress=False)
        >>> rows = reporter_cell(store, "blocks.5.hook_out", "kmeans", 0, ["topic"])
        >>> sorted({r["metric"] for r in rows})[:3]
        ['accuracy', 'ari', 'fit_seconds']
    """
    store = open_store(store)
    name, base = reporter_for(reporter)
    targets = {label: store.labels(label) for label in labels}
    return _score_reporter(store.layer(layer), layer, method or name, base, seed, targets,
                           n_clusters)


def probe_cell(store, layer: str, label: str, seed: int, probe=None,
               group_column: Optional[str] = None) -> list:
    """One probe cell of :func:`compare`: a linear probe (and its control task) for one
    label on one layer with one seed. Returns the table's rows as dicts.

    Example:
        >>> import actclust, tempfile
        >>> from actclust.probes import LinearProbe
        >>> store = actclust.capture("minilm", "topics", "blocks.5.hook_out", pool="mean",
        ...                          limit=60, out=tempfile.mkdtemp() + "/s", progress=False)
        >>> rows = probe_cell(store, "blocks.5.hook_out", "topic", 0, LinearProbe(C=1.0))
        >>> [r["metric"] for r in rows]
        ['probe_accuracy', 'control_accuracy', 'selectivity', 'majority_baseline']
    """
    store = open_store(store)
    groups, types = _probe_groups(store, group_column)
    X = store.layer(layer).to_numpy()
    return _score_probe(X, layer, label, store.labels(label), groups, types, [seed], probe)


def reporter_for(reporter):
    """A (name, unfitted clustering estimator) pair from a registered name or an instance.

    Example:
        >>> from actclust.reporters import GMM
        >>> reporter_for("kmeans")[0], reporter_for(GMM())[0]
        ('kmeans', 'gmm')
    """
    if isinstance(reporter, str):
        name, est = reporter, get_reporter(reporter)()
    else:
        name, est = getattr(type(reporter), "registry_name", type(reporter).__name__), reporter
        if est.get_params() != type(est)().get_params():  # keep two settings apart
            name = " ".join(repr(est).split())
    kind = capabilities(est).kind
    if kind == "contrast":
        raise ActclustError(f"reporter {name!r} needs contrast pairs, not one layer (see "
                            "actclust.reporters.contrast_pairs); fit it in Python")
    if kind != "clusterer":
        raise ActclustError(f"reporter {name!r} does not cluster, so it has no clusters to "
                            "compare with labels; use a clustering reporter")
    return name, est


def _probe_groups(store, group_column):
    rows = store.rows
    if group_column is None:
        group_column = "template" if "template" in rows.columns else (
            "doc_id" if "token" in rows.columns else None)
    elif group_column not in rows.columns:
        raise ActclustError(f"group column {group_column!r} is not in store {store.root}; "
                            f"columns: {', '.join(rows.columns)}")
    groups = rows[group_column].to_numpy() if group_column else None
    # Control-task types: the token string for token rows, else the group.
    types = rows["token"].to_numpy() if "token" in rows.columns else groups
    return groups, types


def _score_reporter(view, layer, name, base, seed, targets, n_clusters) -> list:
    records = []
    fitted_k: dict = {}
    for label, y in targets.items():
        known = pd.notna(y)
        k = n_clusters or int(pd.Series(y[known]).nunique())
        if k < 2:
            raise ActclustError(f"label {label!r} has {k} class: nothing to compare with")
        if k not in fitted_k:  # labels with the same number of classes share one fit
            est = configure(clone(base), n_clusters=k, seed=seed)
            start = time.perf_counter()
            est.fit(view)
            fitted_k[k] = (est.labels_, time.perf_counter() - start)
        found, seconds = fitted_k[k]
        scores = cluster_scores(y, found)
        scores["fit_seconds"] = seconds
        records += [{"layer": layer, "method": name, "label": label, "metric": metric,
                     "seed": seed, "value": float(value)} for metric, value in scores.items()]
    return records


def _score_probe(X, layer, label, y, groups, types, seeds, probe) -> list:
    from .probes import probe_scores

    if groups is not None and np.array_equal(groups, y):
        # Grouping by the label itself would test only on unseen classes: split rows instead.
        groups = types = None
    known = pd.notna(y)
    Xk, yk = X[known] if not known.all() else X, y[known]
    gk = groups[known] if groups is not None else None
    tk = types[known] if types is not None else None
    records = []
    for seed in seeds:
        scores = probe_scores(Xk, yk, groups=gk, types=tk, random_state=seed, probe=probe)
        records += [{"layer": layer, "method": PROBE_METHOD, "label": label,
                     "metric": metric, "seed": seed, "value": float(scores[metric])}
                    for metric in ("probe_accuracy", "control_accuracy", "selectivity",
                                   "majority_baseline")]
    return records
