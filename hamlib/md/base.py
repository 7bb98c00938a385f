"""``nn.Module`` wrappers of the three decompositions: the hams of the Hamburger.

A feature map (B, C, H, W) is unfolded to S matrices per image, X of shape
(B*S, D, N) with D = C/S channels and N = H*W pixels; each is decomposed with
its own rank-R bases and the low-rank reconstruction X_bar is folded back to
(B, C, H, W). Geng et al., "Is Attention Better Than Matrix Decomposition?",
ICLR 2021, arXiv 2109.04553.
"""
from __future__ import annotations

import math

import contextlib
import warnings
from typing import Optional, Union

import torch
from torch import Tensor, nn

from .checks import check_bases, check_feature_map, check_positive_int, check_range, check_values
from .implicit import IMPLICIT_ON_FAIL, ON_FAIL
from .solver import GRAD_MODES, METHODS, Algorithm, Solution, check_hyperparameters, make_algorithm, solve

__all__ = ["MatrixDecomposition2D", "NMF2D", "VQ2D", "CD2D", "build_ham", "HAMS", "SAFE_MAX_LOW", "SAFE_MAX_HIGH",
           "safe_scale", "MMSEG_NAMES", "translate_mmseg_kwargs"]


# Safe magnitude range of the data for the float32 solvers, measured (see MatrixDecomposition2D). Outside it a
# matrix is multiplied by a power of two (exact in floating point) before the solve and the reconstruction is
# divided by it afterwards; inside it the factor is exactly 1 and the output is bit-for-bit the plain algorithm's.
SAFE_MAX_LOW = 2.0 ** -10   # ~1e-3: below, the eps = 1e-6 of the updates swamps the data (NMF, CD collapse to 0)
SAFE_MAX_HIGH = 2.0 ** 40   # ~1e12: above ~1e17, NMF's X C^T (~|x|^2 N) overflows float32 and the output is NaN
CHECK_MODES = (True, False, "always")


