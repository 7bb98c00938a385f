"""Training presets for HamGAN (Geng et al., ICLR 2021, arXiv 2109.04553) on 32x32 images.

``tiny``: CPU, about a minute; for CI and the book.  ``cifar10-cpu``: the longest honest CPU run this project could
afford (reduced scale).  ``cifar10``: one GPU, SNGAN-CIFAR widths (G 256, D 128), batch 64.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

__all__ = ["GANConfig", "PRESETS", "get_preset"]


@dataclass(frozen=True)
class GANConfig:
    """All knobs of one GAN run (the context module is chosen separately)."""
    data: str = "cifar10"          # "cifar10", "mnist" or "shapes"
    data_root: str | None = None
    n_train: int | None = None     # use only the first n training images (None: all)
    g_ch: int = 256
    d_ch: int = 128
    z_dim: int = 128
    batch_size: int = 64
    steps: int = 100_000
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    betas: tuple = (0.0, 0.999)
    ema_decay: float = 0.999
    ham_steps: int = 6
    eval_every: int = 5_000
    n_eval: int = 10_000           # generated images for the classifier-FID
    ckpt_every: int = 1_000
    log_every: int = 50
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "tiny": GANConfig(g_ch=16, d_ch=16, z_dim=32, batch_size=16, steps=60, n_train=5_000, eval_every=30,
                      n_eval=256, ckpt_every=30, log_every=5, ema_decay=0.9),
    "cifar10-cpu": GANConfig(g_ch=32, d_ch=32, z_dim=64, batch_size=32, steps=500, eval_every=100,
                             n_eval=1_000, ckpt_every=50, log_every=10, ema_decay=0.99),
    "cifar10": GANConfig(),
}


def get_preset(name: str, **overrides) -> GANConfig:
    """A preset by name, with field overrides (unknown names raise ValueError)."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {name!r}")
    bad = set(overrides) - set(GANConfig.__dataclass_fields__)
    if bad:
        raise ValueError(f"unknown config fields {sorted(bad)}; known: {sorted(GANConfig.__dataclass_fields__)}")
    return replace(PRESETS[name], **overrides)
