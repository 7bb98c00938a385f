"""Plots, ipywidgets steppers and jshtml animations for the book (matplotlib/ipywidgets imported here only)."""
from .style import COLORS, book_style

__all__ = ["book_style", "COLORS"]
