"""The run folder every application trains in: one layout, one resume rule, one history format.

::

    RUN_DIR/
      config.json    the run's config, written when training starts (read it without torch: RunDir(p).config())
      last.pt        the checkpoint: models, optimizers, schedulers, scalers, RNG states, step (weights_only)
      log.jsonl      one JSON object per line, appended while training (the history of every application)
      metrics.json   the final record with provenance, written at the end
      weights.pt     inference-only export: state dicts + config, loadable with torch.load(weights_only=True)
      samples/ figures/

**Resume rule** (the same for HamNet, HamGAN and the classifier): running the same command again continues
from ``last.pt``; running it with a *different* config into a folder that holds a run is refused with the
differing fields listed, unless ``resume=False`` (``--no-resume``), which starts afresh in that folder.
Fields marked ``runtime`` (data folder, loader workers) may differ.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, List, Mapping, Optional, Type, TypeVar

import torch
from torch import nn

from .checkpoint import (FILE_MODE, CheckpointError, atomic_write, load_checkpoint, read_checkpoint, save_checkpoint,
                         unwrap)
from .config import Config
from .distributed import barrier
from .provenance import read_json, write_json

__all__ = ["RunDir", "RunMismatchError", "Timer"]

C = TypeVar("C", bound=Config)


_HELD_LOCKS: dict = {}  # resolved run folder -> the open lock file this process holds


class RunMismatchError(ValueError):
    """A run folder holds a run of another config (or application) than the one asked for."""


class RunDir:
    """A run folder: its layout, checkpoints, log, metrics and resume rule.

    Args:
        path: the folder (created by :meth:`start`).
        is_main: only the main process writes (under ``torchrun``, rank 0).
    """

    CHECKPOINT = "last.pt"
    CONFIG = "config.json"
    LOG = "log.jsonl"
    METRICS = "metrics.json"
    WEIGHTS = "weights.pt"

    def __init__(self, path: os.PathLike, *, is_main: bool = True) -> None:
        self.path = Path(path)
        self.is_main = is_main
        self._ckpt: Optional[dict] = None  # read (and checked) by start(), used by the next load()
        self._cfg: Optional[Config] = None  # the config this object trains (start) or evaluates (config)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ---- layout -------------------------------------------------------------------------------------
    @property
    def checkpoint(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def log_path(self) -> Path:
        return self.path / self.LOG

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def weights_path(self) -> Path:
        return self.path / self.WEIGHTS

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    def has_checkpoint(self) -> bool:
        return self.checkpoint.is_file()

    def is_finished(self) -> bool:
        return self.metrics_path.is_file() and self.checkpoint.is_file()

    # ---- config -------------------------------------------------------------------------------------
    def config(self, cls: Optional[Type[C]] = None) -> Any:
        """The run's config from ``config.json`` (no model, no torch.load): a ``cls`` instance, or the dict.

        Raises:
            FileNotFoundError: the folder holds no ``config.json`` (no run was started there).
            ValueError: the file is not valid JSON or not a config of ``cls``.
        """
        if not self.config_path.is_file():
            raise FileNotFoundError(f"{self.config_path} is missing: {self.path} holds no run (train into it "
                                    f"first, e.g. python -m hamlib.seg train --run-dir {self.path})")
        d = read_json(self.config_path)
        if not isinstance(d, dict) or "config" not in d:
            raise ValueError(f"{self.config_path} is not a hamlib run config (no 'config' key)")
        if cls is None:
            return d["config"]
        if d.get("kind") not in (None, cls.__name__):
            raise RunMismatchError(f"{self.path} holds a {d.get('kind')} run, not a {cls.__name__} run")
        self._cfg = cls.from_dict(d["config"])
        return self._cfg

    def check_writable(self) -> None:
        """Create the folder and write a probe file, so an unwritable folder fails before any training.

        Raises:
            PermissionError / OSError: with a message naming the folder.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test-{os.getpid()}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            raise type(e)(e.errno, f"run folder {self.path} is not writable ({e.strerror}); choose another "
                                   f"--run-dir or fix its permissions") from None

    def clean_temp_files(self) -> List[Path]:
        """Remove temporary files left by writes that were killed (``.NAME.*.tmp``); returns what was removed."""
        gone = []
        if self.path.is_dir():
            for p in self.path.glob(".*.tmp"):
                try:
                    p.unlink()
                    gone.append(p)
                except OSError:
                    pass
        return gone

    def start(self, cfg: Config, *, resume: bool = True) -> bool:
        """Prepare the folder for training ``cfg``; returns True when there is a checkpoint to resume from.

        Checks that the folder is writable, removes temporary files of interrupted writes, applies the
        resume rule and writes ``config.json`` (main process only; the others wait for it).

        Raises:
            RunMismatchError: the folder holds a run of another config (the message lists the fields) and
                ``resume`` is True.
        """
        if self.is_main:
            self.check_writable()
            self._lock()
            self.clean_temp_files()
            has_ckpt = self.checkpoint.is_file()
            existing = self.config_path.is_file() or has_ckpt
            # Only a checkpoint holds progress to protect: a config.json alone (a run refused before its first
            # checkpoint, e.g. for a bad data split) is simply replaced by the new config.
            if has_ckpt and resume:
                self._check_same(cfg)
                self._ckpt = read_checkpoint(self.checkpoint)  # a corrupt, foreign or unsafe file fails now
            stale = (self.log_path, self.metrics_path, self.weights_path)
            if not (existing and resume):  # a new run, or --no-resume: start afresh in this folder
                stale = (self.checkpoint,) + stale
            if not (existing and resume) or not has_ckpt:
                for p in stale:
                    if p.exists():
                        p.unlink()
            write_json(self.config_path, {"kind": type(cfg).__name__, "config": cfg.to_dict()})
        self._cfg = cfg
        barrier()  # under torchrun the other processes wait for the main one's checks and writes
        return self.checkpoint.is_file()

    def _lock(self) -> None:
        """Hold an exclusive lock on the folder for the life of this process, so that two trainers started in the
        same run folder cannot interleave their checkpoints and logs (re-entrant within one process)."""
        key = str(self.path.resolve())
        if key in _HELD_LOCKS:
            return
        try:
            import fcntl
        except ImportError:  # no POSIX locks (Windows): run without the guard
            return
        f = open(self.path / ".lock", "a")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise RunMismatchError(f"another process is already running in {self.path}; wait for it to finish "
                                   f"(or stop it), or choose another --run-dir") from None
        _HELD_LOCKS[key] = f

    def release(self) -> None:
        """Let other processes use the folder again (called when a run has written its metrics)."""
        f = _HELD_LOCKS.pop(str(self.path.resolve()), None)
        if f is not None:
            f.close()

    def _check_same(self, cfg: Config) -> None:
        if not self.config_path.is_file():
            raise RunMismatchError(f"{self.checkpoint} exists but {self.config_path} does not, so this run's config "
                                   f"is unknown; use --no-resume to start afresh, or another --run-dir")
        try:
            old = self.config(type(cfg))
        except (ValueError, TypeError) as e:
            raise RunMismatchError(f"{self.path} holds a run this config cannot continue ({e}); use --no-resume "
                                   f"to start afresh, or another --run-dir") from None
        diff = old.diff(cfg, ignore=cfg.runtime_fields())
        if diff:
            shown = ", ".join(f"{k}: run has {a!r}, asked for {b!r}" for k, (a, b) in diff.items())
            raise RunMismatchError(f"{self.path} holds a run with another config ({shown}). Run the same config to "
                                   f"resume it, use --no-resume to start afresh there, or choose another --run-dir.")

    # ---- checkpoints --------------------------------------------------------------------------------
    def save(self, step: int, *, models: Mapping[str, nn.Module], optimizers: Optional[Mapping[str, Any]] = None,
             schedulers: Optional[Mapping[str, Any]] = None, scalers: Optional[Mapping[str, Any]] = None,
             extra: Optional[dict] = None) -> Optional[Path]:
        """Write ``last.pt`` (main process only): any number of named models/optimizers/schedulers/scalers."""
        if not self.is_main:
            return None
        extra = dict(extra or {})
        if self._cfg is not None:  # what was trained, to catch a config.json edited after training
            extra.setdefault("run_config", {"kind": type(self._cfg).__name__, "config": self._cfg.to_dict()})
        return save_checkpoint(self.checkpoint, step, models=models, optimizers=optimizers, schedulers=schedulers,
                               scalers=scalers, extra=extra)

    def load(self, *, models: Mapping[str, nn.Module], optimizers: Optional[Mapping[str, Any]] = None,
             schedulers: Optional[Mapping[str, Any]] = None, scalers: Optional[Mapping[str, Any]] = None,
             restore_rng: bool = True, map_location: Any = "cpu") -> dict:
        """Load ``last.pt`` into the named objects (checked, ``weights_only=True``); returns step and extra.

        The log is cut back to the checkpoint's step, so lines written after it (by a run that was killed
        before its next checkpoint) are not duplicated when the steps are trained again.
        """
        cached, self._ckpt = self._ckpt, None  # CPU tensors; load_state_dict moves them to the model's device
        ck = load_checkpoint(self.checkpoint, models=models, optimizers=optimizers, schedulers=schedulers,
                             scalers=scalers, restore_rng=restore_rng, map_location=map_location, ckpt=cached)
        stored = (ck.get("extra") or {}).get("run_config")
        if stored is not None and self._cfg is not None and stored.get("kind") == type(self._cfg).__name__:
            ignore = type(self._cfg).runtime_fields()
            now = self._cfg.to_dict()
            diff = {k: (v, now.get(k)) for k, v in stored["config"].items() if k not in ignore and now.get(k) != v}
            if diff:
                shown = ", ".join(f"{k}: trained with {a!r}, config says {b!r}" for k, (a, b) in diff.items())
                raise RunMismatchError(f"{self.checkpoint} was trained with another config than {self.config_path} "
                                       f"now holds ({shown}); the folder was edited, so its weights are not evaluated")
        if self.is_main:
            self._truncate_log(ck["step"])
        return {"step": ck["step"], "extra": ck["extra"]}

    def export_weights(self, models: Mapping[str, nn.Module], *, cfg: Optional[Config] = None,
                       meta: Optional[dict] = None, path: Optional[os.PathLike] = None) -> Optional[Path]:
        """Write inference-only weights (state dicts, config, metadata) that load with ``weights_only=True``."""
        if not self.is_main:
            return None
        out = {"format": "hamlib-weights-v1", "models": {k: unwrap(m).state_dict() for k, m in models.items()},
               "kind": type(cfg).__name__ if cfg is not None else None,
               "config": cfg.to_dict() if cfg is not None else None, "meta": dict(meta or {})}
        return atomic_write(Path(path) if path else self.weights_path, lambda f: torch.save(out, f))

    @staticmethod
    def read_weights(path: os.PathLike) -> dict:
        """Read a :meth:`export_weights` file (``weights_only=True``), with a clear error if it is not one."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no weights file at {path}")
        try:
            w = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"{path} is not a readable hamlib weights file ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:200]}); it was refused without running it") from None
        if not isinstance(w, dict) or w.get("format") != "hamlib-weights-v1":
            raise CheckpointError(f"{path} is not a hamlib weights file (written by export_weights)")
        return w

    # ---- log and metrics ----------------------------------------------------------------------------
    def log(self, record: Mapping[str, Any]) -> None:
        """Append one record (a dict with a ``step``) to ``log.jsonl`` (main process only)."""
        if not self.is_main:
            return
        if "step" not in record:
            raise ValueError(f"a log record needs a 'step'; got keys {sorted(record)}")
        new = not self.log_path.exists()
        with open(self.log_path, "a") as f:
            f.write(json.dumps(dict(record), default=float) + "\n")
        if new:
            os.chmod(self.log_path, FILE_MODE)

    def history(self) -> List[dict]:
        """Every record of ``log.jsonl`` in order (a torn last line of a killed write is skipped)."""
        if not self.log_path.is_file():
            return []
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def _truncate_log(self, step: int) -> None:
        keep = [r for r in self.history() if r.get("step", 0) <= step]
        text = "".join(json.dumps(r) + "\n" for r in keep)
        atomic_write(self.log_path, lambda f: f.write(text.encode()))

    def write_metrics(self, metrics: Mapping[str, Any]) -> Optional[Path]:
        """Write ``metrics.json`` (main process only); the run is over, so the folder's lock is released."""
        if not self.is_main:
            return None
        out = write_json(self.metrics_path, dict(metrics))
        self.release()
        return out

    def metrics(self) -> dict:
        """The run's ``metrics.json``."""
        return read_json(self.metrics_path)


class Timer:
    """Wall time of training that survives resumes: ``elapsed`` = what was stored + this call's time."""

    def __init__(self, before: float = 0.0) -> None:
        self.before, self.t0 = float(before), time.time()

    @property
    def elapsed(self) -> float:
        return self.before + time.time() - self.t0
