"""Progress bars: tqdm's text bar in a terminal, its widget in a Jupyter notebook.

The plain ``tqdm`` bar writes carriage returns to stderr, which a notebook shows
as a growing red block.  ``tqdm.auto`` picks the notebook widget when running
inside a Jupyter kernel that has ipywidgets, and the text bar everywhere else, so
the tools print what they always printed and a notebook shows a bar.  Every
progress bar of the package (training epochs, image caching, archive
extraction) is made here.
"""

__all__ = ["progress_bar"]


def progress_bar(iterable=None, **kwargs):
    """A tqdm progress bar over ``iterable`` suited to where the code runs.

    Args:
        iterable: what to iterate over (None for a bar updated by hand).
        **kwargs: tqdm's options (``desc``, ``total``, ``unit``, ``disable``,
            ``leave``, ``file``...).

    Returns:
        tqdm.tqdm: ``tqdm.auto.tqdm(iterable, **kwargs)``; in a terminal or a
        subprocess the same text bar as ``tqdm.tqdm``.
    """
    import warnings

    with warnings.catch_warnings():
        # tqdm.auto warns once when a notebook lacks ipywidgets, then uses the text bar.
        warnings.filterwarnings("ignore", message="IProgress not found")
        from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)
