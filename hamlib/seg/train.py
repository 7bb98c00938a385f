"""The HamNet trainer: SGD with poly LR, AMP on GPU, torchrun/DDP, exact resume in a run folder.

Recipe of Geng et al., ICLR 2021 (arXiv 2109.04553): pixel cross-entropy with ignore label 255, SGD
momentum 0.9, weight decay on conv weights only, LR * (1 - it/max)^0.9. The data order and the
augmentation of every sample depend only on (seed, iteration), and the checkpoint holds model, optimizer,
scheduler, grad scaler, RNGs and iteration, so a killed run resumes to the same weights. Everything around
the loop (config, run folder, resume rule, log, checkpoints) is :mod:`hamlib.train`'s.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..train import (DistInfo, RunDir, Timer, cleanup, init_distributed, provenance, seed_everything,
                     wrap_model)
from .config import SegConfig
from .data import IGNORE_INDEX
from .evaluate import evaluate
from .model import from_config
from .transforms import build_data, class_names

__all__ = ["StepBatchSampler", "param_groups", "seg_loss", "train"]


class StepBatchSampler:
    """Batches of (epoch, index) for iterations ``start..iters-1``; epoch e uses randperm(seed + e).

    ``batch_size`` is the global batch B: iteration s takes B indices of the permutation and process
    ``rank`` of ``world_size`` keeps every world_size-th of them (B / world_size each), so the optimisation
    is the same whatever the number of processes. Batch ``s`` is a pure function of (seed, s, rank, world),
    so resuming at step s replays the same data.

    Raises:
        ValueError: ``batch_size`` is not divisible by ``world_size``, or larger than the data set.
    """

    def __init__(self, n: int, batch_size: int, iters: int, *, start: int = 0, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} (the global batch) must be divisible by the number of "
                             f"processes ({world_size}); choose a multiple of {world_size}")
        self.bpe = n // batch_size
        if self.bpe < 1:
            raise ValueError(f"batch_size={batch_size} is larger than the data set ({n} samples)")
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
            idx = cache[e][b * self.bs:(b + 1) * self.bs][self.rank::self.world]
            yield [(e, int(i)) for i in idx]


def param_groups(model: nn.Module, weight_decay: float) -> List[dict]:
    """Weight decay on conv/linear weights only (not on norms, biases or gates), as in the official recipe."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def seg_loss(out, aux, lab, aux_weight: float):
    """Pixel cross-entropy (ignore 255) of the logits, plus ``aux_weight`` times that of the aux head."""
    loss = F.cross_entropy(out.float(), lab, ignore_index=IGNORE_INDEX)
    if aux is not None and aux_weight > 0:
        loss = loss + aux_weight * F.cross_entropy(aux.float(), lab, ignore_index=IGNORE_INDEX)
    return loss


def train(cfg: SegConfig, run_dir, *, resume: bool = True, stop_after: Optional[int] = None,
          progress: bool = True, device: Optional[str] = None, preset: Optional[str] = None,
          final_eval: bool = True) -> Dict:
    """Train (or resume) a HamNet run in ``run_dir``; returns the record also written to ``metrics.json``.

    Args:
        cfg: the recipe. run_dir: the run folder (:class:`hamlib.train.RunDir`).
        resume: continue the run in ``run_dir``; a run of another config there is refused. False starts afresh.
        stop_after: stop after this many iterations in this call without saving (simulates a crash).
        progress: tqdm bar. device: ``"cpu"``/``"cuda"``; default CUDA when available.
        preset: name recorded in the provenance. final_eval: evaluate on ``cfg.test_split`` at the end.
    """
    from tqdm.auto import tqdm
    info: DistInfo = init_distributed(device)
    run = RunDir(run_dir, is_main=info.is_main)
    has_ckpt = run.start(cfg, resume=resume)
    seed_everything(cfg.seed + info.rank)
    train_set = build_data(cfg, cfg.train_split, train=True)
    val_set = build_data(cfg, cfg.val_split)
    model = from_config(cfg).to(info.device)
    net = wrap_model(model, info)
    opt = torch.optim.SGD(param_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(1 - s / cfg.iters, 0.0) ** cfg.poly_power)
    use_amp = cfg.amp and info.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    step, window, timer = 0, [], Timer()  # window: losses since the last logged mean
    if has_ckpt:
        ck = run.load(models={"model": model}, optimizers={"opt": opt}, schedulers={"sched": sched},
                      scalers={"scaler": scaler}, map_location=info.device)
        step, window, timer = ck["step"], ck["extra"]["loss_window"], Timer(ck["extra"]["train_wall_s"])
        if info.rank:  # each rank has its own RNG stream
            seed_everything(cfg.seed + info.rank + 1000 * step)
    sampler = StepBatchSampler(len(train_set), cfg.batch_size, cfg.iters, start=step, seed=cfg.seed,
                               rank=info.rank, world_size=info.world_size)
    # Own generators: a DataLoader iterator otherwise draws its base seed from the global RNG, which would
    # shift the RNG stream of a resumed run by one draw.
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.num_workers,
                        pin_memory=info.device.type == "cuda", generator=torch.Generator().manual_seed(cfg.seed))
    val_loader = DataLoader(Subset(val_set, range(info.rank, len(val_set), info.world_size)), batch_size=1,
                            generator=torch.Generator())
    bar = tqdm(total=cfg.iters, initial=step, desc=f"train {cfg.head}", disable=not (progress and info.is_main))
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
            run.log({"step": step, "loss": sum(window) / len(window), "lr": sched.get_last_lr()[0]})
            bar.set_postfix(loss=f"{sum(window) / len(window):.3f}")
            window = []
        if step % cfg.eval_every == 0 or step == cfg.iters:
            sc = evaluate(net, val_loader, cfg.num_classes, device=info.device, reduce_device=info.device)
            run.log({"step": step, "val_miou": sc["miou"]})
        if stop_after is not None and step - sampler.start >= stop_after:
            bar.close()
            return {"stopped_at": step}
        if step % cfg.ckpt_every == 0 or step == cfg.iters:
            run.save(step, models={"model": model}, optimizers={"opt": opt}, schedulers={"sched": sched},
                     scalers={"scaler": scaler}, extra={"loss_window": window, "train_wall_s": timer.elapsed})
    bar.close()
    result = {"config": cfg.to_dict(), "history": run.history(), "iters": step, "world_size": info.world_size,
              "train_wall_s": round(timer.elapsed, 1)}
    if final_eval and cfg.test_split:
        test_set = build_data(cfg, cfg.test_split)
        te = Subset(test_set, range(info.rank, len(test_set), info.world_size))
        result["test"] = evaluate(net, DataLoader(te, batch_size=1), cfg.num_classes, device=info.device,
                                  scales=cfg.eval_scales, flip=cfg.eval_flip, class_names=class_names(cfg),
                                  reduce_device=info.device, progress=progress and info.is_main)
        result["test"]["split"] = cfg.test_split
    result["provenance"] = provenance(device=info.device, preset=preset, wall_time_s=timer.elapsed)
    run.write_metrics(result)
    run.export_weights({"model": model}, cfg=cfg)
    if info.distributed:
        cleanup()
    return result
