"""What the HamNet and HamGAN trainers share: checkpoints with exact resume, provenance, seeding."""
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, seed_everything, set_rng_state
from .provenance import device_name, git_commit, provenance, read_json, write_json

__all__ = ["save_checkpoint", "load_checkpoint", "seed_everything", "rng_state", "set_rng_state", "provenance",
           "git_commit", "device_name", "write_json", "read_json"]
