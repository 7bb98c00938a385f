"""A reference NMF Hamburger written naively from the paper's published algorithm.

Geng et al., "Is Attention Better Than Matrix Decomposition?", ICLR 2021, arXiv 2109.04553,
Algorithm 2 (NMF with multiplicative updates), in the paper's orientation: X is d x n,
D is d x r, C is r x n, and for k = 1..K::

    C <- C * (D^T X) / (D^T D C)
    D <- D * (X C^T) / (D C C^T)

then X_bar = D C. This version is deliberately plain: one image at a time in a Python loop,
the formulas evaluated left to right exactly as printed (so D C C^T forms the d x n product
D C first), no batching and no reordering. It exists only so that :mod:`hamlib.bench` can
compare the Ham/SA cost ratio of :class:`hamlib.Hamburger` with that of the textbook
algorithm. Like the paper it back-propagates through the last C update only (one-step
gradient), and adds eps = 1e-6 to the denominators.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RefNMFHamburger", "ref_nmf"]

EPS = 1e-6


def ref_nmf(X: Tensor, r: int, K: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """Low-rank NMF reconstruction D C of one non-negative matrix X of shape (d, n)."""
    d, n = X.shape
    with torch.no_grad():
        D = F.normalize(torch.rand(d, r, device=X.device, dtype=X.dtype, generator=generator), dim=0)  # (d, r)
        C = torch.softmax(D.T @ X, dim=0)                                   # (r, n), each column sums to 1
        for _ in range(K):
            C = C * (D.T @ X) / (D.T @ D @ C + EPS)                          # (r, n)
            D = D * (X @ C.T) / (D @ C @ C.T + EPS)                          # (d, r)
    C = C * (D.T @ X) / (D.T @ D @ C + EPS)                                  # final step, with gradient
    return D @ C                                                             # (d, n)


class RefNMFHamburger(nn.Module):
    """Y = Z + BN(W_u NMF(ReLU(W_l Z))) built from :func:`ref_nmf`, one image at a time.

    Args:
        in_channels (int): C. ham_channels (int): d. R (int): rank r. K (int): MU iterations.
    """

    def __init__(self, in_channels: int, ham_channels: int = 512, R: int = 64, K: int = 6) -> None:
        super().__init__()
        self.R, self.K = R, K
        self.lower_bread = nn.Conv2d(in_channels, ham_channels, 1, bias=True)
        self.upper_bread = nn.Conv2d(ham_channels, in_channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(in_channels)

    def forward(self, z: Tensor) -> Tensor:
        """z (B, C, H, W) -> (B, C, H, W)."""
        B, _, H, W = z.shape
        h = torch.relu(self.lower_bread(z))                                  # (B, d, H, W)
        outs = [ref_nmf(h[b].reshape(h.shape[1], H * W), self.R, self.K) for b in range(B)]
        h = torch.stack(outs).reshape(h.shape)
        return z + self.norm(self.upper_bread(h))
