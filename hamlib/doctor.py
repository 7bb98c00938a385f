"""GPU self-check: ``python -m hamlib.doctor`` runs every path that only a GPU exercises and writes a JSON report.

In at most about 5 minutes on one GPU it checks:

1. ``hams``: each ham (``nmf``, ``vq``, ``cd``) x gradient mode (``one-step``, ``bptt``, ``implicit``) x dtype
   (``float32``; ``bfloat16`` and ``float16`` under autocast) on the device against a float64 CPU reference
   (same input, same initial bases): relative error of the output and of the input gradient.
2. ``compile``: a ``torch.compile``d :class:`~hamlib.Hamburger` against eager (outputs and gradients), and on
   CUDA :func:`hamlib.md.solve` with ``compile=True`` (CUDA graphs) against eager, replayed twice.
3. ``bench``: Ham (NMF) vs self-attention (explicit and fused) time and peak memory at 1x512x128x128
   (:func:`hamlib.bench.core.measure`, built on :mod:`hamlib.measure`).
4. ``seg_resume``: a short HamNet run with AMP, interrupted and resumed, bit-exact against an uninterrupted run.
5. ``gan_latents``: a short HamGAN run; the training latents after an evaluation differ from those before.
6. ``ddp``: single-process ``torchrun`` with NCCL and SyncBatchNorm.

The same command runs on a CPU (CI): the CUDA-only parts are reported as ``skipped`` with the reason, the rest
run at reduced sizes, so the self-check never rots. Parts 4-6 use the public APIs of :mod:`hamlib.seg` and
:mod:`hamlib.gan`; a part whose API is missing is skipped with the import error recorded.

Usage::

    python -m hamlib.doctor                       # -> doctor.json in the current folder
    python -m hamlib.doctor --out runs/doctor.json --device cuda --only hams compile

Exit status: 0 when no check failed or errored (skips are fine), 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

__all__ = ["CHECKS", "TOLERANCES", "rel_err", "check_hams", "check_compile", "check_bench", "check_seg_resume",
           "check_gan_latents", "check_ddp", "run", "main"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: Largest accepted relative error (Frobenius) vs the float64 CPU reference: (output, input gradient).
#: The ham solves in float32 in every case; bf16/fp16 round its input, output and gradient.
TOLERANCES = {"float32": (1e-4, 1e-3), "float16": (5e-3, 2e-2), "bfloat16": (3e-2, 1e-1)}


class Skip(Exception):
    """Raised inside a check to report it as skipped, with the reason."""


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """||a - ref|| / ||ref|| (Frobenius), computed in float64 on the CPU; ``inf`` if ``a`` is not finite."""
    a, ref = a.detach().to("cpu", torch.float64), ref.detach().to("cpu", torch.float64)
    if not torch.isfinite(a).all():
        return math.inf
    return float((a - ref).norm() / ref.norm().clamp_min(1e-300))


def _autocast(device: torch.device, dtype_name: str):
    if dtype_name == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[dtype_name])


# ---------------------------------------------------------------------------------------------- 1. hams
INV_T = {"nmf": 1.0, "vq": 10.0, "cd": 10.0}   # VQ/CD at 10 (chapter 05): at 100 the implicit backward diverges


def _ham_case(md: str, grad: str, dtype_name: str, device: torch.device, size: tuple[int, int, int, int],
              R: int, K: int, seed: int) -> dict:
    from .md import build_ham

    B, C, H, W = size
    gen = torch.Generator().manual_seed(seed)
    x64 = (torch.rand(B, C, H, W, dtype=torch.float64, generator=gen) + 0.05 if md == "nmf"    # NMF: x >= 0
           else torch.randn(B, C, H, W, dtype=torch.float64, generator=gen))
    w64 = torch.randn(B, C, H, W, dtype=torch.float64, generator=gen)                 # loss weights
    kw = dict(R=R, train_steps=K, eval_steps=K, grad=grad, inv_t=INV_T[md])
    ref_mod = build_ham(md, **kw).train()
    bases64 = ref_mod.init_bases(B * ref_mod.S, C // ref_mod.S, device=torch.device("cpu"), dtype=torch.float64,
                                 generator=gen)                                       # (B*S, D, R)
    dtype = DTYPES[dtype_name]
    # The device sees x rounded to the dtype (what a conv under autocast hands the ham); the reference sees
    # the same rounded values in float64, so the comparison measures the device's computation only.
    x_dev_leaf = x64.to(dtype).to(device).requires_grad_(True)
    x_ref = x_dev_leaf.detach().to("cpu", torch.float64).requires_grad_(True)
    case: dict[str, Any] = {"md": md, "grad": grad, "dtype": dtype_name, "inv_t": INV_T[md]}
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as ref_warn:
        warnings.simplefilter("always")
        try:
            y_ref = ref_mod(x_ref, bases64)
            (y_ref * w64).sum().backward()
        except Exception as e:  # the maths, not the device: nothing to compare against
            case.update(ok=None, reference=f"float64 CPU reference failed: {type(e).__name__}: {e}"[:300])
            return case
    not_converged = [str(w.message) for w in ref_warn if "converge" in str(w.message)]
    with warnings.catch_warnings(record=True) as dev_warn:
        warnings.simplefilter("always")
        dev_mod = build_ham(md, **kw).train()
        with _autocast(device, dtype_name):
            y = dev_mod(x_dev_leaf, bases64.to(device, torch.float32))
            loss = (y.float() * w64.to(device, torch.float32)).sum()
        loss.backward()
    out_err, grad_err = rel_err(y, y_ref), rel_err(x_dev_leaf.grad, x_ref.grad)
    tol_out, tol_grad = TOLERANCES[dtype_name]
    case.update(out_dtype=str(y.dtype).replace("torch.", ""), out_rel_err=out_err, grad_rel_err=grad_err,
                tol_out=tol_out, tol_grad=tol_grad, seconds=round(time.perf_counter() - t0, 3),
                warnings=sorted({str(w.message)[:200] for w in dev_warn}))
    passed = bool(out_err <= tol_out and grad_err <= tol_grad and y.dtype == dtype)
    if not_converged:   # a truncated series is compared for information only (it may overflow in fp16)
        case.update(ok=None if not passed else True, reference=f"not converged: {not_converged[0][:200]}")
    else:
        case["ok"] = passed
    return case


def _implicit_on_cpu(md: str, dtype_name: str, device: torch.device, size: tuple[int, int, int, int], R: int,
                     K: int, seed: int) -> dict:
    """Classify an implicit-backward divergence on ``device``: the same case on the CPU decides."""
    if device.type == "cpu":
        return {"ok": None, "reference": "the implicit backward diverged in float32 on the CPU (the float64 "
                                         "reference converged): borderline contraction, not a device fault"}
    try:
        cpu = _ham_case(md, "implicit", dtype_name, torch.device("cpu"), size, R, K, seed)
    except Exception as e:
        return {"ok": None, "reference": f"the CPU float32 run diverges too ({type(e).__name__}): a property of "
                                         f"float32 at this contraction, not a device fault"}
    return {"ok": False, "reference": f"the CPU float32 run converged (grad_rel_err {cpu.get('grad_rel_err')}): "
                                      f"the divergence is specific to {device.type}"}


def check_hams(device: torch.device, quick: bool = False) -> dict:
    """Every ham x gradient mode x dtype on ``device`` against a float64 CPU reference.

    ``quick``: every ham x gradient mode in float32, and every dtype with the one-step gradient only.
    A case whose reference fails or does not converge (``ok: null``) is reported but decides nothing.
    """
    from .md import GRAD_MODES, METHODS

    size = (2, 16, 4, 4) if quick else ((2, 32, 8, 8) if device.type == "cpu" else (2, 128, 32, 32))
    R, K = (4 if quick else 8), 6
    cases = []
    for i, md in enumerate(METHODS):
        for j, grad in enumerate(GRAD_MODES):
            for dtype_name in DTYPES:
                if quick and dtype_name != "float32" and grad != "one-step":
                    continue
                seed = 100 * i + j
                try:
                    cases.append(_ham_case(md, grad, dtype_name, device, size, R, K, seed))
                except Exception as e:  # one broken case must not hide the others
                    case = {"md": md, "grad": grad, "dtype": dtype_name, "ok": False,
                            "error": f"{type(e).__name__}: {e}"[:500]}
                    if grad == "implicit" and type(e).__name__ == "ImplicitGradientError":
                        # The implicit backward exists only where the solver's Jacobian contracts; float32
                        # rounding can push a borderline case over. A device fault only if the CPU copes.
                        case.update(_implicit_on_cpu(md, dtype_name, device, size, R, K, seed))
                    cases.append(case)
    failed = [f"{c['md']}/{c['grad']}/{c['dtype']}" for c in cases if c["ok"] is False]
    uncompared = [f"{c['md']}/{c['grad']}/{c['dtype']}" for c in cases if c["ok"] is None]
    return {"status": "failed" if failed else "ok", "failed_cases": failed, "not_compared": uncompared,
            "details": {"input": list(size), "R": R, "K": K, "tolerances": TOLERANCES, "cases": cases}}


# ------------------------------------------------------------------------------------------- 2. compile
def check_compile(device: torch.device, quick: bool = False) -> dict:
    """A compiled Hamburger vs eager; on CUDA also ``md.solve(compile=True)`` (CUDA graphs) vs eager."""
    from . import Hamburger
    from .md import make_algorithm, solve

    C, d, R, K = (32, 32, 8, 4) if device.type == "cpu" else (256, 256, 32, 6)
    side = 8 if device.type == "cpu" else 32
    backend = "inductor" if device.type == "cuda" else "eager"   # CPU inductor needs a C++ toolchain and minutes
    torch.manual_seed(0)
    out: dict[str, Any] = {"backend": backend, "input": [2, C, side, side]}
    results = {}
    for md in ("nmf", "vq", "cd"):
        block = Hamburger(C, d, md, R=R, train_steps=K, eval_steps=K).to(device).train()
        compiled = torch.compile(block, backend=backend)
        x = torch.randn(2, C, side, side, device=device)
        bases = block.ham.init_bases(2 * block.ham.S, d // block.ham.S, device=device, dtype=torch.float32,
                                     generator=torch.Generator(device=device).manual_seed(1))
        xe, xc = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ye = block(xe, bases)
        ye.square().sum().backward()
        ge = [p.grad.clone() for p in block.parameters()]
        block.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        yc = compiled(xc, bases)
        yc.square().sum().backward()
        first_call_s = time.perf_counter() - t0
        gc = [p.grad.clone() for p in block.parameters()]
        param_err = max(rel_err(a, b) for a, b in zip(gc, ge))
        res = {"out_rel_err": rel_err(yc, ye), "x_grad_rel_err": rel_err(xc.grad, xe.grad),
               "param_grad_max_rel_err": param_err, "first_call_s": round(first_call_s, 2)}
        res["ok"] = bool(res["out_rel_err"] < 1e-3 and res["x_grad_rel_err"] < 1e-2 and param_err < 1e-2)
        results[f"hamburger-{md}"] = res
    if device.type == "cuda":
        for md in ("nmf", "vq", "cd"):
            alg = make_algorithm(md)
            gen = torch.Generator(device=device).manual_seed(2)
            errs, refs, gots = [], [], []
            for _ in range(3):   # later calls replay the CUDA graph: earlier outputs must not be overwritten
                x = torch.rand(4, 128, 256, device=device, generator=gen)                 # (B*S, D, N)
                b = alg.init_bases(4, 128, 32, device=device, dtype=torch.float32, generator=gen)  # (B*S, D, R)
                refs.append(solve(x, b, method=alg, steps=K).recon)
                gots.append(solve(x, b, method=alg, steps=K, compile=True).recon)
                errs.append(rel_err(gots[-1], refs[-1]))
            kept = [rel_err(g, r) for g, r in zip(gots, refs)]   # the first outputs, read after the replays
            results[f"solve-compile-{md}"] = {"recon_rel_err": errs, "recon_rel_err_after_replays": kept,
                                              "ok": bool(max(errs + kept) < 1e-3)}
    else:
        out["solve_compile"] = "skipped: md.solve(compile=True) uses CUDA graphs; on a CPU inductor needs minutes"
    out["cases"] = results
    failed = [k for k, v in results.items() if not v["ok"]]
    return {"status": "failed" if failed else "ok", "failed_cases": failed, "details": out}


# --------------------------------------------------------------------------------------------- 3. bench
def check_bench(device: torch.device, quick: bool = False) -> dict:
    """Ham (NMF) vs self-attention at 1x512x128x128 on CUDA (a reduced size on a CPU): time and memory."""
    from .bench.core import Config, measure

    if device.type == "cuda" and not quick:
        size, C, label = 128, 512, "paper size 1x512x128x128"
    else:
        size, C, label = 16, 64, "reduced size 1x64x16x16 (the paper size needs a GPU)"
    rows = {}
    for module in ("ham-nmf", "sa", "sa-fused"):
        cfg = Config(module, size, C=C, d=C, r=64 if C >= 64 else C, K=6, device=str(device), warmup=1,
                     repeats=5 if device.type == "cuda" else 2)
        r = measure(cfg)
        rows[module] = {"infer_ms": r["infer_ms"]["median_ms"], "train_ms": r["train_ms"]["median_ms"],
                        "mem_infer_mb": r["mem_infer_mb"], "mem_train_mb": r["mem_train_mb"],
                        "macs_counted": r["macs_counted"], "params": r["params"],
                        "memory_method": r["memory_method"]}
    ham, sa = rows["ham-nmf"], rows["sa"]
    ratios = {"sa_over_ham_infer_time": sa["infer_ms"] / max(ham["infer_ms"], 1e-9),
              "sa_over_ham_train_time": sa["train_ms"] / max(ham["train_ms"], 1e-9),
              "sa_over_ham_infer_memory": sa["mem_infer_mb"] / max(ham["mem_infer_mb"], 1e-9),
              "sa_over_ham_macs": sa["macs_counted"] / max(ham["macs_counted"], 1)}
    ok = all(math.isfinite(v["infer_ms"]) and v["infer_ms"] > 0 for v in rows.values())
    return {"status": "ok" if ok else "failed", "details": {"input": label, "rows": rows, "ratios": ratios}}


# ----------------------------------------------------------------------------------------- 4. seg resume
def _public(module: str, *names: str) -> list:
    """``names`` from the public API of ``hamlib.<module>``; :class:`Skip` (with the reason) if any is missing."""
    import importlib

    try:
        mod = importlib.import_module(f"hamlib.{module}")
        objs = [getattr(mod, n) for n in names]
    except Exception as e:
        raise Skip(f"hamlib.{module} public API ({', '.join(names)}) unavailable: {type(e).__name__}: {e}"[:500])
    bad = [n for n, o in zip(names, objs) if not callable(o)]
    if bad:
        raise Skip(f"hamlib.{module}.{bad[0]} is not callable in this version (the API is being changed)")
    return objs


def _call(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with the keyword arguments its signature accepts (APIs evolve; ``resume`` etc. may move)."""
    import inspect

    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(*args, **kwargs)


