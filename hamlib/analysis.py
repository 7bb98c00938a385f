"""Gradient analysis of the matrix-decomposition solvers: one-step vs BPTT vs implicit.

Tools for the book chapter on the one-step gradient of Geng et al., "Is Attention
Better Than Matrix Decomposition?" (ICLR 2021, arXiv 2109.04553): the Jacobian
dF/dh of the solver map at its fixed point and its spectrum, the gradient of a
loss with respect to the data X under each gradient mode, cosine/norm-ratio
helpers, the gradient that reaches the initial bases, and the cost (time and
autograd memory, via :class:`hamlib.measure.saved_tensor_bytes`) of a backward
pass as a function of the number of steps K. The training experiment that uses
them lives in :mod:`hamlib.experiments.onestep`.

Shapes: x (B*S, D, N), bases (B*S, D, R), coef = C^T (B*S, N, R). ``steps`` is K, as in
:func:`hamlib.md.solve`.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import Tensor

from .md.solver import GRAD_MODES, make_algorithm, solve
from .measure import saved_tensor_bytes

__all__ = ["fixed_point", "state_jacobian", "jacobian_spectrum", "input_gradients", "init_gradient_norm",
           "cosine", "norm_ratio", "backward_cost"]


def fixed_point(x: Tensor, bases: Tensor, method: str, *, steps: int = 300, inv_t: float = 100.0,
                beta: float = 0.1) -> tuple[Tensor, Tensor, float]:
    """Run ``steps`` iterations without autograd and return the last state and its last change.

    Args:
        x: data (B*S, D, N).
        bases: initial bases (B*S, D, R).
        method: ``"nmf"``, ``"vq"`` or ``"cd"``.
        steps: iterations K.
        inv_t: inverse temperature (VQ, CD).
        beta: ridge strength (CD).

    Returns:
        ``(bases, coef, change)``: the state after K steps, shapes (B*S, D, R) and (B*S, N, R), and
        ||D_K - D_{K-1}|| / ||D_K|| (small when the iteration has converged).
    """
    if not isinstance(steps, int) or steps < 1:  # with 0 steps the "change" would be 0: a false convergence
        raise ValueError(f"steps must be an int >= 1; got {steps!r}")
    alg = make_algorithm(method, inv_t=inv_t, beta=beta)
    with torch.no_grad():
        coef = alg.init_coef(x, bases)
        prev = bases
        for _ in range(steps):
            prev = bases
            bases, coef = alg.step(x, bases, coef)
        change = float((bases - prev).norm() / bases.norm().clamp_min(1e-30))
    return bases, coef, change


def state_jacobian(x: Tensor, bases: Tensor, coef: Tensor, method: str, *, inv_t: float = 100.0,
                   beta: float = 0.1) -> Tensor:
    """Dense Jacobian dF/dh of one solver step at the state h = (D, C^T), flattened.

    Meant for small problems (P = B*S*(D*R + N*R) state entries; the result is P x P).

    Args:
        x: data (B*S, D, N).
        bases: state bases D, (B*S, D, R).
        coef: state coefficients C^T, (B*S, N, R).
        method: ``"nmf"``, ``"vq"`` or ``"cd"``.
        inv_t: inverse temperature (VQ, CD).
        beta: ridge strength (CD).

    Returns:
        J of shape (P, P): row i = output entry i of F(h), column j = state entry j.
    """
    alg = make_algorithm(method, inv_t=inv_t, beta=beta)
    nb = bases.numel()
    x = x.detach()

    def flat_step(h: Tensor) -> Tensor:
        b, c = h[:nb].view_as(bases), h[nb:].view_as(coef)
        b2, c2 = alg.step(x, b, c)
        return torch.cat([b2.reshape(-1), c2.reshape(-1)])

    h = torch.cat([bases.detach().reshape(-1), coef.detach().reshape(-1)])
    return torch.autograd.functional.jacobian(flat_step, h)


def jacobian_spectrum(J: Tensor) -> dict:
    """Eigenvalues, spectral radius and spectral norm (largest singular value) of a square Jacobian.

    Returns:
        ``{"eigvals": complex tensor (P,), "spectral_radius": float, "norm2": float}``.
    """
    if J.ndim != 2 or J.shape[0] != J.shape[1]:
        raise ValueError(f"J must be a square matrix; got shape {tuple(J.shape)}")
    eig = torch.linalg.eigvals(J)
    return {"eigvals": eig, "spectral_radius": float(eig.abs().max()),
            "norm2": float(torch.linalg.matrix_norm(J, ord=2))}


def input_gradients(x: Tensor, bases: Tensor, method: str, steps: int, weight: Tensor, *,
                    modes: tuple[str, ...] = GRAD_MODES, inv_t: float = 100.0, beta: float = 0.1) -> dict[str, Tensor]:
    """Gradient of the linear loss L = <weight, X_bar> with respect to x, under each gradient mode.

    Args:
        x: data (B*S, D, N) (non-negative for NMF).
        bases: initial bases (B*S, D, R), the same for every mode.
        method: ``"nmf"``, ``"vq"`` or ``"cd"``.
        steps: iterations K.
        weight: the loss weights, shape (B*S, D, N).
        modes: gradient modes to evaluate (subset of ``("one-step", "bptt", "implicit")``).
        inv_t: inverse temperature (VQ, CD).
        beta: ridge strength (CD).

    Returns:
        ``{mode: dL/dx}``, each of shape (B*S, D, N).
    """
    out = {}
    for mode in modes:
        if mode not in GRAD_MODES:
            raise ValueError(f"modes must be drawn from {GRAD_MODES}; got {mode!r}")
        xr = x.detach().clone().requires_grad_(True)
        recon = solve(xr, bases.detach(), method=method, steps=steps, grad=mode, inv_t=inv_t, beta=beta).recon
        (g,) = torch.autograd.grad((recon * weight).sum(), xr)
        out[mode] = g
    return out


def init_gradient_norm(x: Tensor, bases: Tensor, method: str, steps: int, weight: Tensor, *, inv_t: float = 100.0,
                       beta: float = 0.1) -> float:
    """||dL/dD_0||: how much the BPTT gradient of L = <weight, X_bar> reaches the initial bases D_0."""
    b0 = bases.detach().clone().requires_grad_(True)
    recon = solve(x.detach(), b0, method=method, steps=steps, grad="bptt", inv_t=inv_t, beta=beta).recon
    (g,) = torch.autograd.grad((recon * weight).sum(), b0)
    return float(g.norm())


def _same_size(a: Tensor, b: Tensor) -> None:
    if a.numel() != b.numel():
        raise ValueError(f"a and b must have the same number of entries; got shapes {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")


def cosine(a: Tensor, b: Tensor) -> float:
    """Cosine similarity of two tensors seen as flat vectors (0 if either is zero)."""
    _same_size(a, b)
    a, b = a.reshape(-1), b.reshape(-1)
    return float(torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-30))


def norm_ratio(a: Tensor, b: Tensor) -> float:
    """||a|| / ||b|| (the norm of ``b`` is clamped at 1e-30)."""
    _same_size(a, b)
    return float(a.norm() / b.norm().clamp_min(1e-30))


def backward_cost(x: Tensor, bases: Tensor, method: str, steps: int, grad: str, *, repeats: int = 5,
                  inv_t: float = 100.0, beta: float = 0.1) -> dict:
    """Time and memory of the backward pass of L = sum(X_bar) for one gradient mode.

    Args:
        x: data (B*S, D, N).
        bases: initial bases (B*S, D, R).
        method: ``"nmf"``, ``"vq"`` or ``"cd"``.
        steps: iterations K.
        grad: ``"one-step"``, ``"bptt"`` or ``"implicit"``.
        repeats: timed repeats (after one warm-up); the median is reported.
        inv_t: inverse temperature (VQ, CD).
        beta: ridge strength (CD).

    Returns:
        dict: ``{"backward_ms": median, "backward_ms_spread": (min, max), "saved_bytes": int,
        "cuda_peak_bytes": int or None}`` (the CUDA peak covers forward + backward).
    """
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES}; got {grad!r}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats!r}")
    cuda = x.device.type == "cuda"
    times, saved, peak = [], 0, None
    for i in range(repeats + 1):
        xr = x.detach().clone().requires_grad_(True)
        if cuda:
            torch.cuda.synchronize(x.device)
            torch.cuda.reset_peak_memory_stats(x.device)
            base_mem = torch.cuda.memory_allocated(x.device)
        with saved_tensor_bytes() as st:
            loss = solve(xr, bases, method=method, steps=steps, grad=grad, inv_t=inv_t, beta=beta).recon.sum()
        if cuda:
            torch.cuda.synchronize(x.device)
        t0 = time.perf_counter()
        loss.backward()
        if cuda:
            torch.cuda.synchronize(x.device)
            peak = torch.cuda.max_memory_allocated(x.device) - base_mem
        if i > 0:  # the first pass is a warm-up
            times.append(1e3 * (time.perf_counter() - t0))
        saved = st.bytes
    return {"backward_ms": statistics.median(times), "backward_ms_spread": (min(times), max(times)),
            "saved_bytes": saved, "cuda_peak_bytes": peak}
