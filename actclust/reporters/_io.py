"""Fitted reporters saved and loaded without running code from the file.

A reporter file is one ``safetensors`` file: every array and tensor (weights, centres,
scalings) is stored as raw numbers, and a JSON document in the file's metadata holds the
class, the constructor parameters, the fitted attributes that are not arrays, the
actclust version and the format version. Loading parses that JSON and copies numbers; it
never unpickles, imports or calls anything the file names. The class is checked first,
against the registry, before anything is built; any file that is not exactly what
:func:`save_reporter` writes is refused with an :class:`~actclust.errors.ActclustError`.
Tensors are moved to the CPU when saved, so a reporter trained on a GPU loads anywhere.

Example:
    >>> import tempfile
    >>> from sklearn.datasets import make_blobs
    >>> from actclust.reporters import AEKMeans
    >>> X, _ = make_blobs(200, centers=3, n_features=6, random_state=0)
    >>> ae = AEKMeans(3, epochs=3, hidden=(8,), code_dim=2, device="cpu", random_state=0)
    >>> path = ae.fit(X).save(tempfile.mkdtemp() + "/ae.safetensors")
    >>> bool((AEKMeans.load(path).predict(X) == ae.predict(X)).all())
    True
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np

from .._util.files import atomic_write_bytes
from .._util.version import __version__
from ..errors import ActclustError

FORMAT = "actclust-reporter"
FORMAT_VERSION = 1
_META_KEY = "actclust"
_ATTRIBUTE = re.compile(r"[a-z][a-z0-9_]*_")  # a public fitted attribute, sklearn style
_NUMERIC = "biuf"  # the dtype kinds stored as raw numbers


class _Encoder:
    """Turns parameters and fitted attributes into JSON, collecting arrays aside."""

    def __init__(self):
        self.tensors: dict = {}

    def _store(self, key: str, array: np.ndarray) -> str:
        if key in self.tensors:
            raise ActclustError(f"cannot save: two values would be stored as {key!r}")
        self.tensors[key] = np.array(array, order="C")  # a copy; keeps 0-d arrays 0-d
        return key

    def table(self, values: dict, prefix: str, modules: bool = True) -> dict:
        """A table of named values (parameters, fitted attributes); arrays are stored
        under ``prefix`` + the name."""
        return {"__dict__": {k: self.encode(v, prefix + k, modules) for k, v in values.items()}}

    def encode(self, value, key: str, modules: bool = True):
        import torch
        from sklearn.base import BaseEstimator

        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, np.generic) and value.dtype.kind in _NUMERIC:
            return {"__scalar__": value.dtype.str, "value": value.item()}
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        if isinstance(value, np.ndarray):
            if value.dtype.kind in _NUMERIC:
                return {"__array__": self._store(key, value)}
            if value.dtype.kind in "OU" and all(isinstance(v, str) for v in value.ravel()):
                return {"__strings__": [str(v) for v in value.ravel()],
                        "shape": list(value.shape)}
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v, f"{key}.{i}", modules)
                                  for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, f"{key}.{i}", modules) for i, v in enumerate(value)]
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {"__dict__": {k: self.encode(v, f"{key}.{k}", modules)
                                 for k, v in value.items()}}
        if modules and isinstance(value, torch.nn.Module):
            state = value.state_dict()
            for name, tensor in state.items():
                self._store(f"{key}.{name}", tensor.detach().cpu().numpy())
            return {"__module__": key, "keys": list(state)}
        if isinstance(value, BaseEstimator) and getattr(type(value), "registry_name", None):
            return {"__estimator__": type(value).registry_name,
                    "params": self.table(value.get_params(deep=False), f"{key}.params.",
                                         modules=False),
                    "state": self.table(fitted_attributes(value), f"{key}.", modules)}
        raise ActclustError(
            f"cannot save {key!r}: a {type(value).__name__} is not numbers, text or an "
            "actclust reporter, and a reporter file never holds code; pickle the reporter "
            "with joblib instead (and load such a file only from a source you trust)")


class _Module:
    """A module's weights read from a file, waiting for the owner to build the module."""

    def __init__(self, state: dict):
        self.state = state


