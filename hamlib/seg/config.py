"""HamNet's config and named recipes (Geng et al., ICLR 2021, arXiv 2109.04553).

``tiny``: synthetic shapes, tiny backbone, CPU in about a minute (CI and the book's tiny mode).
``camvid-cpu``: real CamVid at 180x240 on a tiny backbone, 500 iterations: 19-22 min per head measured on one
thread of a heavily shared 2-core CPU.
``camvid``: CamVid at full 360x480 with an ImageNet ResNet-50, sized for one GPU.
``voc``: the paper's recipe: ResNet-101, SGD, poly 0.9, crop 513, global batch 16, 60k iterations on trainaug.

``data_root=None`` means ``hamlib.train.download.data_root(DATASET)``: ``$HAMLIB_DATA/DATASET``, else
``./data/DATASET``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from ..train.config import HamConfig, Presets, field

__all__ = ["SegConfig", "PRESETS", "get_preset", "HEADS", "DATASETS"]

HEADS = ("fcn", "attention", "ham", "lightham")
DATASETS = ("synthetic", "camvid", "voc")
# The splits each data set has (hamlib.seg.data checks the same lists when it reads files).
DATASET_SPLITS = {"synthetic": ("train", "val", "test"), "camvid": ("train", "val", "test", "trainval"),
                  "voc": ("train", "val", "trainval", "trainaug")}


@dataclass(frozen=True)
class SegConfig(HamConfig):
    """Everything a HamNet run needs; printed whole by the book and stored in every run's ``config.json``.

    The ham fields (``md``, ``S``, ``R``, ``train_steps``, ``eval_steps``, ``grad``, ``inv_t``, ``beta``,
    ``eval_seed``) come from :class:`hamlib.train.config.HamConfig`; see ``SegConfig.fields_help()``.
    ``batch_size`` is the *global* batch: under ``torchrun`` each of the P processes takes batch_size / P.
    """
    dataset: str = field("synthetic", "synthetic | camvid | voc", choices=DATASETS)
    data_root: Optional[str] = field(None, "data folder (None: $HAMLIB_DATA/<dataset>, else ./data/<dataset>)",
                                     runtime=True)
    download: bool = field(False, "download the data set when it is missing", runtime=True)
    num_classes: int = field(4, "classes K", minimum=2)
    train_split: str = field("train", "split to train on")
    val_split: str = field("val", "split for validation during training")
    test_split: Optional[str] = field("test", "split for the final test (None: no test)")
    limit: Optional[int] = field(None, "use only the first N training images", minimum=1)
    val_limit: Optional[int] = field(None, "use only the first N validation/test images", minimum=1)
    synthetic_size: int = field(64, "image side of the synthetic set", minimum=16)
    synthetic_n: int = field(96, "training images of the synthetic set", minimum=1)
    backbone: str = field("tiny", "tiny | resnet18 | resnet34 | resnet50 | resnet101",
                          choices=("tiny", "resnet18", "resnet34", "resnet50", "resnet101"))
    width: Optional[int] = field(None, "backbone base width (None: the backbone's default)", minimum=1)
    pretrained: Optional[str] = field(None, "ImageNet weights: torchvision name or .pth path")
    head: str = field("ham", "decode head: fcn | attention | ham | lightham", choices=HEADS)
    channels: int = field(64, "head width d", minimum=1)
    crop: Tuple[int, int] = field((64, 64), "training crop (h, w)")
    scales: Tuple[float, ...] = field((0.75, 1.0, 1.25), "random-scale factors of the augmentation")
    resize: Optional[Tuple[int, int]] = field(None, "downscale every image to (h, w) first")
    iters: int = field(150, "training iterations", minimum=1)
    batch_size: int = field(8, "global batch (split across torchrun processes)", minimum=1)
    lr: float = field(0.02, "initial learning rate (SGD, poly schedule)", above=0)
    momentum: float = field(0.9, "SGD momentum", minimum=0)
    weight_decay: float = field(1e-4, "weight decay of conv/linear weights", minimum=0)
    poly_power: float = field(0.9, "exponent of the poly schedule", minimum=0)
    aux_weight: float = field(0.0, "weight of the auxiliary FCN loss (0: no aux head)", minimum=0)
    amp: bool = field(True, "mixed precision on CUDA")
    eval_every: int = field(50, "validate every N iterations", minimum=1)
    ckpt_every: int = field(50, "checkpoint every N iterations", minimum=1)
    log_every: int = field(10, "log the mean loss every N iterations", minimum=1)
    num_workers: int = field(0, "data loader workers", minimum=0, runtime=True)
    seed: int = field(0, "seed of initialisation, data order and augmentation", minimum=0)
    eval_scales: Tuple[float, ...] = field((1.0,), "test-time scales")
    eval_flip: bool = field(False, "test-time horizontal flip")

    def check(self) -> None:
        super().check()
        for name in ("crop", "resize"):
            v = getattr(self, name)
            if v is not None and min(v) < 1:
                raise ValueError(f"{name} must be two positive sizes (h, w); got {v!r}")
        for name in ("scales", "eval_scales"):
            v = getattr(self, name)
            if not v or min(v) <= 0:
                raise ValueError(f"{name} must be one or more positive factors; got {v!r}")
        allowed = DATASET_SPLITS[self.dataset]
        for name in ("train_split", "val_split", "test_split"):
            v = getattr(self, name)
            if v is not None and v not in allowed:
                raise ValueError(f"{name} must be one of {allowed} for dataset={self.dataset!r}; got {v!r}")


PRESETS: Presets[SegConfig] = Presets(SegConfig, {
    "tiny": (SegConfig(), "synthetic shapes, tiny backbone, CPU in about a minute"),
    "camvid-cpu": (SegConfig(dataset="camvid", num_classes=11, backbone="tiny", width=16, channels=64, R=16,
                             resize=(180, 240), crop=(160, 160), scales=(0.75, 1.0, 1.25, 1.5), iters=500,
                             batch_size=8, lr=0.02, eval_every=250, ckpt_every=50, amp=False),
                   "CamVid 180x240, tiny backbone from scratch, 500 iterations (about 20 min per head on a CPU)"),
    "camvid": (SegConfig(dataset="camvid", download=True, num_classes=11, backbone="resnet50",
                         pretrained="resnet50", channels=512, R=64, crop=(352, 480),
                         scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), iters=3000, batch_size=8, lr=0.01,
                         aux_weight=0.4, eval_every=500, ckpt_every=250, log_every=20, num_workers=4),
               "CamVid 360x480, ImageNet ResNet-50, one GPU"),
    "voc": (SegConfig(dataset="voc", download=True, num_classes=21, train_split="trainaug", test_split=None,
                      backbone="resnet101", pretrained="resnet101", channels=512, R=64, train_steps=6,
                      eval_steps=6, crop=(513, 513), scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0), iters=60000,
                      batch_size=16, lr=9e-3, weight_decay=1e-4, eval_every=5000, ckpt_every=1000, log_every=50,
                      num_workers=8, eval_scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), eval_flip=True),
            "the paper's PASCAL VOC recipe (ResNet-101, global batch 16, 60k iterations; several GPUs)"),
})


def get_preset(name: str, **overrides) -> SegConfig:
    """A copy of preset ``name`` with ``overrides`` applied (validated)."""
    return PRESETS.make(name, **overrides)
