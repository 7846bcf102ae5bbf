"""Docstring conventions of actclust, adapted for the API reference.

The code's docstrings are Google style with two habits griffe's Google parser does not
read: a singular ``Example:`` section (griffe knows only ``Examples:``), and Sphinx roles
such as ``:func:`~actclust.capture.capture```. This griffe extension rewrites both before
the docstrings are parsed, so doctest examples render as code and roles as code spans
(links, when they name an ``actclust`` function, class or method by its full path). The code is not changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
_ROLE = re.compile(r":(func|class|meth|mod|attr|data|obj|exc|const):`(~?)([^`]+)`")


def _role(match: re.Match) -> str:
    role, short, target = match.group(1), match.group(2), match.group(3).strip()
    shown = target.rsplit(".", 1)[-1] if short else target
    if target.startswith("actclust.") and role != "mod":  # modules have no page of their own
        return f"[`{shown}`][{target}]"
    return f"`{shown}`"


def rewrite(text: str) -> str:
    """The docstring ``text`` with ``Example:`` as ``Examples:`` and roles as Markdown.

    Examples:
        >>> rewrite("Example:\\n    >>> 1\\n    1")
        'Examples:\\n    >>> 1\\n    1'
        >>> rewrite(":func:`~actclust.capture.capture` and :class:`Dataset`")
        '[`capture`][actclust.capture.capture] and `Dataset`'
    """
    return _ROLE.sub(_role, _EXAMPLE.sub(r"\1Examples:", text))


class DocstringConventions(griffe.Extension):
    """Rewrite every docstring with :func:`rewrite` as its object is loaded."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
