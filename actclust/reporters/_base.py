"""What every reporter shares: input checks, store-layer streaming, the shared parameter
constraints, the name registry and what each registered reporter declares it is."""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from sklearn.base import ClusterMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import validate_data

# scikit-learn's parameter validation has no public home: these are its only imports in
# actclust.reporters, so a rename upstream breaks one line, loudly, and nowhere else.
from sklearn.base import _fit_context as fit_context  # noqa: F401  (re-exported)
from sklearn.utils._param_validation import (HasMethods, Interval,  # noqa: F401
                                             StrOptions)

from ..errors import ActclustError, closest

# Constraints several reporters share, declared once.
N_CLUSTERS = [Interval(Integral, 2, None, closed="left")]
MEMORY_BUDGET = [Interval(Real, 0, None, closed="neither")]
# Any torch device name; which ones exist is decided at fit time by
# actclust._util.devices.resolve_device (indexed devices such as "cuda:1" included).
DEVICE = [str]
CLUSTERER_CONSTRAINTS = {"n_clusters": N_CLUSTERS, "random_state": ["random_state"]}

KINDS = ("clusterer", "transformer", "contrast")
COSTS = ("cheap", "quadratic", "trained")
_COST_RANK = {"cheap": 0, "quadratic": 2, "trained": 3}
_K_PARAMS = ("n_clusters", "n_components")

_REGISTRY: dict = {}


@dataclass(frozen=True)
class Capabilities:
    """What a reporter is, declared where it is registered.

    Attributes:
        name: its registry name (``None`` for an estimator that is not registered).
        kind: ``"clusterer"`` (``labels_`` to score against labels, a number of
            clusters to set), ``"transformer"`` (``transform``, no clusters) or
            ``"contrast"`` (needs contrast pairs, see :func:`contrast_pairs`).
        cost: ``"cheap"`` (about linear in the rows), ``"quadratic"`` (memory or time
            grows with the square of the rows) or ``"trained"`` (a torch training loop).
        streams: fits a store layer larger than memory without loading it whole.
        k_param: the parameter that sets the number of clusters or components
            (``"n_clusters"``, ``"n_components"``), or ``None``.
        seeded: has a ``random_state`` parameter.
        gpu: trains with torch on the ``device`` it is given.
        savable: has ``save(path)`` / ``load(path)`` without pickle.
    """

    name: str | None
    kind: str
    cost: str
    streams: bool
    k_param: str | None
    seeded: bool
    gpu: bool
    savable: bool

    @property
    def cost_rank(self) -> int:
        """A rough rank of run time: cheap 0, quadratic 2, trained 3 (leaves 1 free for
        callers that rank something else in between, such as a linear probe)."""
        return _COST_RANK[self.cost]


