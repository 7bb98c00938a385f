"""The one home of measurement: parameters, FLOPs, latency, peak memory, saved-tensor bytes, comparisons.

Used by :mod:`hamlib.bench`, :mod:`hamlib.analysis`, the applications and the book's cost chapters to compare
the Hamburger (Geng et al., "Is Attention Better Than Matrix Decomposition?", ICLR 2021, arXiv 2109.04553)
with self-attention.

- :func:`count_params`: all parameters, or the trainable ones only.
- :func:`count_flops`: FLOPs of one call, counted by ``torch.utils.flop_counter.FlopCounterMode``
  (matrix products, convolutions and SDPA only; one multiply-add = 2 FLOPs). Check them against the
  closed forms :func:`sa_macs`, :func:`linear_attention_macs`, :func:`ham_nmf_macs`, :func:`ham_vq_macs`
  and :func:`ham_cd_macs` (multiply-adds).
- :func:`time_fn`: CUDA-synchronised wall-clock latency with warm-up and quantiles.
- :func:`compare`: several candidates timed *interleaved* in one process (A B C, B C A, ...), so that a
  change in machine load hits every candidate alike; reports the load and the torch thread count.
- :func:`peak_memory`: on CUDA the caching allocator's peak; on the CPU the growth of the process's peak
  resident set size during the call (the peak mark is reset first where Linux allows, else ``ru_maxrss``,
  which only ever grows). :func:`max_rss_bytes` is the process's peak so far.
- :class:`saved_tensor_bytes`: the bytes autograd keeps for backward, each storage counted once;
  deterministic and device-independent.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import resource
import sys
import time
from typing import Any, Callable, Mapping, Optional

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_params", "count_flops", "sa_macs", "linear_attention_macs", "ham_nmf_macs", "ham_vq_macs",
           "ham_cd_macs", "time_fn", "compare", "machine_load", "peak_memory", "max_rss_bytes", "saved_tensor_bytes"]


# --- size ----------------------------------------------------------------------------------------------------------

def count_params(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (each shared parameter counted once).

    Args:
        module: any ``nn.Module``.
        trainable_only: count only parameters with ``requires_grad=True``. Defaults: False (all).
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be an nn.Module; got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def count_flops(fn: Callable[[], Any], *, math_attention: bool = True) -> int:
    """FLOPs of one call of ``fn()`` as counted by ``FlopCounterMode`` (2 per multiply-add; mm/bmm/conv/SDPA).

    Wrap a module call in a thunk, e.g. ``count_flops(lambda: model(x))``; use ``torch.no_grad()`` around it
    to count a forward pass only (a backward inside ``fn`` is counted too).

    Args:
        fn: the thunk to count.
        math_attention: run ``scaled_dot_product_attention`` on its math path while counting. The counter
            has no formula for some fused kernels (e.g. the CPU flash kernel) and would count their products
            as 0; every kernel does the same arithmetic. Defaults: True.
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable (a thunk such as lambda: model(x)); got {type(fn).__name__}")
    with FlopCounterMode(display=False) as counter, (_math_sdpa() if math_attention else contextlib.nullcontext()):
        fn()
    return int(counter.get_total_flops())


def _math_sdpa() -> contextlib.AbstractContextManager:
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:          # torch < 2.3
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


def sa_macs(C: int, n: int, key_channels: Optional[int] = None, value_channels: Optional[int] = None) -> int:
    """Closed-form multiply-adds of :class:`hamlib.SelfAttention2d` on one (C, n) feature map.

    Projections q, k (C -> d_k), v (C -> d_v), out (d_v -> C): n C (2 d_k + 2 d_v);
    Q^T K and A V: n^2 (d_k + d_v). With d_k = d_v = C this is 4 C^2 n + 2 n^2 C.

    Args:
        C: channels. n: pixels H*W. key_channels, value_channels: d_k, d_v (default C).
    """
    _positive(C=C, n=n)
    dk, dv = key_channels or C, value_channels or C
    return n * C * (2 * dk + 2 * dv) + n * n * (dk + dv)


