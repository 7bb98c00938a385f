"""Building blocks of the SNGAN/SAGAN-style ResNet GAN used for HamGAN (Geng et al., ICLR 2021, arXiv 2109.04553).

Spectral norm (Miyato et al. 2018) on every conv and linear layer, class-conditional batch norm in the
generator, and the global-context slot: none, SAGAN self-attention, or a Hamburger (NMF), both gated by a
learnable scalar initialised to 0 so that each block starts as the identity.
"""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from ..attention import SelfAttention2d
from ..hamburger import Hamburger
from ..train.config import HamOptions
from .config import CONTEXTS

__all__ = ["CONTEXTS", "apply_spectral_norm", "CondBatchNorm2d", "GBlock", "DBlock", "context_block"]


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Wrap every Conv2d / Linear / Embedding weight inside ``module`` with spectral norm (in place)."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)) and not hasattr(m, "parametrizations"):
            spectral_norm(m)
    return module


class CondBatchNorm2d(nn.Module):
    """Class-conditional BN: ``gamma_y * BN(x) + beta_y`` with per-class gamma (init 1) and beta (init 0).

    Args:
        channels (int): C. num_classes (int): number of classes.
    Shape: x (B, C, H, W), y (B,) int64 -> (B, C, H, W).
    """

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gamma = nn.Embedding(num_classes, channels)
        self.beta = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.gamma(y)[:, :, None, None] * self.bn(x) + self.beta(y)[:, :, None, None]


class GBlock(nn.Module):
    """Up-sampling residual block: CBN-ReLU-up-conv3-CBN-ReLU-conv3, shortcut up-conv1. (B,C,H,W)->(B,C',2H,2W)."""

    def __init__(self, c_in: int, c_out: int, num_classes: int) -> None:
        super().__init__()
        self.bn1, self.bn2 = CondBatchNorm2d(c_in, num_classes), CondBatchNorm2d(c_out, num_classes)
        self.conv1 = spectral_norm(nn.Conv2d(c_in, c_out, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = spectral_norm(nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.skip(F.interpolate(x, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    """Discriminator residual block, optionally down-sampling (avg-pool 2). ``first``: no ReLU on the input."""

    def __init__(self, c_in: int, c_out: int, down: bool = True, first: bool = False) -> None:
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = spectral_norm(nn.Conv2d(c_in, c_out, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = spectral_norm(nn.Conv2d(c_in, c_out, 1)) if (c_in != c_out or down) else None

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        s = x
        if self.first:  # optimised block: pool, then 1x1 conv
            h, s = F.avg_pool2d(h, 2), self.skip(F.avg_pool2d(x, 2))
            return h + s
        if self.skip is not None:
            s = self.skip(s)
        if self.down:
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return h + s


def context_block(kind: str, channels: int, *, role: str, ham: Optional[HamOptions] = None) -> nn.Module:
    """The global-context slot at 16x16: ``"none"`` (identity), ``"attention"`` or ``"ham"`` (a Hamburger).

    Args:
        kind: one of ``CONTEXTS``.
        channels: C of the feature map; the Hamburger uses d = C (the paper: d=256 in G, d=128 in D).
        role: ``"G"`` (BN after the upper bread) or ``"D"`` (no norm), as in the paper's HamGAN.
        ham: the ham's options (``md``, ``R``, ``train_steps``, ``eval_steps``, ``grad``, ``eval_seed``, ...);
            ``R=None`` gives r = C/8 (the paper's r=32 at d=256 and r=16 at d=128). Default: ``HamOptions()``.
    """
    if kind not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}; got {kind!r}")
    if role not in ("G", "D"):
        raise ValueError(f"role must be 'G' or 'D'; got {role!r}")
    if kind == "none":
        return nn.Identity()
    if kind == "attention":  # SAGAN: keys/queries C/8, values C/2, gate gamma = 0
        block = SelfAttention2d(channels, max(1, channels // 8), max(1, channels // 2), gate=True)
    else:
        ham = ham or HamOptions()
        block = Hamburger(channels, channels, ham.md, norm="bn" if role == "G" else "none", gate=True,
                          **ham.kwargs(R=max(1, channels // 8)))
    return apply_spectral_norm(block)
