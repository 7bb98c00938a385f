"""Checkpoints with exact resume, written atomically and read back with ``torch.load(weights_only=True)`` only.

Every state in a checkpoint is a tensor or a plain Python value (dict, list, int, float, str, bool, None),
including the Python, NumPy and torch RNG states, so loading one never runs code from the file: a
crafted ``last.pt`` is refused with a clear message instead of executing its pickle. A run killed at any
moment resumes from its last checkpoint and, with the same seed and data order, ends with the same
weights as an uninterrupted run (the trainers' tests check this).

Files are written to a temporary file in the same folder, flushed, made readable (0644) and renamed over
the target, so a kill never leaves a half-written checkpoint; the temporary file is removed when the
write fails, and a full disk is reported as "disk full" rather than as a torch serialisation error.
"""
from __future__ import annotations

import errno
import io
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import torch
from torch import nn

__all__ = ["seed_everything", "rng_state", "set_rng_state", "atomic_write", "save_checkpoint", "load_checkpoint",
           "read_checkpoint", "CheckpointError", "unwrap", "FILE_MODE"]

#: Permissions of every file a run writes: readable by everyone, writable by the owner.
FILE_MODE = 0o644


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be used (corrupt, foreign, unsafe or incomplete)."""


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every global RNG state as tensors and plain values (loadable with ``weights_only=True``)."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": {"version": int(version), "state": [int(v) for v in mt], "gauss": gauss},
             "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                       "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _disk_full(exc: BaseException, folder: Path) -> bool:
    e: Optional[BaseException] = exc
    while e is not None:
        if getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e):
            return True
        e = e.__cause__ or e.__context__
    try:  # torch reports a failed zip write as "unexpected pos ..." without the errno
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


def atomic_write(path: os.PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Write a file atomically: ``write(f)`` fills a temporary file that is then renamed over ``path``.

    The file ends up with mode 0644. On any failure the temporary file is removed and ``path`` is untouched.

    Raises:
        OSError: ``errno.ENOSPC`` with a message that says "disk full" when the disk filled up.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, Exception) and _disk_full(e, path.parent):
            raise OSError(errno.ENOSPC, f"disk full: could not write {path} (the previous version, if any, is "
                                        f"intact); free some space and run the same command again") from e
        raise
    return path


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (or the module itself)."""
    return model.module if hasattr(model, "module") else model


def _states(objs: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    return {k: (unwrap(v) if isinstance(v, nn.Module) else v).state_dict() for k, v in (objs or {}).items()}


def save_checkpoint(path: os.PathLike, step: int, *, models: Mapping[str, nn.Module],
                    optimizers: Optional[Mapping[str, Any]] = None, schedulers: Optional[Mapping[str, Any]] = None,
                    scalers: Optional[Mapping[str, Any]] = None, extra: Optional[dict] = None,
                    rng: bool = True) -> Path:
    """Save everything needed to continue training after ``step`` completed steps, atomically.

    Args:
        path: the file to write (its folder is created).
        step: number of completed optimisation steps.
        models: named modules, e.g. ``{"model": net}`` or ``{"G": G, "D": D, "ema": ema}`` (DDP is unwrapped).
        optimizers, schedulers, scalers: named objects saved by their ``state_dict()``.
        extra: plain data (numbers, strings, lists, dicts, tensors) such as a data-order position.
        rng: also store every global RNG state.
    """
    ckpt = {"format": "hamlib-checkpoint-v2", "step": int(step), "models": _states(models),
            "optimizers": _states(optimizers), "schedulers": _states(schedulers), "scalers": _states(scalers),
            "extra": dict(extra or {})}
    if rng:
        ckpt["rng"] = rng_state()
    return atomic_write(path, lambda f: torch.save(ckpt, f))


def read_checkpoint(path: os.PathLike, *, map_location: Any = "cpu") -> dict:
    """The one checked way to read a checkpoint file: ``torch.load(weights_only=True)`` plus format checks.

    Raises:
        FileNotFoundError: no file at ``path`` (the message says how to make one).
        CheckpointError: the file is truncated, not a torch file, holds objects that would run code when
            unpickled, or is not a hamlib checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing checkpoint: no file at {path}. Train first (the trainer writes "
                                f"checkpoints into its run folder), or point to an existing checkpoint.")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and "weights_only" not in ln
                 and not ln.startswith(("Check the documentation", "Please file an issue"))]
        msg = (lines[-1] if lines else str(e))[:300]
        unsafe = "GLOBAL" in str(e) or "Unsupported global" in str(e)
        why = ("it holds Python objects that would run code when loaded, so it was refused" if unsafe
               else "it is truncated, corrupt or not a torch file")
        raise CheckpointError(f"{path} is not a readable hamlib checkpoint: {why} ({type(e).__name__}: {msg}). "
                              f"Delete it and train again, or use --no-resume.") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != "hamlib-checkpoint-v2" or "models" not in ckpt:
        keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a hamlib checkpoint (found {keys}); it was written by another "
                              f"program or an older hamlib. Delete it and train again, or use --no-resume.")
    return ckpt


def _load_into(path: Path, kind: str, saved: dict, objs: Optional[Mapping[str, Any]]) -> None:
    for k, obj in (objs or {}).items():
        if k not in saved:
            raise CheckpointError(f"{path} has no {kind} state {k!r}; it has {sorted(saved)}")
        try:
            (unwrap(obj) if isinstance(obj, nn.Module) else obj).load_state_dict(saved[k])
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: the saved {kind} {k!r} does not fit this model/config "
                                  f"({type(e).__name__}: {str(e).splitlines()[0][:300]})") from None


def load_checkpoint(path: os.PathLike, *, models: Mapping[str, nn.Module],
                    optimizers: Optional[Mapping[str, Any]] = None, schedulers: Optional[Mapping[str, Any]] = None,
                    scalers: Optional[Mapping[str, Any]] = None, restore_rng: bool = True,
                    map_location: Any = "cpu", ckpt: Optional[dict] = None) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` into the given objects (same names).

    ``ckpt``: the file's content if :func:`read_checkpoint` already read it (it is not read again).

    Returns:
        The checkpoint dict (``step``, ``extra``, ...).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: unreadable, unsafe or foreign file, or a state that is missing or does not fit.
    """
    path = Path(path)
    ckpt = ckpt if ckpt is not None else read_checkpoint(path, map_location=map_location)
    _load_into(path, "model", ckpt["models"], models)
    _load_into(path, "optimizer", ckpt["optimizers"], optimizers)
    _load_into(path, "scheduler", ckpt["schedulers"], schedulers)
    _load_into(path, "scaler", ckpt["scalers"], scalers)
    if restore_rng:
        if "rng" not in ckpt:
            raise CheckpointError(f"{path} holds no RNG state, so it cannot be resumed exactly")
        set_rng_state(ckpt["rng"])
    return ckpt
