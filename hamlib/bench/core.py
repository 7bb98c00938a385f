"""Measure one (module, spatial size) configuration: params, FLOPs, memory, latency.

The modules compared (Geng et al., ICLR 2021, arXiv 2109.04553, cost table):
``ham-nmf``, ``ham-vq``, ``ham-cd`` (:class:`hamlib.Hamburger` V1 with each ham),
``sa`` and ``sa-fused`` (:class:`hamlib.SelfAttention2d`, explicit and fused paths) and
``ham-ref`` (:class:`~hamlib.bench.ref.RefNMFHamburger`, the paper's algorithm written naively).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Optional

import torch
from torch import nn

from ..attention import SelfAttention2d
from ..hamburger import Hamburger
from ..measure import count_flops, count_params, ham_nmf_macs, peak_memory, sa_macs, time_fn
from .ref import RefNMFHamburger

__all__ = ["MODULES", "Config", "build_module", "measure", "measure_in_subprocess"]

MODULES = ("ham-nmf", "ham-vq", "ham-cd", "ham-ref", "sa", "sa-fused")


@dataclass
class Config:
    """One benchmark point: module name, input (B, C, size, size), ham d, r, K, timing settings."""
    module: str
    size: int
    C: int = 512
    d: int = 512
    r: int = 64
    K: int = 6
    B: int = 1
    device: str = "cpu"
    warmup: int = 1
    repeats: int = 5
    threads: Optional[int] = None


def build_module(name: str, C: int, d: int, r: int, K: int) -> nn.Module:
    """The module ``name`` (one of :data:`MODULES`) for C input channels, ham channels d, rank r, K steps."""
    if name.startswith("ham-") and name != "ham-ref":
        # check_inputs=False: the input checks read scalars back from the device; not part of the block's cost.
        return Hamburger(C, d, name[4:], version="v1", norm="bn", R=r, train_steps=K, eval_steps=K,
                         check_inputs=False)
    if name == "ham-ref":
        return RefNMFHamburger(C, d, R=r, K=K)
    if name in ("sa", "sa-fused"):
        return SelfAttention2d(C, fused=name == "sa-fused")
    raise ValueError(f"module must be one of {MODULES}; got {name!r}")


def closed_form_macs(cfg: Config) -> Optional[int]:
    """Closed-form MACs where we derived one (NMF Hamburgers and self-attention), else None."""
    n = cfg.size * cfg.size
    if cfg.module in ("ham-nmf", "ham-ref"):
        macs = ham_nmf_macs(cfg.C, cfg.d, n, cfg.r, cfg.K)
        if cfg.module == "ham-ref":   # D C C^T evaluated as (D C) C^T: 2 d n r instead of n r^2 + d r^2
            macs += cfg.K * (2 * cfg.d * n * cfg.r - n * cfg.r ** 2 - cfg.d * cfg.r ** 2)
        return cfg.B * macs
    if cfg.module in ("sa", "sa-fused"):
        return cfg.B * sa_macs(cfg.C, n)
    return None


def measure(cfg: Config) -> dict:
    """Measure ``cfg`` in this process. Memory first (peak RSS only grows), then FLOPs and latency."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    torch.manual_seed(0)
    model = build_module(cfg.module, cfg.C, cfg.d, cfg.r, cfg.K).to(device)
    x = torch.randn(cfg.B, cfg.C, cfg.size, cfg.size, device=device)
    x_train = x.clone().requires_grad_(True)

    def infer() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    def train() -> None:
        model.train()
        model(x_train).sum().backward()
        model.zero_grad(set_to_none=True)
        x_train.grad = None

    small = torch.randn(cfg.B, cfg.C, 4, 4, device=device, requires_grad=True)
    model(small).sum().backward()          # load kernels and thread pools before the memory baseline
    model.zero_grad(set_to_none=True)
    mem_infer = peak_memory(infer, device)
    mem_train = peak_memory(train, device)
    model.eval()
    with torch.no_grad():
        flops = count_flops(lambda: model(x))
    lat_infer = time_fn(infer, warmup=cfg.warmup, repeats=cfg.repeats, device=device)
    lat_train = time_fn(train, warmup=cfg.warmup, repeats=cfg.repeats, device=device)
    closed = closed_form_macs(cfg)
    return {**asdict(cfg), "n": cfg.size ** 2, "params": count_params(model), "macs_counted": flops // 2,
            "macs_closed_form": closed, "mem_infer_mb": mem_infer / 2 ** 20, "mem_train_mb": mem_train / 2 ** 20,
            "infer_ms": lat_infer, "train_ms": lat_train,
            "memory_method": "cuda max_memory_allocated" if device.type == "cuda"
            else "peak RSS growth during the call (VmHWM reset first) in a fresh process"}


def measure_in_subprocess(cfg: Config, timeout: float = 1800) -> dict:
    """Run :func:`measure` in a fresh Python process (so its peak RSS is not polluted) and return its result."""
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "hamlib.bench", "--_child", json.dumps(asdict(cfg))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark of {cfg.module} at {cfg.size}^2 failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
