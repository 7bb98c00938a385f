"""Self-attention over the pixels of a feature map: the non-local / SAGAN baseline.

Wang et al., "Non-local Neural Networks" (CVPR 2018) and Zhang et al.,
"Self-Attention GANs" (ICML 2019). With X of shape (C, N), N = H*W::

    Q = W_q X,  K = W_k X,  V = W_v X                 # (d_k, N), (d_k, N), (d_v, N)
    A = softmax_over_keys(scale * Q^T K)              # (N, N): the n x n attention matrix
    Y = X + W_o (V A^T)                               # residual, (C, N)

The explicit path builds A (O(N^2) memory); the fused path calls
``torch.nn.functional.scaled_dot_product_attention``, which never stores A when
a memory-efficient or flash kernel is available. Both compute the same function.
The fused path hands SDPA contiguous (B, 1, N, d) queries, keys and values: with
transposed views it silently falls back to the math path and stores A.

:class:`LinearAttention2d` is the efficient-attention baseline a practitioner
would try instead of a matrix decomposition: Katharopoulos et al., "Transformers
are RNNs" (ICML 2020, arXiv 2006.16236), with the feature map phi(x) = elu(x) + 1::

    Y_n = phi(q_n)^T (sum_m phi(k_m) v_m^T) / (phi(q_n)^T sum_m phi(k_m))      # O(N d_k d_v), no N x N matrix
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import make_norm
from .md.checks import check_positive_int

__all__ = ["SelfAttention2d", "LinearAttention2d", "attention_explicit", "attention_fused", "attention_linear",
           "elu_feature_map"]


def attention_explicit(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """softmax(scale * Q K^T) V with the N x N matrix materialised.

    Shapes: q (B, N, d_k), k (B, N, d_k), v (B, N, d_v) -> (B, N, d_v).
    """
    attn = torch.softmax(scale * torch.bmm(q, k.transpose(1, 2)), dim=-1)  # (B, N, N), rows sum to 1
    return torch.bmm(attn, v)                                              # (B, N, N) @ (B, N, d_v)


def attention_fused(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """The same as :func:`attention_explicit` through PyTorch's fused kernel (no N x N tensor kept).

    q, k and v are made contiguous first: SDPA's flash / memory-efficient kernels (CPU included) need a
    unit stride along the feature axis, and on a transposed view they fall back to the math path, which
    materialises the N x N matrix. Shapes: q (B, N, d_k), k (B, N, d_k), v (B, N, d_v) -> (B, N, d_v).
    """
    q, k, v = (t.unsqueeze(1).contiguous() for t in (q, k, v))    # (B, 1, N, d): one head
    return F.scaled_dot_product_attention(q, k, v, scale=scale).squeeze(1)


def elu_feature_map(x: Tensor) -> Tensor:
    """phi(x) = elu(x) + 1 > 0, the feature map of Katharopoulos et al. (2020)."""
    return F.elu(x) + 1.0


def attention_linear(q: Tensor, k: Tensor, v: Tensor, eps: float = 1e-6) -> Tensor:
    """Linear attention phi(Q) (phi(K)^T V) / (phi(Q) phi(K)^T 1), never forming the N x N matrix.

    Shapes: q (B, N, d_k), k (B, N, d_k), v (B, N, d_v) -> (B, N, d_v). Cost O(N d_k d_v) time and
    O(d_k d_v) extra memory per image.
    """
    fq, fk = elu_feature_map(q), elu_feature_map(k)              # (B, N, d_k), positive
    kv = torch.bmm(fk.transpose(1, 2), v)                        # (B, d_k, N) @ (B, N, d_v) -> (B, d_k, d_v)
    z = torch.bmm(fq, fk.sum(dim=1, keepdim=True).transpose(1, 2))  # (B, N, d_k) @ (B, d_k, 1) -> (B, N, 1)
    return torch.bmm(fq, kv) / (z + eps)                         # (B, N, d_v)



def _check_map(x: object, channels: int) -> None:
    """Raise unless ``x`` is a (B, channels, H, W) tensor (both attention blocks' input)."""
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != channels:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must have shape (B, {channels}, H, W); got {shape}")

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
        _check_map(x, self.in_channels)
        h = self.branch(x, fused)
        if self.gate is not None:
            h = self.gate * h
        return x + h

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, key_channels={self.key_channels}, " \
               f"value_channels={self.value_channels}, fused={self.fused}, scale={self.scale:.4g}"


class LinearAttention2d(nn.Module):
    """Linear-attention global-context block (Katharopoulos et al., ICML 2020, arXiv 2006.16236).

    The same interface and residual form as :class:`SelfAttention2d`, with the softmax kernel replaced by
    the feature map phi(x) = elu(x) + 1, so that the N x N matrix is never formed: O(N d_k d_v) time and
    memory linear in N, the efficient-attention baseline to compare a Hamburger with.

    Args:
        in_channels (int): channels C of the input.
        key_channels (int, optional): d_k of queries and keys. Default: C.
        value_channels (int, optional): d_v of the values. Default: C.
        norm (str): ``"bn"``, ``"gn"`` or ``"none"`` after the output projection. Default: ``"none"``.
        gate (bool): learnable scalar gamma initialised to 0 on the branch. Default: False.
        eps (float): added to the normaliser phi(q)^T sum phi(k). Default: 1e-6.

    Shape:
        (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, in_channels: int, key_channels: Optional[int] = None, value_channels: Optional[int] = None,
                 *, norm: str = "none", gate: bool = False, eps: float = 1e-6) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.key_channels = check_positive_int("key_channels", key_channels or in_channels)
        self.value_channels = check_positive_int("value_channels", value_channels or in_channels)
        if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps must be a finite number > 0; got {eps!r}")
        self.eps = float(eps)
        self.query = nn.Conv2d(in_channels, self.key_channels, 1)
        self.key = nn.Conv2d(in_channels, self.key_channels, 1)
        self.value = nn.Conv2d(in_channels, self.value_channels, 1)
        self.out = nn.Sequential(nn.Conv2d(self.value_channels, in_channels, 1, bias=norm == "none"),
                                 make_norm(norm, in_channels))
        self.gate: Optional[nn.Parameter] = nn.Parameter(torch.zeros(())) if gate else None

    def branch(self, x: Tensor) -> Tensor:
        """The attention branch W_o(linear attention(X)) without the skip, shape (B, C, H, W)."""
        B, C, H, W = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)   # (B, N, d_k)
        k = self.key(x).flatten(2).transpose(1, 2)     # (B, N, d_k)
        v = self.value(x).flatten(2).transpose(1, 2)   # (B, N, d_v)
        y = attention_linear(q, k, v, self.eps)        # (B, N, d_v)
        return self.out(y.transpose(1, 2).reshape(B, self.value_channels, H, W))

    def forward(self, x: Tensor) -> Tensor:
        """Y = X + W_o(linear attention(X)) (``gate``: X + gamma * ...)."""
        _check_map(x, self.in_channels)
        h = self.branch(x)
        if self.gate is not None:
            h = self.gate * h
        return x + h

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, key_channels={self.key_channels}, " \
               f"value_channels={self.value_channels}"
