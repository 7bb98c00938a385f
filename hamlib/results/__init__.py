"""The small committed results of real runs that the chapters show, found wherever ``hamlib`` runs.

The files (JSON, Markdown, PNG; a few MB in all) live in the repository under ``book/results/``. The wheel
carries them as package data in ``hamlib/results/data/`` (``pyproject.toml`` maps the package
``hamlib.results.data`` onto ``book/results``), so a notebook run in Colab or from any folder after a normal
``pip install`` finds them; from a checkout (editable install, ``make book``) they are read from
``book/results/`` itself. Installed package data is searched first, then the checkout.

Example:
    >>> import hamlib.results
    >>> bench = hamlib.results.load_json("bench_cpu.json")
    >>> heads = hamlib.results.load_json("camvid_heads/summary.json")
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["path", "load_json", "search_path", "names"]

_HERE = Path(__file__).resolve().parent
#: Where an installed wheel keeps the results (package data of ``hamlib.results.data``).
PACKAGE_DATA: Path = _HERE / "data"
#: Where a checkout keeps them (``<repo>/book/results``); absent in an installed wheel.
CHECKOUT: Path = _HERE.parents[1] / "book" / "results"
_PLACEHOLDER = "README.md"  # the only file of hamlib/results/data in the repository


def _has_results(folder: Path) -> bool:
    """Whether ``folder`` holds results (anything but the repository's placeholder README)."""
    return folder.is_dir() and any(p.name != _PLACEHOLDER for p in folder.iterdir())


def search_path() -> list[Path]:
    """The folders searched for results, in order: installed package data, then the checkout.

    Returns:
        The existing folders among :data:`PACKAGE_DATA` (only if it holds results) and :data:`CHECKOUT`.
    """
    return [f for f in (PACKAGE_DATA, CHECKOUT) if _has_results(f)]


def _check_name(name: str) -> PurePosixPath:
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str such as 'bench_cpu.json', got {name!r}")
    rel = PurePosixPath(name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or rel.parts[:1] == ("results",):
        raise ValueError(
            f"name must be a path relative to the results folder without '..' or a leading 'results/' "
            f"(e.g. 'camvid_heads/summary.json'), got {name!r}"
        )
    return rel


def path(name: str) -> Path:
    """The path of one committed result file or folder.

    Args:
        name: path relative to ``book/results`` (POSIX separators), e.g. ``"bench_cpu.json"``,
            ``"camvid_heads/summary.json"`` or the folder ``"hamgan"``.

    Returns:
        The absolute path of the first match in :func:`search_path`.

    Raises:
        TypeError: if ``name`` is not a non-empty string.
        ValueError: if ``name`` is absolute, contains ``..`` or starts with ``results/``.
        FileNotFoundError: if no searched folder has it (the message lists the folders and what they hold).
    """
    rel = _check_name(name)
    roots = search_path()
    for root in roots:
        candidate = root.joinpath(*rel.parts)
        if candidate.exists():
            return candidate
    where = ", ".join(str(r) for r in roots) or f"none found (looked in {PACKAGE_DATA} and {CHECKOUT})"
    raise FileNotFoundError(
        f"committed result {name!r} not found; searched: {where}; available: {names() or 'nothing'}. "
        f"Reinstall hamlib-book, or run the command in the chapter that produces it."
    )


def load_json(name: str) -> Any:
    """Read one committed JSON result.

    Args:
        name: path relative to ``book/results``, e.g. ``"onestep_vs_bptt_cpu.json"``.

    Returns:
        The decoded JSON (usually a dict with a ``"provenance"`` entry).

    Raises:
        ValueError: if ``name`` does not end in ``.json`` (and the errors of :func:`path`).
    """
    if isinstance(name, str) and not name.endswith(".json"):
        raise ValueError(f"name must end in '.json', got {name!r}")
    return json.loads(path(name).read_text(encoding="utf-8"))


def names() -> list[str]:
    """Every result file that :func:`path` can find, as sorted POSIX paths relative to the results folder."""
    found: set[str] = set()
    for root in search_path():
        found.update(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != _PLACEHOLDER)
    return sorted(found)
