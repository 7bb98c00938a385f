"""Multi-process training under ``torchrun``: process group set-up, DDP + SyncBatchNorm, reductions.

Used by the HamNet trainer (Geng et al., ICLR 2021, arXiv 2109.04553, trained HamNet on several GPUs
with synchronised BatchNorm). Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything
degrades to a single process and the helpers are no-ops.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["DistInfo", "init_distributed", "wrap_model", "all_reduce_sum", "barrier", "cleanup"]


@dataclass
class DistInfo:
    """rank, world_size, local_rank and the device this process should use."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: Optional[str] = None, backend: Optional[str] = None) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Args:
        device: ``"cuda"``/``"cpu"``; default: CUDA when available. Each process takes GPU ``LOCAL_RANK``.
        backend: ``"nccl"`` (CUDA) or ``"gloo"`` (CPU); default by device.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if dev.type == "cuda" else "gloo"))
    return DistInfo(rank, world, local, dev)


def wrap_model(model: nn.Module, info: DistInfo, *, sync_bn: bool = True) -> nn.Module:
    """Move to ``info.device``; if distributed, wrap in DDP, converting BatchNorm to SyncBatchNorm on CUDA
    (torch's SyncBatchNorm has no CPU kernel, so gloo/CPU runs keep per-process BatchNorm)."""
    model = model.to(info.device)
    if not info.distributed:
        return model
    if sync_bn and info.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def all_reduce_sum(t: Tensor, device: Optional[torch.device] = None) -> Tensor:
    """Sum ``t`` over processes (returned on ``t``'s device); identity when not distributed."""
    if not (dist.is_available() and dist.is_initialized()):
        return t
    x = t.to(device) if device is not None else t
    dist.all_reduce(x)
    return x.to(t.device)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
