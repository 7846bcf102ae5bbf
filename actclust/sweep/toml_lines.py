"""Where each key of a sweep file is written, so that an error can name its line, and the
errors that name a key: unknown, of the wrong type.

``tomllib`` returns plain dicts that do not say where a key came from. The text has
already parsed when :func:`scan_keys` reads it, so a small lenient scan over it is enough
to find every key however it is written: under a ``[table]`` or ``[[table]]`` header,
quoted, dotted, or inside an inline table or a top-level array of tables.
"""

from __future__ import annotations

import re
from typing import Optional

from ..errors import ActclustError, closest


def toml_parser():
    """The TOML parser: ``tomllib``, or ``tomli`` on Python 3.10."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: the same parser, packaged as tomli
        try:
            import tomli as tomllib
        except ImportError:
            raise ActclustError("reading a sweep file needs Python 3.11 or newer, or "
                                "pip install tomli") from None
    return tomllib


class Where:
    """Turns a key path into 'line N' of the TOML text, for error messages.

    Every key is found however it is written: under a ``[table]`` or ``[[table]]`` header,
    quoted (``"pool" = ...``), dotted (``data.pool = ...``), or inside an inline table or a
    top-level array of tables (``reporters = [{ name = "kmeans" }]``).

    Example:
        >>> where = Where('out = "o"\\ndata."polling" = 1\\n', "s.toml")
        >>> where("data", "polling")
        's.toml, line 2'
    """

    def __init__(self, text: str, origin: str):
        self.origin = origin
        self.found = scan_keys(text) if text else []

    def __call__(self, section: Optional[str], key: str, index: Optional[int] = None) -> str:
        line = self._find(section, key, index)
        return f"{self.origin}, line {line}" if line else self.origin

    def _find(self, section, key, index) -> Optional[int]:
        def wanted(path, entry):
            if section is None:
                return path == (key,)
            return len(path) >= 2 and path[0] == section and path[-1] == key and \
                (index is None or entry == index)

        for kind in ("key", "table"):
            for line, path, entry, what in self.found:
                if what == kind and wanted(path, entry):
                    return line
        if section is not None and index is not None:  # the entry itself
            for line, path, entry, what in self.found:
                if what in ("table", "entry") and path == (section,) and entry == index:
                    return line
        return None


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def scan_keys(text: str) -> list:
    """``(line, key path, entry index, "key" | "table" | "entry")`` for each key, table
    header and array element of TOML text. The text has already parsed, so the scan can
    be lenient."""
    found = []
    i, n, line = 0, len(text), 1
    table, table_entry, counts = (), None, {}
    stack = []  # open inline tables and arrays: [kind, path, entry, element, started]
    expect_key, value_path, value_entry = True, (), None

    def read_string(i):
        nonlocal line
        quote = text[i]
        triple = text.startswith(quote * 3, i)
        close = quote * 3 if triple else quote
        j = i + len(close)
        while j < n and not text.startswith(close, j):
            if text[j] == "\\" and quote == '"':
                j += 1
            elif text[j] == "\n":
                line += 1
            j += 1
        return text[i + len(close):j], j + len(close)

    def read_key(i):
        parts = []
        while i < n:
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] in "\"'":
                part, i = read_string(i)
            else:
                match = _BARE_KEY.match(text, i)
                if not match:
                    break
                part, i = match.group(), match.end()
            parts.append(part)
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] == ".":
                i += 1
                continue
            break
        return tuple(parts), i

    while i < n:
        c = text[i]
        top = stack[-1] if stack else None
        if c == "\n":
            line, i = line + 1, i + 1
            expect_key = expect_key or not stack
            continue
        if c in " \t\r":
            i += 1
            continue
        if c == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        if not stack and expect_key and c == "[":  # a [table] or [[table]] header
            double = text.startswith("[[", i)
            table, i = read_key(i + 1 + double)
            if double:
                counts[table] = table_entry = counts.get(table, -1) + 1
            else:
                table_entry = None
            found.append((line, table, table_entry, "table"))
            i = text.find("\n", i) if "\n" in text[i:] else n
            expect_key = False
            continue
        if expect_key and (top is None or top[0] == "{"):
            parts, j = read_key(i)
            if parts and j < n and text[j] == "=":
                base, entry = (table, table_entry) if top is None else (top[1], top[2])
                value_path, value_entry = base + parts, entry
                found.append((line, value_path, entry, "key"))
                i, expect_key = j + 1, False
                continue
        if top is not None and top[0] == "[" and c not in ",]" and not top[4]:
            top[4] = True  # an array element starts here
            found.append((line, top[1], top[3], "entry"))
        if c in "\"'":
            _, i = read_string(i)
        elif c == "{":
            path, entry = (top[1], top[3]) if top is not None and top[0] == "[" else \
                (value_path, value_entry)
            stack.append(["{", path, entry, None, True])
            expect_key, i = True, i + 1
        elif c == "[":
            path, entry = (top[1], top[3]) if top is not None and top[0] == "[" else \
                (value_path, value_entry)
            stack.append(["[", path, entry, 0, False])
            i += 1
        elif c == ",":
            if top is not None and top[0] == "[":
                top[3], top[4] = top[3] + 1, False
            else:
                expect_key = True
            i += 1
        elif c in "]}":
            if stack:
                stack.pop()
            i += 1
        else:
            i += 1
    return found


def unknown_keys(keys, allowed, where, section, index=None, what="key"):
    """Refuse the first of ``keys`` not in ``allowed``, naming its line and the closest
    valid key.

    Example:
        >>> unknown_keys({"pool": 1, "polling": 2}, {"pool"}, Where("", "s.toml"), "data")
        Traceback (most recent call last):
        ...
        actclust.errors.ActclustError: s.toml: unknown key 'data.polling'; closest valid: pool
    """
    for key in keys:
        if key not in allowed:
            label = f"{section}.{key}" if section else key
            raise ActclustError(f"{where(section, key, index)}: unknown {what} {label!r}; "
                                f"{closest(key, sorted(allowed))}")


def check_type(value, types, where, section, key, what):
    """``value`` when it is of ``types`` (a bool is not an int here), else an error that
    says it must be ``what``."""
    if not isinstance(value, types) or isinstance(value, bool) and bool not in _tuple(types):
        label = f"{section}.{key}" if section else key
        raise ActclustError(f"{where(section, key)}: {label} must be {what}, "
                            f"got {value!r}")
    return value


def _tuple(types):
    return types if isinstance(types, tuple) else (types,)


def first_repeat(values):
    """The first value that appears a second time in ``values``, or None.

    Example:
        >>> first_repeat([1, 2, 1]), first_repeat(["a"])
        (1, None)
    """
    seen = []
    for value in values:
        if value in seen:
            return value
        seen.append(value)
    return None
