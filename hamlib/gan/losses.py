"""Hinge losses of the HamGAN/SAGAN training (Geng et al., ICLR 2021, arXiv 2109.04553; Lim & Ye 2017).

    L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]        L_G = -E[D(G(z))]
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["d_hinge_loss", "g_hinge_loss"]


def d_hinge_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator hinge loss. Args: real_logits (B,), fake_logits (B,). Returns a scalar."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def g_hinge_loss(fake_logits: Tensor) -> Tensor:
    """Generator hinge loss -E[D(G(z))]. Args: fake_logits (B,). Returns a scalar."""
    return -fake_logits.mean()
