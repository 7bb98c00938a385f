"""What the HamNet and HamGAN trainers share: checkpoints with exact resume, provenance, seeding, torchrun."""
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, seed_everything, set_rng_state
from .distributed import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed, wrap_model
from .provenance import device_name, git_commit, provenance, read_json, write_json

__all__ = ["save_checkpoint", "load_checkpoint", "seed_everything", "rng_state", "set_rng_state", "provenance",
           "git_commit", "device_name", "write_json", "read_json", "DistInfo", "init_distributed", "wrap_model",
           "all_reduce_sum", "barrier", "cleanup"]
