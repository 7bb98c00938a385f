"""Self-attention over the pixels of a feature map: the non-local / SAGAN baseline.

Wang et al., "Non-local Neural Networks" (CVPR 2018) and Zhang et al.,
"Self-Attention GANs" (ICML 2019). With X of shape (C, N), N = H*W::

    Q = W_q X,  K = W_k X,  V = W_v X                 # (d_k, N), (d_k, N), (d_v, N)
    A = softmax_over_keys(scale * Q^T K)              # (N, N): the n x n attention matrix
    Y = X + W_o (V A^T)                               # residual, (C, N)

The explicit path builds A (O(N^2) memory); the fused path calls
``torch.nn.functional.scaled_dot_product_attention``, which never stores A when
a memory-efficient or flash kernel is available. Both compute the same function.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import make_norm
from .md.checks import check_positive_int

__all__ = ["SelfAttention2d", "attention_explicit", "attention_fused"]


def attention_explicit(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """softmax(scale * Q K^T) V with the N x N matrix materialised.

    Shapes: q (B, N, d_k), k (B, N, d_k), v (B, N, d_v) -> (B, N, d_v).
    """
    attn = torch.softmax(scale * torch.bmm(q, k.transpose(1, 2)), dim=-1)  # (B, N, N), rows sum to 1
    return torch.bmm(attn, v)                                              # (B, N, N) @ (B, N, d_v)


def attention_fused(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """The same as :func:`attention_explicit` through PyTorch's fused kernel (no N x N tensor kept)."""
    d_k = q.shape[-1]
    # Fold our scale into q so that SDPA's default 1/sqrt(d_k) scaling gives exactly `scale` (works on torch 2.0).
    q = q * (scale * math.sqrt(d_k))
    return F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1)


class SelfAttention2d(nn.Module):
    """Self-attention global-context block over the H*W positions of a feature map.

    Args:
        in_channels (int): channels C of the input.
        key_channels (int, optional): d_k of queries and keys. Default: C (the non-local block of the
            paper's cost table; SAGAN uses C/8).
        value_channels (int, optional): d_v of the values. Default: C (SAGAN uses C/2).
        fused (bool): use ``scaled_dot_product_attention`` instead of the explicit softmax. Default: False.
        scale (float, optional): logit scale; default 1/sqrt(d_k).
        norm (str): ``"bn"``, ``"gn"`` or ``"none"`` after the output projection. Default: ``"none"``.
        gate (bool): learnable scalar gamma initialised to 0 on the branch, as in SAGAN. Default: False.

    Shape:
        (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, in_channels: int, key_channels: Optional[int] = None, value_channels: Optional[int] = None,
                 *, fused: bool = False, scale: Optional[float] = None, norm: str = "none",
                 gate: bool = False) -> None:
        super().__init__()

        self.in_channels = check_positive_int("in_channels", in_channels)
        self.key_channels = check_positive_int("key_channels", key_channels or in_channels)
        self.value_channels = check_positive_int("value_channels", value_channels or in_channels)
        self.fused = fused
        self.scale = float(scale) if scale is not None else 1.0 / math.sqrt(self.key_channels)
        self.query = nn.Conv2d(in_channels, self.key_channels, 1)
        self.key = nn.Conv2d(in_channels, self.key_channels, 1)
        self.value = nn.Conv2d(in_channels, self.value_channels, 1)
        self.out = nn.Sequential(nn.Conv2d(self.value_channels, in_channels, 1, bias=norm == "none"),
                                 make_norm(norm, in_channels))
        self.gate: Optional[nn.Parameter] = nn.Parameter(torch.zeros(())) if gate else None

    def branch(self, x: Tensor, fused: Optional[bool] = None) -> Tensor:
        """The attention branch W_o (V A^T) without the skip, shape (B, C, H, W)."""
        B, C, H, W = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)   # (B, N, d_k)
        k = self.key(x).flatten(2).transpose(1, 2)     # (B, N, d_k)
        v = self.value(x).flatten(2).transpose(1, 2)   # (B, N, d_v)
        use_fused = self.fused if fused is None else fused
        y = (attention_fused if use_fused else attention_explicit)(q, k, v, self.scale)  # (B, N, d_v)
        y = y.transpose(1, 2).reshape(B, self.value_channels, H, W)
        return self.out(y)

    def forward(self, x: Tensor, fused: Optional[bool] = None) -> Tensor:
        """Y = X + W_o(attention(X)); ``fused`` overrides the constructor's choice for this call."""
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, {self.in_channels}, H, W); got {shape}")
        h = self.branch(x, fused)
        if self.gate is not None:
            h = self.gate * h
        return x + h

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, key_channels={self.key_channels}, " \
               f"value_channels={self.value_channels}, fused={self.fused}, scale={self.scale:.4g}"
