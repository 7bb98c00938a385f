"""What every application (HamNet, HamGAN, the FID classifier, the gradient experiment) shares.

* :mod:`~hamlib.train.config`: the config base (validated, frozen, JSON round-trip), presets, ham options.
* :mod:`~hamlib.train.run`: the run folder (layout, resume rule, checkpoints, ``log.jsonl``, metrics).
* :mod:`~hamlib.train.cli`: the flags every command line shares (``--preset``, ``--set``, ``--run-dir``, ...).
* :mod:`~hamlib.train.checkpoint`: atomic, ``weights_only`` checkpoints with every RNG state.
* :mod:`~hamlib.train.provenance`: command, commit, device, versions and wall time next to every number.
* :mod:`~hamlib.train.distributed`: ``torchrun`` set-up, DDP + SyncBatchNorm, reductions.
"""
from .checkpoint import (CheckpointError, atomic_write, load_checkpoint, read_checkpoint, rng_state, save_checkpoint,
                         seed_everything, set_rng_state)
from .config import Config, HamConfig, HamOptions, Presets, field
from .distributed import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed, wrap_model
from .provenance import device_name, git_commit, provenance, read_json, write_json
from .run import RunDir, RunMismatchError, Timer

__all__ = ["Config", "HamConfig", "HamOptions", "Presets", "field", "RunDir", "RunMismatchError", "Timer",
           "save_checkpoint", "load_checkpoint", "read_checkpoint", "CheckpointError", "atomic_write",
           "seed_everything", "rng_state", "set_rng_state", "provenance", "git_commit", "device_name", "write_json",
           "read_json", "DistInfo", "init_distributed", "wrap_model", "all_reduce_sum", "barrier", "cleanup"]
