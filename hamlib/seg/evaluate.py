"""Evaluation of a segmentation model: whole-image inference, optional multi-scale + flip, mIoU; and cost.

HamNet (Geng et al., ICLR 2021, arXiv 2109.04553) is tested with whole images at scales 0.5-1.75 with and
without flip, summing the logits. The Hamburger's random bases are drawn from a seeded generator in eval
mode (``eval_seed``), so evaluation is deterministic.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..measure import count_flops, count_params, time_fn
from .metrics import ConfusionMatrix

__all__ = ["predict", "evaluate", "head_cost"]


@torch.no_grad()
def predict(model: nn.Module, img: Tensor, scales: Sequence[float] = (1.0,), flip: bool = False) -> Tensor:
    """Summed logits (B, K, H, W) over ``scales`` (and horizontal flips) for images (B, 3, H, W)."""
    H, W = img.shape[-2:]
    for s in scales:
        if not (s > 0 and round(H * s) >= 8 and round(W * s) >= 8):
            raise ValueError(f"scales must each give an image of at least 8x8 pixels; scale {s} turns "
                             f"{H}x{W} into {round(H * s)}x{round(W * s)}")
    total = None
    for s in scales:
        x = img if s == 1.0 else F.interpolate(img, scale_factor=s, mode="bilinear", align_corners=False)
        for f in ((False, True) if flip else (False,)):
            out = model(x.flip(-1) if f else x)
            out = out.flip(-1) if f else out
            out = F.interpolate(out, size=(H, W), mode="bilinear", align_corners=False)
            total = out if total is None else total + out
    return total


@torch.no_grad()
def evaluate(model: nn.Module, loader, num_classes: int, *, device: torch.device | str = "cpu",
             scales: Sequence[float] = (1.0,), flip: bool = False, class_names: Optional[Sequence[str]] = None,
             progress: bool = False, reduce_device: Optional[torch.device] = None) -> Dict[str, object]:
    """mIoU, per-class IoU and pixel accuracy of ``model`` on ``loader`` (batches of (image, label)).

    The model is put in eval mode (and back afterwards). Under ``torchrun`` every process evaluates its
    shard and the confusion matrices are summed.
    """
    from tqdm.auto import tqdm
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes)
    for img, lab in tqdm(loader, desc="eval", disable=not progress, leave=False):
        logits = predict(model, img.to(device), scales, flip)
        cm.update(logits.argmax(1), lab)
    cm.all_reduce(reduce_device)
    model.train(was_training)
    return cm.scores(class_names)


def head_cost(model: nn.Module, image_size, *, device: torch.device | str = "cpu", repeats: int = 10) -> Dict:
    """Params, FLOPs and latency of the decode head alone, on the backbone features of one image (eval mode).

    Measured with :mod:`hamlib.measure`: all parameters, FLOPs of one forward (2 per multiply-add), and the
    median of ``repeats`` timed forwards after one warm-up.
    """
    x = torch.randn(1, 3, *image_size, device=device)
    model = model.to(device).eval()
    head = model.head
    with torch.no_grad():
        feats = model.backbone(x)
        head_flops = count_flops(lambda: head(feats))
        model_flops = count_flops(lambda: model(x))
        lat = time_fn(lambda: head(feats), warmup=1, repeats=repeats, device=device)
    return {"head_params": count_params(head), "head_gflops": head_flops / 1e9,
            "head_latency_ms": lat["median_ms"],
            "model_params": count_params(model) - (count_params(model.aux_head) if model.aux_head else 0),
            "model_gflops": model_flops / 1e9, "feature_shape": list(feats["c4"].shape),
            "image_size": list(image_size)}
