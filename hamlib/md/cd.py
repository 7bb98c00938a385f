"""Concept decomposition (Dhillon & Modha, 2001): spherical k-means concepts, then a ridge fit.

One of the three hams of Geng et al. (ICLR 2021, arXiv 2109.04553). The bases
("concept vectors") are found by spherical k-means with a soft, cosine-similarity
assignment at inverse temperature ``inv_t``; each iteration::

    C <- softmax_R(inv_t * X_hat^T D)            # D is unit-norm; X_hat has unit columns
    C <- C diag(C 1_N)^-1                        # normalise over pixels
    D <- normalize(X C^T)                        # concept vectors, unit L2 norm

The final coefficients are the least-squares fit with a ridge term beta::

    C = (D^T D + beta I)^-1 D^T X                # coef = X^T D (D^T D + beta I)^-1

Coefficients are stored transposed, ``coef`` = C^T of shape (B*S, N, R).

:func:`cd_iterate` and :func:`cd_final_rn` are the fast form run by
:func:`hamlib.md.solve` without a trace: the pixel norms computed once and
applied to the R x N logits (no X_hat), no unused initial softmax, C kept as
(B*S, R, N).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .vq import column_norms, soft_assign_rn, unit_columns, vq_init_bases

__all__ = ["EPS", "cd_init_bases", "cd_step", "cd_final", "cd_objective", "cd_iterate", "cd_final_rn"]

EPS = 1e-6

cd_init_bases = vq_init_bases  # standard normal, unit columns: the same draw as VQ


def cd_step(x: Tensor, bases: Tensor, coef: Optional[Tensor], inv_t: float) -> tuple[Tensor, Tensor]:
    """One spherical k-means iteration; the incoming ``coef`` is not used.

    Shapes: x (B*S, D, N), bases (B*S, D, R) with unit columns -> (bases, coef) of
    shapes (B*S, D, R) (unit columns) and (B*S, N, R) (normalised over N).
    """
    x_hat = F.normalize(x, dim=1)                                   # (B*S, D, N)
    coef = F.softmax(inv_t * torch.bmm(x_hat.transpose(1, 2), bases), dim=-1)  # (B*S, N, R)
    coef = coef / (EPS + coef.sum(dim=1, keepdim=True))             # normalise over N
    bases = F.normalize(torch.bmm(x, coef), dim=1, eps=EPS)         # (B*S, D, N) @ (B*S, N, R) -> (B*S, D, R)
    return bases, coef


def cd_final(x: Tensor, bases: Tensor, coef: Optional[Tensor], beta: float) -> Tensor:
    """Ridge least-squares coefficients coef = X^T D (D^T D + beta I)^-1, shape (B*S, N, R)."""
    R = bases.shape[-1]
    gram = torch.bmm(bases.transpose(1, 2), bases)                   # (B*S, R, R)
    eye = torch.eye(R, device=bases.device, dtype=bases.dtype)
    rhs = torch.bmm(bases.transpose(1, 2), x)                        # D^T X: (B*S, R, N)
    # (D^T D + beta I) C = D^T X, solved rather than inverted; C^T is the stored coef.
    return torch.linalg.solve(gram + beta * eye, rhs).transpose(1, 2)  # (B*S, N, R)


def cd_objective(x: Tensor, bases: Tensor, coef: Optional[Tensor], beta: float) -> Tensor:
    """Reconstruction error ||X - D C_ridge||_F^2 if the solve stopped at these bases; shape (B*S,)."""
    c = cd_final(x, bases, None, beta)
    return (x - torch.bmm(bases, c.transpose(1, 2))).pow(2).sum(dim=(1, 2))


def cd_iterate(x: Tensor, bases: Tensor, steps: int, inv_t: float) -> tuple[Tensor, Optional[Tensor]]:
    """``steps`` spherical k-means iterations without autograd; equal to ``steps`` x :func:`cd_step`.

    Shapes: x (B*S, D, N), bases (B*S, D, R) -> ``(bases, coef_rn)`` with bases (B*S, D, R) (unit columns)
    and the last assignment normalised over N, (B*S, R, N) (``None`` when ``steps`` is 0).
    """
    coef = None
    with torch.no_grad():
        if steps > 0:
            col_scale = inv_t / column_norms(x).clamp_min(1e-12)          # inv_t / ||x_n||, once: (B*S, 1, N)
        for _ in range(steps):
            coef = soft_assign_rn(x, bases, col_scale)                   # softmax_R(inv_t D^T X_hat), (B*S, R, N)
            coef.div_(coef.sum(dim=2, keepdim=True).add_(EPS))           # normalise over N
            bases = unit_columns(torch.bmm(x, coef.transpose(1, 2)), EPS)  # (B*S, D, R), unit columns
    return bases, coef


def cd_final_rn(x: Tensor, bases: Tensor, beta: float) -> Tensor:
    """:func:`cd_final` in the (B*S, R, N) orientation: C = (D^T D + beta I)^-1 D^T X, shape (B*S, R, N).

    The small R x D operator P = (D^T D + beta I)^-1 D^T is solved for first and applied to X with one
    product (the same matrix to float rounding: D^T D + beta I has eigenvalues in [beta, R + beta] for unit
    columns), instead of R x N triangular solves in forward and backward.
    """
    R = bases.shape[-1]
    bt = bases.transpose(1, 2)                                           # (B*S, R, D)
    gram = torch.bmm(bt, bases)                                          # (B*S, R, R)
    eye = torch.eye(R, device=bases.device, dtype=bases.dtype)
    op = torch.linalg.solve(gram + beta * eye, bt)                       # (B*S, R, D)
    return torch.bmm(op, x)                                              # (B*S, R, D) @ (B*S, D, N) -> (B*S, R, N)
