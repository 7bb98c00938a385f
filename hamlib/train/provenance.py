"""Where a number came from: command, commit, device, versions, wall time, written next to every metric."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import torch

__all__ = ["git_commit", "command_line", "device_name", "provenance", "write_json", "read_json"]


def git_commit(repo: Optional[os.PathLike] = None) -> str:
    """The checkout's commit hash, with ``+dirty`` if it has uncommitted changes; ``"unknown"`` outside git."""
    cwd = Path(repo) if repo else Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def command_line() -> str:
    """The command as typed, e.g. ``python -m hamlib.bench --preset cpu`` (not ``__main__.py --preset cpu``)."""
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])  # orig_argv: Python >= 3.10
    if argv:
        argv[0] = Path(argv[0]).name
    return " ".join(argv)


def device_name(device: torch.device | str | None = None) -> str:
    """A human-readable device string, e.g. ``"cuda: NVIDIA H100 80GB HBM3"`` or ``"cpu: x86_64, 2 cores, 1 torch thread"``."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    t = torch.get_num_threads()
    return f"cpu: {platform.machine()}, {os.cpu_count()} cores, {t} torch thread{'s' if t != 1 else ''}"


def provenance(*, device: torch.device | str | None = None, preset: Optional[str] = None,
               wall_time_s: Optional[float] = None, **extra: Any) -> dict:
    """A provenance record: command line, commit, device, library versions, date, and anything in ``extra``."""
    from .. import __version__

    rec = {
        "command": command_line(),
        "commit": git_commit(),
        "device": device_name(device),
        "torch": torch.__version__,
        "hamlib": __version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if preset is not None:
        rec["preset"] = preset
    if wall_time_s is not None:
        rec["wall_time_s"] = round(float(wall_time_s), 3)
    rec.update(extra)
    return rec


def write_json(path: os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (mode 0644; a killed job never leaves a half-written file)."""
    from .checkpoint import atomic_write

    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path: os.PathLike) -> Any:
    """Read a JSON file, with a clear error if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete it and re-run the job that writes it") from e
