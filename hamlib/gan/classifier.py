"""A small CIFAR-10 CNN whose penultimate features define hamlib's offline classifier-FID.

For HamGAN (Geng et al., ICLR 2021, arXiv 2109.04553) the standard FID uses Inception-v3 weights, which cannot be
downloaded offline; this classifier is trained by hamlib itself, so its FID is *not* comparable with published FIDs.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..train import load_checkpoint, provenance, save_checkpoint, seed_everything, write_json
from .data import sample_batch

__all__ = ["FeatureClassifier", "train_classifier", "evaluate_classifier", "load_classifier"]


class FeatureClassifier(nn.Module):
    """Conv(3->w)-BN-ReLU x2, pool, (w->2w) x2, pool, (2w->4w), global average -> features (B, 4w) -> logits.

    Args:
        width (int): w. Default 32. num_classes (int): default 10.
    Shape: x (B, 3, 32, 32) in [-1, 1] -> logits (B, num_classes).
    """

    def __init__(self, width: int = 32, num_classes: int = 10) -> None:
        super().__init__()

        def cbr(i, o):
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

        w = width
        self.body = nn.Sequential(*cbr(3, w), *cbr(w, w), nn.MaxPool2d(2), *cbr(w, 2 * w), *cbr(2 * w, 2 * w),
                                  nn.MaxPool2d(2), *cbr(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4 * w, num_classes)
        self.width, self.num_classes = width, num_classes

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (B, 4w), the space of the classifier-FID."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@torch.no_grad()
def evaluate_classifier(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` on x (N, 3, 32, 32), y (N,)."""
    model.eval()
    correct = sum((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
                  for i in range(0, len(x), batch_size))
    return correct / len(x)


def train_classifier(x: Tensor, y: Tensor, x_test: Tensor, y_test: Tensor, *, steps: int = 3000,
                     batch_size: int = 128, lr: float = 0.05, width: int = 32, seed: int = 0,
                     out: Optional[Path] = None, progress: bool = True) -> tuple[FeatureClassifier, dict]:
    """Train the classifier with SGD (momentum 0.9, cosine LR) and random horizontal flips.

    Returns the model and a metrics dict (test accuracy, wall time, provenance); writes ``out/classifier.pt`` and
    ``out/classifier.json`` when ``out`` is given.
    """
    from tqdm.auto import tqdm

    seed_everything(seed)
    model = FeatureClassifier(width, int(y.max()) + 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.15)
    t0 = time.time()
    model.train()
    for step in tqdm(range(steps), desc="classifier", disable=not progress):
        xb, yb = sample_batch(x, y, batch_size, step, seed)
        flip = torch.rand(len(xb)) < 0.5
        xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    wall = time.time() - t0
    acc = evaluate_classifier(model, x_test, y_test)
    metrics = {"test_accuracy": acc, "n_test": len(x_test), "steps": steps, "batch_size": batch_size,
               "width": width, "train_loss_last": loss.item(),
               "provenance": provenance(wall_time_s=wall, seed=seed)}
    if out is not None:
        save_checkpoint(Path(out) / "classifier.pt", model=model, step=steps, extra={"width": width,
                                                                                   "num_classes": model.num_classes})
        write_json(Path(out) / "classifier.json", metrics)
    return model.eval(), metrics


def load_classifier(path: Path) -> FeatureClassifier:
    """Load a classifier saved by :func:`train_classifier` (``classifier.pt``); raises FileNotFoundError if absent."""
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=False) if Path(path).is_file() else None
    if ckpt is None:
        raise FileNotFoundError(f"no classifier at {path}; train one with `python -m hamlib.gan classifier`")
    model = FeatureClassifier(ckpt["extra"]["width"], ckpt["extra"]["num_classes"])
    load_checkpoint(path, model=model, restore_rng=False)
    return model.eval()
