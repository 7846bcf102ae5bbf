"""Reporters versus probes on one store: the tidy results table.

For each layer, each reporter is fitted with several seeds and its clusters are scored
against each label column; a linear probe is fitted on the same rows for each label. The
answer to "on this layer, does unsupervised structure line up with the feature the probe
finds?" is then one groupby away.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import pandas as pd

# compare.RESULT_COLUMNS stays public
from ._util.schema import NEIGHBOUR_METHOD, PROBE_METHOD, RESULT_COLUMNS  # noqa: F401
from .concepts import feature_scores, is_feature_reporter
from .errors import ActclustError
from .label_free import cluster_balance, knn_purity, self_probe_accuracy
from .metrics import cluster_scores
from .reporters import capabilities
from .selection import DEFAULT_CANDIDATES, check_choice, choose_n_clusters, fit_clusters
from .store import open_store


def compare(store, labels: Union[str, Sequence[str]], layers=None,
            reporters: Union[Iterable, dict] = ("kmeans",), seeds: Union[int, Sequence[int]] = 3,
            n_clusters=None, probes: bool = True, probe=None,
            group_column: Optional[str] = None, label_free: bool = True,
            n_neighbors: int = 20, progress: bool = True) -> pd.DataFrame:
    """Fit reporters and probes on each layer of ``store``; return the tidy results table.

    Args:
        store: an :class:`~actclust.ActivationStore` or its path.
        labels: label column(s) of ``store.rows`` to score against.
        layers: layer names or globs (default: every layer of the store).
        reporters: registered names (``"kmeans"``), names with settings
            (``"gmm(covariance_type=diag)"``) or unfitted estimators; or a dict from the
            name the table gives each (its ``method``) to one of those; empty for probes
            only.
        seeds: how many seeds (0..n-1), or the seeds themselves.
        n_clusters: clusters per reporter; default: the number of classes of each label.
            ``"auto"`` (or a list of candidates) chooses it per layer and reporter without
            labels, by :func:`~actclust.selection.choose_n_clusters` over the seeds.
        probes: also fit a linear probe (with a control task) per layer and label.
        probe: ``"auto"`` (default): the logistic :class:`~actclust.probes.LinearProbe`
            while a layer's labelled rows fit in memory, the streamed
            :class:`~actclust.probes.RidgeProbe` above
            (``actclust.probes.IN_MEMORY_MAX_VALUES``); ``"logistic"`` or ``"ridge"``
            for one of them always; or an unfitted probe to use as the template (fewer
            ``Cs``/``alphas`` or folds make probing cheaper).
        group_column: rows sharing a value never straddle a probe's train/test split;
            default ``template`` when the store has it, else ``doc_id`` for token stores.
        label_free: also score every clustering fit without labels
            (``self_probe_accuracy``, ``cluster_balance``) and each layer's neighbours
            against each label (``knn_purity``, method ``knn``).
        n_neighbors: neighbours per row for ``knn_purity`` (cosine).
        progress: show a progress bar.

    Returns:
        One row per (layer, method, label, metric, seed, value). Cluster metrics are
        ``accuracy`` (Hungarian), ``nmi`` (arithmetic averaging), ``ari``, ``purity``,
        ``v_measure`` and ``fit_seconds``; with ``label_free``, also
        ``self_probe_accuracy`` (cross-validated accuracy of a linear probe trained on the
        clusters themselves) and ``cluster_balance`` (normalised entropy of the sizes),
        which use no label and are the scores to choose settings by; with
        ``n_clusters="auto"``, ``n_clusters`` (the chosen number) and ``stability``. Probe
        rows (method ``linear_probe``) hold ``probe_accuracy``, ``control_accuracy``,
        ``selectivity`` and ``majority_baseline``; ``knn`` rows hold ``knn_purity``, the
        share of a row's ``n_neighbors`` nearest rows that carry its label: where it is
        low, methods that pair neighbours (SCAN, TEMI) cannot beat k-means.

    Example:
        >>> import actclust, tempfile
        >>> store = actclust.capture("minilm", "topics", "blocks.5.hook_out", pool="mean",
        ...                          limit=120, out=tempfile.mkdtemp() + "/s", progress=False)
        >>> table = compare(store, "topic", seeds=2, progress=False)
        >>> sorted(table["method"].unique())
        ['kmeans', 'knn', 'linear_probe']
    """
    from ._progress import tqdm

    from ._util.names import select_names

    store = open_store(store)
    labels = [labels] if isinstance(labels, str) else list(labels)
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seeds:
        raise ActclustError("seeds is empty: give a number of seeds or a list of them")
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)) \
            or n_neighbors < 1:
        raise ActclustError(f"n_neighbors must be a whole number >= 1, got {n_neighbors!r}")
    layer_names = store.layers if layers is None else \
        select_names(layers, store.layers, store.layer)  # store.layer raises "not in store"
    targets = {label: store.labels(label) for label in labels}
    estimators = [reporter_for(r, name) for name, r in reporters.items()] \
        if isinstance(reporters, dict) else [reporter_for(r) for r in reporters]
    names = [name for name, _ in estimators]
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise ActclustError(f"two reporters are both called {twice!r}; name them with a "
                            "dict, e.g. reporters={'gmm-diag': GMM(covariance_type='diag')}")
    candidates = _k_candidates(n_clusters, seeds)
    groups, types = _probe_groups(store, group_column)
    fits_per_seed = len(candidates) if candidates else 1
    cells = len(layer_names) * (len(estimators) * len(seeds) * fits_per_seed
                                + (len(labels) if probes else 0))
    bar = tqdm(total=cells, disable=not progress, desc="compare", unit="fit")
    records = []
    for layer in layer_names:
        view = store.layer(layer)
        if label_free and estimators:
            bar.set_postfix_str(f"{layer} neighbours")
            records += _score_neighbours(view, layer, targets, n_neighbors, seeds[0])
        for name, base in estimators:
            if candidates and not is_feature_reporter(base):
                bar.set_postfix_str(f"{layer} {name} choosing k")
                records += _score_auto(view, layer, name, base, seeds, targets, candidates,
                                       label_free, bar)
                continue
            for seed in seeds:
                bar.set_postfix_str(f"{layer} {name} seed {seed}")
                records += _score_reporter(view, layer, name, base, seed, targets, n_clusters,
                                           label_free)
                bar.update(1)
        if probes:
            for label, y in targets.items():
                bar.set_postfix_str(f"{layer} probe {label}")
                records += _score_probe(view, layer, label, y, groups, types, seeds, probe)
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
                  n_clusters: Optional[int] = None, method: Optional[str] = None,
                  label_free: bool = True) -> list:
    """One cell of :func:`compare`: fit one reporter with one seed on one layer and score
    its clusters against each label. Returns the table's rows as dicts.

    ``method`` names the reporter in the rows (default: as :func:`compare` names it);
    ``label_free`` adds the self-probe accuracy and the cluster balance of the fit.

    Example:
        >>> import actclust, tempfile
        >>> store = actclust.capture("minilm", "topics", "blocks.5.hook_out", pool="mean",
        ...                          limit=60, out=tempfile.mkdtemp() + "/s", progress=False)
        >>> rows = reporter_cell(store, "blocks.5.hook_out", "kmeans", 0, ["topic"])
        >>> sorted({r["metric"] for r in rows})[:3]
        ['accuracy', 'ari', 'cluster_balance']
    """
    store = open_store(store)
    name, base = reporter_for(reporter)
    targets = {label: store.labels(label) for label in labels}
    return _score_reporter(store.layer(layer), layer, method or name, base, seed, targets,
                           n_clusters, label_free)


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
    return _score_probe(store.layer(layer), layer, label, store.labels(label), groups, types,
                        [seed], probe)


def reporter_for(reporter, name: Optional[str] = None):
    """A (name, unfitted clustering estimator) pair from a registered name, a name with
    settings (``"gmm(covariance_type=diag)"``) or an instance; ``name`` overrides the name.

    An instance with settings other than its defaults is named by them, the way the
    command line writes them.

    Example:
        >>> from actclust.reporters import GMM
        >>> reporter_for("kmeans")[0], reporter_for(GMM())[0]
        ('kmeans', 'gmm')
        >>> reporter_for(GMM(covariance_type="diag"))[0]
        'gmm(covariance_type=diag)'
        >>> reporter_for("gmm(covariance_type=diag)", name="gmm-diag")[0]
        'gmm-diag'
    """
    from .reporters.settings import method_name, reporter_from_text

    if isinstance(reporter, str):
        found, est = reporter_from_text(reporter)
    else:
        est = reporter
        registered = getattr(type(est), "registry_name", None)
        if registered is not None:
            defaults = type(est)().get_params(deep=False)
            changed = {k: v for k, v in est.get_params(deep=False).items()
                       if k not in ("n_clusters", "random_state") and not _same(v, defaults[k])}
            found = method_name(registered, changed)
        else:
            found = type(est).__name__
            if est.get_params() != type(est)().get_params():  # keep two settings apart
                found = " ".join(repr(est).split())
    name = found if name is None else str(name)
    kind = capabilities(est).kind
    if kind == "contrast":
        raise ActclustError(f"reporter {name!r} needs contrast pairs, not one layer (see "
                            "actclust.reporters.contrast_pairs); fit it in Python")
    if kind != "clusterer" and not is_feature_reporter(est):
        raise ActclustError(f"reporter {name!r} does not cluster, so it has no clusters to "
                            "compare with labels; use a clustering reporter")
    return name, est


def _same(a, b) -> bool:
    try:
        return bool(a == b) if not isinstance(a, np.ndarray) else np.array_equal(a, b)
    except (TypeError, ValueError):
        return a is b


def _probe_groups(store, group_column):
    columns = store.columns  # the names only: no row is read
    if group_column is None:
        group_column = "template" if "template" in columns else (
            "doc_id" if "token" in columns else None)
    elif group_column not in columns:
        raise ActclustError(f"group column {group_column!r} is not in store {store.root}; "
                            f"columns: {', '.join(columns)}")
    groups = store.labels(group_column) if group_column else None
    # Control-task types: the token string for token rows, else the group.
    types = store.labels("token") if "token" in columns else groups
    return groups, types


def _score_reporter(view, layer, name, base, seed, targets, n_clusters,
                    label_free=True) -> list:
    if is_feature_reporter(base):  # features (a sparse autoencoder), not clusters
        return feature_scores(base, view, layer, name, seed, targets)
    records = []
    fitted_k: dict = {}
    for label, y in targets.items():
        known = pd.notna(y)
        k = n_clusters or int(pd.Series(y[known]).nunique())
        if k < 2:
            raise ActclustError(f"label {label!r} has {k} class: nothing to compare with")
        if k not in fitted_k:  # labels with the same number of classes share one fit
            found, seconds = fit_clusters(base, view, k, seed)
            fitted_k[k] = (found, seconds, _label_free_scores(view, found, k, seed)
                           if label_free else {})
        found, seconds, free = fitted_k[k]
        records += _cluster_rows(layer, name, label, seed, y, found, seconds, free)
    return records


def _cluster_rows(layer, name, label, seed, y, found, seconds, extra) -> list:
    scores = {**cluster_scores(y, found), "fit_seconds": seconds, **extra}
    return [{"layer": layer, "method": name, "label": label, "metric": metric,
             "seed": seed, "value": float(value)} for metric, value in scores.items()]


def _label_free_scores(view, found, k: int, seed: int) -> dict:
    """What a clustering shows without labels: how well a linear probe learns it, and how
    even its sizes are (a one-cluster fit has no probe score: NaN)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="self_probe_accuracy: ")
        probe = self_probe_accuracy(view, found, random_state=seed) \
            if len(found) >= 5 else float("nan")
    return {"self_probe_accuracy": probe,
            "cluster_balance": cluster_balance(found, max(k, len(np.unique(found))))}


