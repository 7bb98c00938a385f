"""The segmentation network: dilated ResNet backbone + decode head (+ optional auxiliary FCN head).

HamNet (Geng et al., ICLR 2021, arXiv 2109.04553) = dilated ResNet (output stride 8) + the Ham head;
the same backbone with an FCN or a self-attention head gives the baselines it is compared with.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

import torch.nn.functional as F
from torch import Tensor, nn

from ..train.config import HamOptions
from .backbone import ResNet, load_pretrained, resnet
from .config import SegConfig
from .heads import FCNAuxHead, build_head

__all__ = ["SegModel", "build_model", "from_config"]


class SegModel(nn.Module):
    """backbone -> head -> bilinear upsampling to the input size.

    Args:
        backbone (ResNet): returns a dict of feature maps. head (nn.Module): dict -> (B, K, h, w) logits.
        aux_head (nn.Module, optional): auxiliary head for the training loss.

    Shape:
        (B, 3, H, W) -> logits (B, num_classes, H, W); with ``return_aux=True`` a tuple (logits, aux or None).
    """

    def __init__(self, backbone: ResNet, head: nn.Module, aux_head: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.backbone, self.head, self.aux_head = backbone, head, aux_head

    def forward(self, x: Tensor, return_aux: bool = False) -> Union[Tensor, Tuple[Tensor, Optional[Tensor]]]:
        feats: Dict[str, Tensor] = self.backbone(x)
        out = F.interpolate(self.head(feats), size=x.shape[-2:], mode="bilinear", align_corners=False)
        if not return_aux:
            return out
        aux = None
        if self.aux_head is not None:
            aux = F.interpolate(self.aux_head(feats), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out, aux


def build_model(num_classes: int, *, backbone: str = "resnet50", width: Optional[int] = None,
                head: str = "ham", channels: int = 512, ham: Optional[HamOptions] = None, aux: bool = False,
                pretrained: Optional[str] = None) -> SegModel:
    """Build a segmentation model.

    Args:
        num_classes (int): classes. backbone (str): ``resnet18/34/50/101`` or ``tiny``. width (int, optional):
            backbone base width. head (str): ``fcn``, ``attention``, ``ham`` or ``lightham``.
        channels (int): head width (512 in HamNet).
        ham (HamOptions, optional): the ham of ``ham``/``lightham`` heads (``md``, ``R``, ``train_steps``,
            ``eval_steps``, ``grad``, ``eval_seed``, ...). Default: ``HamOptions()``.
        aux (bool): add the auxiliary FCN head on stage 3 (loss weight set in training).
        pretrained (str, optional): torchvision name or ``.pth`` path of ImageNet weights for the backbone.
    """
    bb = resnet(backbone, width=width)
    if pretrained:
        load_pretrained(bb, pretrained)
    exp = bb.block.expansion
    w = bb.conv1.out_channels
    levels = [w * 2 * exp, w * 4 * exp, w * 8 * exp]
    h = build_head(head, bb.out_channels, channels, num_classes, ham=ham, level_channels=levels)
    a = FCNAuxHead(bb.aux_channels, max(channels // 2, 16), num_classes) if aux else None
    return SegModel(bb, h, a)


def from_config(cfg: SegConfig) -> SegModel:
    """The model a :class:`~hamlib.seg.config.SegConfig` describes (what trainer, eval and report all build)."""
    return build_model(cfg.num_classes, backbone=cfg.backbone, width=cfg.width, head=cfg.head,
                       channels=cfg.channels, ham=cfg.ham(), aux=cfg.aux_weight > 0, pretrained=cfg.pretrained)
