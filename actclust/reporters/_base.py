"""What every reporter shares: input checks, store-layer streaming, the name registry."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.utils.validation import validate_data

from ..errors import ActclustError, closest

_REGISTRY: dict = {}


def register(name: str):
    """Class decorator: make a reporter available by ``name`` to the CLI and sweep files.

    Example:
        >>> {"kmeans", "gmm", "dec"} <= set(registry())
        True
    """
    def add(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"reporter name {name!r} is already taken by "
                             f"{_REGISTRY[name].__name__}")
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
    if isinstance(X, np.ndarray) and X.dtype.kind == "f" and X.ndim == 2:
        check_finite_rows(X)
    return validate_data(estimator, np.asarray(X) if is_layer_view(X) else X, reset=reset,
                         dtype=[np.float32, np.float64], ensure_min_samples=1)


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