NEIGHBOUR_MAX_ROWS = 50_000  # kNN purity above this is estimated on a seeded sample


def _score_neighbours(view, layer, targets, n_neighbors, seed) -> list:
    """``knn_purity`` of the layer for each label: one neighbour search shared by the
    labels without missing values. Above ``NEIGHBOUR_MAX_ROWS`` rows, a seeded sample of
    that many rows stands for the layer (its neighbours are found among the sample)."""
    from .label_free import nearest_neighbors

    n = len(view)
    rows = None
    if n > NEIGHBOUR_MAX_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(n, NEIGHBOUR_MAX_ROWS,
                                                          replace=False))
        view, n = np.asarray(view[rows], dtype=np.float32), NEIGHBOUR_MAX_ROWS
    k = min(n_neighbors, n - 1)
    if k < 1:
        return []
    found, records = None, []
    for label, y in targets.items():
        y = y if rows is None else y[rows]
        codes, _ = pd.factorize(y)
        if (codes < 0).any():
            if (codes >= 0).sum() <= k:
                continue  # too few labelled rows to have k labelled neighbours
            value = knn_purity(view, y, k=k, random_state=seed)
        else:
            if found is None:
                found = nearest_neighbors(view, k=k, metric="cosine", random_state=seed)[0]
            value = float((codes[found] == codes[:, None]).mean())
        records.append({"layer": layer, "method": NEIGHBOUR_METHOD, "label": label,
                        "metric": "knn_purity", "seed": seed, "value": value})
    return records


