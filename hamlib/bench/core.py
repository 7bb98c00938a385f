"""Build and measure the benchmark's modules: params, FLOPs, memory of one configuration; interleaved timing.

The modules compared (Geng et al., ICLR 2021, arXiv 2109.04553, cost table):
``ham-nmf``, ``ham-vq``, ``ham-cd`` (:class:`hamlib.Hamburger` V1 with each ham), ``ham-ref``
(:class:`~hamlib.bench.ref.RefNMFHamburger`, the paper's algorithm written naively), ``sa`` and
``sa-fused`` (:class:`hamlib.SelfAttention2d`, explicit softmax and ``scaled_dot_product_attention``),
``linear-attn`` (``hamlib.attention.LinearAttention2d``, when this version of hamlib has it), and on request
the compiled Hamburgers ``ham-nmf-compiled``, ``ham-vq-compiled``, ``ham-cd-compiled`` (``torch.compile``).

Time is measured for all modules of one input size together, interleaved in one process
(:func:`time_interleaved`, built on :func:`hamlib.measure.compare`), so that a change in the machine's
load hits all of them alike. Memory is measured per module (:func:`memory`), on the CPU in a fresh
process per configuration (:func:`memory_in_subprocess`) because a process's peak RSS only grows.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from .. import attention as _attention
from ..attention import SelfAttention2d
from ..hamburger import Hamburger
from ..measure import (compare, count_flops, count_params, ham_cd_macs, ham_nmf_macs, ham_vq_macs,
                       linear_attention_macs, peak_memory, sa_macs, time_fn)
from .ref import RefNMFHamburger

__all__ = ["MODULES", "OPTIONAL_MODULES", "available_modules", "Config", "build_module", "closed_form_macs",
           "static_costs", "memory", "memory_in_subprocess", "time_interleaved", "measure"]

LinearAttention2d = getattr(_attention, "LinearAttention2d", None)   # feature-detected: added in a later version

MODULES: tuple[str, ...] = ("ham-nmf", "ham-vq", "ham-cd", "ham-ref", "sa", "sa-fused") + (
    ("linear-attn",) if LinearAttention2d is not None else ())
"""The default rows: every module this version of hamlib can build without compiling."""
OPTIONAL_MODULES: tuple[str, ...] = ("ham-nmf-compiled", "ham-vq-compiled", "ham-cd-compiled")
"""Rows measured on request only (``torch.compile`` takes minutes and needs a C++ compiler on the CPU)."""


def available_modules() -> tuple[str, ...]:
    """Every module name :func:`build_module` accepts."""
    return MODULES + OPTIONAL_MODULES


@dataclass
class Config:
    """One benchmark point: module name, input (B, C, size, size), ham d, r, K, timing settings.

    Args:
        module (str): one of :func:`available_modules`. size (int): H = W.
        C (int): input channels. d (int): ham channels. r (int): rank R. K (int): ``train_steps`` = ``eval_steps``.
        B (int): batch. device (str): ``"cpu"`` or ``"cuda[:i]"``. warmup, repeats (int): timing calls.
        threads (int, optional): torch threads for this measurement (None: leave as is).
    """
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

    def __post_init__(self) -> None:
        if self.module not in available_modules():
            raise ValueError(f"module must be one of {available_modules()}; got {self.module!r}")
        for name in ("size", "C", "d", "r", "B", "repeats"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1; got {v!r}")
        for name in ("K", "warmup"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0; got {v!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be None or an int >= 1; got {self.threads!r}")


def build_module(name: str, C: int, d: int, r: int, K: int) -> nn.Module:
    """The module ``name`` (see :func:`available_modules`) for C input channels, ham channels d, rank r, K steps."""
    if name.endswith("-compiled") and name in OPTIONAL_MODULES:
        return torch.compile(build_module(name[: -len("-compiled")], C, d, r, K))
    if name in ("ham-nmf", "ham-vq", "ham-cd"):
        # check_inputs=False: the input checks read scalars back from the device; not part of the block's cost.
        return Hamburger(C, d, name[4:], version="v1", norm="bn", R=r, train_steps=K, eval_steps=K,
                         check_inputs=False)
    if name == "ham-ref":
        return RefNMFHamburger(C, d, R=r, K=K)
    if name in ("sa", "sa-fused"):
        return SelfAttention2d(C, fused=name == "sa-fused")
    if name == "linear-attn" and LinearAttention2d is not None:
        return LinearAttention2d(C)
    raise ValueError(f"module must be one of {available_modules()}; got {name!r}")


def _eager(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)     # a torch.compile wrapper's original module


def closed_form_macs(cfg: Config) -> Optional[int]:
    """Closed-form MACs of one inference (:mod:`hamlib.measure`); None for a module without one."""
    n = cfg.size * cfg.size
    module = cfg.module[: -len("-compiled")] if cfg.module.endswith("-compiled") else cfg.module
    closed = {"ham-nmf": ham_nmf_macs, "ham-vq": ham_vq_macs, "ham-cd": ham_cd_macs}
    if module in closed:
        return cfg.B * closed[module](cfg.C, cfg.d, n, cfg.r, cfg.K)
    if module == "ham-ref":
        # step by step, as printed; D C C^T evaluated as (D C) C^T: 2 d n r instead of n r^2 + d r^2
        macs = ham_nmf_macs(cfg.C, cfg.d, n, cfg.r, cfg.K, skip_redundant=False)
        return cfg.B * (macs + cfg.K * (2 * cfg.d * n * cfg.r - n * cfg.r ** 2 - cfg.d * cfg.r ** 2))
    if module in ("sa", "sa-fused"):
        return cfg.B * sa_macs(cfg.C, n)
    if module == "linear-attn":
        return cfg.B * linear_attention_macs(cfg.C, n)
    return None


class _Case:
    """A built module with its inputs and its two measured calls (inference, forward + backward)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg, self.device = cfg, torch.device(cfg.device)
        torch.manual_seed(0)
        self.model = build_module(cfg.module, cfg.C, cfg.d, cfg.r, cfg.K).to(self.device)
        self.x = torch.randn(cfg.B, cfg.C, cfg.size, cfg.size, device=self.device)
        self.x_train = self.x.clone().requires_grad_(True)

    def infer(self) -> None:
        self.model.eval()
        with torch.no_grad():
            self.model(self.x)

    def train(self) -> None:
        self.model.train()
        self.model(self.x_train).sum().backward()
        self.model.zero_grad(set_to_none=True)
        self.x_train.grad = None

    def load_kernels(self) -> None:
        """One small forward + backward: kernels and thread pools are loaded before any baseline is taken."""
        small = torch.randn(self.cfg.B, self.cfg.C, 4, 4, device=self.device, requires_grad=True)
        _eager(self.model)(small).sum().backward()
        self.model.zero_grad(set_to_none=True)


