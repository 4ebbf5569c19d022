"""matplotlib through its object API only: figures on the Agg canvas (no display, no global
backend switch, no global figure state), saved atomically.

Used by every plot the package writes (evaluation, verification, benchmark reports).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from centerpoint_deploy.outputs import replacing


def new_figure(**kwargs: Any) -> Figure:
    """A :class:`Figure` (``figsize=...`` etc.) attached to an Agg canvas."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG to ``path`` (folder created) through a unique temporary file; returns ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if fig.canvas is None or not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    with replacing(target) as temporary:
        fig.savefig(temporary, dpi=dpi, format="png")
    return target
