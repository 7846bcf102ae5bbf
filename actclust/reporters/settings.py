"""Reporter settings written as text: ``gmm(covariance_type=diag, n_components=10)``.

The command line, sweep tables and results name a reporter with non-default settings the
same way: its registered name, then its settings in brackets. :func:`parse_reporter`
reads that form (values are Python literals; a bare word is a string, ``true``/``false``
are booleans), :func:`method_name` writes it, and :func:`reporter_from_text` returns the
estimator with its settings checked against the estimator's own constraints before any
work starts.
"""

from __future__ import annotations

import ast

from ..errors import ActclustError, closest
from ._base import get_reporter

BARE_WORDS = {"true": True, "false": False, "none": None}


def parse_reporter(text: str) -> tuple[str, dict]:
    """``"name(key=value, ...)"`` as ``(name, {key: value})``; a plain name has no settings.

    Example:
        >>> parse_reporter("gmm(covariance_type=diag, n_components=10)")
        ('gmm', {'covariance_type': 'diag', 'n_components': 10})
        >>> parse_reporter("scan(hidden=(128, 64), self_label=true)")
        ('scan', {'hidden': (128, 64), 'self_label': True})
        >>> parse_reporter("kmeans")
        ('kmeans', {})
    """
    text = str(text).strip()
    if not text:
        raise ActclustError("a reporter is empty: give a registered name such as kmeans")
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise ActclustError(f"reporter {text!r} is not NAME or NAME(key=value, ...)") from None
    if isinstance(node, ast.Name):
        return node.id, {}
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)) or node.args:
        raise ActclustError(f"reporter {text!r} is not NAME or NAME(key=value, ...): "
                            "settings are given by keyword")
    params = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise ActclustError(f"reporter {text!r}: ** is not a setting")
        params[kw.arg] = _value(kw.value, text, kw.arg)
    return node.func.id, params


def _value(node, text: str, key: str):
    if isinstance(node, ast.Name):  # a bare word: a string, or true/false/none
        return BARE_WORDS.get(node.id.lower(), node.id)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ActclustError(f"reporter {text!r}: the value of {key} is not a number, "
                            "string, tuple or list") from None


def parse_param(text: str) -> tuple[str, object]:
    """One ``key=value`` setting, as :func:`parse_reporter` reads it.

    Example:
        >>> parse_param("covariance_type=diag"), parse_param("n_components=10")
        (('covariance_type', 'diag'), ('n_components', 10))
    """
    key, sep, value = str(text).partition("=")
    if not sep or not key.strip().isidentifier():
        raise ActclustError(f"setting {text!r} is not key=value")
    return parse_reporter(f"x({key.strip()}={value.strip()})")[1].popitem()


def method_name(name: str, params: dict) -> str:
    """The name results give a reporter with ``params``: ``name(key=value, ...)``.

    Example:
        >>> method_name("gmm", {"covariance_type": "diag", "warm_start": True})
        'gmm(covariance_type=diag, warm_start=true)'
    """
    if not params:
        return name
    return name + "(" + ", ".join(f"{k}={short(v)}" for k, v in params.items()) + ")"


def short(value) -> str:
    """A setting's value as :func:`method_name` writes it."""
    if isinstance(value, list):
        return "[" + ",".join(map(short, value)) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def reporter_from_text(text: str, **extra) -> tuple[str, object]:
    """``(method name, unfitted estimator)`` from ``"name(key=value, ...)"`` and ``extra``
    settings, checked against the estimator's declared constraints now.

    Example:
        >>> reporter_from_text("gmm", covariance_type="diag")
        ('gmm(covariance_type=diag)', GMM(covariance_type='diag'))
        >>> reporter_from_text("gmm(covariance_type=round)")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        actclust.errors.ActclustError: gmm(covariance_type=round): The 'covariance_type' parameter of GMM must be a str among {...}. Got 'round' instead.
    """
    name, params = parse_reporter(text)
    get_reporter(name)  # an unknown name fails here, with the closest ones
    name, params = name.strip().lower(), {**params, **extra}
    return method_name(name, params), checked(name, params)


def checked(name: str, params: dict):
    """The estimator ``name(**params)``, its settings validated (one-line errors)."""
    cls = get_reporter(name)
    label = method_name(name, params)
    valid = sorted(cls().get_params(deep=False))
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ActclustError(f"{label}: {cls.__name__} has no setting "
                            f"{', '.join(unknown)}; {closest(unknown[0], valid)}")
    est = cls(**params)
    validate = getattr(est, "_validate_params", None)
    if validate is not None:
        try:
            validate()
        except (ValueError, TypeError) as err:
            raise ActclustError(f"{label}: {_one_line(err)}") from None
    return est


def _one_line(err) -> str:
    return " ".join(str(err).split())