def _set_threads(cfg: Config) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)


def static_costs(cfg: Config) -> dict:
    """Params, FLOPs/2 counted by ``FlopCounterMode`` for one inference, and the closed-form MACs.

    Attention is counted on SDPA's math path (:func:`hamlib.measure.count_flops`).
    """
    _set_threads(cfg)
    case = _Case(cfg)
    model = _eager(case.model).eval()
    with torch.no_grad():
        flops = count_flops(lambda: model(case.x))
    return {"params": count_params(model), "macs_counted": flops // 2, "macs_closed_form": closed_form_macs(cfg)}


def memory(cfg: Config) -> dict:
    """Extra peak memory of one inference and of one forward + backward (:func:`hamlib.measure.peak_memory`).

    Inference is measured first: on the CPU the peak resident size is reset before each call where Linux
    allows; :func:`memory_in_subprocess` gives each configuration a fresh process.
    """
    _set_threads(cfg)
    case = _Case(cfg)
    case.load_kernels()
    if cfg.module.endswith("-compiled"):     # compile outside the measured calls
        case.infer(), case.train()
    mem_infer = peak_memory(case.infer, case.device)
    mem_train = peak_memory(case.train, case.device)
    method = ("cuda max_memory_allocated" if case.device.type == "cuda"
              else "peak RSS growth during the call (VmHWM reset first)")
    return {"mem_infer_mb": mem_infer / 2 ** 20, "mem_train_mb": mem_train / 2 ** 20, "memory_method": method}


def memory_in_subprocess(cfg: Config, timeout: float = 1800) -> dict:
    """:func:`static_costs` and :func:`memory` of ``cfg`` in a fresh Python process (peak RSS not polluted)."""
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "hamlib.bench", "--_child", json.dumps(asdict(cfg))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark of {cfg.module} at {cfg.size}^2 failed:\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["memory_method"] += " in a fresh process"
    return out


def child_main(spec: str) -> dict:
    """What ``python -m hamlib.bench --_child JSON`` computes: memory first (peak RSS only grows), then counts."""
    cfg = Config(**json.loads(spec))
    return {**memory(cfg), **static_costs(cfg)}


def time_interleaved(cfgs: Sequence[Config]) -> dict:
    """Time every configuration of one input size together, interleaved (:func:`hamlib.measure.compare`).

    Inference calls are compared first, then forward + backward calls; every module is built once and
    warmed up (``load_kernels``, then ``warmup`` interleaved calls of each mode).

    Args:
        cfgs: configurations differing in ``module`` only (same size, channels, device, timing settings).

    Returns:
        ``{"infer": compare(...) result, "train": compare(...) result}``, candidates keyed by module name.
    """
    if not cfgs:
        raise ValueError("cfgs must not be empty")
    base = {k: v for k, v in asdict(cfgs[0]).items() if k != "module"}
    for c in cfgs[1:]:
        other = {k: v for k, v in asdict(c).items() if k != "module"}
        if other != base:
            raise ValueError(f"cfgs must differ in module only; got {base} and {other}")
    names = [c.module for c in cfgs]
    if len(set(names)) != len(names):
        raise ValueError(f"cfgs must name each module once; got {names}")
    _set_threads(cfgs[0])
    cases = {c.module: _Case(c) for c in cfgs}
    for case in cases.values():
        case.load_kernels()
        if case.cfg.module.endswith("-compiled"):   # compile both modes before anything is timed
            case.infer(), case.train()
    cfg, device = cfgs[0], torch.device(cfgs[0].device)
    out = {}
    for mode in ("infer", "train"):
        calls: dict[str, Callable[[], None]] = {m: getattr(case, mode) for m, case in cases.items()}
        out[mode] = compare(calls, rounds=cfg.repeats, warmup=cfg.warmup, device=device)
    return out


def measure(cfg: Config) -> dict:
    """Everything about one configuration in this process: counts, memory, and latency timed *alone*.

    Latency timed alone is fine for a quick look (the book's live cells); for comparisons between modules
    use :func:`hamlib.bench.run_bench`, which times them interleaved.
    """
    _set_threads(cfg)
    row = {**asdict(cfg), "n": cfg.size ** 2, **memory(cfg), **static_costs(cfg)}
    case = _Case(cfg)
    case.load_kernels()
    row["infer_ms"] = time_fn(case.infer, warmup=cfg.warmup, repeats=cfg.repeats, device=case.device)
    row["train_ms"] = time_fn(case.train, warmup=cfg.warmup, repeats=cfg.repeats, device=case.device)
    row["timing"] = "alone"
    return row
