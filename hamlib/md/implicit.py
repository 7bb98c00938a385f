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

**When the series does not converge.** The series converges only if the spectral radius of J is below 1 along the
incoming gradient, and at the default K = 6 the state is not a fixed point:
for NMF (whose Jacobian has an eigenvalue 1 from the scaling D diag(s),
C diag(1/s)) the terms grow to ~1e17, and for VQ/CD at inv_t = 100 they reach
inf/NaN. A silent gradient of that size turns the weights into NaN in one SGD
step, so the backward checks the series and reports failure:

* a non-finite result always raises :class:`ImplicitGradientError`: there is no
  use for a NaN gradient;
* a finite result that has not converged (relative change above ``tol`` after
  ``max_iter`` terms, or terms grown beyond ``IMPLICIT_MAX_GROWTH`` times the
  incoming gradient) issues an :class:`ImplicitGradientWarning` with the figures
  (``on_fail="warn"``, the default) or raises (``on_fail="raise"``). A warning, not
  an error, by default because a slowly converging series still gives a useful
  gradient (NMF at a converged fixed point reaches a relative change of ~4e-5
  in 200 terms) and studies such as chapter 05 time or plot it; pass
  ``on_fail="raise"`` (or ``implicit_on_fail="raise"`` on a ham) in training.

Remedy: use ``grad="one-step"`` (the paper's choice) or ``"bptt"``; or run the
solver to its fixed point (more ``train_steps``) and, for VQ/CD, lower ``inv_t``
(e.g. 10), so that J contracts.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from typing import Callable, Dict, Iterator, List

import torch
from torch import Tensor

__all__ = ["IMPLICIT_MAX_ITER", "IMPLICIT_TOL", "IMPLICIT_MAX_GROWTH", "IMPLICIT_ON_FAIL", "ImplicitGradientError",
           "ImplicitGradientWarning", "implicit_state", "neumann_vjp", "record_backward", "summarise_backward"]

IMPLICIT_MAX_ITER = 200    # Neumann terms in backward (a cap; the loop stops earlier at IMPLICIT_TOL)
IMPLICIT_TOL = 1e-6        # relative change of w that ends the backward iteration
IMPLICIT_MAX_GROWTH = 1e6  # ||w|| / ||u|| above this means the series is diverging, even if it looks settled
IMPLICIT_ON_FAIL = "warn"  # default reaction to a finite but unconverged series: "warn" or "raise"
ON_FAIL = ("warn", "raise")

_REMEDY = ("Remedy: use grad='one-step' (the paper's) or grad='bptt'; or run the solver to its fixed point "
           "(more train_steps) and, for VQ/CD, lower inv_t (e.g. 10) so that the Jacobian contracts.")


class ImplicitGradientError(RuntimeError):
    """The implicit gradient's Neumann series diverged (or, with ``on_fail="raise"``, did not converge)."""


class ImplicitGradientWarning(RuntimeWarning):
    """The implicit gradient's Neumann series stopped before converging; the gradient is approximate."""

StepFn = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]

_RECORDERS: List[List[Dict[str, float]]] = []


@contextlib.contextmanager
def record_backward() -> Iterator[List[Dict[str, float]]]:
    """Collect how every implicit backward inside the block ended, e.g. to record it in a study.

    Yields a list that receives one dict per backward of an implicit state: ``terms`` (Neumann terms summed),
    ``rel`` (the last relative change), ``growth`` (||w|| / ||u||) and ``status``: ``"converged"`` (rel <= tol and
    growth within ``IMPLICIT_MAX_GROWTH``), ``"diverged"`` (growth beyond it) or ``"unconverged"`` (neither:
    the series was still settling after ``max_iter`` terms). A backward that raises is recorded before it raises.
    Blocks may nest; each sees every backward inside it.
    """
    log: List[Dict[str, float]] = []
    _RECORDERS.append(log)
    try:
        yield log
    finally:
        del _RECORDERS[next(i for i, r in enumerate(_RECORDERS) if r is log)]   # by identity: logs may be equal


