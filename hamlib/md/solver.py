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
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import Tensor

from .implicit import IMPLICIT_ON_FAIL, implicit_state
from .cd import cd_final, cd_final_rn, cd_init_bases, cd_iterate, cd_objective, cd_step
from .nmf import nmf_final, nmf_final_rn, nmf_init_bases, nmf_init_coef, nmf_iterate, nmf_objective, nmf_step
from .vq import vq_final, vq_final_rn, vq_init_bases, vq_iterate, vq_objective, vq_step

__all__ = ["Algorithm", "GRAD_MODES", "METHODS", "Trace", "Solution", "make_algorithm", "solve", "check_hyperparameters",
           "compiled_iterate"]

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
        iterate: optional fast form of init + K steps without autograd,
            ``(x, bases, K) -> (bases, coef_rn)`` with C as (B*S, R, N) (``None`` allowed for VQ/CD at K = 0).
        final_rn: optional fast final step ``(x, bases, coef_rn) -> coef_rn`` in the same orientation.
            :func:`solve` uses the pair for ``grad="one-step"`` without a trace; both must equal the
            step functions to float rounding (``tests/test_md_fast.py`` checks the built-in ones).
    """

    name: str
    init_bases: Callable[..., Tensor]
    init_coef: Callable[[Tensor, Tensor], Tensor]
    step: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]
    final: Callable[[Tensor, Tensor, Tensor], Tensor]
    objective: Callable[[Tensor, Tensor, Tensor], Tensor]
    nonnegative: bool = False
    iterate: Optional[Callable[[Tensor, Tensor, int], tuple[Tensor, Optional[Tensor]]]] = None
    final_rn: Optional[Callable[[Tensor, Tensor, Optional[Tensor]], Tensor]] = None


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
    check_hyperparameters(inv_t, beta)
    if method == "nmf":
        return Algorithm("nmf", nmf_init_bases, functools.partial(nmf_init_coef, inv_t=1.0), nmf_step, nmf_final,
                         nmf_objective, nonnegative=True, iterate=nmf_iterate, final_rn=nmf_final_rn)
    # VQ and CD start from the same softmax of raw inner products; their steps recompute it anyway
    # (the fast forms skip it).
    init_coef = functools.partial(nmf_init_coef, inv_t=inv_t)
    if method == "vq":
        return Algorithm("vq", vq_init_bases, init_coef, functools.partial(vq_step, inv_t=inv_t),
                         functools.partial(vq_final, inv_t=inv_t), functools.partial(vq_objective, inv_t=inv_t),
                         iterate=functools.partial(vq_iterate, inv_t=inv_t),
                         final_rn=lambda x, bases, coef_rn: vq_final_rn(x, bases, inv_t))
    return Algorithm("cd", cd_init_bases, init_coef, functools.partial(cd_step, inv_t=inv_t),
                     functools.partial(cd_final, beta=beta), functools.partial(cd_objective, beta=beta),
                     iterate=functools.partial(cd_iterate, inv_t=inv_t),
                     final_rn=lambda x, bases, coef_rn: cd_final_rn(x, bases, beta))


def check_hyperparameters(inv_t: float, beta: float) -> None:
    """Reject an inverse temperature or ridge strength that gives NaN output (``inf``, NaN, out of range).

    ``inv_t`` must be finite and > 0 (``inf`` makes the softmax inf/inf = NaN; a hard argmax is
    approached by a large finite value, e.g. 1e4). ``beta`` must be finite and >= 0.
    """
    if isinstance(inv_t, bool) or not isinstance(inv_t, (int, float)) or not math.isfinite(inv_t) or not inv_t > 0:
        raise ValueError(f"inv_t must be a finite number > 0 (a large value such as 1e4 approaches a hard "
                         f"assignment); got {inv_t!r}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or not beta >= 0:
        raise ValueError(f"beta must be a finite number >= 0; got {beta!r}")


_COMPILED: dict = {}


def compiled_iterate(alg: Algorithm, device_type: str, backend: str = "inductor") -> Callable[[Tensor, Tensor, int], tuple]:
    """``alg.iterate`` under ``torch.compile(fullgraph=True)``, built once per algorithm, device type and backend.

    With the inductor backend on CUDA it uses ``mode="reduce-overhead"`` (CUDA graphs: the K small
    iterations of a small map are launch-bound, and a graph replays them with one launch); elsewhere the
    backend's default mode. Other backends (e.g. ``"aot_eager"``, which the CPU tests use because inductor
    needs a C++ compile of about a minute) are passed through.
    """
    if alg.iterate is None:
        raise ValueError(f"compile needs an algorithm with a fast 'iterate'; {alg.name!r} has none")
    key = (alg, device_type, backend)
    fn = _COMPILED.get(key)
    if fn is None:
        mode = "reduce-overhead" if device_type == "cuda" and backend == "inductor" else None
        fn = _COMPILED[key] = torch.compile(alg.iterate, fullgraph=True, dynamic=False, backend=backend, mode=mode)
    return fn


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
        scale: set by the modules: the power-of-two factor (B*S, 1, 1) the data were multiplied by before
            the solve (1 inside the safe range); ``recon``, ``bases`` and ``coef`` describe ``x * scale``.
    """

    recon: Tensor
    bases: Tensor
    coef: Tensor
    trace: Optional[Trace] = None
    scale: Optional[Tensor] = None


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
          inv_t: float = 100.0, beta: float = 0.1, return_trace: bool = False, compile: bool | str = False,
          implicit_on_fail: str = IMPLICIT_ON_FAIL) -> Solution:
    """Run a decomposition on a batch of matrices: init coef, ``steps`` iterations, final step, X_bar = D C.

    No input validation beyond the gradient mode and hyper-parameters: the modules check their inputs
    (and rescale data outside the safe magnitude range, see :class:`hamlib.md.MatrixDecomposition2D`);
    this function is the bare algorithm for readers who step through it. In float32 it is accurate for
    data whose largest magnitude lies in about [1e-3, 1e15]: beyond that NMF's products overflow and
    the eps of the updates swamps tiny data.

    With ``grad="one-step"`` and no trace it runs the fast form of the algorithm
    (``Algorithm.iterate``/``final_rn``: C kept as (R x N), in-place updates, loop invariants hoisted),
    equal to the step functions to float rounding.

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
        compile: run the K iterations through ``torch.compile(fullgraph=True)`` (CUDA graphs on a GPU;
            see :func:`compiled_iterate`); ``True`` uses inductor, a string names another backend. The first
            call compiles. Only for ``grad="one-step"`` without a trace.
        implicit_on_fail: what ``grad="implicit"`` does when its backward series does not converge:
            ``"warn"`` or ``"raise"`` (see :mod:`hamlib.md.implicit`).

    Returns:
        A :class:`Solution`; ``recon`` has shape (B*S, D, N).
    """
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES}; got {grad!r}")
    alg = method if isinstance(method, Algorithm) else make_algorithm(method, inv_t=inv_t, beta=beta)
    if compile and (grad != "one-step" or return_trace):
        raise ValueError(f"compile=True supports grad='one-step' without a trace; got grad={grad!r}, "
                         f"return_trace={return_trace!r}")
    if grad == "one-step" and not return_trace and alg.iterate is not None and alg.final_rn is not None:
        iterate = (compiled_iterate(alg, x.device.type, "inductor" if compile is True else compile)
                   if compile else alg.iterate)
        bases, coef_rn = iterate(x.detach(), bases.detach(), steps)    # K steps, no autograd
        if compile and x.is_cuda:                                      # CUDA-graph outputs are overwritten
            bases = bases.clone()                                      # by the next replay: keep our own
            coef_rn = None if coef_rn is None else coef_rn.clone()
        coef_rn = alg.final_rn(x, bases, coef_rn)                     # (B*S, R, N), carries gradient
        recon = torch.bmm(bases, coef_rn)                             # (B*S, D, R) @ (B*S, R, N) -> (B*S, D, N)
        return Solution(recon=recon, bases=bases, coef=coef_rn.transpose(1, 2), trace=None)
    trace = Trace() if return_trace else None
    if grad in ("one-step", "implicit"):
        with torch.no_grad():
            bases, coef = _iterate(alg, x, bases, steps, trace)
        bases, coef = bases.detach(), coef.detach()
        if grad == "implicit":
            bases, coef = implicit_state(alg.step, x, bases, coef, on_fail=implicit_on_fail)
    else:
        bases, coef = _iterate(alg, x, bases, steps, trace)
    coef = alg.final(x, bases, coef)                           # the step that carries gradient
    recon = torch.bmm(bases, coef.transpose(1, 2))             # (B*S, D, R) @ (B*S, R, N) -> (B*S, D, N)
    return Solution(recon=recon, bases=bases, coef=coef, trace=trace)