def linear_attention_macs(C: int, n: int, key_channels: Optional[int] = None,
                          value_channels: Optional[int] = None) -> int:
    """Closed-form multiply-adds of :class:`hamlib.LinearAttention2d` (Katharopoulos et al., arXiv 2006.16236).

    Projections as in :func:`sa_macs`: n C (2 d_k + 2 d_v); phi(K)^T V and phi(Q) (phi(K)^T V): 2 n d_k d_v;
    the normaliser phi(Q) sum_n phi(K): n d_k. Linear in n, against self-attention's n^2 (d_k + d_v).

    Args:
        C: channels. n: pixels H*W. key_channels, value_channels: d_k, d_v (default C).
    """
    _positive(C=C, n=n)
    dk, dv = key_channels or C, value_channels or C
    return n * C * (2 * dk + 2 * dv) + 2 * n * dk * dv + n * dk


def ham_nmf_macs(C: int, d: int, n: int, r: int, K: int, *, skip_redundant: bool = True) -> int:
    """Closed-form multiply-adds of a V1 NMF Hamburger (S = 1) on one (C, n) feature map.

    breads 2 C d n; init coef D^T X: n d r; each MU step: C update n d r + d r^2 + n r^2 and
    D update d n r + n r^2 + d r^2; final C update n d r + d r^2 + n r^2; reconstruction D C: d r n.

    Args:
        C: input channels. d: ham channels. n: pixels H*W. r: rank R. K: MU iterations (``train_steps``).
        skip_redundant: True: the arithmetic of hamlib's one-step solve, where the initial logits D^T X
            are also the first C update's numerator (D has not moved yet), so that product is made once:
            n d r fewer when K >= 1. False: the step-by-step form (BPTT, implicit, ``return_trace``, and the
            official code), which is the paper's count (17.5 G at 1x512x128x128, r = 64, K = 6; paper: 17.6 G).
    """
    _positive(C=C, d=d, n=n, r=r)
    _steps(K)
    step = 2 * n * d * r + 2 * n * r * r + 2 * d * r * r
    final = n * d * r + d * r * r + n * r * r
    reused = n * d * r if skip_redundant and K >= 1 else 0
    return 2 * C * d * n + n * d * r + K * step - reused + final + d * r * n


def ham_vq_macs(C: int, d: int, n: int, r: int, K: int, *, skip_redundant: bool = True) -> int:
    """Closed-form multiply-adds of a V1 VQ Hamburger (S = 1) on one (C, n) feature map.

    breads 2 C d n; each step: cosines X^T D n d r and the means X C n d r; final assignment n d r;
    reconstruction d r n. Normalisations and the softmax are not matrix products and are not counted.

    Args:
        C, d, n, r, K: as in :func:`ham_nmf_macs`.
        skip_redundant: True: hamlib's one-step solve, which skips the initial assignment that the first
            step recomputes anyway; False: the step-by-step form, n d r more.
    """
    _positive(C=C, d=d, n=n, r=r)
    _steps(K)
    return 2 * C * d * n + (0 if skip_redundant else n * d * r) + K * 2 * n * d * r + n * d * r + d * r * n


def ham_cd_macs(C: int, d: int, n: int, r: int, K: int, *, skip_redundant: bool = True) -> int:
    """Closed-form multiply-adds of a V1 CD Hamburger (S = 1) on one (C, n) feature map.

    As :func:`ham_vq_macs`, but the final step is the ridge solve (D^T D + beta I) C = D^T X: the Gram
    matrix d r^2 and D^T X r d n (the r x r solve itself is not counted by the FLOP counter, nor here).
    """
    _positive(C=C, d=d, n=n, r=r)
    _steps(K)
    return (2 * C * d * n + (0 if skip_redundant else n * d * r) + K * 2 * n * d * r + d * r * r + r * d * n
            + d * r * n)


def _steps(K: int) -> None:
    if not isinstance(K, int) or K < 0:
        raise ValueError(f"K must be an int >= 0; got {K!r}")


