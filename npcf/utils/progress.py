"""Progress reporting without a UI dependency.

Long-running library functions take ``progress``: a factory called as
``progress(total, label, info=None)`` that returns a context manager with an
``update(n)`` method (``info``: a callable returning a short status text, e.g. the
running loss). ``None`` means silent. The CLI passes one that draws a click
progress bar on a terminal (:func:`npcf.cli.output.progress_bar`).
"""
from __future__ import annotations

import contextlib


class _Silent:
    def update(self, n: int = 1) -> None:
        pass


def open_progress(progress, total: int, label: str, info=None):
    """``progress(total, label, info)``, or a do-nothing bar when ``progress`` is None."""
    if progress is None:
        return contextlib.nullcontext(_Silent())
    return progress(total, label, info)