class _Decoder:
    """Rebuilds values from the JSON and the arrays; refuses anything else."""

    def __init__(self, tensors: dict):
        self.tensors = tensors
        self.used: set = set()

    def _take(self, key):
        if not isinstance(key, str) or key not in self.tensors:
            raise ValueError(f"refers to an array {key!r} the file does not hold")
        self.used.add(key)
        return self.tensors[key]

    def decode(self, node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict) or not node:
            raise ValueError(f"unexpected value {node!r}")
        marker = next(iter(node))
        if marker == "__array__" and len(node) == 1:
            return self._take(node[marker])
        if marker == "__scalar__" and set(node) == {"__scalar__", "value"}:
            dtype = np.dtype(str(node["__scalar__"]))
            if dtype.kind not in _NUMERIC or not isinstance(node["value"], (bool, int, float)):
                raise ValueError(f"bad scalar {node!r}")
            return dtype.type(node["value"])
        if marker == "__strings__" and set(node) == {"__strings__", "shape"}:
            values, shape = node["__strings__"], node["shape"]
            if not (isinstance(values, list) and all(isinstance(v, str) for v in values)
                    and isinstance(shape, list) and all(isinstance(n, int) for n in shape)):
                raise ValueError("bad text array")
            return np.array(values, dtype=object).reshape(shape)
        if marker == "__tuple__" and len(node) == 1 and isinstance(node[marker], list):
            return tuple(self.decode(v) for v in node[marker])
        if marker == "__dict__" and len(node) == 1 and isinstance(node[marker], dict):
            return {str(k): self.decode(v) for k, v in node[marker].items()}
        if marker == "__module__" and set(node) == {"__module__", "keys"} and \
                isinstance(node["keys"], list):
            prefix = node["__module__"]
            return _Module({k: self._take(f"{prefix}.{k}") for k in node["keys"]})
        if marker == "__estimator__" and set(node) == {"__estimator__", "params", "state"}:
            return self.build(_registered(node["__estimator__"]), node["params"],
                              node["state"])
        raise ValueError(f"unexpected value {node!r}")

    def build(self, cls, params_node, state_node):
        """An instance of ``cls`` with the decoded parameters and fitted attributes."""
        params = self.decode(params_node)
        if not isinstance(params, dict) or set(params) != set(cls().get_params(deep=False)):
            raise ValueError(f"the parameters do not match those of {cls.__name__}")
        est = cls(**params)
        est._validate_params()  # the parameters' declared constraints, as fit checks them
        state = self.decode(state_node)
        if not isinstance(state, dict):
            raise ValueError("the fitted attributes are not a table")
        modules = {}
        for name, value in state.items():
            if not _ATTRIBUTE.fullmatch(name):
                raise ValueError(f"{name!r} is not a fitted attribute")
            if isinstance(value, _Module):
                modules[name] = value
            else:
                setattr(est, name, value)
        for name, weights in modules.items():
            setattr(est, name, _rebuild(est, name, weights.state))
        if hasattr(est, "_build_module") and "module_" not in modules:
            raise ValueError(f"no weights for the network of {cls.__name__}")
        return est


def _rebuild(est, name: str, state: dict):
    """The owner builds the module's architecture from its parameters (never from the
    file), then the weights are copied in; names and shapes must match exactly.

    The architecture is first built on torch's ``meta`` device, which allocates nothing
    and draws no random numbers, so parameters that ask for a huge network are refused
    by the shape check instead of filling the memory."""
    import torch

    build = getattr(est, "_build_module", None)
    if build is None:
        raise ValueError(f"{type(est).__name__} has no module to load")
    with torch.device("meta"):
        module = build(name)
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(np.shape(v)) for k, v in state.items()}
    if expected != found:
        wrong = sorted(set(expected.items()) ^ set(found.items()))[:2]
        raise ValueError(f"the weights of {name} do not fit its architecture (size "
                         f"mismatch: {wrong})")
    module = module.to_empty(device="cpu")
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()},
                           strict=True)
    return module.eval()


def _registered(name):
    from ._base import registry

    cls = registry().get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"names {name!r}, which is not a registered reporter")
    return cls


def fitted_attributes(est) -> dict:
    """The public fitted attributes of ``est`` (names ending in ``_``), scikit-learn style."""
    return {k: v for k, v in vars(est).items() if _ATTRIBUTE.fullmatch(k)}


def _params_to_save(est) -> dict:
    params = dict(est.get_params(deep=False))
    if isinstance(params.get("random_state"), (np.random.RandomState, np.random.Generator)):
        warnings.warn(f"{type(est).__name__}: random_state is a random generator, which a "
                      "reporter file does not hold; it is saved as None", UserWarning,
                      stacklevel=4)
        params["random_state"] = None
    return params


