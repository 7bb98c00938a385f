"""Execute every book notebook end to end (tiny mode), like ``jupyter-book build`` does."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
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


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel inherits this process' environment.
    monkeypatch.setenv("HAMLIB_TINY", "1")
    nb = nbformat.read(path, as_version=4)
    failure = execute_notebook(nb, path.parent, path.name)   # cwd = book/, as jupyter-book does
    if failure is not None:  # fail outside the except block: no chained nbclient noise
        pytest.fail(failure, pytrace=False)


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, f"no notebooks found in {BOOK}"
