"""Named training recipes for HamNet and its baselines (Geng et al., ICLR 2021, arXiv 2109.04553).

``tiny``: synthetic shapes (or a few CamVid images), tiny backbone, CPU in about a minute.
``camvid-cpu``: real CamVid at 180x240 on a tiny backbone, 500 iterations: 19-22 min per head measured on one
thread of a heavily shared 2-core CPU.
``camvid``: CamVid at full 360x480 with an ImageNet ResNet-50, sized for one GPU.
``voc``: the paper's recipe: ResNet-101, SGD, poly 0.9, crop 513, batch 16, 60k iterations on trainaug.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional, Tuple

__all__ = ["SegConfig", "PRESETS", "get_preset"]


@dataclass
class SegConfig:
    """Everything a run needs; printed whole by the book and stored in every metrics JSON.

    Args (selection):
        dataset (str): ``synthetic``, ``camvid`` or ``voc``. data_root (str): local folder of the data set.
        backbone (str): ``tiny`` or ``resnet18/34/50/101``; width: its base width; pretrained: weights.
        head (str): ``fcn``, ``attention``, ``ham`` or ``lightham``; md: ``nmf``, ``vq`` or ``cd``.
        channels (int): head width d. R (int): rank r. train_steps / eval_steps (int): K.
        crop (h, w); scales: random-scale factors; resize (h, w): downscale every image first.
        iters, batch_size, lr, momentum, weight_decay, poly_power: SGD with poly LR.
        aux_weight (float): weight of the auxiliary FCN loss (0 = no aux head).
        eval_every, ckpt_every, log_every (int): in iterations. amp (bool): mixed precision on CUDA.
        eval_scales, eval_flip: test-time augmentation. eval_seed: seed of the ham bases at eval.
    """
    dataset: str = "synthetic"
    data_root: Optional[str] = None
    download: bool = False
    num_classes: int = 4
    train_split: str = "train"
    val_split: str = "val"
    test_split: Optional[str] = "test"
    limit: Optional[int] = None
    val_limit: Optional[int] = None
    synthetic_size: int = 64
    synthetic_n: int = 96
    backbone: str = "tiny"
    width: Optional[int] = None
    pretrained: Optional[str] = None
    head: str = "ham"
    md: str = "nmf"
    channels: int = 64
    R: int = 16
    train_steps: int = 6
    eval_steps: int = 7
    inv_t: Optional[float] = None
    eval_seed: int = 0
    crop: Tuple[int, int] = (64, 64)
    scales: Tuple[float, ...] = (0.75, 1.0, 1.25)
    resize: Optional[Tuple[int, int]] = None
    iters: int = 150
    batch_size: int = 8
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    aux_weight: float = 0.0
    amp: bool = True
    eval_every: int = 50
    ckpt_every: int = 50
    log_every: int = 10
    num_workers: int = 0
    seed: int = 0
    eval_scales: Tuple[float, ...] = (1.0,)
    eval_flip: bool = False
    extra: dict = field(default_factory=dict)

    def ham_kwargs(self) -> dict:
        kw = dict(R=self.R, train_steps=self.train_steps, eval_steps=self.eval_steps, eval_seed=self.eval_seed)
        if self.inv_t is not None:
            kw["inv_t"] = self.inv_t
        return kw

    def replace(self, **kw) -> "SegConfig":
        names = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(kw) - names)
        if bad:
            raise ValueError(f"unknown config field(s) {bad}; valid fields: {sorted(names)}")
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS = {
    "tiny": SegConfig(),
    "camvid-cpu": SegConfig(dataset="camvid", data_root="../shared/data/camvid", num_classes=11,
                            backbone="tiny", width=16, channels=64, R=16, resize=(180, 240), crop=(160, 160),
                            scales=(0.75, 1.0, 1.25, 1.5), iters=500, batch_size=8, lr=0.02,
                            eval_every=250, ckpt_every=50, amp=False),
    "camvid": SegConfig(dataset="camvid", data_root="data/camvid", download=True, num_classes=11,
                        backbone="resnet50", pretrained="resnet50", channels=512, R=64, crop=(352, 480),
                        scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), iters=3000, batch_size=8, lr=0.01,
                        aux_weight=0.4, eval_every=500, ckpt_every=250, log_every=20, num_workers=4),
    "voc": SegConfig(dataset="voc", data_root="data/voc", download=True, num_classes=21, train_split="trainaug",
                     test_split=None, backbone="resnet101", pretrained="resnet101", channels=512, R=64,
                     train_steps=6, eval_steps=6, crop=(513, 513), scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0),
                     iters=60000, batch_size=16, lr=9e-3, weight_decay=1e-4, eval_every=5000, ckpt_every=1000,
                     log_every=50, num_workers=8, eval_scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), eval_flip=True),
}


def get_preset(name: str, **overrides) -> SegConfig:
    """A copy of preset ``name`` with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}; got {name!r}")
    return PRESETS[name].replace(**overrides)