def save_reporter(est, path) -> Path:
    """Write the fitted reporter ``est`` to ``path`` (see the module docstring); the file
    appears whole or not at all. Returns the path."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est)
    name = getattr(type(est), "registry_name", None)
    if name is None or _registered(name) is not type(est):
        raise ActclustError(f"{type(est).__name__} is not a registered reporter: only "
                            "registered reporters can be saved")
    encoder = _Encoder()
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "class": type(est).__name__,
            "reporter": name, "actclust_version": __version__,
            "params": encoder.table(_params_to_save(est), "params.", modules=False),
            "attributes": encoder.table(fitted_attributes(est), "", modules=True)}
    from safetensors.numpy import save

    data = save(encoder.tensors, metadata={_META_KEY: json.dumps(meta)})
    return atomic_write_bytes(Path(path), data)


def _one_line(err: Exception) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())[:300]


def read_header(path) -> dict:
    """The JSON document of a reporter file, checked for its format; reads the header only.

    Example:
        >>> read_header(__file__)
        Traceback (most recent call last):
        ...
        actclust.errors.ActclustError: ...is not an actclust reporter file...
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ActclustError(f"no reporter file at {path}")
    refuse = f"{path} is not an actclust reporter file (written by save())"
    try:
        with safe_open(str(path), "np") as fh:
            raw = (fh.metadata() or {}).get(_META_KEY)
    except Exception as err:  # any parse failure of a foreign file is the same answer
        raise ActclustError(f"{refuse}: {_one_line(err)}") from None
    try:
        meta = json.loads(raw) if isinstance(raw, str) else None
    except (ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ActclustError(f"{refuse}: it has no actclust reporter metadata")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ActclustError(f"{refuse}: bad format version {version!r}")
    if version > FORMAT_VERSION:
        raise ActclustError(f"{path} was written by a newer actclust "
                            f"({meta.get('actclust_version')}, format {version}); this one "
                            f"reads format {FORMAT_VERSION}: upgrade actclust")
    if not all(isinstance(meta.get(k), str) for k in ("class", "reporter")) or \
            "params" not in meta or "attributes" not in meta:
        raise ActclustError(f"{refuse}: its metadata lacks the class or parameters")
    return meta


def load_reporter(path, expected: type | None = None):
    """Read a reporter written by :func:`save_reporter`. With ``expected``, the file must
    hold exactly that class; either way it must name a registered reporter that can be
    saved. Nothing the file names is executed.

    Example:
        >>> load_reporter("no-such-file.safetensors")
        Traceback (most recent call last):
        ...
        actclust.errors.ActclustError: no reporter file at no-such-file.safetensors
    """
    from safetensors import safe_open

    meta = read_header(path)
    if expected is not None and meta["class"] != expected.__name__:
        raise ActclustError(f"{path} holds a {meta['class']}, not a {expected.__name__}; "
                            f"load it with {meta['class']}.load or load_reporter")
    cls = _registered_or_refuse(meta, path)
    try:
        with safe_open(str(path), "np") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        decoder = _Decoder(tensors)
        est = decoder.build(cls, meta["params"], meta["attributes"])
        unused = set(tensors) - decoder.used
        if unused:
            raise ValueError(f"holds arrays nothing refers to: {sorted(unused)[:3]}")
    except ActclustError:
        raise
    except Exception as err:  # a file that parses but is not what save() writes
        raise ActclustError(f"{path} is a malformed {meta['class']} file "
                            f"({_one_line(err)}); save the reporter again") from None
    return est


def _registered_or_refuse(meta: dict, path):
    from ._base import registry

    cls = registry().get(meta["reporter"])
    if cls is None or cls.__name__ != meta["class"] or not issubclass(cls, ReporterFileMixin):
        raise ActclustError(f"{path} names {meta['class']!r} ({meta['reporter']!r}), which "
                            "is not a reporter actclust can load")
    return cls


class ReporterFileMixin:
    """``save(path)`` and ``load(path)`` for a trained reporter, without pickle.

    A reporter with a torch module builds it in ``_build_module(name)`` from its
    parameters and fitted attributes; the file only fills in the weights.
    """

    def save(self, path) -> Path:
        """Save the fitted reporter to ``path`` (a ``.safetensors`` file: weights on the
        CPU, parameters and fitted attributes as JSON); :meth:`load` reads it back.
        Loading such a file never runs code from it, so a file from an untrusted source
        is safe to load."""
        return save_reporter(self, path)

    @classmethod
    def load(cls, path):
        """Read a reporter of this class written by :meth:`save`; any other file is
        refused with an :class:`~actclust.errors.ActclustError`, and nothing in it is
        executed."""
        return load_reporter(path, expected=cls)
