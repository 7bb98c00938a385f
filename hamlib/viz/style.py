"""One figure style for the whole book: opaque white backgrounds so figures read in light and dark themes."""
from __future__ import annotations

__all__ = ["book_style", "COLORS"]

#: One colour per module, used consistently in every chapter.
COLORS = {"nmf": "#1b9e77", "vq": "#d95f02", "cd": "#7570b3", "attention": "#e7298a", "fcn": "#666666",
          "svd": "#1f78b4", "none": "#666666", "hamburger": "#1b9e77"}


def book_style() -> None:
    """Set matplotlib defaults for the book: white opaque figures, readable fonts, light grid, 110 dpi."""
    import matplotlib as mpl

    mpl.rcParams.update({
        "figure.facecolor": "white", "axes.facecolor": "white", "savefig.facecolor": "white",
        "savefig.transparent": False, "figure.dpi": 110, "font.size": 10, "axes.grid": True,
        "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
        "animation.embed_limit": 40.0,  # MB, for to_jshtml animations
    })
