"""Decode heads for HamNet and its baselines, all with one interface: features dict -> logits at 1/8.

Geng et al., "Is Attention Better Than Matrix Decomposition?", ICLR 2021, arXiv 2109.04553. The HamNet
head is: 3x3 squeeze conv -> Hamburger -> 3x3 align conv -> dropout -> 1x1 classifier. The baselines swap
only the global-context module: none (FCN) or self-attention. :class:`LightHamHead` is the SegNeXt-style
variant (multi-level concat, 1x1 convs, GroupNorm).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attention import SelfAttention2d
from ..hamburger import Hamburger
from ..layers import conv_norm_act
from ..train.config import HamOptions
from .config import HEADS

__all__ = ["ContextHead", "LightHamHead", "FCNAuxHead", "build_head", "HEADS", "DEFAULT_R"]

#: Rank r when the ham options leave it open (the Hamburger's default).
DEFAULT_R = 64


class ContextHead(nn.Module):
    """squeeze (3x3) -> context module -> align (3x3) -> dropout -> classifier (1x1), on ``features[key]``.

    Args:
        in_channels (int): channels of the backbone feature map. channels (int): width after the squeeze.
        num_classes (int): output classes. context (nn.Module, optional): (B, channels, h, w) -> same shape;
            ``None`` gives the FCN baseline. align_channels (int, optional): width after the align conv,
            default ``channels // 2`` (512 -> 256 in HamNet). dropout (float): Default: 0.1.
        norm (str): ``"bn"`` or ``"gn"``. key (str): which backbone output to read. Default: ``"c4"``.
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, context: Optional[nn.Module] = None,
                 *, align_channels: Optional[int] = None, dropout: float = 0.1, norm: str = "bn",
                 key: str = "c4") -> None:
        super().__init__()
        align_channels = align_channels or max(channels // 2, 1)
        self.key = key
        self.squeeze = conv_norm_act(in_channels, channels, 3, norm)
        self.context = context if context is not None else nn.Identity()
        self.align = conv_norm_act(channels, align_channels, 3, norm)
        self.dropout = nn.Dropout2d(dropout)
        self.cls = nn.Conv2d(align_channels, num_classes, 1)

    def forward(self, feats: Dict[str, Tensor]) -> Tensor:
        x = self.squeeze(feats[self.key])      # (B, channels, h, w)
        x = self.context(x)                    # global context (or identity)
        return self.cls(self.dropout(self.align(x)))  # (B, num_classes, h, w)


class LightHamHead(nn.Module):
    """SegNeXt-style Light-Ham head: resize several levels to the first, concat, 1x1 squeeze (GN), Hamburger
    (V1, GN), 1x1 align (GN), dropout, classifier.

    Args:
        in_channels (list of int): channels of the levels in ``keys``. channels (int): ham width.
        num_classes (int). keys (list of str): backbone outputs to fuse. Default: ("c2", "c3", "c4").
        align_channels (int, optional): default ``channels``.
        ham (HamOptions, optional): the ham (kind, rank, steps, gradient, ...). Default: ``HamOptions()``.
    """

    def __init__(self, in_channels: Sequence[int], channels: int, num_classes: int, *,
                 keys: Sequence[str] = ("c2", "c3", "c4"), align_channels: Optional[int] = None,
                 dropout: float = 0.1, ham: Optional[HamOptions] = None) -> None:
        super().__init__()
        ham = ham or HamOptions()
        align_channels = align_channels or channels
        self.keys = tuple(keys)
        self.squeeze = conv_norm_act(sum(in_channels), channels, 1, "gn")
        self.ham = Hamburger(channels, channels, ham.md, version="v1", norm="gn", form="code",
                             **ham.kwargs(R=DEFAULT_R))
        self.align = conv_norm_act(channels, align_channels, 1, "gn")
        self.dropout = nn.Dropout2d(dropout)
        self.cls = nn.Conv2d(align_channels, num_classes, 1)

    def forward(self, feats: Dict[str, Tensor]) -> Tensor:
        size = feats[self.keys[0]].shape[-2:]
        xs = [F.interpolate(feats[k], size=size, mode="bilinear", align_corners=False) for k in self.keys]
        x = self.ham(self.squeeze(torch.cat(xs, dim=1)))
        return self.cls(self.dropout(self.align(x)))


class FCNAuxHead(nn.Module):
    """Auxiliary FCN head on stage 3 (3x3 conv -> norm -> ReLU -> dropout -> 1x1), used only for the loss."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, *, key: str = "c3") -> None:
        super().__init__()
        self.key = key
        self.body = nn.Sequential(conv_norm_act(in_channels, channels, 3), nn.Dropout2d(0.1),
                                  nn.Conv2d(channels, num_classes, 1))

    def forward(self, feats: Dict[str, Tensor]) -> Tensor:
        return self.body(feats[self.key])


def build_head(kind: str, in_channels: int, channels: int, num_classes: int, *,
               ham: Optional[HamOptions] = None, level_channels: Optional[Sequence[int]] = None) -> nn.Module:
    """A decode head by name: ``"fcn"``, ``"attention"``, ``"ham"`` (HamNet) or ``"lightham"``.

    Args:
        kind (str): the head. in_channels (int): channels of the backbone's last feature map.
        channels (int): head width d. num_classes (int): K.
        ham (HamOptions, optional): the ham of ``ham``/``lightham`` (``md``, ``R``, ``train_steps``,
            ``grad``, ``eval_seed``, ...). Default: ``HamOptions()`` (NMF, r = 64).
        level_channels (list of int, optional): channels of c2, c3, c4 (``lightham`` only).

    The HamNet head uses the VOC code's block: V2 (with cheese), no norm after the upper bread, ReLU after
    the skip.
    """
    ham = ham or HamOptions()
    if kind == "fcn":
        return ContextHead(in_channels, channels, num_classes, None)
    if kind == "attention":
        return ContextHead(in_channels, channels, num_classes, SelfAttention2d(channels, norm="bn"))
    if kind == "ham":
        block = Hamburger(channels, channels, ham.md, version="v2", norm="none", form="code",
                          **ham.kwargs(R=DEFAULT_R))
        return ContextHead(in_channels, channels, num_classes, block)
    if kind == "lightham":
        if not level_channels:
            raise ValueError("head='lightham' needs level_channels (channels of c2, c3, c4)")
        return LightHamHead(level_channels, channels, num_classes, ham=ham)
    raise ValueError(f"head must be one of {HEADS}; got {kind!r}")