def _param_names(cls) -> list:
    init = cls.__init__
    if init is object.__init__:
        return []
    return [p.name for p in inspect.signature(init).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _infer(cls, name=None, kind=None, cost=None, streams=False) -> Capabilities:
    params = _param_names(cls)
    k_param = next((p for p in _K_PARAMS if p in params), None)
    if kind is None:
        if issubclass(cls, ClusterMixin) or hasattr(cls, "fit_predict"):
            kind = "clusterer"
        elif hasattr(cls, "transform"):
            kind = "transformer"
        else:
            raise ValueError(f"cannot tell what {cls.__name__} is: declare kind= "
                             f"({', '.join(KINDS)}) when registering it")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    cost = cost or "cheap"
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {', '.join(COSTS)}, got {cost!r}")
    return Capabilities(name=name, kind=kind, cost=cost, streams=bool(streams),
                        k_param=k_param, seeded="random_state" in params,
                        gpu=cost == "trained" and "device" in params,
                        savable=callable(getattr(cls, "save", None))
                        and callable(getattr(cls, "load", None)))


def register(name: str, *, kind: str | None = None, cost: str | None = None,
             streams: bool = False):
    """Class decorator: make a reporter available by ``name`` to the CLI and sweep files,
    and declare what it is (see :class:`Capabilities`).

    ``kind`` defaults to ``"clusterer"`` for a scikit-learn clusterer and
    ``"transformer"`` for anything with ``transform``; ``cost`` to ``"cheap"``. The
    parameter that sets k, ``random_state`` and savability are read from the class.

    Example:
        >>> {"kmeans", "gmm", "dec"} <= set(registry())
        True
        >>> capabilities("agglomerative").cost
        'quadratic'
    """
    def add(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"reporter name {name!r} is already taken by "
                             f"{_REGISTRY[name].__name__}")
        cls._reporter_capabilities = _infer(cls, name, kind, cost, streams)
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls
    return add


def registry() -> dict:
    """Reporter name -> class.

    Example:
        >>> registry()["kmeans"].__name__
        'KMeans'
    """
    return dict(_REGISTRY)


def get_reporter(name: str):
    """The reporter class registered as ``name``; unknown names list the closest ones.

    Example:
        >>> get_reporter("kmeans").__name__
        'KMeans'
    """
    key = name.strip().lower()
    if key not in _REGISTRY:
        raise ActclustError(f"unknown reporter {name!r}; {closest(key, _REGISTRY)}")
    return _REGISTRY[key]


def capabilities(reporter) -> Capabilities:
    """What ``reporter`` is: a registered name, a reporter class or an estimator.

    Registered reporters answer with what they declared; any other estimator with what
    its class shows (a scikit-learn clusterer is a ``"clusterer"``, anything with
    ``transform`` a ``"transformer"``).

    Example:
        >>> from actclust.reporters import KMeans
        >>> capabilities("pca").kind, capabilities(KMeans()).streams
        ('transformer', True)
        >>> capabilities("dec").cost, capabilities("dec").k_param
        ('trained', 'n_clusters')
    """
    if isinstance(reporter, str):
        cls = get_reporter(reporter)
    else:
        cls = reporter if isinstance(reporter, type) else type(reporter)
    declared = cls.__dict__.get("_reporter_capabilities")
    return declared if declared is not None else _infer(cls)


def is_clusterer(reporter) -> bool:
    """Whether ``reporter`` (name, class or estimator) gives clusters to score against
    labels with a number of clusters a caller may set.

    Example:
        >>> is_clusterer("kmeans"), is_clusterer("pca"), is_clusterer("ccs")
        (True, False, False)
    """
    return capabilities(reporter).kind == "clusterer"


def is_transformer(reporter) -> bool:
    """Whether ``reporter`` only transforms (components, no clusters), like ``pca``.

    Example:
        >>> is_transformer("pca"), is_transformer("kmeans")
        (True, False)
    """
    return capabilities(reporter).kind == "transformer"


def configure(estimator, n_clusters: int | None = None, seed: int | None = None):
    """Set the number of clusters (or components) and the seed of ``estimator`` where it
    has them, whatever it calls them; returns ``estimator``. ``None`` leaves a value as
    it is.

    Example:
        >>> from actclust.reporters import PCA, KMeans
        >>> configure(KMeans(), n_clusters=4, seed=1).get_params()["n_clusters"]
        4
        >>> configure(PCA(), n_clusters=3).n_components
        3
    """
    caps = capabilities(estimator)
    params = {}
    if n_clusters is not None and caps.k_param is not None:
        params[caps.k_param] = int(n_clusters)
    if seed is not None and "random_state" in estimator.get_params(deep=False):
        params["random_state"] = seed
    return estimator.set_params(**params) if params else estimator


def make_reporter(reporter, *, n_clusters: int | None = None, seed: int | None = None,
                  **params):
    """A fresh, unfitted estimator from a registered name (with ``params``) or a copy of
    an estimator (``clone``), configured with :func:`configure`.

    Example:
        >>> make_reporter("gmm", n_clusters=3, seed=0, covariance_type="diag")
        GMM(covariance_type='diag', n_clusters=3, random_state=0)
    """
    from sklearn.base import clone

    if isinstance(reporter, str):
        est = get_reporter(reporter)(**params)
    else:
        est = clone(reporter).set_params(**params) if params else clone(reporter)
    return configure(est, n_clusters=n_clusters, seed=seed)


def warn_fewer_clusters(estimator, labels, n_clusters: int, hint: str) -> int:
    """A ``ConvergenceWarning`` when ``labels`` hold fewer distinct clusters than asked
    for (as scikit-learn's KMeans does); returns the number found.

    Example:
        >>> import warnings
        >>> from actclust.reporters import KMeans
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_fewer_clusters(KMeans(), np.array([0, 0, 1]), 3, "a hint")
        2
        >>> str(caught[0].message)
        'KMeans found 2 distinct clusters, fewer than n_clusters=3; a hint'
    """
    found = len(np.unique(labels))
    if found < n_clusters:
        warnings.warn(f"{type(estimator).__name__} found {found} distinct clusters, fewer "
                      f"than n_clusters={n_clusters}; {hint}", ConvergenceWarning,
                      stacklevel=3)
    return found


def is_layer_view(X) -> bool:
    """A store layer (``store.layer(name)``), which large-data reporters stream."""
    return hasattr(X, "iter_batches") and hasattr(X, "storage_dtype")


def check_finite_rows(X: np.ndarray, name: str = "X", offset: int = 0) -> None:
    """Reject NaN/inf with a message that counts the bad rows and names the first.

    ``X`` may be a chunk of a larger input starting at row ``offset``: the row named is
    then the input's, and the count the chunk's."""
    finite = np.isfinite(X).all(axis=1) if X.ndim == 2 else np.isfinite(X)
    if not finite.all():
        bad = np.nonzero(~finite)[0]
        raise ActclustError(
            f"{name} has {len(bad)} row(s) containing NaN or inf (first: row "
            f"{offset + bad[0]}); drop or fill those rows before fitting")


def check_data(estimator, X, reset: bool = True) -> np.ndarray:
    """Validate ``X`` (array, tensor or store layer) as a 2-D float array, scikit-learn style."""
    if hasattr(X, "detach"):  # a torch tensor, possibly on a GPU
        X = X.detach().cpu().numpy()
    if is_layer_view(X):  # a store's values are data too: NaN there is the user's to fix
        X = np.asarray(X)
    if isinstance(X, np.ndarray) and X.dtype.kind == "f" and X.ndim == 2:
        check_finite_rows(X)
    return validate_data(estimator, X, reset=reset, dtype=[np.float32, np.float64],
                         ensure_min_samples=1)


def check_n_clusters(estimator, n_samples: int, n_clusters: int, what="n_clusters") -> None:
    if n_samples < n_clusters:
        raise ActclustError(
            f"{type(estimator).__name__} with {what}={n_clusters} needs at least "
            f"{n_clusters} rows, got n_samples={n_samples}; lower {what} or add rows")


def warn_constant_columns(X: np.ndarray, estimator) -> np.ndarray:
    """Boolean mask of non-constant columns; warns when some are constant (dead units).

    Dead ReLU units are common in real activations, so constant columns are dropped where
    they would break a computation (whitening, standardising), never silently everywhere.
    An input whose every column is constant has nothing to find and is an error.
    """
    varying = np.ptp(X, axis=0) > 0 if len(X) else np.ones(X.shape[1], bool)
    return check_varying(varying, len(X), estimator, stacklevel=4)


def check_varying(varying: np.ndarray, n_rows: int, estimator, stacklevel: int = 3):
    """Refuse all-constant input and warn about constant columns, given the mask of
    columns that vary (computed in memory or over a streamed pass); returns the mask."""
    if n_rows > 1 and not varying.any():
        raise ActclustError(f"{type(estimator).__name__}: every column of X is constant "
                            "(zero variance): there is no structure to find")
    if n_rows > 1 and not varying.all():
        warnings.warn(f"{type(estimator).__name__}: {int((~varying).sum())} of "
                      f"{len(varying)} columns are constant (zero variance) and carry no "
                      "information", UserWarning, stacklevel=stacklevel)
    return varying


def seed_from(random_state) -> int:
    """An int seed for faiss/torch from a scikit-learn ``random_state``."""
    from sklearn.utils import check_random_state

    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def iter_rows(X, batch_size: int):
    """Batches of float32 rows from an array or a store layer, in order."""
    if is_layer_view(X):
        yield from X.iter_batches(batch_size, dtype=np.float32)
        return
    for start in range(0, len(X), batch_size):
        yield np.ascontiguousarray(X[start:start + batch_size], dtype=np.float32)
