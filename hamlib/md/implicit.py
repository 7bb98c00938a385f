"""Implicit (fixed-point) gradient of a matrix-decomposition solve.

Geng et al. ("Is Attention Better Than Matrix Decomposition?", ICLR 2021,
arXiv 2109.04553) model the solver as a fixed-point map h <- F(h, x) on the
state h = (D, C) and state (their Proposition 2) that, as K -> infinity, the
unrolled (BPTT) gradient tends to the implicit-function-theorem gradient at the
fixed point h* = F(h*, x)::

    dy/dx = dG/dx + (dG/dh*) (I - dF/dh*)^-1 (dF/dx)

This module provides that gradient as a third mode next to ``"one-step"`` and
``"bptt"``. The forward pass is exactly the one-step forward (K iterations
without autograd); in backward the incoming gradient u = dL/dh* is mapped to
w = u (I - J)^-1, J = dF/dh*, by the fixed-point iteration w <- u + w J (the
Neumann series; each term is one vector-Jacobian product), as in deep
equilibrium models (Bai et al., 2019), and then w (dF/dx) is the gradient that
reaches x. Keeping only the first term of the series (w = u) gives the
gradient of one extra solver step; dropping the path through h* entirely gives
the one-step gradient.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["IMPLICIT_MAX_ITER", "IMPLICIT_TOL", "implicit_state", "neumann_vjp"]

IMPLICIT_MAX_ITER = 200  # Neumann terms in backward (a cap; the loop stops earlier at IMPLICIT_TOL)
IMPLICIT_TOL = 1e-6      # relative change of w that ends the backward iteration

StepFn = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def neumann_vjp(step: StepFn, x: Tensor, bases: Tensor, coef: Tensor, u_bases: Tensor, u_coef: Tensor, *,
                max_iter: int = IMPLICIT_MAX_ITER, tol: float = IMPLICIT_TOL) -> tuple[Tensor, int, float]:
    """Gradient to ``x`` of <u, h*(x)> by the implicit function theorem: w = u (I - J)^-1, then w dF/dx.

    Args:
        step: the solver map F, ``(x, bases, coef) -> (bases, coef)``.
        x: data at the fixed point, shape (B*S, D, N).
        bases: fixed-point bases D*, shape (B*S, D, R).
        coef: fixed-point coefficients C*^T, shape (B*S, N, R).
        u_bases: incoming gradient dL/dD*, shape (B*S, D, R).
        u_coef: incoming gradient dL/dC*^T, shape (B*S, N, R).
        max_iter: the most Neumann terms to sum (w <- u + w J).
        tol: stop when ||w_new - w|| <= tol * ||w_new||.

    Returns:
        ``(grad_x, iterations, rel_change)``: grad_x of shape (B*S, D, N), the number of
        iterations used and the last relative change (> tol means it did not converge).
    """
    if max_iter < 0:
        raise ValueError(f"max_iter must be >= 0; got {max_iter!r}")
    with torch.enable_grad():
        xx = x.detach().requires_grad_(True)
        hb = bases.detach().requires_grad_(True)
        hc = coef.detach().requires_grad_(True)
        fb, fc = step(xx, hb, hc)
        outs, ins = (fb, fc), (hb, hc)
        wb, wc = u_bases, u_coef
        rel, it = 0.0, 0
        for it in range(1, max_iter + 1):
            jb, jc = torch.autograd.grad(outs, ins, (wb, wc), retain_graph=True, allow_unused=True)
            jb = torch.zeros_like(hb) if jb is None else jb
            jc = torch.zeros_like(hc) if jc is None else jc
            nb, nc = u_bases + jb, u_coef + jc                   # w <- u + w J
            diff = torch.sqrt((nb - wb).pow(2).sum() + (nc - wc).pow(2).sum())
            size = torch.sqrt(nb.pow(2).sum() + nc.pow(2).sum())
            wb, wc = nb, nc
            rel = float(diff / size.clamp_min(torch.finfo(size.dtype).tiny))
            if rel <= tol:
                break
        (gx,) = torch.autograd.grad(outs, (xx,), (wb, wc), allow_unused=True)
    gx = torch.zeros_like(x) if gx is None else gx
    return gx, it, rel


class _ImplicitFixedPoint(torch.autograd.Function):
    """Identity on the state (D*, C*) in forward; IFT gradient to x in backward."""

    @staticmethod
    def forward(ctx, x: Tensor, bases: Tensor, coef: Tensor, step: StepFn, max_iter: int,  # type: ignore[override]
                tol: float) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(x, bases, coef)
        ctx.step, ctx.max_iter, ctx.tol = step, max_iter, tol
        return bases.clone(), coef.clone()

    @staticmethod
    def backward(ctx, g_bases: Tensor, g_coef: Tensor):  # type: ignore[override]
        x, bases, coef = ctx.saved_tensors
        g_bases = torch.zeros_like(bases) if g_bases is None else g_bases
        g_coef = torch.zeros_like(coef) if g_coef is None else g_coef
        gx, _, _ = neumann_vjp(ctx.step, x, bases, coef, g_bases, g_coef, max_iter=ctx.max_iter, tol=ctx.tol)
        return gx, None, None, None, None, None


def implicit_state(step: StepFn, x: Tensor, bases: Tensor, coef: Tensor, *, max_iter: int = IMPLICIT_MAX_ITER,
                   tol: float = IMPLICIT_TOL) -> tuple[Tensor, Tensor]:
    """Attach the implicit gradient to an (approximate) fixed point (D*, C*) of ``step``.

    The returned tensors equal ``bases`` and ``coef``; gradients flowing into them reach ``x``
    through (I - dF/dh*)^-1 dF/dx. If ``x`` does not require grad (or grad is disabled) they are
    returned detached.

    Args:
        step: the solver map F, ``(x, bases, coef) -> (bases, coef)``.
        x: data, shape (B*S, D, N).
        bases: D* after K iterations, shape (B*S, D, R).
        coef: C*^T after K iterations, shape (B*S, N, R).
        max_iter: the most Neumann terms in backward.
        tol: relative tolerance of the backward iteration.

    Returns:
        ``(bases, coef)`` carrying the implicit gradient.
    """
    bases, coef = bases.detach(), coef.detach()
    if not (torch.is_grad_enabled() and x.requires_grad):
        return bases, coef
    return _ImplicitFixedPoint.apply(x, bases, coef, step, max_iter, tol)
