"""HamGAN generator and projection discriminator for 32x32 images (Geng et al., ICLR 2021, arXiv 2109.04553).

SNGAN/SAGAN ResNet layout (Miyato & Koyama 2018; Zhang et al. 2019) with a global-context slot at 16x16 in both
networks: G: z -> 4x4 -> 8x8 -> 16x16 [context] -> 32x32 -> RGB.  D: 32x32 -> 16x16 [context] -> 8x8 -> 8x8 -> 8x8
-> ReLU, global sum-pool -> linear + projection <embed(y), phi(x)>.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from typing import Optional, Tuple

from ..train.config import HamOptions
from .config import GANConfig
from .layers import DBlock, GBlock, context_block

__all__ = ["Generator", "Discriminator", "EMA", "from_config"]


class Generator(nn.Module):
    """Class-conditional ResNet generator.

    Args:
        z_dim (int): latent size. Default 128.
        ch (int): channels of every block (SNGAN CIFAR uses 256). Default 256.
        num_classes (int): classes for conditional BN. Default 10.
        context (str): ``"none"``, ``"attention"`` or ``"ham"`` at 16x16.
        ham (HamOptions, optional): the ham of the ``"ham"`` context (R=None: r = ch/8).
    Shape: z (B, z_dim), y (B,) -> images (B, 3, 32, 32) in [-1, 1].
    """

    def __init__(self, z_dim: int = 128, ch: int = 256, num_classes: int = 10, context: str = "none",
                 ham: Optional[HamOptions] = None) -> None:
        super().__init__()
        self.z_dim, self.ch, self.num_classes = z_dim, ch, num_classes
        self.linear = spectral_norm(nn.Linear(z_dim, 4 * 4 * ch))
        self.block1, self.block2 = GBlock(ch, ch, num_classes), GBlock(ch, ch, num_classes)
        self.context = context_block(context, ch, role="G", ham=ham)
        self.block3 = GBlock(ch, ch, num_classes)
        self.bn = nn.BatchNorm2d(ch)
        self.out = spectral_norm(nn.Conv2d(ch, 3, 3, padding=1))

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (B, {self.z_dim}); got {tuple(z.shape)}")
        if y.shape != z.shape[:1]:
            raise ValueError(f"y must have shape ({z.shape[0]},); got {tuple(y.shape)}")
        h = self.linear(z).view(-1, self.ch, 4, 4)
        h = self.block2(self.block1(h, y), y)     # (B, ch, 16, 16)
        h = self.context(h)
        h = self.block3(h, y)                     # (B, ch, 32, 32)
        return torch.tanh(self.out(F.relu(self.bn(h))))

    def sample(self, n: int, *, generator: torch.Generator | None = None, device=None) -> tuple[Tensor, Tensor]:
        """Draw (z, y) for ``n`` samples; labels cycle through the classes."""
        device = device or next(self.parameters()).device
        z = torch.randn(n, self.z_dim, generator=generator).to(device)
        y = (torch.arange(n) % self.num_classes).to(device)
        return z, y


class Discriminator(nn.Module):
    """Projection discriminator with spectral norm.

    Args:
        ch (int): channels (SNGAN CIFAR uses 128). Default 128.
        num_classes (int): classes for the projection term. Default 10.
        context (str): ``"none"``, ``"attention"`` or ``"ham"`` at 16x16.
        ham (HamOptions, optional): the ham of the ``"ham"`` context (R=None: r = ch/8).
    Shape: x (B, 3, 32, 32), y (B,) -> logits (B,).
    """

    def __init__(self, ch: int = 128, num_classes: int = 10, context: str = "none",
                 ham: Optional[HamOptions] = None) -> None:
        super().__init__()
        self.block1 = DBlock(3, ch, first=True)          # 32 -> 16
        self.context = context_block(context, ch, role="D", ham=ham)
        self.block2 = DBlock(ch, ch, down=True)          # 16 -> 8
        self.block3, self.block4 = DBlock(ch, ch, down=False), DBlock(ch, ch, down=False)
        self.linear = spectral_norm(nn.Linear(ch, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, ch))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1:] != (3, 32, 32):
            raise ValueError(f"x must have shape (B, 3, 32, 32); got {tuple(x.shape)}")
        h = self.context(self.block1(x))
        h = self.block4(self.block3(self.block2(h)))
        h = F.relu(h).sum(dim=(2, 3))                   # (B, ch)
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(1)


class EMA(nn.Module):
    """Exponential moving average of a model's parameters; BN running statistics and the spectral-norm power-iteration
    vectors (which must stay unit-norm) are copied. Evaluate ``ema.model``."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1); got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        src = model.state_dict()
        for k, v in self.model.state_dict().items():
            if v.dtype.is_floating_point and "running_" not in k and not k.endswith(("._u", "._v")):
                v.lerp_(src[k], 1.0 - self.decay)
            else:
                v.copy_(src[k])


def from_config(cfg: GANConfig, num_classes: int = 10) -> Tuple[Generator, Discriminator]:
    """G and D that a :class:`~hamlib.gan.config.GANConfig` describes (context and ham included)."""
    ham = cfg.ham()
    return (Generator(cfg.z_dim, cfg.g_ch, num_classes, cfg.context, ham),
            Discriminator(cfg.d_ch, num_classes, cfg.context, ham))
