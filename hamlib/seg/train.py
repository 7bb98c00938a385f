"""The HamNet trainer: SGD with poly LR, AMP on GPU, torchrun/DDP, checkpoints with exact resume.

Recipe of Geng et al., ICLR 2021 (arXiv 2109.04553): pixel cross-entropy with ignore label 255, SGD
momentum 0.9, weight decay on conv weights only, LR * (1 - it/max)^0.9. The data order and the
augmentation of every sample depend only on (seed, iteration), and the checkpoint holds model, optimizer,
scheduler, grad scaler, RNGs and iteration, so a killed run resumes to the same weights.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..train import (DistInfo, cleanup, init_distributed, load_checkpoint, provenance, save_checkpoint,
                     seed_everything, wrap_model, write_json)
from .data import CAMVID_CLASSES, IGNORE_INDEX, VOC_CLASSES, CamVid, SyntheticShapes, VOCSegmentation
from .evaluate import evaluate
from .model import SegModel, build_model
from .presets import SegConfig
from .transforms import EvalTransform, SeededView, TrainTransform

__all__ = ["build_data", "build_from_config", "StepBatchSampler", "param_groups", "train"]


def _dataset(cfg: SegConfig, split: str, limit: Optional[int]):
    if cfg.dataset == "synthetic":
        n = cfg.synthetic_n if split == "train" else max(cfg.synthetic_n // 4, 8)
        seed = {"train": 0, "val": 1, "test": 2}.get(split, 3) + 10 * cfg.seed
        return SyntheticShapes(limit or n, cfg.synthetic_size, cfg.num_classes, seed=seed)
    if cfg.dataset == "camvid":
        return CamVid(cfg.data_root or "data/camvid", split, download=cfg.download, limit=limit)
    if cfg.dataset == "voc":
        return VOCSegmentation(cfg.data_root or "data/voc", split, download=cfg.download, limit=limit)
    raise ValueError(f"dataset must be 'synthetic', 'camvid' or 'voc'; got {cfg.dataset!r}")


def class_names(cfg: SegConfig) -> List[str]:
    return list({"camvid": CAMVID_CLASSES, "voc": VOC_CLASSES}.get(cfg.dataset,
                [f"class{i}" for i in range(cfg.num_classes)]))


def build_data(cfg: SegConfig, split: str, *, train: bool = False):
    """The dataset of ``split``: a :class:`SeededView` with random augmentation if ``train``, else eval-transformed."""
    ds = _dataset(cfg, split, cfg.limit if train else cfg.val_limit)
    if train:
        return SeededView(ds, TrainTransform(cfg.crop, cfg.scales, resize=cfg.resize), seed=cfg.seed)
    ds.transform = EvalTransform(cfg.resize)
    return ds


def build_from_config(cfg: SegConfig) -> SegModel:
    """The model a config describes."""
    return build_model(cfg.num_classes, backbone=cfg.backbone, width=cfg.width, head=cfg.head,
                       channels=cfg.channels, md=cfg.md, aux=cfg.aux_weight > 0, pretrained=cfg.pretrained,
                       ham_kwargs=cfg.ham_kwargs())


class StepBatchSampler:
    """Batches of (epoch, index) for iterations ``start..iters-1``; epoch e uses randperm(seed + e), split by rank.

    Batch ``s`` is a pure function of (seed, s, rank, world), so resuming at step s replays the same data.
    """

    def __init__(self, n: int, batch_size: int, iters: int, *, start: int = 0, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        self.per_rank = n // world_size
        self.bpe = self.per_rank // batch_size
        if self.bpe < 1:
            raise ValueError(f"batch_size={batch_size} is larger than the {self.per_rank} samples per process")
        self.n, self.bs, self.iters, self.start, self.seed, self.rank, self.world = (
            n, batch_size, iters, start, seed, rank, world_size)

    def __len__(self) -> int:
        return max(self.iters - self.start, 0)

    def __iter__(self) -> Iterator[List[tuple]]:
        cache: Dict[int, torch.Tensor] = {}
        for s in range(self.start, self.iters):
            e, b = divmod(s, self.bpe)
            if e not in cache:
                cache = {e: torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + e))}
            idx = cache[e][self.rank::self.world][b * self.bs:(b + 1) * self.bs]
            yield [(e, int(i)) for i in idx]


def param_groups(model: nn.Module, weight_decay: float) -> List[dict]:
    """Weight decay on conv/linear weights only (not on norms, biases or gates), as in the official recipe."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def seg_loss(out, aux, lab, aux_weight: float):
    loss = F.cross_entropy(out.float(), lab, ignore_index=IGNORE_INDEX)
    if aux is not None and aux_weight > 0:
        loss = loss + aux_weight * F.cross_entropy(aux.float(), lab, ignore_index=IGNORE_INDEX)
    return loss


