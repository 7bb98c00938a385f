"""``nn.Module`` wrappers of the three decompositions: the hams of the Hamburger.

A feature map (B, C, H, W) is unfolded to S matrices per image, X of shape
(B*S, D, N) with D = C/S channels and N = H*W pixels; each is decomposed with
its own rank-R bases and the low-rank reconstruction X_bar is folded back to
(B, C, H, W). Geng et al., "Is Attention Better Than Matrix Decomposition?",
ICLR 2021, arXiv 2109.04553.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from torch import Tensor, nn

from .checks import check_bases, check_feature_map, check_finite, check_nonnegative, check_positive_int
from .solver import GRAD_MODES, METHODS, Algorithm, Solution, make_algorithm, solve

__all__ = ["MatrixDecomposition2D", "NMF2D", "VQ2D", "CD2D", "build_ham", "HAMS"]


@contextlib.contextmanager
def _autocast_off(device_type: str) -> Iterator[None]:
    """Disable autocast for ``device_type`` if autocast exists for it (the solvers need float32)."""
    try:
        ctx = torch.autocast(device_type=device_type, enabled=False)
    except (RuntimeError, ValueError):  # a device type without autocast support
        ctx = contextlib.nullcontext()
    with ctx:
        yield


class MatrixDecomposition2D(nn.Module):
    """Base class: unfold, draw or take the bases, solve, fold back.

    Args:
        method (str): ``"vq"``, ``"cd"`` or ``"nmf"``.
        S (int): number of heads; C must be divisible by S. Default: 1.
        R (int): rank, the number of bases per head. Default: 64.
        train_steps (int): iterations K in training mode. Default: 6.
        eval_steps (int): iterations K in eval mode. Default: 7.
        grad (str): ``"one-step"`` (the paper's), ``"bptt"`` or ``"implicit"`` (fixed-point gradient,
            :mod:`hamlib.md.implicit`). Default: ``"one-step"``.
        inv_t (float): inverse softmax temperature (VQ, CD). Default: 100.
        beta (float): ridge strength of CD's final step. Default: 0.1.
        eval_seed (int, optional): if set, eval-mode forwards draw their bases from a generator
            seeded with it, so predictions are the same run after run (the official code draws
            fresh bases at test time too, which makes inference stochastic). Default: None.
        check_inputs (bool): validate x (finite; non-negative for NMF). Each check reads one
            scalar back from the device. Default: True.
    """

    def __init__(self, method: str, *, S: int = 1, R: int = 64, train_steps: int = 6, eval_steps: int = 7,
                 grad: str = "one-step", inv_t: float = 100.0, beta: float = 0.1, eval_seed: Optional[int] = None,
                 check_inputs: bool = True) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got {method!r}")
        self.S = check_positive_int("S", S)
        self.R = check_positive_int("R", R)
        self.train_steps = check_positive_int("train_steps", train_steps, minimum=0)
        self.eval_steps = check_positive_int("eval_steps", eval_steps, minimum=0)
        if grad not in GRAD_MODES:
            raise ValueError(f"grad must be one of {GRAD_MODES}; got {grad!r}")
        if not inv_t > 0:
            raise ValueError(f"inv_t must be > 0; got {inv_t!r}")
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0; got {beta!r}")
        self.method, self.grad, self.inv_t, self.beta = method, grad, float(inv_t), float(beta)
        self.eval_seed = eval_seed
        self.check_inputs = check_inputs
        self.algorithm: Algorithm = make_algorithm(method, inv_t=self.inv_t, beta=self.beta)

    @property
    def steps(self) -> int:
        """K for the current mode: ``train_steps`` in training, ``eval_steps`` in eval."""
        return self.train_steps if self.training else self.eval_steps

    def extra_repr(self) -> str:
        s = f"S={self.S}, R={self.R}, train_steps={self.train_steps}, eval_steps={self.eval_steps}, grad={self.grad!r}"
        if self.method != "nmf":
            s += f", inv_t={self.inv_t:g}"
        if self.method == "cd":
            s += f", beta={self.beta:g}"
        return s + (f", eval_seed={self.eval_seed}" if self.eval_seed is not None else "")

    def init_bases(self, BS: int, D: int, *, device: torch.device, dtype: torch.dtype,
                   generator: Optional[torch.Generator] = None) -> Tensor:
        """Draw random initial bases of shape (B*S, D, R) (uniform for NMF, normal for VQ/CD; unit columns)."""
        if generator is not None and generator.device.type != torch.device(device).type:
            raise ValueError(f"generator must live on the input's device ({torch.device(device).type}); "
                             f"got a generator on {generator.device.type}")
        return self.algorithm.init_bases(BS, D, self.R, device=device, dtype=dtype, generator=generator)

    def unfold(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B*S, D, N) with D = C/S, N = H*W."""
        B, C, H, W = x.shape
        return x.reshape(B * self.S, C // self.S, H * W)

    def solve(self, x: Tensor, bases: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
              return_trace: bool = False) -> tuple[Tensor, Solution]:
        """Like :meth:`forward` but also returns the :class:`~hamlib.md.solver.Solution` (bases, coef, trace)."""
        check_feature_map(x, self.S)
        B, C, H, W = x.shape
        BS, D = B * self.S, C // self.S
        if bases is not None:
            check_bases(bases, BS, D, self.R)
        if self.check_inputs:
            check_finite("x", x)
            if self.algorithm.nonnegative:
                check_nonnegative("x", x, " NMF factorises non-negative data: apply a ReLU first "
                                          "(the Hamburger's lower bread does) or use VQ2D/CD2D.")
        out_dtype = x.dtype
        work_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        with _autocast_off(x.device.type):
            xm = self.unfold(x).to(work_dtype)                                   # (B*S, D, N)
            if bases is None:
                if generator is None and not self.training and self.eval_seed is not None:
                    generator = torch.Generator(device=x.device)
                    generator.manual_seed(self.eval_seed)
                bases = self.init_bases(BS, D, device=x.device, dtype=work_dtype, generator=generator)
            else:
                bases = bases.to(device=x.device, dtype=work_dtype)
            sol = solve(xm, bases, method=self.algorithm, steps=self.steps, grad=self.grad,
                        return_trace=return_trace)
        return sol.recon.reshape(B, C, H, W).to(out_dtype), sol

    def forward(self, x: Tensor, bases: Optional[Tensor] = None,
                generator: Optional[torch.Generator] = None) -> Tensor:
        """Low-rank reconstruction of ``x``.

        Args:
            x: feature map of shape (B, C, H, W), C divisible by S.
            bases: optional initial bases of shape (B*S, C/S, R); drawn at random if omitted.
            generator: optional ``torch.Generator`` (on x's device) for the random bases.

        Returns:
            X_bar of shape (B, C, H, W) in x's dtype (the solve itself runs in float32, or float64).
        """
        return self.solve(x, bases, generator)[0]


class NMF2D(MatrixDecomposition2D):
    """Non-negative matrix factorisation ham (multiplicative updates). ``x`` must be non-negative.

    Args:
        S (int): heads. Default: 1.
        R (int): rank. Default: 64.
        train_steps (int): K in training. Default: 6.
        eval_steps (int): K in eval. Default: 7.
        grad (str): ``"one-step"``, ``"bptt"`` or ``"implicit"``. Default: ``"one-step"``.
        **kwargs: ``eval_seed``, ``check_inputs`` (see :class:`MatrixDecomposition2D`).
    """

    def __init__(self, *, S: int = 1, R: int = 64, train_steps: int = 6, eval_steps: int = 7,
                 grad: str = "one-step", **kwargs) -> None:
        super().__init__("nmf", S=S, R=R, train_steps=train_steps, eval_steps=eval_steps, grad=grad, inv_t=1.0,
                         **kwargs)


class VQ2D(MatrixDecomposition2D):
    """Soft vector-quantisation ham (cosine soft k-means).

    Args:
        S (int): heads. Default: 1.
        R (int): number of centres. Default: 64.
        train_steps (int): K in training. Default: 6.
        eval_steps (int): K in eval. Default: 7.
        grad (str): ``"one-step"``, ``"bptt"`` or ``"implicit"``. Default: ``"one-step"``.
        inv_t (float): inverse temperature. Default: 100.
        **kwargs: ``eval_seed``, ``check_inputs``.
    """

    def __init__(self, *, S: int = 1, R: int = 64, train_steps: int = 6, eval_steps: int = 7,
                 grad: str = "one-step", inv_t: float = 100.0, **kwargs) -> None:
        super().__init__("vq", S=S, R=R, train_steps=train_steps, eval_steps=eval_steps, grad=grad, inv_t=inv_t,
                         **kwargs)


class CD2D(MatrixDecomposition2D):
    """Concept-decomposition ham (spherical k-means, then a ridge least-squares fit).

    Args:
        S (int): heads. Default: 1.
        R (int): number of concepts. Default: 64.
        train_steps (int): K in training. Default: 6.
        eval_steps (int): K in eval. Default: 7.
        grad (str): ``"one-step"``, ``"bptt"`` or ``"implicit"``. Default: ``"one-step"``.
        inv_t (float): inverse temperature. Default: 100.
        beta (float): ridge strength. Default: 0.1.
        **kwargs: ``eval_seed``, ``check_inputs``.
    """

    def __init__(self, *, S: int = 1, R: int = 64, train_steps: int = 6, eval_steps: int = 7,
                 grad: str = "one-step", inv_t: float = 100.0, beta: float = 0.1, **kwargs) -> None:
        super().__init__("cd", S=S, R=R, train_steps=train_steps, eval_steps=eval_steps, grad=grad, inv_t=inv_t,
                         beta=beta, **kwargs)


HAMS: dict[str, type[MatrixDecomposition2D]] = {"nmf": NMF2D, "vq": VQ2D, "cd": CD2D}


def build_ham(md: str, **kwargs) -> MatrixDecomposition2D:
    """Build a ham by name: ``build_ham("nmf", R=32)``; the registry a widget dropdown uses."""
    if md not in HAMS:
        raise ValueError(f"md must be one of {tuple(HAMS)}; got {md!r}")
    return HAMS[md](**kwargs)