def _autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """A context that disables autocast for ``device_type`` if it is on (the solvers need float32)."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:           # torch < 2.4 has no per-device query: disable unconditionally
        enabled = True
    except (RuntimeError, ValueError):  # a device type without autocast support
        return contextlib.nullcontext()
    if not enabled:
        return contextlib.nullcontext()
    try:
        return torch.autocast(device_type=device_type, enabled=False)
    except (RuntimeError, ValueError):
        return contextlib.nullcontext()


def _is_compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())


def safe_scale(lo: Tensor, hi: Tensor) -> Tensor:
    """Per-matrix power-of-two factor that brings the largest magnitude into [SAFE_MAX_LOW, SAFE_MAX_HIGH].

    Args:
        lo, hi: per-matrix minimum and maximum, shape (B*S,).
    Returns:
        (B*S, 1, 1): exactly 1 for matrices in range (and for all-zero or non-finite ones), else 2^-floor(log2 m)
        so that the largest magnitude m lands in [1, 2). No host synchronisation.
    """
    m = torch.maximum(hi.abs(), lo.abs())
    out = ((m > SAFE_MAX_HIGH) | (m < SAFE_MAX_LOW)) & (m > 0) & torch.isfinite(m)
    # The exponent is clamped so that the factor and its inverse stay finite normal numbers in m's dtype:
    # subnormal inputs (e.g. 1e-40 in float32) would otherwise need 2^133 = inf and turn the output into NaN.
    emax = float(math.floor(math.log2(torch.finfo(m.dtype).max)) - 1)
    e = torch.clamp(-torch.floor(torch.log2(torch.where(out, m, torch.ones_like(m)))), -emax, emax)
    scale = torch.where(out, torch.exp2(e), torch.ones_like(m))
    return scale.reshape(-1, 1, 1)


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
        inv_t (float): inverse softmax temperature (VQ, CD); finite and > 0. Default: 100.
        beta (float): ridge strength of CD's final step; finite and >= 0. Default: 0.1.
        eval_seed (int, optional): if set, eval-mode forwards draw their bases from a generator
            seeded with it, one draw of (S, C/S, R) shared by every sample, so a sample's prediction is the
            same run after run and does not depend on the other samples in its batch (the official code
            draws fresh bases at test time, which makes inference stochastic). Default: None.
        check_inputs (bool or str): validate the data and any given bases (finite; non-negative for NMF)
            with one ``aminmax`` pass. ``True`` checks every eval-mode forward and the first training
            forward only, so a training loop has no host synchronisation and ``torch.compile`` sees no
            data-dependent branch (checks are always skipped while compiling); ``"always"`` checks every
            forward; ``False`` never. Default: True.
        compile (bool or str): run the K iterations of the one-step solve through
            ``torch.compile(fullgraph=True)`` (inductor with CUDA graphs on a GPU, for launch-bound small maps;
            on the CPU it measured 0.76-1.13x, not a win). A string names the ``torch.compile`` backend
            (e.g. ``"aot_eager"``). Default: False.
        implicit_on_fail (str): ``"warn"`` or ``"raise"`` when ``grad="implicit"``'s backward series does not
            converge (a non-finite gradient always raises); see :mod:`hamlib.md.implicit`. Default: ``"warn"``.

    Note:
        Safe range. The solvers are accurate in float32 when the largest magnitude of each (C/S) x N matrix lies in
        [``SAFE_MAX_LOW``, ``SAFE_MAX_HIGH``] = [2^-10, 2^40] (about [1e-3, 1e12]); plain NMF returns NaN above
        ~1e17 and NMF, VQ and CD collapse towards 0 below ~1e-5 (the eps = 1e-6 of the updates). A matrix outside
        that range is multiplied by a power of two before the solve and the reconstruction divided by it
        afterwards (exact; VQ and CD are scale-equivariant up to eps, NMF's softmax start is not, so its result
        is the factorisation of the rescaled data, scaled back). Inside the range nothing changes.
    """

    def __init__(self, method: str, *, S: int = 1, R: int = 64, train_steps: int = 6, eval_steps: int = 7,
                 grad: str = "one-step", inv_t: float = 100.0, beta: float = 0.1, eval_seed: Optional[int] = None,
                 check_inputs: Union[bool, str] = True, compile: Union[bool, str] = False,
                 implicit_on_fail: str = IMPLICIT_ON_FAIL) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got {method!r}")
        self.S = check_positive_int("S", S)
        self.R = check_positive_int("R", R)
        self.train_steps = check_positive_int("train_steps", train_steps, minimum=0)
        self.eval_steps = check_positive_int("eval_steps", eval_steps, minimum=0)
        if grad not in GRAD_MODES:
            raise ValueError(f"grad must be one of {GRAD_MODES}; got {grad!r}")
        check_hyperparameters(inv_t, beta)
        if check_inputs not in CHECK_MODES or not isinstance(check_inputs, (bool, str)):
            raise ValueError(f"check_inputs must be True, False or 'always'; got {check_inputs!r}")
        if not isinstance(compile, (bool, str)) or compile == "":
            raise ValueError(f"compile must be True, False or a torch.compile backend name; got {compile!r}")
        if compile and grad != "one-step":
            raise ValueError(f"compile=True supports grad='one-step' only; got grad={grad!r}")
        if implicit_on_fail not in ON_FAIL:
            raise ValueError(f"implicit_on_fail must be one of {ON_FAIL}; got {implicit_on_fail!r}")
        if eval_seed is not None and (isinstance(eval_seed, bool) or not isinstance(eval_seed, int)):
            raise ValueError(f"eval_seed must be an int or None; got {eval_seed!r}")
        self.method, self.grad, self.inv_t, self.beta = method, grad, float(inv_t), float(beta)
        self.eval_seed = eval_seed
        self.check_inputs = check_inputs
        self.compile = compile
        self.implicit_on_fail = implicit_on_fail
        self._checked_in_training = False
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
        if self.compile:
            s += f", compile={self.compile!r}"
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

    def _checking(self) -> bool:
        """Whether this forward validates values (and so reads a result back from the device)."""
        if not self.check_inputs or _is_compiling():
            return False
        if self.check_inputs == "always" or not self.training:
            return True
        first = not self._checked_in_training
        self._checked_in_training = True
        return first

    def solve(self, x: Tensor, bases: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
              return_trace: bool = False) -> tuple[Tensor, Solution]:
        """Like :meth:`forward` but also returns the :class:`~hamlib.md.solver.Solution` (bases, coef, trace).

        For a matrix outside the safe range (see the class docstring) the solution describes the rescaled
        data ``x * Solution.scale``; the returned reconstruction is always in x's units.
        """
        check_feature_map(x, self.S)
        B, C, H, W = x.shape
        BS, D = B * self.S, C // self.S
        checking = self._checking()
        if bases is not None:
            check_bases(bases, BS, D, self.R)
            if checking:
                check_values("bases", bases, nonnegative=self.algorithm.nonnegative,
                             hint=" NMF's multiplicative updates keep the sign of the bases: draw them with "
                                  "init_bases (uniform, unit columns) or take the absolute value.")
        out_dtype = x.dtype
        work_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        with _autocast_off(x.device.type):
            xm = self.unfold(x).to(work_dtype)                                   # (B*S, D, N)
            with torch.no_grad():   # per-matrix extremes (amin/amax: aminmax(dim=) has no fast kernel on CPU)
                lo, hi = xm.amin(dim=(1, 2)), xm.amax(dim=(1, 2))                 # (B*S,), (B*S,)
            if checking:
                check_range("x", lo, hi, tuple(x.shape), nonnegative=self.algorithm.nonnegative,
                            hint=" NMF factorises non-negative data: apply a ReLU first "
                                 "(the Hamburger's lower bread does) or use VQ2D/CD2D.", source=x)
            scale = safe_scale(lo, hi)                                            # (B*S, 1, 1), 1 when in range
            # Multiplying by 1 is exact, so in-range data could always be multiplied; on the CPU, where reading
            # the flag costs no device synchronisation, skip the two passes when nothing is out of range.
            rescale = x.device.type != "cpu" or _is_compiling() or bool((scale != 1).any())
            if rescale:
                xm = xm * scale
            if bases is None:
                if generator is None and not self.training and self.eval_seed is not None:
                    # one draw per sample position, shared by the batch: a sample's output ignores its neighbours
                    g = torch.Generator(device=x.device)
                    g.manual_seed(self.eval_seed)
                    bases = self.init_bases(self.S, D, device=x.device, dtype=work_dtype, generator=g).repeat(B, 1, 1)
                else:
                    bases = self.init_bases(BS, D, device=x.device, dtype=work_dtype, generator=generator)
            else:
                bases = bases.to(device=x.device, dtype=work_dtype)
            sol = solve(xm, bases, method=self.algorithm, steps=self.steps, grad=self.grad,
                        return_trace=return_trace, compile=self.compile, implicit_on_fail=self.implicit_on_fail)
            sol.scale = scale
            recon = sol.recon / scale if rescale else sol.recon                   # exact: a power of two
        return recon.reshape(B, C, H, W).to(out_dtype), sol

    def forward(self, x: Tensor, bases: Optional[Tensor] = None,
                generator: Optional[torch.Generator] = None) -> Tensor:
        """Low-rank reconstruction of ``x``.

        Args:
            x: feature map of shape (B, C, H, W), C divisible by S; finite (non-negative for NMF).
            bases: optional initial bases of shape (B*S, C/S, R); finite (non-negative for NMF); drawn at
                random if omitted.
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
        inv_t (float, optional): accepted for compatibility with mmseg/SegNeXt configs, which pass it to every
            ham, and ignored with a warning: NMF's softmax start always uses temperature 1, as in the
            official solver. Default: None.
        **kwargs: ``eval_seed``, ``check_inputs``, ``compile``, ``implicit_on_fail``
            (see :class:`MatrixDecomposition2D`).
    """

    def __init__(self, *, S: int = 1, R: int = 64, train_steps: int = 6, eval_steps: int = 7,
                 grad: str = "one-step", inv_t: Optional[float] = None, **kwargs) -> None:
        if inv_t is not None and inv_t != 1:
            warnings.warn(f"NMF2D ignores inv_t={inv_t!r}: NMF's softmax initialisation always uses inv_t=1 "
                          f"(as the official and mmseg solvers do)", UserWarning, stacklevel=2)
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
        **kwargs: ``eval_seed``, ``check_inputs``, ``compile``, ``implicit_on_fail``.
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
        **kwargs: ``eval_seed``, ``check_inputs``, ``compile``, ``implicit_on_fail``.
    """

    def __init__(self, *, S: int = 1, R: int = 64, train_steps: int = 6, eval_steps: int = 7,
                 grad: str = "one-step", inv_t: float = 100.0, beta: float = 0.1, **kwargs) -> None:
        super().__init__("cd", S=S, R=R, train_steps=train_steps, eval_steps=eval_steps, grad=grad, inv_t=inv_t,
                         beta=beta, **kwargs)


HAMS: dict[str, type[MatrixDecomposition2D]] = {"nmf": NMF2D, "vq": VQ2D, "cd": CD2D}


# mmseg / SegNeXt ham option names -> hamlib's (spelled as on NMF2D). Both the mmseg keyword form
# (MD_S, MD_R, train_steps, eval_steps, inv_t, rand_init) and the SegNeXt/official dict form (upper case) occur.
MMSEG_NAMES = {"MD_S": "S", "MD_R": "R", "TRAIN_STEPS": "train_steps", "EVAL_STEPS": "eval_steps", "INV_T": "inv_t"}
_MMSEG_FLAGS = ("rand_init", "RAND_INIT", "SPATIAL", "MD_D", "ETA", "eta")


def translate_mmseg_kwargs(kwargs: dict, channels: Optional[int] = None) -> dict:
    """Map mmseg/SegNeXt ``ham_kwargs`` names onto hamlib's, so a config can be reused as is.

    ``MD_S`` -> ``S``, ``MD_R`` -> ``R``, ``TRAIN_STEPS``/``EVAL_STEPS``/``INV_T`` -> lower case;
    ``rand_init=True`` and ``SPATIAL=True`` are hamlib's only behaviour and are dropped; ``MD_D`` is
    checked against ``channels / S`` when ``channels`` is given; ``eta`` (the online update of learned
    bases) is dropped. hamlib names pass through unchanged.

    Raises:
        ValueError: ``rand_init=False`` or ``SPATIAL=False`` (not supported), a name given twice with
            different values (``MD_R=16, R=32``), or an ``MD_D`` that does not match.
    """
    out = {k: v for k, v in kwargs.items() if k not in MMSEG_NAMES and k not in _MMSEG_FLAGS}
    for old, new in MMSEG_NAMES.items():
        if old in kwargs:
            if new in kwargs and kwargs[new] != kwargs[old]:
                raise ValueError(f"{old}={kwargs[old]!r} and {new}={kwargs[new]!r} name the same option "
                                 f"({old} is mmseg's name for {new}); give one")
            out[new] = kwargs[old]
    for flag in ("rand_init", "RAND_INIT"):
        if flag in kwargs and not kwargs[flag]:
            raise ValueError(f"{flag}=False (a learned bases buffer with an online update) is not supported: "
                             f"hamlib draws random bases every forward; pass eval_seed=<int> for deterministic "
                             f"inference")
    if "SPATIAL" in kwargs and not kwargs["SPATIAL"]:
        raise ValueError("SPATIAL=False (decomposing along channels) is not supported: hamlib's hams are spatial")
    if "MD_D" in kwargs and channels is not None:
        S = out.get("S", 1)
        if kwargs["MD_D"] * S != channels:
            raise ValueError(f"MD_D={kwargs['MD_D']!r} must equal channels / S = {channels} / {S}")
    return out


def build_ham(md: str, **kwargs) -> MatrixDecomposition2D:
    """Build a ham by name: ``build_ham("nmf", R=32)``; the registry a widget dropdown uses.

    mmseg/SegNeXt option names (``MD_S``, ``MD_R``, ``rand_init``, ...) are accepted, see
    :func:`translate_mmseg_kwargs`; for NMF an ``inv_t`` is ignored with a warning.
    """
    if md not in HAMS:
        raise ValueError(f"md must be one of {tuple(HAMS)}; got {md!r}")
    return HAMS[md](**translate_mmseg_kwargs(kwargs))