def _positive(**values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int; got {v!r}")


# --- time ----------------------------------------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stats(times: list[float]) -> dict:
    q = torch.tensor(times, dtype=torch.float64).quantile(torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    q25, med, q75 = (float(v) for v in q)
    return {"median_ms": med, "q25_ms": q25, "q75_ms": q75, "iqr_ms": q75 - q25, "times_ms": list(times)}


def _check_counts(warmup: int, repeats: int, repeats_name: str = "repeats") -> None:
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"{repeats_name} must be an int >= 1; got {repeats!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0; got {warmup!r}")


def time_fn(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5,
            device: torch.device | str = "cpu") -> dict:
    """Wall-clock latency of ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones.

    On CUDA the device is synchronised before and after each timed call, so the time covers the kernels
    and not just their launch.

    Args:
        fn: the thunk to time.
        warmup: untimed calls first (kernel loading, allocator warm-up). Defaults: 1.
        repeats: timed calls. Defaults: 5.
        device: where ``fn`` runs (``"cpu"`` or ``"cuda[:i]"``).

    Returns:
        dict with ``median_ms``, ``q25_ms``, ``q75_ms``, ``iqr_ms`` and all ``times_ms``.
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable; got {type(fn).__name__}")
    _check_counts(warmup, repeats)
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return _stats(times)


def _cpu_jiffies() -> Optional[tuple[int, int]]:
    """(busy, total) CPU ticks of the whole machine since boot, from /proc/stat (Linux); None elsewhere."""
    try:
        with open("/proc/stat") as fh:
            parts = fh.readline().split()
    except OSError:
        return None
    if not parts or parts[0] != "cpu":
        return None
    vals = [int(v) for v in parts[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)            # idle + iowait
    total = sum(vals[:8])                                          # guest time is already counted in user
    return total - idle, total


def _own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine_load() -> dict:
    """The machine's state right now: load averages, CPU count and this process's torch thread counts.

    Returns:
        a dict {"loadavg": (1, 5, 15 min) or None, "cpu_count": int, "torch_threads": int,
        "torch_interop_threads": int}.
    """
    try:
        load = tuple(round(v, 2) for v in os.getloadavg())
    except (OSError, AttributeError):
        load = None
    return {"loadavg": load, "cpu_count": os.cpu_count() or 1, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads()}


def compare(candidates: Mapping[str, Callable[[], Any]], *, rounds: int = 5, warmup: int = 1,
            device: torch.device | str = "cpu") -> dict:
    """Time several candidates interleaved in this process: A B C, B C A, C A B, ... for ``rounds`` rounds.

    Timing candidates one after the other (or in separate processes) lets a change in the machine's load
    masquerade as a difference between them; interleaving spreads any such change over all of them, and
    the order rotates each round so that no candidate always runs right after the same neighbour.

    Also measured: the load average before and after, and, on Linux, ``other_cpu_cores``: the average
    number of CPU cores that *other* processes kept busy during the timing (machine-wide busy time from
    ``/proc/stat`` minus this process's CPU time, divided by the wall time). Near 0 means the candidates had
    the machine to themselves.

    Args:
        candidates: ``{name: thunk}``; each thunk runs one measured call (e.g. a forward + backward).
        rounds: timed calls per candidate. Defaults: 5.
        warmup: untimed calls per candidate, also interleaved, before the first round. Defaults: 1.
        device: where the candidates run; CUDA is synchronised around every timed call.

    Returns:
        a dict {"candidates": {name: {"median_ms", "q25_ms", "q75_ms", "iqr_ms", "times_ms"}}, "rounds", "warmup",
        "device", "torch_threads", "torch_interop_threads", "cpu_count", "loadavg_before", "loadavg_after",
        "other_cpu_cores" (float or None), "wall_s"}.
    """
    if not isinstance(candidates, Mapping) or not candidates:
        raise ValueError(f"candidates must be a non-empty dict of name -> callable; got {candidates!r}")
    for name, fn in candidates.items():
        if not callable(fn):
            raise ValueError(f"candidates[{name!r}] must be callable; got {type(fn).__name__}")
    _check_counts(warmup, rounds, "rounds")
    device = torch.device(device)
    names = list(candidates)
    before = machine_load()
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    jiffies0, own0, wall0 = _cpu_jiffies(), _own_cpu_s(), time.perf_counter()
    for k in range(rounds):
        shift = k % len(names)
        for name in names[shift:] + names[:shift]:
            _sync(device)
            t0 = time.perf_counter()
            candidates[name]()
            _sync(device)
            times[name].append((time.perf_counter() - t0) * 1e3)
    wall = time.perf_counter() - wall0
    jiffies1, own1 = _cpu_jiffies(), _own_cpu_s()
    other = None
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    # /proc/stat counts in clock ticks (10 ms): over less than 20 ticks the estimate is noise (a 30 us run once
    # reported 336 "cores"), so it is left out (None) rather than reported wrong.
    if jiffies0 is not None and jiffies1 is not None and wall >= 20 / ticks:
        busy_s = (jiffies1[0] - jiffies0[0]) / ticks
        other = round(min(max(0.0, busy_s - (own1 - own0)) / wall, float(os.cpu_count() or 1)), 3)
    after = machine_load()
    return {"candidates": {name: _stats(times[name]) for name in names}, "rounds": rounds, "warmup": warmup,
            "device": str(device), "torch_threads": before["torch_threads"],
            "torch_interop_threads": before["torch_interop_threads"], "cpu_count": before["cpu_count"],
            "loadavg_before": before["loadavg"], "loadavg_after": after["loadavg"], "other_cpu_cores": other,
            "wall_s": wall}


# --- memory --------------------------------------------------------------------------------------------------------

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


def peak_memory(fn: Callable[[], Any], device: torch.device | str = "cpu") -> int:
    """Extra peak memory in bytes used while ``fn()`` runs.

    CUDA: ``max_memory_allocated`` during the call minus the memory allocated before it.
    CPU (Linux): the peak RSS mark is reset just before the call (``/proc/self/clear_refs``) and the
    peak ``VmHWM`` after it is compared with the resident size ``VmRSS`` before it. Elsewhere, the growth
    of ``ru_maxrss``, which only counts memory above the process's earlier peak: then call it in a
    fresh process. Freed heap memory is first returned to the OS (``malloc_trim``) where glibc allows; what
    the allocator still holds can be reused unseen, so small values are lower bounds; ``hamlib.bench``
    measures each configuration's memory in a fresh process.

    Args:
        fn: the thunk to measure.
        device: ``"cpu"`` or ``"cuda[:i]"``.
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable; got {type(fn).__name__}")
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


class saved_tensor_bytes(torch.autograd.graph.saved_tensors_hooks):
    """Count the bytes autograd saves for backward inside a ``with`` block, each storage counted once.

    Deterministic on every device (CPU, CUDA, meta), unlike allocator statistics: two saved views of one
    tensor count once, a saved parameter counts too (it is kept alive for backward). Tensors without a
    storage (e.g. some tensor subclasses) count ``numel * element_size``.

    Example::

        with saved_tensor_bytes() as s:
            loss = model(x).sum()
        print(s.bytes, s.tensors)

    Attributes:
        bytes (int): total bytes of the distinct storages saved so far.
        tensors (int): number of distinct storages saved so far.

    Hooks do not nest: inside an inner ``saved_tensors_hooks`` block the outer counter sees nothing.
    """

    def __init__(self) -> None:
        self.bytes = 0
        self.tensors = 0
        self._seen: set = set()
        super().__init__(self._pack, _unpack)

    def _pack(self, t: Tensor) -> Tensor:
        try:
            s = t.untyped_storage()                 # views share it; _cdata identifies the storage itself
            key: tuple = (str(t.device), s._cdata)
            nbytes = s.nbytes()
        except (RuntimeError, NotImplementedError, AttributeError):
            key, nbytes = ("id", id(t)), t.numel() * t.element_size()
        if key not in self._seen:
            self._seen.add(key)
            self.bytes += int(nbytes)
            self.tensors += 1
        return t

    def __enter__(self) -> "saved_tensor_bytes":
        super().__enter__()
        return self


def _unpack(t: Tensor) -> Tensor:
    return t
