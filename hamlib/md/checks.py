"""Input validation shared by the decompositions.

Every check raises a :class:`ValueError` whose message names the argument, what
was expected and what was received, so that a student's mistake surfaces at the
call site instead of as a shape error deep inside ``torch.bmm``.

Shape checks are free (Python only). Value checks (finite, non-negative) read
one ``aminmax`` pass of the tensor and bring two numbers per matrix back to the
host; the modules run them only where that costs nothing that matters (eval and
the first training forward, see ``check_inputs`` on
:class:`hamlib.md.MatrixDecomposition2D`).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_positive_int", "check_feature_map", "check_matrix", "check_bases", "check_finite", "check_nonnegative",
           "check_range", "check_values"]


def check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` if it is an ``int`` >= ``minimum``, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return value


def check_feature_map(x: object, S: int) -> Tensor:
    """Check a feature map of shape (B, C, H, W) whose C is divisible by S."""
    if not isinstance(x, Tensor):
        raise ValueError(f"x must be a torch.Tensor of shape (B, C, H, W); got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D (B, C, H, W); got {x.ndim}-D tensor of shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must have a floating-point dtype; got {x.dtype}")
    B, C, H, W = x.shape
    if min(B, C, H, W) == 0:
        raise ValueError(f"x must have no empty dimension; got shape {tuple(x.shape)}")
    if C % S != 0:
        raise ValueError(f"x's channel count C={C} must be divisible by S={S} (C/S channels per head)")
    return x


def check_matrix(x: object) -> Tensor:
    """Check an unfolded batch of matrices of shape (B*S, D, N)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"x must be a torch.Tensor of shape (B*S, D, N); got {type(x).__name__}")
    if x.ndim != 3:
        raise ValueError(f"x must be 3-D (B*S, D, N); got {x.ndim}-D tensor of shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must have a floating-point dtype; got {x.dtype}")
    return x


def check_bases(bases: object, BS: int, D: int, R: int) -> Tensor:
    """Check user-supplied initial bases of shape (B*S, D, R)."""
    if not isinstance(bases, Tensor):
        raise ValueError(f"bases must be a torch.Tensor of shape (B*S, D, R)=({BS}, {D}, {R}); got {type(bases).__name__}")
    if tuple(bases.shape) != (BS, D, R):
        raise ValueError(f"bases must have shape (B*S, D, R)=({BS}, {D}, {R}); got {tuple(bases.shape)}")
    if not bases.is_floating_point():
        raise ValueError(f"bases must have a floating-point dtype; got {bases.dtype}")
    return bases


def check_range(name: str, lo: Tensor, hi: Tensor, shape: tuple, *, nonnegative: bool = False, hint: str = "",
                source: Tensor | None = None) -> None:
    """Raise if the per-matrix minima ``lo`` and maxima ``hi`` reveal NaN/inf or (``nonnegative``) a negative entry.

    Args:
        name: the argument's name for the message.
        lo, hi: the minima and maxima of ``aminmax`` (any shape; NaN propagates into them).
        shape: the checked tensor's shape, for the message.
        nonnegative: also require min >= 0.
        hint: appended to the non-negativity message.
        source: the checked tensor, used only to count the bad entries once an error is certain.
    """
    lo, hi = lo.detach(), hi.detach()
    if not bool(torch.isfinite(lo).all() & torch.isfinite(hi).all()):
        n_bad = "some" if source is None else int((~torch.isfinite(source.detach())).sum())
        raise ValueError(f"{name} must be finite; got {n_bad} NaN/inf value(s) in a tensor of shape {tuple(shape)}")
    if nonnegative:
        m = float(lo.min())
        if m < 0:
            raise ValueError(f"{name} must be non-negative (all entries >= 0); got min value {m:.4g}.{hint}")


def check_values(name: str, t: Tensor, *, nonnegative: bool = False, hint: str = "") -> None:
    """One ``aminmax`` pass over ``t``: raise unless it is finite (and non-negative if asked)."""
    flat = t.detach().reshape(-1)
    if flat.numel() == 0:
        return
    lo, hi = flat.aminmax()
    check_range(name, lo, hi, tuple(t.shape), nonnegative=nonnegative, hint=hint, source=t)


def check_finite(name: str, t: Tensor) -> None:
    """Raise if ``t`` holds NaN or inf (a silent NaN would propagate through every iteration)."""
    check_values(name, t)


def check_nonnegative(name: str, t: Tensor, hint: str = "") -> None:
    """Raise if ``t`` has a negative entry (NMF is only defined for non-negative data)."""
    flat = t.detach().reshape(-1)
    if flat.numel() == 0:
        return
    m = float(flat.min())
    if m < 0:
        raise ValueError(f"{name} must be non-negative (all entries >= 0); got min value {m:.4g}.{hint}")