def _k_candidates(n_clusters, seeds) -> list:
    """The numbers of clusters to choose from, or [] for a fixed (or per-label) number."""
    if n_clusters is None or isinstance(n_clusters, (int, np.integer)) \
            and not isinstance(n_clusters, bool):
        return []
    if isinstance(n_clusters, str):
        if n_clusters != "auto":
            raise ActclustError(f"n_clusters must be a number, 'auto' or a list of "
                                f"candidates, got {n_clusters!r}")
        candidates = list(DEFAULT_CANDIDATES)
    else:
        candidates = list(n_clusters)
    return check_choice(candidates, seeds)[0]


def _score_auto(view, layer, name, base, seeds, targets, candidates, label_free, bar):
    """Fit every candidate number of clusters with every seed, keep the one the seeds
    agree on most (:func:`~actclust.selection.choose_n_clusters`, no labels), and score
    its fits; rows ``n_clusters`` and ``stability`` record the choice."""
    def fit(k, seed):
        out = fit_clusters(base, view, k, seed)
        bar.update(1)
        return out

    choice = choose_n_clusters(fit, candidates=candidates, seeds=seeds)
    k = choice.n_clusters
    records = []
    for seed, (found, seconds) in zip(seeds, choice.fits):
        free = _label_free_scores(view, found, k, seed) if label_free else {}
        free.update(n_clusters=k, stability=choice.stability)
        for label, y in targets.items():
            records += _cluster_rows(layer, name, label, seed, y, found, seconds, free)
    return records


def _score_probe(view, layer, label, y, groups, types, seeds, probe) -> list:
    from .probes import layer_probe_scores

    if groups is not None and np.array_equal(groups, y):
        # Grouping by the label itself would test only on unseen classes: split rows instead.
        groups = types = None
    records = []
    for seed in seeds:
        scores = layer_probe_scores(view, y, groups=groups, types=types, random_state=seed,
                                    probe=probe)
        records += [{"layer": layer, "method": PROBE_METHOD, "label": label,
                     "metric": metric, "seed": seed, "value": float(scores[metric])}
                    for metric in ("probe_accuracy", "control_accuracy", "selectivity",
                                   "majority_baseline")]
    return records