def train(cfg: SegConfig, run_dir, *, resume: bool = True, stop_after: Optional[int] = None,
          progress: bool = True, device: Optional[str] = None, preset: Optional[str] = None,
          final_eval: bool = True) -> Dict:
    """Train (or resume) a run in ``run_dir``; returns the metrics dict also written to ``metrics.json``.

    Args:
        cfg: the recipe. run_dir: folder for ``last.pt`` and ``metrics.json``.
        resume: continue from ``run_dir/last.pt`` if present.
        stop_after: stop after this many iterations in this call without saving (simulates a crash).
        progress: tqdm bar. device: ``"cpu"``/``"cuda"``; default CUDA when available.
        preset: name recorded in the provenance. final_eval: evaluate on ``cfg.test_split`` at the end.
    """
    from tqdm.auto import tqdm
    t0 = time.time()
    run_dir = Path(run_dir)
    info: DistInfo = init_distributed(device)
    seed_everything(cfg.seed + info.rank)
    train_set = build_data(cfg, cfg.train_split, train=True)
    val_set = build_data(cfg, cfg.val_split)
    model = build_from_config(cfg).to(info.device)
    net = wrap_model(model, info)
    opt = torch.optim.SGD(param_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(1 - s / cfg.iters, 0.0) ** cfg.poly_power)
    use_amp = cfg.amp and info.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    step, history, wall = 0, {"step": [], "loss": [], "lr": [], "val_step": [], "val_miou": []}, 0.0
    window: List[float] = []  # losses since the last logged mean
    ckpt_path = run_dir / "last.pt"
    if resume and ckpt_path.is_file():
        ck = load_checkpoint(ckpt_path, model=model, optimizer=opt, scheduler=sched, scaler=scaler,
                             map_location=info.device)
        step, history, wall = ck["step"], ck["extra"]["history"], ck["extra"]["wall_s"]
        window = ck["extra"].get("loss_window", [])
        if info.rank:  # each rank has its own RNG stream
            seed_everything(cfg.seed + info.rank + 1000 * step)
    sampler = StepBatchSampler(len(train_set), cfg.batch_size, cfg.iters, start=step, seed=cfg.seed,
                               rank=info.rank, world_size=info.world_size)
    # Own generators: a DataLoader iterator otherwise draws its base seed from the global RNG, which would
    # shift the RNG stream of a resumed run by one draw.
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.num_workers,
                        pin_memory=info.device.type == "cuda", generator=torch.Generator().manual_seed(cfg.seed))
    val_idx = list(range(info.rank, len(val_set), info.world_size))
    val_loader = DataLoader(Subset(val_set, val_idx), batch_size=1, generator=torch.Generator())
    bar = tqdm(total=cfg.iters, initial=step, desc=f"train {cfg.head}", disable=not (progress and info.is_main))
    t_call = time.time()
    net.train()
    for img, lab in loader:
        img, lab = img.to(info.device, non_blocking=True), lab.to(info.device, non_blocking=True)
        with torch.autocast(info.device.type, enabled=use_amp):
            out, aux = net(img, return_aux=True)
        loss = seg_loss(out, aux, lab, cfg.aux_weight)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at iteration {step}; lower lr (now {cfg.lr})")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        step += 1
        window.append(loss.item())
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.iters:
            history["step"].append(step)
            history["loss"].append(sum(window) / len(window))
            history["lr"].append(sched.get_last_lr()[0])
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
            window = []
        if step % cfg.eval_every == 0 or step == cfg.iters:
            sc = evaluate(net, val_loader, cfg.num_classes, device=info.device, reduce_device=info.device)
            history["val_step"].append(step)
            history["val_miou"].append(sc["miou"])
        if stop_after is not None and step - sampler.start >= stop_after:
            bar.close()
            return {"stopped_at": step}
        if step % cfg.ckpt_every == 0 or step == cfg.iters:
            if info.is_main:
                save_checkpoint(ckpt_path, model=model, step=step, optimizer=opt, scheduler=sched, scaler=scaler,
                                extra={"history": history, "wall_s": wall + time.time() - t_call, "loss_window": window,
                                       "config": cfg.to_dict()})
    bar.close()
    wall += time.time() - t_call
    result = {"config": cfg.to_dict(), "history": history, "iters": step, "world_size": info.world_size,
              "train_wall_s": round(wall, 1)}
    if final_eval and cfg.test_split:
        test_set = build_data(cfg, cfg.test_split)
        te = Subset(test_set, list(range(info.rank, len(test_set), info.world_size)))
        result["test"] = evaluate(net, DataLoader(te, batch_size=1), cfg.num_classes, device=info.device,
                                  scales=cfg.eval_scales, flip=cfg.eval_flip, class_names=class_names(cfg),
                                  reduce_device=info.device, progress=progress and info.is_main)
        result["test"]["split"] = cfg.test_split
    result["provenance"] = provenance(device=info.device, preset=preset, wall_time_s=time.time() - t0)
    if info.is_main:
        write_json(run_dir / "metrics.json", result)
    if info.distributed:
        cleanup()
    return result
