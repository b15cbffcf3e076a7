"""Report figures: headless matplotlib (Agg), written as PNG atomically, closed when drawn.

Example:
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "line.png"
    >>> with figure(path, figsize=(3, 2)) as (fig, ax):
    ...     _ = ax.plot([1, 2], [3, 4])
    >>> path.read_bytes()[:4]
    b'\\x89PNG'
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from taosr1_verl.files import atomic_write_bytes


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str]) -> None:
    """Write a matplotlib figure as PNG (110 dpi, tight box), atomically: a reader never sees half a file."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


@contextmanager
def figure(path: str | os.PathLike[str], **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """``(fig, axes)`` from ``plt.subplots(**subplots)``; when the block ends the figure is saved to ``path``
    (:func:`save_figure`), and it is closed either way."""
    plt = pyplot()
    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        save_figure(fig, path)
    finally:
        plt.close(fig)
