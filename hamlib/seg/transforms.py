"""Joint image/label augmentation for segmentation, in plain torch (no torchvision needed).

The HamNet recipe (Geng et al., ICLR 2021, arXiv 2109.04553): random scale, pad with the ignore label,
random crop, horizontal flip, ImageNet normalisation. Every random transform takes an explicit
``torch.Generator``, so :class:`SeededView` can give sample i in epoch e the same augmentation in any
worker and after any resume. :func:`build_data` is the data pipeline a :class:`SegConfig` describes (used by
the trainer, ``eval`` and the report alike).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ..train.download import data_root
from .config import SegConfig
from .data import CAMVID_CLASSES, IGNORE_INDEX, VOC_CLASSES, CamVid, SyntheticShapes, VOCSegmentation

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "resize_pair", "random_scale", "pad_crop", "random_flip", "normalize",
           "TrainTransform", "EvalTransform", "SeededView", "build_data", "class_names"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Pair = Tuple[Tensor, Tensor]


def resize_pair(img: Tensor, lab: Tensor, size: Tuple[int, int]) -> Pair:
    """Bilinear resize of the image (3, H, W), nearest of the label (H, W), to ``size`` = (h, w)."""
    img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]
    lab = F.interpolate(lab[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return img, lab


def random_scale(img: Tensor, lab: Tensor, scales: Sequence[float], g: torch.Generator) -> Pair:
    """Resize by a factor drawn uniformly from the list ``scales``."""
    s = scales[int(torch.randint(len(scales), (), generator=g))]
    h, w = lab.shape
    return resize_pair(img, lab, (max(1, round(h * s)), max(1, round(w * s))))


def pad_crop(img: Tensor, lab: Tensor, crop: Tuple[int, int], g: Optional[torch.Generator]) -> Pair:
    """Pad to at least ``crop`` (image 0, label ignore), then crop (random if ``g``, else top-left)."""
    ch, cw = crop
    h, w = lab.shape
    ph, pw = max(ch - h, 0), max(cw - w, 0)
    if ph or pw:
        img = F.pad(img, (0, pw, 0, ph), value=0.0)
        lab = F.pad(lab, (0, pw, 0, ph), value=IGNORE_INDEX)
    h, w = lab.shape
    y = int(torch.randint(h - ch + 1, (), generator=g)) if g is not None else 0
    x = int(torch.randint(w - cw + 1, (), generator=g)) if g is not None else 0
    return img[:, y:y + ch, x:x + cw], lab[y:y + ch, x:x + cw]


def random_flip(img: Tensor, lab: Tensor, g: torch.Generator) -> Pair:
    """Horizontal flip with probability 1/2."""
    if bool(torch.rand((), generator=g) < 0.5):
        return img.flip(-1), lab.flip(-1)
    return img, lab


def normalize(img: Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """(img - mean) / std per channel."""
    m = torch.tensor(mean, dtype=img.dtype).view(3, 1, 1)
    s = torch.tensor(std, dtype=img.dtype).view(3, 1, 1)
    return (img - m) / s


class TrainTransform:
    """Optional fixed resize, random scale, pad+crop, flip, normalise.

    Args:
        crop (int or (h, w)): crop size. scales (list of float): scale factors to draw from.
        resize ((h, w), optional): resize every sample to this size first (the reduced-scale CPU presets).
        flip (bool): random horizontal flip. Default: True.
    """

    def __init__(self, crop, scales: Sequence[float] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0), *,
                 resize: Optional[Tuple[int, int]] = None, flip: bool = True) -> None:
        self.crop = (crop, crop) if isinstance(crop, int) else tuple(crop)
        self.scales, self.resize, self.flip = tuple(scales), tuple(resize) if resize else None, flip

    def __call__(self, img: Tensor, lab: Tensor, g: Optional[torch.Generator] = None) -> Pair:
        if self.resize:
            img, lab = resize_pair(img, lab, self.resize)
        if g is None:
            g = torch.Generator().manual_seed(int(torch.randint(2 ** 62, ())))
        img, lab = random_scale(img, lab, self.scales, g)
        img, lab = pad_crop(img, lab, self.crop, g)
        if self.flip:
            img, lab = random_flip(img, lab, g)
        return normalize(img), lab


class EvalTransform:
    """Optional fixed resize, then normalise; the whole image is kept."""

    def __init__(self, resize: Optional[Tuple[int, int]] = None) -> None:
        self.resize = tuple(resize) if resize else None

    def __call__(self, img: Tensor, lab: Tensor, g: Optional[torch.Generator] = None) -> Pair:
        if self.resize:
            img, lab = resize_pair(img, lab, self.resize)
        return normalize(img), lab


class SeededView(Dataset):
    """A dataset view whose random transform for sample i in epoch e uses seed f(seed, e, i).

    The training data order and augmentation then depend only on (seed, step), which is what makes an
    interrupted run resume exactly, with any number of DataLoader workers.

    Args:
        dataset: has ``load(i) -> (img, label)`` and ``__len__``.
        transform (callable): ``transform(img, label, generator)``.
        seed (int): base seed.
    """

    def __init__(self, dataset, transform, seed: int = 0) -> None:
        self.dataset, self.transform, self.seed, self.epoch = dataset, transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i) -> Pair:
        epoch, i = i if isinstance(i, tuple) else (self.epoch, i)
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 1_000_003 + i)
        img, lab = self.dataset.load(i)
        return self.transform(img, lab, g)


def _dataset(cfg: SegConfig, split: str, limit: Optional[int]):
    if cfg.dataset == "synthetic":
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be one of ('train', 'val', 'test') for the synthetic data set; got {split!r}")
        n = cfg.synthetic_n if split == "train" else max(cfg.synthetic_n // 4, 8)
        seed = {"train": 0, "val": 1, "test": 2}.get(split, 3) + 10 * cfg.seed
        return SyntheticShapes(limit or n, cfg.synthetic_size, cfg.num_classes, seed=seed)
    root = cfg.data_root or data_root(cfg.dataset)
    if cfg.dataset == "camvid":
        return CamVid(root, split, download=cfg.download, limit=limit)
    return VOCSegmentation(root, split, download=cfg.download, limit=limit)


def class_names(cfg: SegConfig) -> List[str]:
    """Names of the ``cfg.num_classes`` classes (``class0``, ... for the synthetic set)."""
    return list({"camvid": CAMVID_CLASSES, "voc": VOC_CLASSES}.get(cfg.dataset,
                [f"class{i}" for i in range(cfg.num_classes)]))


def build_data(cfg: SegConfig, split: str, *, train: bool = False):
    """The dataset of ``split``: a :class:`SeededView` with random augmentation if ``train``, else eval-transformed."""
    ds = _dataset(cfg, split, cfg.limit if train else cfg.val_limit)
    if train:
        return SeededView(ds, TrainTransform(cfg.crop, cfg.scales, resize=cfg.resize), seed=cfg.seed)
    ds.transform = EvalTransform(cfg.resize)
    return ds
