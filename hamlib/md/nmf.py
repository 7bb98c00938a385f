"""Non-negative matrix factorisation by multiplicative updates (Lee & Seung, 2001).

The ham of the paper's default Hamburger (Geng et al., ICLR 2021, arXiv 2109.04553).
A non-negative matrix X (D x N) is factorised as X ~= D C with non-negative
bases D (D x R) and coefficients C (R x N). As in the official solver the code
stores coefficients transposed, ``coef`` = C^T of shape (B*S, N, R).

One iteration updates C, then D (paper, Algorithm 2), with eps = 1e-6 added to
both denominators::

    C <- C * (D^T X) / (D^T D C + eps)          # coef <- coef * (X^T D) / (coef D^T D + eps)
    D <- D * (X C^T) / (D C C^T + eps)          # bases <- bases * (X coef) / (bases coef^T coef + eps)

Each update is a majorise-minimise step, so ||X - D C||_F^2 never increases
(up to the eps). The final step is one more C update from the last bases.

The step functions above are the readable form (one line per rule, the layout
of the official code). :func:`nmf_iterate` and :func:`nmf_final_rn` are the fast
form that :func:`hamlib.md.solve` runs when no trace is requested: the same
arithmetic with C kept in the paper's orientation (B*S, R, N), so that every
product reads the data X contiguously, the initial logits D^T X reused as the
first numerator, and in-place updates into preallocated products.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .vq import softmax_over_r_

__all__ = ["EPS", "nmf_init_bases", "nmf_init_coef", "nmf_coef_update", "nmf_bases_update", "nmf_step", "nmf_final",
           "nmf_objective", "nmf_iterate", "nmf_final_rn"]

EPS = 1e-6  # added to both multiplicative-update denominators, as in the official solver


def nmf_init_bases(BS: int, D: int, R: int, *, device: Optional[torch.device] = None,
                   dtype: Optional[torch.dtype] = None, generator: Optional[torch.Generator] = None) -> Tensor:
    """Random non-negative bases: uniform [0, 1), then each of the R columns scaled to unit L2 norm.

    Returns:
        Tensor of shape (B*S, D, R).
    """
    bases = torch.rand((BS, D, R), device=device, dtype=dtype, generator=generator)
    return F.normalize(bases, dim=1)


def nmf_init_coef(x: Tensor, bases: Tensor, inv_t: float = 1.0) -> Tensor:
    """Initial coefficients softmax_R(inv_t * X^T D); NMF always uses temperature 1.

    Args:
        x: (B*S, D, N) non-negative data.
        bases: (B*S, D, R) non-negative bases.
    Returns:
        coef of shape (B*S, N, R), non-negative, each row summing to 1.
    """
    logits = torch.bmm(x.transpose(1, 2), bases)  # (B*S, N, D) @ (B*S, D, R) -> (B*S, N, R)
    return F.softmax(inv_t * logits, dim=-1)


def nmf_coef_update(x: Tensor, bases: Tensor, coef: Tensor) -> Tensor:
    """One multiplicative update of the coefficients, C <- C * (D^T X) / (D^T D C + eps).

    Shapes: x (B*S, D, N), bases (B*S, D, R), coef (B*S, N, R) -> coef (B*S, N, R).
    """
    numerator = torch.bmm(x.transpose(1, 2), bases)                     # (B*S, N, D) @ (B*S, D, R) -> (B*S, N, R)
    denominator = torch.bmm(coef, torch.bmm(bases.transpose(1, 2), bases))  # (B*S, N, R) @ (B*S, R, R) -> (B*S, N, R)
    return coef * numerator / (denominator + EPS)


def nmf_bases_update(x: Tensor, bases: Tensor, coef: Tensor) -> Tensor:
    """One multiplicative update of the bases, D <- D * (X C^T) / (D C C^T + eps).

    Shapes: x (B*S, D, N), bases (B*S, D, R), coef (B*S, N, R) -> bases (B*S, D, R).
    """
    numerator = torch.bmm(x, coef)                                         # (B*S, D, N) @ (B*S, N, R) -> (B*S, D, R)
    denominator = torch.bmm(bases, torch.bmm(coef.transpose(1, 2), coef))  # (B*S, D, R) @ (B*S, R, R) -> (B*S, D, R)
    return bases * numerator / (denominator + EPS)


def nmf_step(x: Tensor, bases: Tensor, coef: Tensor) -> tuple[Tensor, Tensor]:
    """One NMF iteration: update C, then D. Returns ``(bases, coef)``."""
    coef = nmf_coef_update(x, bases, coef)
    bases = nmf_bases_update(x, bases, coef)
    return bases, coef


def nmf_final(x: Tensor, bases: Tensor, coef: Tensor) -> Tensor:
    """The final coefficient step: one more C update from the last bases (the step that carries gradient)."""
    return nmf_coef_update(x, bases, coef)


def nmf_objective(x: Tensor, bases: Tensor, coef: Tensor) -> Tensor:
    """Squared Frobenius error ||X - D C||_F^2 of the current factors, one value per matrix: shape (B*S,)."""
    residual = x - torch.bmm(bases, coef.transpose(1, 2))  # (B*S, D, R) @ (B*S, R, N) -> (B*S, D, N)
    return residual.pow(2).sum(dim=(1, 2))


def nmf_iterate(x: Tensor, bases: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """Initial coefficients and ``steps`` iterations without autograd, C in the paper's (R x N) orientation.

    The same rules as :func:`nmf_init_coef` then ``steps`` x :func:`nmf_step` (equal to float rounding):
    D^T X of the initialisation is the first C-update numerator (D has not moved yet), C is updated in
    place, and the products are written into buffers allocated once.

    Args:
        x: (B*S, D, N) non-negative data.
        bases: (B*S, D, R) non-negative initial bases (not modified).
        steps: iterations K >= 0.
    Returns:
        ``(bases, coef_rn)``: D_K of shape (B*S, D, R) and C_K of shape (B*S, R, N) (C, not C^T).
    """
    with torch.no_grad():
        num = torch.bmm(bases.transpose(1, 2), x)           # D^T X: (B*S, R, D) @ (B*S, D, N) -> (B*S, R, N)
        coef = softmax_over_r_(num.clone())                  # softmax over R, (B*S, R, N)
        den = torch.empty_like(coef)                         # (B*S, R, N), reused every iteration
        for k in range(steps):
            if k > 0:
                torch.bmm(bases.transpose(1, 2), x, out=num)                 # D^T X, (B*S, R, N)
            gram = torch.bmm(bases.transpose(1, 2), bases)                   # D^T D, (B*S, R, R)
            torch.bmm(gram, coef, out=den)                                   # D^T D C, (B*S, R, N)
            coef.mul_(num).div_(den.add_(EPS))                               # C <- C * D^T X / (D^T D C + eps)
            numerator = torch.bmm(x, coef.transpose(1, 2))                   # X C^T: (B*S, D, N) @ (B*S, N, R)
            cct = torch.bmm(coef, coef.transpose(1, 2))                      # C C^T, (B*S, R, R)
            bases = bases * numerator / torch.bmm(bases, cct).add_(EPS)      # D <- D * X C^T / (D C C^T + eps)
    return bases, coef


def nmf_final_rn(x: Tensor, bases: Tensor, coef_rn: Tensor) -> Tensor:
    """:func:`nmf_final` with C in the (B*S, R, N) orientation: C * (D^T X) / (D^T D C + eps).

    This is the step that carries gradient (to ``x``; and to ``bases``/``coef_rn`` if they require it).
    Shapes: x (B*S, D, N), bases (B*S, D, R), coef_rn (B*S, R, N) -> (B*S, R, N).
    """
    numerator = torch.bmm(bases.transpose(1, 2), x)                                   # (B*S, R, N)
    denominator = torch.bmm(torch.bmm(bases.transpose(1, 2), bases), coef_rn)         # (B*S, R, R) @ (B*S, R, N)
    if not torch.is_grad_enabled() or not (x.requires_grad or bases.requires_grad or coef_rn.requires_grad):
        return numerator.mul_(coef_rn).div_(denominator.add_(EPS))                    # inference: in place
    if not (bases.requires_grad or coef_rn.requires_grad):
        # one-step: only D^T X carries gradient; C / (D^T D C + eps) is a constant weight (one saved tensor)
        with torch.no_grad():
            weight = coef_rn / denominator.add_(EPS)                                 # (B*S, R, N)
        return numerator * weight
    return coef_rn * numerator / (denominator + EPS)
