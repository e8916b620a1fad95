"""Every plot clnp writes in one style: a run's report (:mod:`clnp.report`) and a comparison
(:mod:`.compare.plot`) draw on the same figure, with the same type sizes and grid, into a PNG written
atomically and never through a link."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

TITLE_SIZE = 10
"""Points, of a figure's title (its first line says what, its second which run or comparison)."""
SMALL_SIZE = 8
"""Points, of legends and of numbers written on a plot."""
GRID_ALPHA = 0.3
DPI = 150


def new_figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` of ``width`` x ``height`` inches with constrained layout, drawn off-screen (no
    pyplot: nothing global is touched, nothing is left open)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def grid(ax: Any, axis: str = "both") -> None:
    """The light grid every plot has, drawn under the data."""
    ax.grid(True, axis=axis, alpha=GRID_ALPHA)
    ax.set_axisbelow(True)


def save_png(fig: Any, path: str | Path) -> Path:
    """Write the figure as a PNG, atomically and never through a link (a link there is refused, what it points
    to untouched)."""
    from .checkpoint import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
