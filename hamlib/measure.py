"""Measuring what a global-context block costs: parameters, FLOPs, latency and peak memory.

Used by :mod:`hamlib.bench` and by the book's cost chapters to compare the Hamburger
(Geng et al., "Is Attention Better Than Matrix Decomposition?", ICLR 2021, arXiv 2109.04553)
with self-attention. FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode``
(matrix products and convolutions only; one multiply-add = 2 FLOPs) and can be checked
against the closed forms :func:`sa_macs` and :func:`ham_nmf_macs`.

Peak memory: on CUDA the caching allocator's peak; on CPU the growth of the process's
peak resident set size during the call (the peak mark is reset first where Linux allows,
else ``ru_maxrss``, which only ever grows). ``hamlib.bench`` also measures each CPU
configuration in a fresh process, so earlier work cannot hide or inflate a peak.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys
import time
from typing import Callable, Optional

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_params", "count_flops", "sa_macs", "ham_nmf_macs", "time_fn", "peak_memory", "max_rss_bytes"]


def count_params(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be an nn.Module; got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn()`` as counted by ``FlopCounterMode`` (2 per multiply-add; mm/bmm/conv/SDPA)."""
    if not callable(fn):
        raise ValueError(f"fn must be callable; got {type(fn).__name__}")
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def sa_macs(C: int, n: int, key_channels: Optional[int] = None, value_channels: Optional[int] = None) -> int:
    """Closed-form multiply-adds of :class:`hamlib.SelfAttention2d` on one (C, n) feature map.

    Projections q, k (C -> d_k), v (C -> d_v), out (d_v -> C): n C (2 d_k + 2 d_v);
    Q^T K and A V: n^2 (d_k + d_v). With d_k = d_v = C this is 4 C^2 n + 2 n^2 C.

    Args:
        C: channels. n: pixels H*W. key_channels, value_channels: d_k, d_v (default C).
    """
    dk, dv = key_channels or C, value_channels or C
    return n * C * (2 * dk + 2 * dv) + n * n * (dk + dv)


def ham_nmf_macs(C: int, d: int, n: int, r: int, K: int) -> int:
    """Closed-form multiply-adds of a V1 NMF Hamburger (S = 1) on one (C, n) feature map.

    breads 2 C d n; init coef X^T D: n d r; each MU step: C update n d r + d r^2 + n r^2 and
    D update d n r + n r^2 + d r^2; final C update n d r + d r^2 + n r^2; reconstruction D C: d r n.

    Args:
        C: input channels. d: ham channels. n: pixels H*W. r: rank. K: MU iterations.
    """
    step = 2 * n * d * r + 2 * n * r * r + 2 * d * r * r
    final = n * d * r + d * r * r + n * r * r
    return 2 * C * d * n + n * d * r + K * step + final + d * r * n


def time_fn(fn: Callable[[], object], *, warmup: int = 1, repeats: int = 5,
            device: torch.device | str = "cpu") -> dict:
    """Wall-clock latency of ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones.

    Returns:
        dict with ``median_ms``, ``q25_ms``, ``q75_ms``, ``iqr_ms`` and all ``times_ms``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0; got repeats={repeats}, warmup={warmup}")
    cuda = torch.device(device).type == "cuda"
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
    q = torch.tensor(times, dtype=torch.float64).quantile(torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    q25, med, q75 = (float(v) for v in q)
    return {"median_ms": med, "q25_ms": q25, "q75_ms": q75, "iqr_ms": q75 - q25, "times_ms": times}


def _proc_status_kib(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``), then reset this process's peak RSS
    (Linux >= 4.0: write 5 to /proc/self/clear_refs). True if the reset worked."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _proc_status_kib("VmHWM") is not None
    except OSError:
        return False


def max_rss_bytes() -> int:
    """The peak resident set size of this process so far, in bytes (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def peak_memory(fn: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Extra peak memory in bytes used while ``fn()`` runs.

    CUDA: ``max_memory_allocated`` during the call minus the memory allocated before it.
    CPU (Linux): the peak RSS mark is reset just before the call (``/proc/self/clear_refs``) and the
    peak ``VmHWM`` after it is compared with the resident size ``VmRSS`` before it. Elsewhere, the growth
    of ``ru_maxrss``, which only counts memory above the process's earlier peak: then call it in a
    fresh process. Freed heap memory is first returned to the OS (``malloc_trim``) where glibc allows; what the
    allocator still holds can be reused unseen, so small values are lower bounds; ``hamlib.bench`` measures each configuration in a fresh process.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    if device.type != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda'; got {device.type!r}")
    if _reset_peak_rss():
        before = _proc_status_kib("VmRSS")
        fn()
        return max(0, (_proc_status_kib("VmHWM") - before) * 1024)
    before = max_rss_bytes()
    fn()
    return max(0, max_rss_bytes() - before)
