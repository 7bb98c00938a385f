"""Low-rank recovery helpers for the book: truncated SVD, corruption, completion and error metrics.

Geng et al. (ICLR 2021, arXiv 2109.04553) model an unfolded feature map
X (d x n) as a low-rank part plus noise, X = X_bar + E with rank(X_bar) <= r.
Without constraints on the factors, the best rank-r approximation in Frobenius
norm is the truncated SVD (Eckart & Young, 1936)::

    X_r = U[:, :r] diag(s[:r]) V[:, :r]^T,    ||X - X_r||_F^2 = sum_{i > r} s_i^2

This module holds that baseline plus the corruptions (Gaussian noise, missing
blocks) and a hard-impute completion used in the chapter "Global context as
low-rank recovery". It imports only torch and numpy.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["truncated_svd", "svd_reconstruct", "singular_values", "cumulative_energy", "add_noise",
           "block_mask", "hard_impute", "relative_error", "psnr"]

ArrayLike = Union[Tensor, np.ndarray]


def _as_matrix(x: ArrayLike, name: str = "x") -> Tensor:
    """A floating (..., d, n) tensor from a tensor or array; raises ValueError naming ``name`` otherwise."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or numpy.ndarray; got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (..., d, n) with at least 2 dims; got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return x


def _check_rank(rank: int, x: Tensor) -> None:
    full = min(x.shape[-2], x.shape[-1])
    if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank <= full:
        raise ValueError(f"rank must be an int in [0, min(d, n)] = [0, {full}]; got {rank!r}")


def truncated_svd(x: ArrayLike, rank: int) -> tuple[Tensor, Tensor, Tensor]:
    """The top-``rank`` singular triplets of X.

    Args:
        x: matrix (..., d, n).
        rank: r, number of singular values kept, 0 <= r <= min(d, n).

    Returns:
        ``(U_r, s_r, V_r)`` of shapes (..., d, r), (..., r), (..., n, r), with X_r = U_r diag(s_r) V_r^T.
    """
    x = _as_matrix(x)
    _check_rank(rank, x)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)  # (..., d, m), (..., m), (..., m, n), m = min(d, n)
    return u[..., :rank], s[..., :rank], vh[..., :rank, :].transpose(-2, -1)


def svd_reconstruct(x: ArrayLike, rank: int) -> Tensor:
    """Best rank-r approximation X_r = U_r diag(s_r) V_r^T (Eckart-Young). Shape (..., d, n) like ``x``."""
    u, s, v = truncated_svd(x, rank)
    return (u * s.unsqueeze(-2)) @ v.transpose(-2, -1)  # (..., d, r) @ (..., r, n) -> (..., d, n)


def singular_values(x: ArrayLike) -> Tensor:
    """Singular values of X in decreasing order, shape (..., min(d, n))."""
    return torch.linalg.svdvals(_as_matrix(x))


def cumulative_energy(x: ArrayLike) -> Tensor:
    """Cumulative energy ratio sum_{i<=r} s_i^2 / sum_i s_i^2 for r = 1..min(d, n), shape (..., min(d, n)).

    Entry r-1 equals 1 - ||X - X_r||_F^2 / ||X||_F^2: the fraction of X that rank r explains.
    """
    e = singular_values(x).pow(2)
    return e.cumsum(-1) / e.sum(-1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)


def add_noise(x: ArrayLike, sigma: float, *, generator: Optional[torch.Generator] = None) -> Tensor:
    """X + E with E_ij ~ N(0, sigma^2) i.i.d., drawn from ``generator``. Same shape as ``x``."""
    x = _as_matrix(x)
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0; got {sigma!r}")
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + sigma * noise


def block_mask(shape: tuple[int, int], *, n_blocks: int = 8, block: int = 16,
               generator: Optional[torch.Generator] = None, device: Optional[torch.device] = None) -> Tensor:
    """Boolean mask of observed entries (True = observed) with ``n_blocks`` missing square blocks.

    Args:
        shape: (H, W) of the image (or (d, n) of the matrix).
        n_blocks: number of missing blocks, placed uniformly at random (they may overlap).
        block: side length of each block, at most min(H, W).
        generator: seeded generator for the block positions.

    Returns:
        Bool tensor of shape (H, W).
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (H, W) with positive sides; got {shape!r}")
    H, W = int(shape[0]), int(shape[1])
    if not 1 <= block <= min(H, W):
        raise ValueError(f"block must be in [1, min(H, W)] = [1, {min(H, W)}]; got {block!r}")
    if n_blocks < 0:
        raise ValueError(f"n_blocks must be >= 0; got {n_blocks!r}")
    mask = torch.ones((H, W), dtype=torch.bool, device=device)
    rows = torch.randint(0, H - block + 1, (n_blocks,), generator=generator)
    cols = torch.randint(0, W - block + 1, (n_blocks,), generator=generator)
    for i, j in zip(rows.tolist(), cols.tolist()):
        mask[i:i + block, j:j + block] = False
    return mask


def hard_impute(x: ArrayLike, mask: Tensor, rank: int, *, iters: int = 50, tol: float = 1e-5) -> Tensor:
    """Low-rank matrix completion by iterative truncated-SVD imputation ("hard impute").

    Start with the missing entries set to the mean of the observed ones; then repeat
    Z <- P_obs(X) + P_miss(svd_reconstruct(Z, r)) until the relative change is below ``tol``.

    Args:
        x: matrix (..., d, n); values where ``mask`` is False are ignored.
        mask: bool (..., d, n) or broadcastable, True where an entry is observed.
        rank: r of the completion.
        iters: maximum number of iterations.
        tol: stop when ||Z_new - Z||_F / ||Z||_F < tol.

    Returns:
        The rank-r reconstruction of the completed matrix, shape (..., d, n).
    """
    x = _as_matrix(x)
    _check_rank(rank, x)
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool torch.Tensor; got {type(mask).__name__} "
                         f"{getattr(mask, 'dtype', '')}")
    mask = mask.to(x.device).expand_as(x)
    if not mask.any():
        raise ValueError("mask must observe at least one entry; got an all-False mask")
    fill = x[mask].mean()
    z = torch.where(mask, x, fill)
    for _ in range(iters):
        low = svd_reconstruct(z, rank)
        z_new = torch.where(mask, x, low)
        change = (z_new - z).norm() / z.norm().clamp_min(1e-12)
        z = z_new
        if change < tol:
            break
    return svd_reconstruct(z, rank)


def relative_error(estimate: ArrayLike, target: ArrayLike) -> float:
    """Relative Frobenius error ||estimate - target||_F / ||target||_F."""
    a, b = _as_matrix(estimate, "estimate"), _as_matrix(target, "target")
    if a.shape != b.shape:
        raise ValueError(f"estimate and target must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def psnr(estimate: ArrayLike, target: ArrayLike, *, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio 10 log10(data_range^2 / MSE) in dB (inf for a perfect estimate)."""
    a, b = _as_matrix(estimate, "estimate"), _as_matrix(target, "target")
    if a.shape != b.shape:
        raise ValueError(f"estimate and target must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0; got {data_range!r}")
    mse = float((a.double() - b.double()).pow(2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)
