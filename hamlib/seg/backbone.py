"""Dilated ResNet backbones (output stride 8) for HamNet, state-dict compatible with torchvision.

HamNet (Geng et al., ICLR 2021, arXiv 2109.04553) uses a dilated ResNet-101 with output stride 8: layer3
and layer4 keep stride 1 and dilate their 3x3 convs by 2 and 4. The parameter names here are exactly
torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ...), so an ImageNet
state dict from ``torchvision.models.resnet50(weights=...)`` or from a ``.pth`` file loads with
:func:`load_pretrained` (its ``fc.*`` keys are dropped). The official code's deep stem (ResNet-v1c) is not
used, because torchvision weights do not have it.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Union

import torch
from torch import Tensor, nn

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet", "load_pretrained", "ARCHS"]

# name -> (block, blocks per stage)
ARCHS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
         "resnet50": ("bottleneck", (3, 4, 6, 3)), "resnet101": ("bottleneck", (3, 4, 23, 3)),
         "tiny": ("basic", (1, 1, 1, 1))}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


class ResNet(nn.Module):
    """A ResNet trunk without the classifier, returning the stage-3 and stage-4 feature maps.

    Args:
        block (str): ``"basic"`` or ``"bottleneck"``.
        layers (4 ints): blocks per stage.
        width (int): channels of the stem and stage 1 (64 in torchvision; smaller for CPU presets).
        output_stride (int): 8 (layer3, layer4 dilated), 16 (layer4 dilated) or 32. Default: 8.

    Shape:
        (B, 3, H, W) -> dict ``{"c3": (B, C3, H/8, W/8), "c4": (B, C4, H/8, W/8)}`` at output stride 8,
        with C4 = ``out_channels`` and C3 = ``aux_channels``.
    """

    def __init__(self, block: str = "bottleneck", layers=(3, 4, 6, 3), *, width: int = 64,
                 output_stride: int = 8) -> None:
        super().__init__()
        if block not in ("basic", "bottleneck"):
            raise ValueError(f"block must be 'basic' or 'bottleneck'; got {block!r}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32; got {output_stride}")
        self.block = BasicBlock if block == "basic" else Bottleneck
        self.cin, self.dilation = width, 1
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        dil3, dil4 = output_stride <= 8, output_stride <= 16
        self.layer1 = self._make_layer(width, layers[0], 1, False)
        self.layer2 = self._make_layer(width * 2, layers[1], 2, False)
        self.layer3 = self._make_layer(width * 4, layers[2], 2, dil3)
        self.layer4 = self._make_layer(width * 8, layers[3], 2, dil4)
        self.aux_channels = width * 4 * self.block.expansion
        self.out_channels = width * 8 * self.block.expansion
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, blocks: int, stride: int, dilate: bool) -> nn.Sequential:
        # torchvision's rule: a dilated stage trades its stride for dilation; its first block keeps the old one.
        prev = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        exp = self.block.expansion
        down = None
        if stride != 1 or self.cin != planes * exp:
            down = nn.Sequential(nn.Conv2d(self.cin, planes * exp, 1, stride, bias=False),
                                 nn.BatchNorm2d(planes * exp))
        mods = [self.block(self.cin, planes, stride, prev, down)]
        self.cin = planes * exp
        mods += [self.block(self.cin, planes, 1, self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"x must have shape (B, 3, H, W); got {tuple(x.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return {"c1": c1, "c2": c2, "c3": c3, "c4": c4}


def resnet(name: str = "resnet50", *, width: Optional[int] = None, output_stride: int = 8) -> ResNet:
    """Build ``"resnet18" | "resnet34" | "resnet50" | "resnet101" | "tiny"`` (tiny: 1 basic block per stage,
    width 16 unless given)."""
    if name not in ARCHS:
        raise ValueError(f"backbone must be one of {tuple(ARCHS)}; got {name!r}")
    block, layers = ARCHS[name]
    return ResNet(block, layers, width=width or (16 if name == "tiny" else 64), output_stride=output_stride)


def load_pretrained(model: ResNet, source: Union[str, os.PathLike, dict]) -> List[str]:
    """Load ImageNet weights into ``model``.

    Args:
        model: a :class:`ResNet`.
        source: a torchvision state dict, a path to a ``.pth`` file holding one, or a torchvision model name
            such as ``"resnet50"`` (needs torchvision; uses its default ImageNet weights).

    Returns:
        The keys of ``source`` that were not used (the classifier ``fc.*``).

    Raises:
        FileNotFoundError: a path that does not exist. ValueError: keys or shapes that do not match.
    """
    if isinstance(source, dict):
        state = source
    elif isinstance(source, str) and source in ARCHS and not os.path.exists(source):
        try:
            import torchvision
        except ImportError as e:
            raise ValueError(f"pretrained={source!r} needs torchvision; install it or pass a .pth file") from e
        state = getattr(torchvision.models, source)(weights="DEFAULT").state_dict()
    else:
        if not os.path.isfile(source):
            raise FileNotFoundError(f"pretrained weights file {source} not found")
        try:
            state = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as e:  # not a torch file, truncated, or a pickle of Python objects (refused unrun)
            raise ValueError(f"pretrained={source!r} is not a readable state dict of tensors "
                             f"({type(e).__name__}: {str(e).splitlines()[0][:160]}); it was refused without "
                             f"running it") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"pretrained={source!r} must hold a dict of tensors (a ResNet state dict); "
                             f"got {type(state).__name__}")
    unused = [k for k in state if k.startswith("fc.")]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    bad = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or extra or bad:
        raise ValueError(f"pretrained weights do not match the backbone: missing {missing[:5]}, unexpected "
                         f"{extra[:5]}, shape mismatch {bad[:5]}")
    model.load_state_dict(state)
    return unused