def _checkpoint_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the run's ``last.pt`` (models, optimizers, scaler, RNG states), keyed by its path."""
    (ckpt,) = sorted(Path(run_dir).rglob("last.pt"))
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    flat: dict[str, torch.Tensor] = {}

    def walk(obj: Any, key: str) -> None:
        if isinstance(obj, torch.Tensor):
            flat[key] = obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{key}/{k}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{key}/{i}")

    walk(state, "")
    return flat


def _diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Keys whose tensors are not bit-identical (or missing on one side)."""
    keys = sorted(set(a) | set(b))
    return [k for k in keys if k not in a or k not in b or a[k].shape != b[k].shape or a[k].dtype != b[k].dtype
            or not torch.equal(a[k], b[k])]


@contextlib.contextmanager
def _count_backward():
    """Count ``torch.autograd.backward`` calls (``Tensor.backward`` goes through it) inside the block."""
    real, count = torch.autograd.backward, [0]

    def backward(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return real(*args, **kwargs)

    torch.autograd.backward = backward
    try:
        yield count
    finally:
        torch.autograd.backward = real


def check_seg_resume(device: torch.device, quick: bool = False) -> dict:
    """A short HamNet run with AMP, interrupted and resumed, against an uninterrupted run: bit-exact checkpoint."""
    if device.type != "cuda":
        raise Skip("AMP (GradScaler) and bit-exact resume on the device need CUDA; the CPU resume is covered by "
                   "tests/test_seg_train.py")
    return seg_resume(device)


def seg_resume(device: torch.device, iters: int = 8) -> dict:
    """The work of :func:`check_seg_resume` on any device (on a CPU, ``amp`` has no effect).

    Args:
        device: where to train. iters: iterations (even, >= 4): a checkpoint at iters/2, a crash (no save)
            at iters/2 + 1, a resume to ``iters``. Defaults: 8.
    """
    if iters < 4 or iters % 2:
        raise ValueError(f"iters must be an even int >= 4; got {iters!r}")
    ckpt, crash = iters // 2, iters // 2 + 1
    get_preset, train = _public("seg", "get_preset", "train")
    cfg = get_preset("tiny", iters=iters, ckpt_every=ckpt, eval_every=iters, log_every=ckpt, amp=True)
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    # Deterministic kernels where torch has them; the ops without one only warn, and the warnings name them.
    torch.use_deterministic_algorithms(True, warn_only=True)
    kw = dict(progress=False, device=str(device), final_eval=False)
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runs = {n: Path(tmp) / n for n in ("straight", "straight2", "resumed")}
            _call(train, cfg, runs["straight"], resume=False, **kw)
            _call(train, cfg, runs["straight2"], resume=False, **kw)
            stopped = _call(train, cfg, runs["resumed"], resume=False, stop_after=crash, **kw)  # crash, no save
            with _count_backward() as resumed_steps:                                        # resume from ckpt
                _call(train, cfg, runs["resumed"], resume=True, **kw)
            a, a2, r = (_checkpoint_tensors(runs[n]) for n in ("straight", "straight2", "resumed"))
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[:2]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])
    nondet, resume_diff = _diff(a, a2), _diff(a, r)

    def max_abs(x: dict, y: dict, keys: list[str]) -> float:
        diffs = [float((x[k].double() - y[k].double()).abs().max()) for k in keys
                 if k in x and k in y and x[k].shape == y[k].shape and x[k].is_floating_point()]
        return max(diffs, default=0.0)

    details = {"config": {"preset": "tiny", "iters": iters, "ckpt_every": ckpt, "amp": True, "interrupted_after": crash},
               "stopped": stopped, "backward_calls_after_resume": resumed_steps[0], "tensors_compared": len(a), "nondeterministic_tensors": nondet[:20],
               "resume_mismatched_tensors": resume_diff[:20], "cudnn_deterministic": True,
               "max_abs_diff_straight_vs_straight": max_abs(a, a2, nondet),
               "max_abs_diff_straight_vs_resumed": max_abs(a, r, resume_diff),
               "nondeterministic_ops": sorted({str(w.message)[:160] for w in caught
                                               if "deterministic" in str(w.message)})[:10]}
    if nondet:
        details["note"] = "two uninterrupted runs differ: the device run is not deterministic, so exact resume fails"
    if resumed_steps[0] != iters - ckpt:
        details["note"] = (f"the resumed call ran {resumed_steps[0]} backward passes, expected {iters - ckpt}: "
                           f"it did not continue from the checkpoint of iteration {ckpt}")
    ok = bool(a) and not (nondet or resume_diff) and resumed_steps[0] == iters - ckpt
    return {"status": "ok" if ok else "failed", "details": details}


# ---------------------------------------------------------------------------------------- 5. gan latents
def _record_latents(train: Callable, cfg: Any, run_dir: Path, device: torch.device) -> list[torch.Tensor]:
    """Run ``train`` and record the training latents: ``torch.randn`` draws of shape (batch_size, z_dim) made
    with autograd on and no explicit generator (evaluation runs under ``no_grad``)."""
    real = torch.randn
    shape = (cfg.batch_size, cfg.z_dim)
    zs: list[torch.Tensor] = []

    def randn(*size: Any, **kwargs: Any) -> torch.Tensor:
        t = real(*size, **kwargs)
        if kwargs.get("generator") is None and torch.is_grad_enabled() and tuple(t.shape) == shape:
            zs.append(t.detach().to("cpu").clone())
        return t

    torch.randn = randn
    try:
        _call(train, cfg, run_dir, resume=False, progress=False, device=str(device))
    finally:
        torch.randn = real
    return zs


def check_gan_latents(device: torch.device, quick: bool = False) -> dict:
    """A short HamGAN run: evaluations leave the training latents untouched, and none repeats after one.

    Two runs of the ``tiny`` preset (Hamburger context) differ only in ``eval_every``: the one that evaluates
    every 2 iterations must draw exactly the latents of the one that evaluates only at the end, and no latent
    batch may repeat (the CUDA fault: an evaluation that reseeds the device RNG replays the same latents).
    """
    get_preset, train = _public("gan", "get_preset", "train")
    iters = 5   # evaluations after iterations 2, 4 and 5: latents after the second could replay the first
    base = dict(iters=iters, ckpt_every=iters, log_every=iters, n_eval=16, n_train=64, context="ham",
                batch_size=8, g_ch=8, d_ch=8)
    with tempfile.TemporaryDirectory() as tmp:
        once = _record_latents(train, get_preset("tiny", eval_every=iters, **base), Path(tmp) / "once", device)
        often = _record_latents(train, get_preset("tiny", eval_every=2, **base), Path(tmp) / "often", device)
    if not once:
        return {"status": "failed", "details": {"reason": "no training latents were recorded (the trainer no "
                                                          "longer draws them with torch.randn)"}}
    same = len(once) == len(often) and all(torch.equal(a, b) for a, b in zip(once, often))
    flat = [z.flatten() for z in often]
    repeats = [(i, j) for i in range(len(flat)) for j in range(i) if torch.equal(flat[i], flat[j])]
    details = {"iters": iters, "evaluations": iters // 2 + iters % 2, "latent_batches": len(often),
               "identical_to_run_without_evaluations": same, "repeated_batches": repeats[:10]}
    return {"status": "ok" if same and not repeats else "failed", "details": details}


# ------------------------------------------------------------------------------------------------ 6. ddp
_DDP_CHILD = r'''
import copy, json, sys
import torch, torch.distributed as dist
from torch import nn
from hamlib.train.distributed import init_distributed
info = init_distributed("cuda")                      # torchrun's environment -> this rank's GPU
if not dist.is_initialized():                        # hamlib joins a group only for world size > 1
    dist.init_process_group("nccl")
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))
ref = copy.deepcopy(net).to(info.device)
model = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(net)).to(info.device)
ddp = nn.parallel.DistributedDataParallel(model, device_ids=[info.device.index])
x = torch.randn(4, 3, 16, 16, device=info.device)
y = ddp(x); y.square().mean().backward()
yr = ref(x); yr.square().mean().backward()
t = torch.ones(1, device=info.device) * (dist.get_rank() + 1)
dist.all_reduce(t)
out = {"rank": dist.get_rank(), "world_size": dist.get_world_size(), "backend": dist.get_backend(),
       "device": str(info.device), "sync_bn_modules": sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules()),
       "all_reduce": float(t.item()), "out_max_abs_diff_vs_bn": float((y - yr).abs().max()),
       "grad_max_abs_diff_vs_bn": max(float((a.grad - b.grad).abs().max())
                                      for a, b in zip(model.parameters(), ref.parameters())),
       "running_mean_max_abs_diff": float((model[1].running_mean - ref[1].running_mean).abs().max())}
dist.destroy_process_group()
with open(sys.argv[1], "w") as f:
    json.dump(out, f)
'''


def check_ddp(device: torch.device, quick: bool = False) -> dict:
    """Single-process ``torchrun`` with NCCL, DDP and SyncBatchNorm (CUDA only)."""
    if device.type != "cuda":
        raise Skip("NCCL and SyncBatchNorm need CUDA")
    if not torch.distributed.is_available() or not torch.distributed.is_nccl_available():
        raise Skip("this torch build has no NCCL")
    with tempfile.TemporaryDirectory() as tmp:
        script, result = Path(tmp) / "ddp_child.py", Path(tmp) / "ddp.json"
        script.write_text(_DDP_CHILD)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
               str(script), str(result)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
        if proc.returncode != 0 or not result.is_file():
            return {"status": "failed", "details": {"command": " ".join(cmd), "returncode": proc.returncode,
                                                    "stderr_tail": proc.stderr[-3000:]}}
        d = json.loads(result.read_text())
    d["note"] = ("with one process SyncBatchNorm computes the same statistics as BatchNorm (torch skips the "
                 "all-gather at world size 1), so the differences must be ~0; two ranks need two GPUs")
    ok = (d["backend"] == "nccl" and d["sync_bn_modules"] == 1 and d["all_reduce"] == 1.0
          and d["out_max_abs_diff_vs_bn"] < 1e-4 and d["grad_max_abs_diff_vs_bn"] < 1e-4
          and d["running_mean_max_abs_diff"] < 1e-5)
    return {"status": "ok" if ok else "failed", "details": d}


# --------------------------------------------------------------------------------------------- driver
CHECKS: dict[str, Callable[..., dict]] = {
    "hams": check_hams, "compile": check_compile, "bench": check_bench,
    "seg_resume": check_seg_resume, "gan_latents": check_gan_latents, "ddp": check_ddp,
}


def _environment(device: torch.device) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
           "cuda_available": torch.cuda.is_available(), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update({"gpu": p.name, "capability": f"{p.major}.{p.minor}", "gpu_memory_gib": round(p.total_memory / 2**30, 1),
                    "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                    "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                    "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                    "bf16_supported": torch.cuda.is_bf16_supported()})
    return env


def run(device: Optional[str] = None, checks: Optional[Sequence[str]] = None, quick: bool = False,
        out: Optional[os.PathLike] = None, log: Callable[[str], None] = print) -> dict:
    """Run the self-check and return (and optionally write) the report.

    Args:
        device: ``"cuda"``, ``"cuda:i"`` or ``"cpu"``. Defaults: CUDA when available.
        checks: names from :data:`CHECKS`, run in that table's order. Defaults: all.
        quick: smaller sizes everywhere (a smoke run). Defaults: False.
        out: where to write the JSON report (atomically). Defaults: None (not written).
        log: called with one line per finished check. Defaults: ``print``.

    Returns:
        ``{"provenance", "environment", "summary", "checks": {name: {"status", "seconds", ...}}}``; a status is
        ``"ok"``, ``"failed"``, ``"error"`` (the check raised; traceback tail kept) or ``"skipped"`` (with reason).

    Raises:
        ValueError: for an unknown check name or a CUDA device without CUDA.
    """
    from .train.provenance import provenance, write_json

    names = list(CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"checks must be names from {list(CHECKS)}; got unknown {unknown}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available")
    if dev.type not in ("cuda", "cpu"):
        raise ValueError(f"device must be 'cuda[:i]' or 'cpu'; got {device!r}")
    t_start = time.perf_counter()
    results: dict[str, dict] = {}
    for name in CHECKS:
        if name not in names:
            continue
        t0 = time.perf_counter()
        try:
            res = CHECKS[name](dev, quick=quick)
        except Skip as s:
            res = {"status": "skipped", "reason": str(s)}
        except Exception as e:
            res = {"status": "error", "reason": f"{type(e).__name__}: {e}"[:1000],
                   "traceback": traceback.format_exc()[-4000:]}
        res["seconds"] = round(time.perf_counter() - t0, 2)
        results[name] = res
        log(f"doctor: {name:<12} {res['status']:<8} {res['seconds']:7.1f} s  {res.get('reason', '')[:150]}")
    summary = {s: sorted(n for n, r in results.items() if r["status"] == s)
               for s in ("ok", "failed", "error", "skipped")}
    report = {"provenance": provenance(device=dev, wall_time_s=time.perf_counter() - t_start, quick=quick),
              "environment": _environment(dev), "summary": summary, "checks": results}
    if out is not None:
        write_json(out, report)
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hamlib.doctor", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="doctor.json", help="JSON report path (default: ./doctor.json)")
    p.add_argument("--device", default=None, help="cuda, cuda:i or cpu (default: cuda when available)")
    p.add_argument("--only", nargs="+", choices=list(CHECKS), default=None, help="run only these checks")
    p.add_argument("--quick", action="store_true", help="smaller sizes everywhere (smoke run)")
    args = p.parse_args(argv)
    try:
        report = run(args.device, args.only, quick=args.quick, out=args.out)
    except ValueError as e:
        p.error(str(e))
    s = report["summary"]
    print(f"doctor: {len(s['ok'])} ok, {len(s['failed'])} failed, {len(s['error'])} errors, "
          f"{len(s['skipped'])} skipped -> {args.out}")
    return 1 if s["failed"] or s["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
