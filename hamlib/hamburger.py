"""The Hamburger block: lower bread, ham (a matrix decomposition), optional cheese, upper bread, skip.

Geng et al., "Is Attention Better Than Matrix Decomposition?", ICLR 2021, arXiv 2109.04553::

    H(Z) = W_u M(W_l Z)            Y = Z + Norm(H(Z))            (the paper's form)

The official PyTorch code differs in two places, both available here:
``form="code"`` puts a ReLU after the residual sum, ``Y = ReLU(Z + Norm(H(Z)))``;
``version="v2"`` adds "cheese" (1x1 conv, BN, ReLU) between the ham and the
upper bread. The GAN variant adds a learnable gate initialised to 0,
``Y = Z + gamma * Norm(H(Z))`` (``gate=True``), so the block starts as the identity.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .md import HAMS, MatrixDecomposition2D, build_ham, translate_mmseg_kwargs
from .layers import make_norm
from .md.checks import check_positive_int

__all__ = ["Hamburger"]



class Hamburger(nn.Module):
    """The Hamburger global-context block.

    Args:
        in_channels (int): channels C of the input Z.
        ham_channels (int): channels d the ham works on (the lower bread maps C -> d). Default: 512.
        md (str): the ham, ``"nmf"``, ``"vq"`` or ``"cd"``. Default: ``"nmf"``.
        version (str): ``"v1"`` (bread, ham, bread) or ``"v2"`` (with cheese). Default: ``"v1"``.
        norm (str): norm after the upper bread, ``"bn"``, ``"gn"`` or ``"none"``. Default: ``"bn"``.
        form (str): ``"paper"`` (Y = Z + Norm(H(Z))) or ``"code"`` (ReLU after the sum). Default: ``"paper"``.
        gate (bool): multiply the ham branch by a learnable scalar initialised to 0 (HamGAN). Default: False.
        **md_kwargs: passed to the ham (``S``, ``R``, ``train_steps``, ``eval_steps``, ``grad``, ``inv_t``,
            ``beta``, ``eval_seed``, ``check_inputs``, ``compile``, ``implicit_on_fail``). mmseg/SegNeXt
            ``ham_kwargs`` names are accepted too (``MD_S``, ``MD_R``, ``MD_D``, ``rand_init=True``; for NMF
            an ``inv_t`` is ignored with a warning), see :func:`hamlib.md.translate_mmseg_kwargs`.

    Shape:
        Input (B, C, H, W) -> output (B, C, H, W).

    Note:
        Safe range. The ham solves in float32 and is accurate when the largest magnitude of the lower bread's output
        lies in about [1e-3, 1e12] per image and head; outside, it solves a power-of-two rescaled copy
        (see :class:`hamlib.md.MatrixDecomposition2D`). ``inv_t`` and ``beta`` must be finite.
    """

    def __init__(self, in_channels: int, ham_channels: int = 512, md: str = "nmf", *, version: str = "v1",
                 norm: str = "bn", form: str = "paper", gate: bool = False, **md_kwargs) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("ham_channels", ham_channels)
        if md not in HAMS:
            raise ValueError(f"md must be one of {tuple(HAMS)}; got {md!r}")
        if version not in ("v1", "v2"):
            raise ValueError(f"version must be 'v1' or 'v2'; got {version!r}")
        if form not in ("paper", "code"):
            raise ValueError(f"form must be 'paper' or 'code'; got {form!r}")
        self.in_channels, self.ham_channels, self.md, self.version, self.form = (
            in_channels, ham_channels, md, version, form)
        # Lower bread: a 1x1 conv C -> d with bias; NMF needs non-negative input, hence the ReLU (in place on the
        # conv's fresh output: one (B, d, H, W) allocation fewer; the conv's backward does not need its output).
        self.lower_bread = nn.Sequential(nn.Conv2d(in_channels, ham_channels, 1, bias=True),
                                         nn.ReLU(inplace=True) if md == "nmf" else nn.Identity())
        self.ham: MatrixDecomposition2D = build_ham(md, **translate_mmseg_kwargs(md_kwargs, channels=ham_channels))
        if ham_channels % self.ham.S != 0:
            raise ValueError(f"ham_channels={ham_channels} must be divisible by S={self.ham.S}")
        self.cheese = (nn.Sequential(nn.Conv2d(ham_channels, ham_channels, 1, bias=False),
                                     nn.BatchNorm2d(ham_channels), nn.ReLU(inplace=False))
                       if version == "v2" else nn.Identity())
        # Upper bread: a 1x1 conv d -> C without bias, then a norm.
        self.upper_bread = nn.Sequential(nn.Conv2d(ham_channels, in_channels, 1, bias=False),
                                         make_norm(norm, in_channels))
        self.gate: Optional[nn.Parameter] = nn.Parameter(torch.zeros(())) if gate else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (fan-out) init of the 1x1 convs, norms at weight 1 and bias 0, as in the official block."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def branch(self, z: Tensor, bases: Optional[Tensor] = None,
               generator: Optional[torch.Generator] = None) -> Tensor:
        """The ham branch Norm(W_u M(W_l Z)) without the skip, shape (B, C, H, W)."""
        h = self.lower_bread(z)                   # (B, d, H, W)
        h = self.ham(h, bases, generator)         # low-rank reconstruction, (B, d, H, W)
        h = self.cheese(h)
        return self.upper_bread(h)                # (B, C, H, W)

    def forward(self, z: Tensor, bases: Optional[Tensor] = None,
                generator: Optional[torch.Generator] = None) -> Tensor:
        """Y = Z + Norm(H(Z)) (``form="code"``: ReLU of that; ``gate``: Z + gamma * Norm(H(Z))).

        Args:
            z: input of shape (B, C, H, W) with C = ``in_channels``.
            bases: optional initial bases of the ham, shape (B*S, d/S, R).
            generator: optional ``torch.Generator`` for the ham's random bases.
        """
        if z.ndim != 4 or z.shape[1] != self.in_channels:
            raise ValueError(f"z must have shape (B, {self.in_channels}, H, W); got {tuple(z.shape)}")
        h = self.branch(z, bases, generator)
        if self.gate is not None:
            h = self.gate * h
        y = z + h
        return torch.relu(y) if self.form == "code" else y

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, ham_channels={self.ham_channels}, md={self.md!r}, " \
               f"version={self.version!r}, form={self.form!r}, gate={self.gate is not None}"
