"""Plots, ipywidgets steppers and jshtml animations for the book (matplotlib/ipywidgets imported here only)."""
from .bench import BENCH_STYLES, plot_bench  # noqa: F401  (hamlib.bench figures)
from .data import find_data_dir, image_to_matrix, load_photo, matrix_to_image, toy_blobs
from .solvers import SolverStepper, solver_animation, solver_widget
from .style import COLORS, book_style

__all__ = ["book_style", "COLORS", "SolverStepper", "solver_widget", "solver_animation", "toy_blobs",
           "find_data_dir", "load_photo", "image_to_matrix", "matrix_to_image"]
