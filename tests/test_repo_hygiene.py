"""Repository hygiene for the book: stripped notebooks, guarded installs, Colab badges, toc."""

from __future__ import annotations

import re
import sys
import types
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


DIST = "hamlib-book"   # the distribution name (PyPI's "hamlib" is an unrelated project); the import name is hamlib
INSTALL_SPEC = "hamlib-book[book] @ git+https://github.com/hamlib-book/hamlib"
_PIP = re.compile(r"^(\s*)%pip\s+(.*)$", re.MULTILINE)


def _first_code_cell(path: Path) -> str:
    nb = _read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cell"
    return code[0].source


def _run_guard(src: str, installed: bool, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Execute the guard cell with ``%pip`` recorded instead of run; return the recorded pip argument lines.

    ``installed`` says whether the hamlib-book distribution is present; a module called hamlib is importable
    in both cases (as when another project's hamlib is installed).
    """
    import importlib.metadata

    calls: list[str] = []
    real = importlib.metadata.distribution

    def fake_distribution(name: str):
        if name.replace("_", "-").lower() == DIST and not installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake_distribution)
    monkeypatch.setitem(sys.modules, "hamlib", types.ModuleType("hamlib"))  # "a module called hamlib" exists
    code = _PIP.sub(lambda m: f"{m.group(1)}__pip__({m.group(2)!r})", src)
    exec(compile(code, "<first code cell>", "exec"), {"__pip__": calls.append})  # noqa: S102
    return calls


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_first_code_cell_is_guarded_install(path: Path) -> None:
    src = _first_code_cell(path)
    code_only = _strip_comments(src)  # the cell's comment may *mention* requirements.txt
    assert f'distribution("{DIST}")' in code_only, f"{path.name}: the guard must look for the {DIST} distribution"
    assert "PackageNotFoundError" in code_only, src
    assert "except ImportError" not in code_only, "an ImportError guard accepts any module called hamlib"
    assert "requirements.txt" not in code_only, "the Colab install must not install requirements.txt"
    assert "torch" not in code_only, "the Colab install must not install or pin torch"
    pips = _PIP.findall(code_only)
    assert len(pips) == 1, f"{path.name}: expected exactly one %pip line, got {pips}"
    assert pips[0][1].strip() == f'install -q "{INSTALL_SPEC}"', pips[0][1]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_guard_installs_only_when_hamlib_book_is_missing(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _first_code_cell(path)
    assert _run_guard(src, installed=True, monkeypatch=monkeypatch) == [], "installs although hamlib-book is there"
    # A module called hamlib is importable here (the editable install), but the distribution is "missing":
    # the guard must still install this package, and only it.
    assert _run_guard(src, installed=False, monkeypatch=monkeypatch) == [f'install -q "{INSTALL_SPEC}"']


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
