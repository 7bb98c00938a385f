"""Repository hygiene for the book: stripped notebooks, guarded installs, Colab badges, toc."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
IDS = [p.name for p in NOTEBOOKS]

BADGE = re.compile(
    r"^\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]"
    r"\((https://colab\.research\.google\.com/github/hamlib-book/hamlib/blob/main/(\S+?))\)"
)


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _toc_files(node) -> list[str]:
    """All ``root``/``file`` entries of a jupyter-book _toc.yml, recursively."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("root", "file") and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_toc_files(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_toc_files(item))
    return found


def _strip_comments(src: str) -> str:
    """Drop ``#`` comments (whole-line and trailing) from cell source."""
    return "\n".join(line.split("#", 1)[0] for line in src.splitlines())


def test_notebooks_exist() -> None:
    assert NOTEBOOKS, f"no notebooks in {BOOK}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_valid_and_has_python3_kernel(path: Path) -> None:
    nb = _read(path)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_outputs_are_stripped(path: Path) -> None:
    nb = _read(path)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: code cells {dirty} have outputs or execution counts; strip them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_first_code_cell_is_guarded_install(path: Path) -> None:
    nb = _read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cell"
    src = code[0].source
    assert "try:" in src, src
    assert "import hamlib" in src, src
    assert "except ImportError" in src, src
    code_only = _strip_comments(src)  # the cell's comment may *mention* requirements.txt
    assert "requirements.txt" not in code_only, "the Colab install must not install requirements.txt"
    assert "torch==" not in code_only, "the Colab install must not pin torch"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_starts_with_matching_colab_badge(path: Path) -> None:
    nb = _read(path)
    assert nb.cells and nb.cells[0].cell_type == "markdown", f"{path.name}: first cell must be markdown"
    m = BADGE.match(nb.cells[0].source.lstrip())
    assert m, f"{path.name}: first cell must start with the Open-In-Colab badge"
    expected = path.relative_to(ROOT).as_posix()
    assert m.group(2) == expected, f"{path.name}: badge points to {m.group(2)!r}, expected {expected!r}"


def test_toc_matches_notebooks() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    entries = [e.removesuffix(".ipynb").removesuffix(".md") for e in _toc_files(toc)]

    missing_files = [e for e in entries if not any((ROOT / (e + ext)).exists() for ext in (".ipynb", ".md"))]
    assert not missing_files, f"_toc.yml lists files that do not exist: {missing_files}"

    toc_notebooks = {e for e in entries if (ROOT / (e + ".ipynb")).exists()}
    book_notebooks = {p.relative_to(ROOT).with_suffix("").as_posix() for p in NOTEBOOKS}
    assert book_notebooks - toc_notebooks == set(), f"notebooks missing from _toc.yml: {book_notebooks - toc_notebooks}"
    assert toc_notebooks - book_notebooks == set(), f"_toc.yml notebooks outside book/: {toc_notebooks - book_notebooks}"