def summarise_backward(log: List[Dict[str, float]]) -> Dict[str, object]:
    """Counts by status, and the median and maximum of the terms and the growth, of a :func:`record_backward` log."""
    out: Dict[str, object] = {"backward_passes": len(log)}
    for st in ("converged", "unconverged", "diverged"):
        out[st] = sum(e["status"] == st for e in log)
    for key in ("terms", "growth"):
        vals = sorted(float(e[key]) for e in log)
        out[f"{key}_median"] = vals[len(vals) // 2] if vals else None
        out[f"{key}_max"] = vals[-1] if vals else None
    return out


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
    gx, it, rel, _ = _neumann(step, x, bases, coef, u_bases, u_coef, max_iter=max_iter, tol=tol)
    return gx, it, rel


def _neumann(step: StepFn, x: Tensor, bases: Tensor, coef: Tensor, u_bases: Tensor, u_coef: Tensor, *,
             max_iter: int, tol: float) -> tuple[Tensor, int, float, float]:
    """:func:`neumann_vjp` plus the growth ||w|| / ||u|| of the summed series."""
    if max_iter < 0:
        raise ValueError(f"max_iter must be >= 0; got {max_iter!r}")
    with torch.enable_grad():
        xx = x.detach().requires_grad_(True)
        hb = bases.detach().requires_grad_(True)
        hc = coef.detach().requires_grad_(True)
        fb, fc = step(xx, hb, hc)
        outs, ins = (fb, fc), (hb, hc)
        wb, wc = u_bases, u_coef
        u_size = float(torch.sqrt(u_bases.pow(2).sum() + u_coef.pow(2).sum()))
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
            if rel <= tol or not math.isfinite(rel) or float(size) > IMPLICIT_MAX_GROWTH * u_size:
                break                                            # converged, or diverged: more terms won't help
        (gx,) = torch.autograd.grad(outs, (xx,), (wb, wc), allow_unused=True)
        u_norm = torch.sqrt(u_bases.pow(2).sum() + u_coef.pow(2).sum())
        growth = float(torch.sqrt(wb.pow(2).sum() + wc.pow(2).sum()) / u_norm.clamp_min(torch.finfo(u_norm.dtype).tiny))
    gx = torch.zeros_like(x) if gx is None else gx
    return gx, it, rel, growth


def series_status(rel: float, growth: float, tol: float) -> str:
    """How a Neumann series ended: ``"converged"`` (rel <= tol, growth within ``IMPLICIT_MAX_GROWTH``),
    ``"diverged"`` (growth beyond it, or not a number) or ``"unconverged"`` (still settling at the term cap)."""
    if not growth <= IMPLICIT_MAX_GROWTH:
        return "diverged"
    return "converged" if rel <= tol else "unconverged"


def report_convergence(gx: Tensor, it: int, rel: float, growth: float, *, tol: float, on_fail: str) -> None:
    """Raise or warn when the Neumann series behind an implicit gradient did not converge.

    Non-finite results always raise :class:`ImplicitGradientError`; a finite result whose relative change
    is above ``tol`` or whose growth ||w||/||u|| exceeds ``IMPLICIT_MAX_GROWTH`` warns (``on_fail="warn"``)
    or raises (``on_fail="raise"``). The message gives the figures and the remedy.
    """
    finite = math.isfinite(rel) and math.isfinite(growth) and bool(torch.isfinite(gx).all())
    figures = (f"after {it} Neumann terms the relative change is {rel:.3g} (tol {tol:g}) and the series has grown "
               f"to {growth:.3g} x the incoming gradient (limit {IMPLICIT_MAX_GROWTH:g})")
    if not finite:
        raise ImplicitGradientError(f"grad='implicit' diverged: the backward series for (I - dF/dh)^-1 gave a "
                                    f"non-finite gradient ({figures}). {_REMEDY}")
    if series_status(rel, growth, tol) == "converged":
        return
    msg = (f"grad='implicit' did not converge: {figures}; the gradient (norm {float(gx.norm()):.3g}) is only as "
           f"accurate as that relative change, and meaningless if the series grew. {_REMEDY}")
    if on_fail == "raise":
        raise ImplicitGradientError(msg)
    warnings.warn(msg, ImplicitGradientWarning, stacklevel=3)


class _ImplicitFixedPoint(torch.autograd.Function):
    """Identity on the state (D*, C*) in forward; IFT gradient to x in backward."""

    @staticmethod
    def forward(ctx, x: Tensor, bases: Tensor, coef: Tensor, step: StepFn, max_iter: int,  # type: ignore[override]
                tol: float, on_fail: str) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(x, bases, coef)
        ctx.step, ctx.max_iter, ctx.tol, ctx.on_fail = step, max_iter, tol, on_fail
        return bases.clone(), coef.clone()

    @staticmethod
    def backward(ctx, g_bases: Tensor, g_coef: Tensor):  # type: ignore[override]
        x, bases, coef = ctx.saved_tensors
        g_bases = torch.zeros_like(bases) if g_bases is None else g_bases
        g_coef = torch.zeros_like(coef) if g_coef is None else g_coef
        gx, it, rel, growth = _neumann(ctx.step, x, bases, coef, g_bases, g_coef, max_iter=ctx.max_iter, tol=ctx.tol)
        if _RECORDERS:
            status = series_status(rel, growth, ctx.tol)
            for log in _RECORDERS:
                log.append({"terms": it, "rel": rel, "growth": growth, "status": status})
        report_convergence(gx, it, rel, growth, tol=ctx.tol, on_fail=ctx.on_fail)
        return gx, None, None, None, None, None, None


def implicit_state(step: StepFn, x: Tensor, bases: Tensor, coef: Tensor, *, max_iter: int = IMPLICIT_MAX_ITER,
                   tol: float = IMPLICIT_TOL, on_fail: str = IMPLICIT_ON_FAIL) -> tuple[Tensor, Tensor]:
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
        on_fail: ``"warn"`` or ``"raise"`` when the backward series does not converge (a non-finite
            gradient always raises); see the module docstring.

    Returns:
        ``(bases, coef)`` carrying the implicit gradient.

    Raises:
        ImplicitGradientError: in backward, when the series diverges (or does not converge and
            ``on_fail="raise"``).
    """
    if on_fail not in ON_FAIL:
        raise ValueError(f"on_fail must be one of {ON_FAIL}; got {on_fail!r}")
    bases, coef = bases.detach(), coef.detach()
    if not (torch.is_grad_enabled() and x.requires_grad):
        return bases, coef
    return _ImplicitFixedPoint.apply(x, bases, coef, step, max_iter, tol, on_fail)
