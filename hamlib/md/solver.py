"""The solver skeleton shared by VQ, CD and NMF: initialise, K update steps, a final step.

The split is the paper's one-step gradient (Geng et al., ICLR 2021, Sec. "One-step
gradient"): with ``grad="one-step"`` the initial coefficients and the K
iterations run without autograd, and only the final coefficient step and the
reconstruction X_bar = D C see the graph (the bases D are a constant there).
With ``grad="bptt"`` autograd unrolls every iteration. With ``grad="implicit"``
the forward is the one-step forward and backward uses the implicit-function-theorem
gradient at the (approximate) fixed point (:mod:`hamlib.md.implicit`).

The functional entry point is :func:`solve`; the ``nn.Module`` wrappers in
:mod:`hamlib.md.base` call it.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import Tensor

from .implicit import implicit_state
from .cd import cd_final, cd_init_bases, cd_objective, cd_step
from .nmf import nmf_final, nmf_init_bases, nmf_init_coef, nmf_objective, nmf_step
from .vq import vq_final, vq_init_bases, vq_objective, vq_step

__all__ = ["Algorithm", "GRAD_MODES", "METHODS", "Trace", "Solution", "make_algorithm", "solve"]

GRAD_MODES = ("one-step", "bptt", "implicit")
METHODS = ("vq", "cd", "nmf")


@dataclass(frozen=True)
class Algorithm:
    """A matrix decomposition as four pure functions with its hyper-parameters bound.

    Attributes:
        name: ``"vq"``, ``"cd"`` or ``"nmf"``.
        init_bases: ``(BS, D, R, *, device, dtype, generator) -> (B*S, D, R)``.
        init_coef: ``(x, bases) -> (B*S, N, R)``, the coefficients before iteration 1.
        step: ``(x, bases, coef) -> (bases, coef)``, one iteration.
        final: ``(x, bases, coef) -> coef``, the final coefficient step.
        objective: ``(x, bases, coef) -> (B*S,)``, the error plotted per iteration.
        nonnegative: whether the data must be non-negative (NMF).
    """

    name: str
    init_bases: Callable[..., Tensor]
    init_coef: Callable[[Tensor, Tensor], Tensor]
    step: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]
    final: Callable[[Tensor, Tensor, Tensor], Tensor]
    objective: Callable[[Tensor, Tensor, Tensor], Tensor]
    nonnegative: bool = False


def make_algorithm(method: str, *, inv_t: float = 100.0, beta: float = 0.1) -> Algorithm:
    """Build the :class:`Algorithm` for ``method`` in ``{"vq", "cd", "nmf"}``.

    Args:
        method: which decomposition.
        inv_t: inverse temperature 1/T of the soft assignments (VQ, CD). NMF always uses 1
            for its softmax initialisation, as the official solver does.
        beta: ridge strength of CD's final least-squares step.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if method == "nmf":
        return Algorithm("nmf", nmf_init_bases, functools.partial(nmf_init_coef, inv_t=1.0), nmf_step, nmf_final,
                         nmf_objective, nonnegative=True)
    # VQ and CD start from the same softmax of raw inner products; their steps recompute it anyway.
    init_coef = functools.partial(nmf_init_coef, inv_t=inv_t)
    if method == "vq":
        return Algorithm("vq", vq_init_bases, init_coef, functools.partial(vq_step, inv_t=inv_t),
                         functools.partial(vq_final, inv_t=inv_t), functools.partial(vq_objective, inv_t=inv_t))
    return Algorithm("cd", cd_init_bases, init_coef, functools.partial(cd_step, inv_t=inv_t),
                     functools.partial(cd_final, beta=beta), functools.partial(cd_objective, beta=beta))


@dataclass
class Trace:
    """Every iterate of a solve, detached: ``bases[k]``/``coef[k]`` after k iterations (k = 0 is the init).

    ``objective[k]`` has shape (B*S,): for NMF ||X - D_k C_k||^2, for VQ/CD the error of the
    reconstruction that the final step would give from D_k.
    """

    bases: list[Tensor] = field(default_factory=list)
    coef: list[Tensor] = field(default_factory=list)
    objective: list[Tensor] = field(default_factory=list)

    def objective_curve(self) -> Tensor:
        """Objective per iteration, shape (K+1, B*S)."""
        return torch.stack(self.objective)


@dataclass
class Solution:
    """The result of :func:`solve`.

    Attributes:
        recon: low-rank reconstruction X_bar = D C, shape (B*S, D, N).
        bases: final bases D, shape (B*S, D, R).
        coef: final coefficients C^T, shape (B*S, N, R).
        trace: every iterate if requested, else ``None``.
    """

    recon: Tensor
    bases: Tensor
    coef: Tensor
    trace: Optional[Trace] = None


def _record(trace: Optional[Trace], alg: Algorithm, x: Tensor, bases: Tensor, coef: Tensor) -> None:
    if trace is None:
        return
    with torch.no_grad():
        trace.bases.append(bases.detach().clone())
        trace.coef.append(coef.detach().clone())
        trace.objective.append(alg.objective(x.detach(), bases.detach(), coef.detach()))


def _iterate(alg: Algorithm, x: Tensor, bases: Tensor, steps: int, trace: Optional[Trace]) -> tuple[Tensor, Tensor]:
    coef = alg.init_coef(x, bases)
    _record(trace, alg, x, bases, coef)
    for _ in range(steps):
        bases, coef = alg.step(x, bases, coef)
        _record(trace, alg, x, bases, coef)
    return bases, coef


def solve(x: Tensor, bases: Tensor, *, method: str | Algorithm = "nmf", steps: int = 6, grad: str = "one-step",
          inv_t: float = 100.0, beta: float = 0.1, return_trace: bool = False) -> Solution:
    """Run a decomposition on a batch of matrices: init coef, ``steps`` iterations, final step, X_bar = D C.

    No input validation beyond the gradient mode: the modules check their inputs, this function is
    the bare algorithm for readers who step through it.

    Args:
        x: data, shape (B*S, D, N).
        bases: initial bases, shape (B*S, D, R).
        method: ``"vq"``, ``"cd"``, ``"nmf"`` or an :class:`Algorithm`.
        steps: number of iterations K.
        grad: ``"one-step"`` (iterations without autograd; only the final step carries gradient) or
            ``"bptt"`` (autograd through every iteration) or ``"implicit"`` (one-step forward; backward
            through (I - dF/dh)^-1 at the last iterate, see :mod:`hamlib.md.implicit`).
        inv_t: inverse temperature (VQ, CD).
        beta: ridge strength (CD).
        return_trace: keep every iterate and its objective value in ``Solution.trace``.

    Returns:
        A :class:`Solution`; ``recon`` has shape (B*S, D, N).
    """
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES}; got {grad!r}")
    alg = method if isinstance(method, Algorithm) else make_algorithm(method, inv_t=inv_t, beta=beta)
    trace = Trace() if return_trace else None
    if grad in ("one-step", "implicit"):
        with torch.no_grad():
            bases, coef = _iterate(alg, x, bases, steps, trace)
        bases, coef = bases.detach(), coef.detach()
        if grad == "implicit":
            bases, coef = implicit_state(alg.step, x, bases, coef)
    else:
        bases, coef = _iterate(alg, x, bases, steps, trace)
    coef = alg.final(x, bases, coef)                           # the step that carries gradient
    recon = torch.bmm(bases, coef.transpose(1, 2))             # (B*S, D, R) @ (B*S, R, N) -> (B*S, D, N)
    return Solution(recon=recon, bases=bases, coef=coef, trace=trace)
