"""HamGAN's configs and named recipes (Geng et al., ICLR 2021, arXiv 2109.04553) on 32x32 images.

``tiny``: synthetic shapes, CPU, about a minute (CI and the book's tiny mode).
``cifar10-cpu``: the longest honest CPU run this project could afford (reduced scale).
``cifar10``: one GPU, SNGAN-CIFAR widths (G 256, D 128), batch 64, CIFAR-10 downloaded when missing.

The ham fields are :class:`hamlib.train.config.HamConfig`'s; ``R=None`` keeps the paper's ratio r = d/8 in each
network (d = 256, r = 32 in G and d = 128, r = 16 in D of the paper's HamGAN). ``data_root=None`` means
``hamlib.train.download.data_root()``: ``$HAMLIB_DATA``, else ``./data``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from ..train.config import Config, HamConfig, Presets, field

__all__ = ["GANConfig", "ClassifierConfig", "PRESETS", "CLASSIFIER_PRESETS", "get_preset", "CONTEXTS", "DATA"]

CONTEXTS = ("none", "attention", "ham")
DATA = ("cifar10", "mnist", "shapes")


@dataclass(frozen=True)
class GANConfig(HamConfig):
    """All knobs of one HamGAN run, the context module included; stored in every run's ``config.json``."""
    R: Optional[int] = field(None, "rank r of the ham (None: d/8 in each network, the paper's ratio)", minimum=1)
    context: str = field("ham", "global-context block in G and D: none | attention | ham", choices=CONTEXTS)
    data: str = field("cifar10", "training images: cifar10 | mnist | shapes (synthetic)", choices=DATA)
    data_root: Optional[str] = field(None, "data folder (None: $HAMLIB_DATA, else ./data)", runtime=True)
    download: bool = field(False, "download CIFAR-10 when it is missing", runtime=True)
    n_train: Optional[int] = field(None, "use only N training images (None: all)", minimum=1)
    g_ch: int = field(256, "channels of G", minimum=1)
    d_ch: int = field(128, "channels of D", minimum=1)
    z_dim: int = field(128, "latent size", minimum=1)
    batch_size: int = field(64, "batch size", minimum=1)
    iters: int = field(100_000, "training iterations (one D and one G step each)", minimum=1)
    lr_g: float = field(1e-4, "Adam learning rate of G", above=0)
    lr_d: float = field(4e-4, "Adam learning rate of D", above=0)
    betas: Tuple[float, float] = field((0.0, 0.999), "Adam betas")
    ema_decay: float = field(0.999, "decay of the EMA of G", minimum=0)
    eval_every: int = field(5_000, "evaluate (samples, classifier-FID) every N iterations", minimum=1)
    n_eval: int = field(10_000, "generated images for the classifier-FID", minimum=2)
    ckpt_every: int = field(1_000, "checkpoint every N iterations", minimum=1)
    log_every: int = field(50, "log the losses every N iterations", minimum=1)
    seed: int = field(0, "seed of initialisation, latents and data order", minimum=0)
    classifier: Optional[str] = field(None, "FID classifier: its run folder or weights.pt (None: no FID)",
                                      runtime=True)
    inception: bool = field(False, "also compute Inception FID/IS at the end (needs torch-fidelity, online)",
                            runtime=True)

    def check(self) -> None:
        super().check()
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1); got {self.ema_decay}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1) (Adam's beta1, beta2); got {self.betas}")


@dataclass(frozen=True)
class ClassifierConfig(Config):
    """The feature classifier behind the offline classifier-FID (CIFAR-10, or MNIST for the MNIST GANs)."""
    data: str = field("cifar10", "cifar10 (train / test splits) | mnist (the MNIST test set, split 8,000 / 2,000)",
                      choices=("cifar10", "mnist"))
    data_root: Optional[str] = field(None, "data folder (None: $HAMLIB_DATA, else ./data)", runtime=True)
    download: bool = field(False, "download CIFAR-10 when it is missing", runtime=True)
    width: int = field(16, "base width w of the CNN", minimum=1)
    iters: int = field(1500, "training iterations", minimum=1)
    batch_size: int = field(128, "batch size", minimum=1)
    lr: float = field(0.05, "peak learning rate (SGD, one-cycle)", above=0)
    seed: int = field(0, "seed", minimum=0)
    ckpt_every: int = field(500, "checkpoint every N iterations", minimum=1)
    log_every: int = field(50, "log the loss every N iterations", minimum=1)


PRESETS: Presets[GANConfig] = Presets(GANConfig, {
    "tiny": (GANConfig(data="shapes", n_train=2_000, g_ch=16, d_ch=16, z_dim=32, batch_size=16, iters=60,
                       eval_every=30, n_eval=256, ckpt_every=30, log_every=5, ema_decay=0.9),
             "synthetic shapes, 16 channels, 60 iterations: CPU, about a minute"),
    "cifar10-cpu": (GANConfig(g_ch=32, d_ch=32, z_dim=64, batch_size=32, iters=500, eval_every=100, n_eval=1_000,
                              ckpt_every=50, log_every=10, ema_decay=0.99),
                    "CIFAR-10, 32 channels, 500 iterations (reduced scale, hours on a CPU)"),
    "mnist-cpu": (GANConfig(data="mnist", g_ch=16, d_ch=16, z_dim=64, batch_size=32, iters=2000, eval_every=250,
                            n_eval=1_000, ckpt_every=250, log_every=25, ema_decay=0.99),
                  "MNIST (its 10,000 test images, offline) at 32 px, 16 channels, 2,000 iterations: about 10 min per "
                  "run on one CPU thread, for several seeds per context (python -m hamlib.gan study)"),
    "cifar10": (GANConfig(download=True), "CIFAR-10, SNGAN widths (G 256, D 128), 100k iterations, one GPU"),
})

CLASSIFIER_PRESETS: Presets[ClassifierConfig] = Presets(ClassifierConfig, {
    "default": (ClassifierConfig(), "width 16, 1500 iterations (a few minutes on a CPU)"),
    "tiny": (ClassifierConfig(iters=50, batch_size=32, ckpt_every=25, log_every=10), "50 iterations (tests)"),
    "mnist": (ClassifierConfig(data="mnist", iters=600), "MNIST (8,000 of its test images; 2,000 held out), 600 "
                                                         "iterations: a minute or two on a CPU"),
})


def get_preset(name: str, **overrides) -> GANConfig:
    """A copy of preset ``name`` with ``overrides`` applied (validated)."""
    return PRESETS.make(name, **overrides)
