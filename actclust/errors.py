"""The one exception type users see for bad input.

Anything raised as :class:`ActclustError` is a problem with what the user asked for
(a missing file, an unknown layer, a corrupted shard). The CLI prints its message and
exits non-zero instead of showing a traceback.
"""


class ActclustError(ValueError):
    """A problem with the user's input or files, with a message that says what to do.

    A ``ValueError``, so scikit-learn and callers that catch bad input see it as one.

    Example:
        >>> try:
        ...     raise ActclustError("unknown layer 'blocks.9.hook_out'")
        ... except ActclustError as err:
        ...     print(err)
        unknown layer 'blocks.9.hook_out'
    """


def closest(name: str, valid, n: int = 5) -> str:
    """A ``did you mean`` hint listing the valid names closest to ``name``.

    Example:
        >>> closest("blocks.1.hook_ot", ["blocks.1.hook_out", "blocks.1.hook_in"])
        'closest valid: blocks.1.hook_out, blocks.1.hook_in'
    """
    import difflib

    valid = list(valid)
    matches = difflib.get_close_matches(name, valid, n=n, cutoff=0.4)
    if not matches:
        matches = valid[:n]
    return "closest valid: " + ", ".join(matches)
