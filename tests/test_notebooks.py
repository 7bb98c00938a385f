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


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel inherits this process' environment.
    monkeypatch.setenv("HAMLIB_TINY", "1")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        allow_errors=False,
        resources={"metadata": {"path": str(path.parent)}},  # cwd = book/, as jupyter-book does
    )
    failure = None
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, i)
            except (CellExecutionError, CellTimeoutError) as exc:
                tb = _traceback(cell) or _ANSI.sub("", str(exc))
                failure = (
                    f"{path.name}: code cell #{i} failed\n"
                    f"---- cell source ----\n{cell.source}\n"
                    f"---- traceback ----\n{tb}"
                )
                break
    if failure is not None:  # fail outside the except block: no chained nbclient noise
        pytest.fail(failure, pytrace=False)


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, f"no notebooks found in {BOOK}"


