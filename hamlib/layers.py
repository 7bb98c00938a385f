"""Small layers shared by the Hamburger, the attention baselines and the decode heads (torch only).

``make_norm`` picks a normalisation by name; ``conv_norm_act`` is the k x k conv -> norm -> ReLU unit that the
bread of the Hamburger (Geng et al., ICLR 2021, arXiv 2109.04553) and every decode head are made of.
"""
from __future__ import annotations

import math

from torch import nn

__all__ = ["NORMS", "make_norm", "conv_norm_act"]

NORMS = ("bn", "gn", "none")


def make_norm(kind: str, channels: int, gn_groups: int = 32) -> nn.Module:
    """A normalisation layer for ``channels`` channels.

    Args:
        kind (str): ``"bn"`` (BatchNorm2d), ``"gn"`` (GroupNorm with gcd(gn_groups, channels) groups) or ``"none"``.
        channels (int): number of channels C.
        gn_groups (int): the largest number of GroupNorm groups. Default: 32.
    """
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        return nn.GroupNorm(math.gcd(gn_groups, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}; got {kind!r}")


def conv_norm_act(cin: int, cout: int, k: int = 3, norm: str = "bn") -> nn.Sequential:
    """k x k conv (no bias, 'same' padding) -> norm -> ReLU.

    Shape: (B, cin, H, W) -> (B, cout, H, W).
    """
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), make_norm(norm, cout),
                         nn.ReLU(inplace=True))
