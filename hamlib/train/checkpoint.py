"""Checkpoints with exact resume: model, optimizer, scheduler, grad scaler, every RNG, and the step.

A run killed at any moment resumes from its last checkpoint and, with the same
seed and data order, ends with the same weights as an uninterrupted run
(the trainers' tests check this). Files are written atomically.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

__all__ = ["seed_everything", "rng_state", "set_rng_state", "save_checkpoint", "load_checkpoint"]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every global RNG state, to be stored in a checkpoint."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model  # DistributedDataParallel / DataParallel


def save_checkpoint(path: os.PathLike, *, model: torch.nn.Module, step: int,
                    optimizer: Optional[torch.optim.Optimizer] = None, scheduler: Any = None, scaler: Any = None,
                    extra: Optional[dict] = None, **modules: torch.nn.Module) -> Path:
    """Save everything needed to continue training at ``step``, atomically.

    Args:
        path: file to write (its folder is created).
        model: the model (DDP wrappers are unwrapped).
        step: the number of completed optimisation steps.
        optimizer, scheduler, scaler: saved by their ``state_dict()`` if given.
        extra: any picklable state (metrics so far, data-order position, config).
        **modules: further models, e.g. ``ema=ema_model`` or ``discriminator=D``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {"step": int(step), "model": _unwrap(model).state_dict(), "rng": rng_state(), "extra": extra or {}}
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None:
            ckpt[name] = obj.state_dict()
    ckpt["modules"] = {k: _unwrap(m).state_dict() for k, m in modules.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    torch.save(ckpt, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: os.PathLike, *, model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer] = None,
                    scheduler: Any = None, scaler: Any = None, restore_rng: bool = True,
                    map_location: Any = "cpu", **modules: torch.nn.Module) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` into the given objects.

    Returns:
        The checkpoint dict (``step``, ``extra``, ...).

    Raises:
        FileNotFoundError: no file at ``path`` (the message says how to make one).
        ValueError: the file is not a hamlib checkpoint, or lacks a state that was asked for.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing checkpoint: no file at {path}. Train first (the trainer writes "
                                f"checkpoints into its run folder), or point to an existing .pt file.")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated or not a torch file
        raise ValueError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "step" not in ckpt:
        raise ValueError(f"{path} is not a hamlib checkpoint (expected keys 'model' and 'step')")
    _unwrap(model).load_state_dict(ckpt["model"])
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None:
            if name not in ckpt:
                raise ValueError(f"{path} has no {name} state to resume from")
            obj.load_state_dict(ckpt[name])
    for k, m in modules.items():
        if k not in ckpt.get("modules", {}):
            raise ValueError(f"{path} has no state for module {k!r}; it has {sorted(ckpt.get('modules', {}))}")
        _unwrap(m).load_state_dict(ckpt["modules"][k])
    if restore_rng:
        set_rng_state(ckpt["rng"])
    return ckpt
