"""matplotlib figures as vector drawings for the PDF, written deterministically.

A figure is saved as SVG with text as paths, no date and a fixed hash salt
(so element ids do not change between runs), then read by svglib into a
reportlab Drawing that is scaled to the text width.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from reportlab.graphics.shapes import Drawing  # noqa: E402
from svglib.svglib import svg2rlg  # noqa: E402

from .pdf import TEXT_WIDTH  # noqa: E402

RC = {
    "svg.fonttype": "path",
    "svg.hashsalt": "imrsurv",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "figure.dpi": 100,
}


def style() -> None:
    """One seaborn style for every figure: white grid, grayscale-safe palette."""
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", rc=RC)


def drawing(fig: matplotlib.figure.Figure, width: float = TEXT_WIDTH) -> Drawing:
    """Convert a figure to a reportlab Drawing ``width`` points wide, then close it."""
    buf = io.BytesIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "imrsurv"},
                    bbox_inches="tight")
    plt.close(fig)
    buf.seek(0)
    d = svg2rlg(buf)
    scale = width / d.width
    d.width, d.height = d.width * scale, d.height * scale
    d.scale(scale, scale)
    return d
