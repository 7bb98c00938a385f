"""Segmentation metrics from a confusion matrix: mIoU, per-class IoU, pixel accuracy.

As used to report HamNet (Geng et al., ICLR 2021, arXiv 2109.04553): pixels labelled with the ignore
index are left out; a class absent from both prediction and ground truth is left out of the mean.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import Tensor

from .data import IGNORE_INDEX

__all__ = ["confusion_matrix", "scores", "ConfusionMatrix"]


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Counts ``cm[t, p]`` of pixels with true class t predicted as p, shape (K, K), int64.

    Args:
        pred: predicted classes, any shape. target: true classes, same shape. num_classes: K.
        ignore_index: target value to skip.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape; got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    keep = target != ignore_index
    t, p = target[keep].long(), pred[keep].long()
    if t.numel() and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(f"target has values outside 0..{num_classes - 1} (and ignore {ignore_index})")
    return torch.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def scores(cm: Tensor, class_names: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """mIoU, per-class IoU (NaN for classes never present nor predicted), pixel accuracy, from ``cm``."""
    cm = cm.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
    valid = ~iou.isnan()
    names = list(class_names) if class_names else [str(i) for i in range(cm.shape[0])]
    return {"miou": float(iou[valid].mean()) if valid.any() else float("nan"),
            "pixel_acc": float(tp.sum() / cm.sum().clamp_min(1)),
            "iou": {n: (None if torch.isnan(v) else float(v)) for n, v in zip(names, iou)},
            "pixels": int(cm.sum())}


class ConfusionMatrix:
    """Accumulates a confusion matrix over batches; :meth:`all_reduce` sums it over processes."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: Tensor, target: Tensor) -> None:
        self.cm += confusion_matrix(pred.cpu(), target.cpu(), self.num_classes, self.ignore_index)

    def all_reduce(self, device=None) -> None:
        """Sum over processes (``device``: where the collective runs, e.g. the GPU for NCCL)."""
        from ..train.distributed import all_reduce_sum
        self.cm = all_reduce_sum(self.cm, device)

    def scores(self, class_names: Optional[Sequence[str]] = None) -> Dict[str, object]:
        return scores(self.cm, class_names)
