"""What a chapter needs to size itself and to keep its run folders: torch only (no matplotlib).

Every chapter starts with::

    import hamlib.book
    MODE = hamlib.book.mode(cpu_cost="about 3 h on 4 cores")   # "tiny" or "full"
    TINY = MODE == "tiny"
    RUNS = hamlib.book.runs_dir("hamnet")                    # $HAMLIB_RUNS/hamnet, else ./runs/hamnet

Run size (:func:`mode`):

* ``HAMLIB_TINY=1``: tiny, the small CPU sizes used in CI (minutes per chapter);
* ``HAMLIB_FULL=1``: full, forced, even on a CPU (then a :class:`CPUFullModeWarning` says what it costs);
* neither: full on CUDA, tiny otherwise, so a laptop never starts hours of work by accident.

Run folders (:func:`runs_dir`): ``HAMLIB_RUNS`` (e.g. a mounted Google Drive folder such as
``/content/drive/MyDrive/hamlib-runs``, so that checkpoints and exact resume survive a Colab disconnect),
else ``./runs`` under the current folder.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path, PurePath

import torch

__all__ = ["mode", "runs_dir", "device", "CPUFullModeWarning", "TINY_VAR", "FULL_VAR", "RUNS_VAR"]

TINY_VAR = "HAMLIB_TINY"
FULL_VAR = "HAMLIB_FULL"
RUNS_VAR = "HAMLIB_RUNS"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


class CPUFullModeWarning(UserWarning):
    """Full mode was forced on a machine without CUDA: the chapter will take far longer than on a GPU."""


def _flag(var: str) -> bool:
    raw = os.environ.get(var, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"environment variable {var} must be 1 or 0 (or unset), got {raw!r}")


def device() -> str:
    """``"cuda"`` when a CUDA device is available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def mode(cpu_cost: str | None = None) -> str:
    """The run size of a chapter: ``"tiny"`` or ``"full"``.

    Args:
        cpu_cost: what full mode costs on a CPU, measured or estimated, e.g. ``"about 3 h on 4 cores"``;
            shown in the warning when full mode is forced without CUDA. Defaults: ``None`` (says "hours").

    Returns:
        ``"tiny"`` if ``HAMLIB_TINY=1``; ``"full"`` if ``HAMLIB_FULL=1``; otherwise ``"full"`` on CUDA and
        ``"tiny"`` elsewhere.

    Raises:
        ValueError: if a variable is not 0/1, or both ``HAMLIB_TINY=1`` and ``HAMLIB_FULL=1`` are set.

    Warns:
        CPUFullModeWarning: before any work starts, when full mode is forced on a machine without CUDA.
    """
    if cpu_cost is not None and not isinstance(cpu_cost, str):
        raise TypeError(f"cpu_cost must be a str such as 'about 3 h' or None, got {type(cpu_cost).__name__}")
    tiny, full = _flag(TINY_VAR), _flag(FULL_VAR)
    if tiny and full:
        raise ValueError(f"{TINY_VAR}=1 and {FULL_VAR}=1 are both set; expected at most one of them")
    if tiny:
        return "tiny"
    if full:
        if not torch.cuda.is_available():
            warnings.warn(
                f"{FULL_VAR}=1 without a CUDA GPU: full mode is sized for a GPU and takes "
                f"{cpu_cost or 'hours'} on this CPU. Unset {FULL_VAR} (or set {TINY_VAR}=1) for the small mode, "
                f"or pick a GPU runtime (Colab: Runtime > Change runtime type > GPU).",
                CPUFullModeWarning,
                stacklevel=2,
            )
        return "full"
    return "full" if torch.cuda.is_available() else "tiny"


def runs_dir(name: str | None = None, *, create: bool = True) -> Path:
    """The folder for run folders (checkpoints, logs, metrics): ``$HAMLIB_RUNS`` or ``./runs``.

    Args:
        name: an optional sub-folder, relative and without ``..``, e.g. ``"hamnet"``. Defaults: ``None``.
        create: create the folder (and its parents) if missing. Defaults: ``True``.

    Returns:
        The absolute path: ``$HAMLIB_RUNS[/name]`` (``~`` expanded; relative values resolve against the
        current folder) if the variable is set and non-empty, else ``./runs[/name]``.

    Raises:
        ValueError: if ``name`` is empty, absolute or contains ``..``.
    """
    base = os.environ.get(RUNS_VAR, "").strip()
    root = Path(base).expanduser() if base else Path("runs")
    root = root if root.is_absolute() else Path.cwd() / root
    if name is not None:
        rel = PurePath(name) if isinstance(name, (str, os.PathLike)) else None
        if rel is None or not str(name) or rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"name must be a relative folder name without '..' (e.g. 'hamnet'), got {name!r}")
        root = root / rel
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root
