"""Progress bars: tqdm's widget bar in Jupyter when it can be drawn, the text bar otherwise."""


def tqdm(*args, **kwargs):
    """A tqdm bar. ``tqdm.auto`` without ipywidgets warns in every notebook cell
    ("IProgress not found"); the text bar works everywhere, so it is the fallback.

    Example:
        >>> bar = tqdm(range(3), disable=True)
        >>> sum(bar)
        3
    """
    from importlib.util import find_spec

    if find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm as bar
    else:
        from tqdm.std import tqdm as bar
    return bar(*args, **kwargs)
