"""Soft vector quantisation: a differentiable, batched k-means with cosine similarity.

One of the three hams of Geng et al. (ICLR 2021, arXiv 2109.04553), their
Algorithm 1. Each pixel x_n (a column of X, D x N) is softly assigned to the R
bases (centres) by a softmax over cosine similarities at inverse temperature
``inv_t`` = 1/T; each basis then moves to the weighted mean of its pixels::

    C <- softmax_R(inv_t * cos(D, X))            # one distribution over R per pixel
    D <- X C^T diag(C 1_N)^-1                    # weighted means

As T -> 0 the softmax becomes an argmax and this is spherical k-means'
assignment followed by a Lloyd mean update. Coefficients are stored transposed,
``coef`` = C^T of shape (B*S, N, R).

:func:`vq_iterate` and :func:`vq_final_rn` are the fast form that
:func:`hamlib.md.solve` runs when no trace is requested: the pixel norms are
computed once (the data do not change between iterations) and applied to the
small R x N logits instead of forming X_hat, the initial softmax that no step
reads is skipped, and C is kept as (B*S, R, N) so that X is read contiguously.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["EPS", "vq_init_bases", "vq_assign", "vq_step", "vq_final", "vq_objective", "vq_iterate", "vq_final_rn",
           "soft_assign_rn", "softmax_over_r_", "column_norms", "unit_columns"]

EPS = 1e-6


def vq_init_bases(BS: int, D: int, R: int, *, device: Optional[torch.device] = None,
                  dtype: Optional[torch.dtype] = None, generator: Optional[torch.Generator] = None) -> Tensor:
    """Random bases: standard normal, then each of the R columns scaled to unit L2 norm. Shape (B*S, D, R)."""
    bases = torch.randn((BS, D, R), device=device, dtype=dtype, generator=generator)
    return F.normalize(bases, dim=1)


def vq_assign(x: Tensor, bases: Tensor, inv_t: float) -> Tensor:
    """Soft assignment softmax_R(inv_t * cos(x_n, d_r)) used inside the iterations.

    Shapes: x (B*S, D, N), bases (B*S, D, R) -> coef (B*S, N, R), rows summing to 1.
    """
    x_hat = F.normalize(x, dim=1)                  # unit pixels, (B*S, D, N)
    d_hat = F.normalize(bases, dim=1, eps=EPS)     # unit bases, (B*S, D, R)
    cos = torch.bmm(x_hat.transpose(1, 2), d_hat)  # (B*S, N, D) @ (B*S, D, R) -> (B*S, N, R)
    return F.softmax(inv_t * cos, dim=-1)


def vq_step(x: Tensor, bases: Tensor, coef: Optional[Tensor], inv_t: float) -> tuple[Tensor, Tensor]:
    """One soft k-means iteration. The incoming ``coef`` is not used (assignments are recomputed).

    Returns ``(bases, coef)`` where ``coef`` is the assignment normalised over pixels
    (each column of C sums to 1, the diag(C 1_N)^-1 factor) and ``bases`` = X coef, shape (B*S, D, R).
    """
    coef = vq_assign(x, bases, inv_t)
    coef = coef / (EPS + coef.sum(dim=1, keepdim=True))  # normalise over N: (B*S, N, R)
    bases = torch.bmm(x, coef)                           # (B*S, D, N) @ (B*S, N, R) -> (B*S, D, R)
    return bases, coef


def vq_final(x: Tensor, bases: Tensor, coef: Optional[Tensor], inv_t: float) -> Tensor:
    """Final soft assignment, the step that carries gradient.

    The pixel norms are treated as constants (no gradient flows through ||x_n||),
    x_n / (eps + ||x_n||); the bases are normalised as in :func:`vq_assign`.
    Returns coef of shape (B*S, N, R).
    """
    with torch.no_grad():
        x_norm = x.norm(dim=1, keepdim=True)       # (B*S, 1, N)
    x_hat = x / (EPS + x_norm)                     # (B*S, D, N)
    d_hat = F.normalize(bases, dim=1, eps=EPS)     # (B*S, D, R)
    cos = torch.bmm(x_hat.transpose(1, 2), d_hat)  # (B*S, N, R)
    return F.softmax(inv_t * cos, dim=-1)


def vq_objective(x: Tensor, bases: Tensor, coef: Optional[Tensor], inv_t: float) -> Tensor:
    """Reconstruction error ||X - D C_final||_F^2 if the solve stopped at these bases; shape (B*S,)."""
    c = vq_final(x, bases, None, inv_t)
    return (x - torch.bmm(bases, c.transpose(1, 2))).pow(2).sum(dim=(1, 2))


def column_norms(t: Tensor) -> Tensor:
    """L2 norms of the columns of a batch of matrices, ``sqrt(sum_d t^2)``: (B*S, D, M) -> (B*S, 1, M).

    The same values as ``t.norm(dim=1, keepdim=True)`` to float rounding, but the sum over the strided
    axis runs vectorised (on the CPU ``norm(dim=1)`` measured 20x slower at D = 512, N = 4096).
    """
    return t.square().sum(dim=1, keepdim=True).sqrt()


def unit_columns(t: Tensor, eps: float) -> Tensor:
    """``F.normalize(t, dim=1, eps=eps)`` through :func:`column_norms`: t / max(||t_col||, eps)."""
    return t / column_norms(t).clamp_min(eps)


def softmax_over_r_(logits: Tensor) -> Tensor:
    """In-place softmax over R (dim 1) of (B*S, R, N) logits, without autograd.

    ``torch.softmax(dim=1)`` on this layout (the reduced axis strided) measured 2-10x slower on the CPU
    than max-shift, exp and sum written out, which reduce over R with N contiguous. Equal to float rounding.
    """
    logits.sub_(logits.amax(dim=1, keepdim=True)).exp_()
    return logits.div_(logits.sum(dim=1, keepdim=True))


def soft_assign_rn(x: Tensor, bases: Tensor, col_scale: Tensor) -> Tensor:
    """softmax over R of (D^T X) * col_scale, in the (B*S, R, N) orientation (no autograd; in place).

    With ``col_scale`` = inv_t / ||x_n|| this is softmax_R(inv_t * D^T X_hat) without forming the unit
    pixels X_hat (D x N): the per-pixel scaling is applied to the R x N product instead (R << D).
    Shapes: x (B*S, D, N), bases (B*S, D, R), col_scale (B*S, 1, N) -> (B*S, R, N), columns summing to 1.
    """
    logits = torch.bmm(bases.transpose(1, 2), x)        # (B*S, R, D) @ (B*S, D, N) -> (B*S, R, N)
    return softmax_over_r_(logits.mul_(col_scale))


def vq_iterate(x: Tensor, bases: Tensor, steps: int, inv_t: float) -> tuple[Tensor, Optional[Tensor]]:
    """``steps`` soft k-means iterations without autograd; equal to ``steps`` x :func:`vq_step` to float rounding.

    The pixel norms are computed once (the data do not change between iterations) and applied to the
    R x N logits, and the initial softmax, which no step reads, is skipped.

    Args:
        x: (B*S, D, N) data.
        bases: (B*S, D, R) initial centres.
        steps: iterations K >= 0.
        inv_t: inverse temperature.
    Returns:
        ``(bases, coef_rn)``: bases (B*S, D, R) and the last assignment normalised over N, (B*S, R, N)
        (``None`` when ``steps`` is 0: no step ran and no step reads it).
    """
    coef = None
    with torch.no_grad():
        if steps > 0:
            col_scale = inv_t / column_norms(x).clamp_min(1e-12)          # inv_t / ||x_n||, (B*S, 1, N)
        for _ in range(steps):
            coef = soft_assign_rn(x, unit_columns(bases, EPS), col_scale)  # (B*S, R, N)
            coef.div_(coef.sum(dim=2, keepdim=True).add_(EPS))           # normalise over N
            bases = torch.bmm(x, coef.transpose(1, 2))                   # X C^T: (B*S, D, N) @ (B*S, N, R)
    return bases, coef


def vq_final_rn(x: Tensor, bases: Tensor, inv_t: float) -> Tensor:
    """:func:`vq_final` in the (B*S, R, N) orientation; the step that carries gradient.

    softmax_R(inv_t * D_hat^T x_n / (eps + ||x_n||)) with the pixel norms as constants; the division is
    applied to the R x N product rather than to X. Returns (B*S, R, N).
    """
    with torch.no_grad():
        col_scale = inv_t / (EPS + column_norms(x))               # (B*S, 1, N), a constant
    d_hat = unit_columns(bases, EPS)                              # (B*S, D, R)
    logits = torch.bmm(d_hat.transpose(1, 2), x)                  # (B*S, R, D) @ (B*S, D, N) -> (B*S, R, N)
    return F.softmax(logits * col_scale, dim=1)
