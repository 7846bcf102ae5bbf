"""Selecting names (hook points, store layers) by exact name or glob."""

from __future__ import annotations

import re


def glob_regex(pattern: str) -> "re.Pattern":
    """Glob over dotted names: ``*`` stays within one name part, ``**`` crosses dots.

    Example:
        >>> bool(glob_regex("blocks.*.hook_out").fullmatch("blocks.3.hook_out"))
        True
        >>> bool(glob_regex("blocks.*.hook_out").fullmatch("blocks.3.attn.hook_out"))
        False
        >>> bool(glob_regex("blocks.**.hook_out").fullmatch("blocks.3.attn.hook_out"))
        True
    """
    parts = re.split(r"(\*\*|\*|\?)", pattern)
    table = {"**": ".*", "*": r"[^.]*", "?": r"[^.]"}
    return re.compile("".join(table.get(p) or re.escape(p) for p in parts))


def select_names(patterns, names: list, missing) -> list[str]:
    """The ``names`` matching any of ``patterns`` (exact names or globs, a list or a
    comma-separated string), in the order of ``names``, each once. ``missing(pattern)``
    raises the error for a pattern that matches nothing (``""`` when none was given).

    Example:
        >>> select_names("b.*,a", ["a", "b.1", "b.2", "c"], print)
        ['a', 'b.1', 'b.2']
    """
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",") if p.strip()]
    if not patterns:
        missing("")
    chosen = set()
    for pattern in patterns:
        regex = glob_regex(pattern)
        hits = [n for n in names if regex.fullmatch(n)]
        if not hits:
            missing(pattern)
        chosen.update(hits)
    return [n for n in names if n in chosen]
