"""A small CNN (trained on CIFAR-10, or on MNIST for MNIST GANs) whose penultimate features define hamlib's
offline classifier-FID.

For HamGAN (Geng et al., ICLR 2021, arXiv 2109.04553) the standard FID uses Inception-v3 weights, which cannot be
downloaded offline; this classifier is trained by hamlib itself, so its FID is *not* comparable with published FIDs.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..train import RunDir, Timer, provenance, seed_everything
from ..train.checkpoint import CheckpointError
from .config import ClassifierConfig
from .data import sample_batch

__all__ = ["FeatureClassifier", "classifier_data", "train_classifier", "evaluate_classifier", "load_classifier", "chance_level"]


def chance_level(num_classes: int) -> float:
    """The accuracy below which a classifier cannot tell the classes apart well enough for a feature-space FID:
    twice the chance rate 1/K (20% for CIFAR-10)."""
    return 2.0 / num_classes


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
    dev = next(model.parameters()).device
    correct = sum((model(x[i:i + batch_size].to(dev)).argmax(1).cpu() == y[i:i + batch_size].cpu()).sum().item()
                  for i in range(0, len(x), batch_size))
    return correct / len(x)


MNIST_HELD_OUT = 2_000


def classifier_data(cfg: ClassifierConfig) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x, y, x_test, y_test) for ``cfg.data``: images (N, 3, 32, 32) in [-1, 1] and labels (N,).

    CIFAR-10: its train and test splits. MNIST: only its test set is used offline (10,000 images), so a fixed
    random 2,000 of them are held out for the accuracy and the other 8,000 train the classifier.
    """
    import numpy as np

    from .data import load_cifar10, load_mnist, to_tensor
    if cfg.data == "mnist":
        x, y = load_mnist(Path(cfg.data_root) / "mnist" if cfg.data_root else None, "test", download=cfg.download)
        x, y = to_tensor(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
        perm = torch.from_numpy(np.random.default_rng(0).permutation(len(x)))
        tr, te = perm[MNIST_HELD_OUT:], perm[:MNIST_HELD_OUT]
        return x[tr], y[tr], x[te], y[te]
    (xa, ya), (xb, yb) = (load_cifar10(cfg.data_root, s, download=cfg.download) for s in ("train", "test"))
    return to_tensor(xa), torch.from_numpy(ya), to_tensor(xb), torch.from_numpy(yb)


def train_classifier(cfg: ClassifierConfig, run_dir: os.PathLike, data: Optional[tuple] = None, *,
                     resume: bool = True, device: Optional[str] = None,
                     progress: bool = True) -> tuple[FeatureClassifier, dict]:
    """Train the classifier in a run folder with SGD (momentum 0.9, one-cycle LR) and random horizontal flips.

    Args:
        cfg: the recipe. run_dir: the run folder (checkpoint, log, ``metrics.json`` and the ``weights.pt``
            that :func:`load_classifier` and ``--set classifier=...`` read).
        data: optional ``(x, y, x_test, y_test)``: images (N, 3, 32, 32) in [-1, 1] and labels (N,) of the
            training and test splits; default: :func:`classifier_data` (``cfg.data`` from ``cfg.data_root``,
            downloaded if ``cfg.download``).
        resume: continue the run in ``run_dir`` (a run of another config there is refused).
        device: where to train (default: CUDA when available).

    Returns:
        The model (eval mode) and its metrics (test accuracy, ``usable`` for FID, wall time, provenance).
        A classifier at or below :func:`chance_level` is flagged ``usable: False`` with a warning, and
        :func:`load_classifier` refuses it.
    """
    from tqdm.auto import tqdm

    run = RunDir(run_dir)
    has_ckpt = run.start(cfg, resume=resume)
    if data is None:
        data = classifier_data(cfg)
    x, y, x_test, y_test = data
    seed_everything(cfg.seed)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = FeatureClassifier(cfg.width, int(y.max()) + 1).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.iters, pct_start=0.15)
    step, timer = 0, Timer()
    if has_ckpt:
        ck = run.load(models={"model": model}, optimizers={"opt": opt}, schedulers={"sched": sched})
        step, timer = ck["step"], Timer(ck["extra"]["train_wall_s"])
    model.train()
    for step in tqdm(range(step, cfg.iters), desc="classifier", disable=not progress, initial=step,
                     total=cfg.iters):
        xb, yb = (t.to(device) for t in sample_batch(x, y, cfg.batch_size, step, cfg.seed))
        flip = (torch.rand(len(xb)) < 0.5).to(device)
        if cfg.data != "mnist":                            # a mirrored digit is not a digit
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.iters:
            run.log({"step": done, "loss": loss.item(), "lr": sched.get_last_lr()[0]})
        if done % cfg.ckpt_every == 0 or done == cfg.iters:
            run.save(done, models={"model": model}, optimizers={"opt": opt}, schedulers={"sched": sched},
                     extra={"train_wall_s": timer.elapsed})
    acc = evaluate_classifier(model, x_test, y_test)
    usable = acc > chance_level(model.num_classes)
    if not usable:
        warnings.warn(f"the FID classifier reached only {acc:.1%} test accuracy (chance: "
                      f"{1 / model.num_classes:.0%}); its features cannot tell the classes apart, so it is flagged "
                      f"unusable for FID. Train longer (--set iters=...)", RuntimeWarning, stacklevel=2)
    metrics = {"test_accuracy": acc, "usable": usable, "n_test": len(x_test), "config": cfg.to_dict(),
               "history": run.history(), "train_wall_s": timer.elapsed,
               "provenance": provenance(wall_time_s=timer.elapsed, seed=cfg.seed)}
    run.write_metrics(metrics)
    model = model.cpu()
    run.export_weights({"model": model}, cfg=cfg, meta={"width": cfg.width, "num_classes": model.num_classes,
                                                        "test_accuracy": acc, "usable": usable})
    return model.eval(), metrics


def load_classifier(path: os.PathLike, *, device: torch.device | str = "cpu",
                    allow_unusable: bool = False) -> FeatureClassifier:
    """Load the classifier of a run folder written by :func:`train_classifier` (or its ``weights.pt``).

    Raises:
        FileNotFoundError: nothing there (the message says how to train one).
        CheckpointError: not a classifier weights file (read with ``weights_only=True``; never executed).
        ValueError: the classifier is at chance level (``allow_unusable=False``): its FID would mean nothing.
    """
    path = Path(path)
    file = path / RunDir.WEIGHTS if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no classifier at {path}; train one with `python -m hamlib.gan classifier "
                                f"--run-dir {path if path.is_dir() else path.parent}`")
    w = RunDir.read_weights(file)
    meta = w.get("meta") or {}
    if w.get("kind") != "ClassifierConfig" or "model" not in w["models"] or "num_classes" not in meta:
        raise CheckpointError(f"{file} holds no FID classifier (kind {w.get('kind')!r}); point to the run folder of "
                              f"`python -m hamlib.gan classifier`")
    acc = meta.get("test_accuracy")
    if not allow_unusable and (acc is None or acc <= chance_level(meta["num_classes"])):
        raise ValueError(f"the classifier in {file} has test accuracy {acc} (chance: {1 / meta['num_classes']:.0%});"
                         f" its features cannot tell the classes apart, so a classifier-FID would mean nothing. "
                         f"Train it longer (python -m hamlib.gan classifier --set iters=...)")
    model = FeatureClassifier(meta["width"], meta["num_classes"])
    try:
        model.load_state_dict(w["models"]["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{file}: weights do not fit a width-{meta['width']} classifier ({e})") from None
    return model.to(device).eval()
