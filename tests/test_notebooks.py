"""The notebook runner the chapter tests share, and a check that the chapters are there.

Every chapter is executed three times by the suite, so this file no longer executes them a fourth time from
the checkout: the book-build gate (``tests/test_book_build.py``) runs ``jupyter-book build`` over the checkout
(every cell, tiny mode, any error fails), ``tests/test_colab.py`` runs each chapter as a Colab reader does
(installed wheel, empty folder), and ``tests/test_exercises.py`` runs each chapter with its solutions.
"""

from __future__ import annotations

import re
from pathlib import Path

from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
CELL_TIMEOUT = 600
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _traceback(cell) -> str:
    """The (ANSI-stripped) traceback of a code cell's error output, if any."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            tb = "\n".join(out.get("traceback", [])) or f"{out.get('ename')}: {out.get('evalue')}"
            return _ANSI.sub("", tb)
    return ""


def execute_notebook(nb, cwd: Path, name: str, kernel_name: str = "python3",
                     timeout: int = CELL_TIMEOUT) -> str | None:
    """Run every code cell of ``nb`` in order in a fresh kernel started in ``cwd``; stop at the first error.

    Args:
        nb: the notebook (``nbformat`` v4), executed in place.
        cwd: the kernel's working folder.
        name: the notebook's name, for the failure message.
        kernel_name: the kernelspec to start. Defaults: ``"python3"``.
        timeout: seconds allowed per cell. Defaults: ``CELL_TIMEOUT``.

    Returns:
        ``None`` when every cell ran, else a message with the failing cell's index, source and traceback.
    """
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=timeout, allow_errors=False,
                            resources={"metadata": {"path": str(cwd)}})
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, i)
            except (CellExecutionError, CellTimeoutError) as exc:
                tb = _traceback(cell) or _ANSI.sub("", str(exc))
                return (f"{name}: code cell #{i} failed\n"
                        f"---- cell source ----\n{cell.source}\n"
                        f"---- traceback ----\n{tb}")
    return None


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, f"no notebooks found in {BOOK}"
