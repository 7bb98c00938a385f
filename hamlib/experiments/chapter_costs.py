"""How long each chapter takes: its tiny mode measured on a CPU, its full mode estimated for a GPU from counts.

Every chapter opens with a "what you need / how long" box. Its two time lines come from here:

* **CPU, tiny mode** is *measured*: each notebook is copied into an empty folder and executed top to bottom in
  a fresh kernel with no ``HAMLIB_*`` variable set (what a reader without a GPU gets), wall-clock seconds.
* **GPU, full mode** is *estimated*, never measured (no GPU was available when it was made): the chapter's
  dominant full-mode work (its training loops or benchmarks, listed per chapter in the JSON) is run once per
  unit under ``FlopCounterMode`` and an operator counter, and

  .. math:: t_\\text{GPU} \\approx \\sum_\\text{units} \\Big(\\frac{\\text{FLOPs}}{R} + \\text{ops}\\cdot t_\\text{op}\\Big)

  with an assumed sustained rate :math:`R` (half the FP32 peak: 4 TFLOP/s on a T4, 30 on an H100) and an
  assumed :math:`t_\\text{op} = 10\\,\\mu s` per eager operator (dispatch and kernel launch). Small maps are
  launch-bound, which the second term captures; data loading, plotting and Python outside the counted work
  are not included, so read the estimate as a lower bound. FLOPs count matrix products and convolutions only
  (``torch.utils.flop_counter``). A unit with a batch of B images is counted at batch 1 and its FLOPs
  multiplied by B (the operator count does not grow with the batch).

Command line (writes ``book/results/chapter_costs.json``; ``--write-boxes`` then puts the two lines into every
chapter's box, and ``tests/test_chapter_costs.py`` checks that the boxes say what the JSON says)::

    python -m hamlib.experiments.chapter_costs --out book/results/chapter_costs.json --time-notebooks book
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["RATES", "T_OP", "Work", "count", "chapter_works", "estimate", "box_lines", "time_notebook", "main"]

#: Assumed sustained FLOP/s: about half of the FP32 peak (T4 8.1 TFLOP/s, H100 SXM 67 TFLOP/s).
RATES = {"T4": 4.0e12, "H100": 30.0e12}
#: Assumed seconds per eager operator on a GPU (Python dispatch + kernel launch).
T_OP = 10e-6
CHAPTERS = ("00_how_to_use", "01_global_context", "02_low_rank_recovery", "03_three_solvers", "04_hamburger",
            "05_one_step_gradient", "06_hamnet", "07_hamgan")
#: How the generated lines of a box begin (no other line of a box may begin so).
BOX_PREFIXES = ("* **CPU, tiny mode** (the default without a GPU):", "* **GPU, full mode:**")


@dataclass
class Work:
    """One kind of unit of a chapter's full-mode work, counted once and repeated ``units`` times."""
    what: str
    flops: int      # FLOPs of one unit (matrix products and convolutions)
    ops: int        # ATen operators of one unit (views excluded)
    units: int

    @property
    def total_flops(self) -> int:
        return self.flops * self.units

    @property
    def total_ops(self) -> int:
        return self.ops * self.units


class _OpCounter(TorchDispatchMode):
    """Counts the ATen operators that would launch work (views and detach are free)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not (getattr(func, "is_view", False) or func.__name__.startswith(("detach", "alias"))):
            self.ops += 1
        return func(*args, **(kwargs or {}))


def count(fn: Callable[[], Any]) -> tuple[int, int]:
    """(FLOPs, operators) of one call of ``fn()`` (run for real on the CPU)."""
    with FlopCounterMode(display=False) as fc, _OpCounter() as oc:
        fn()
    return int(fc.get_total_flops()), oc.ops


def _train_step(model: nn.Module, inputs: Sequence[torch.Tensor], loss: Callable, opt) -> Callable[[], None]:
    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss(model(*inputs)).backward()
        opt.step()
    return step


def _batched(what: str, fn: Callable[[], Any], batch: int, units: int) -> Work:
    """A unit counted at batch 1: FLOPs scale with the batch, operators do not."""
    flops, ops = count(fn)
    return Work(what, flops * batch, ops, units)


# --- the chapters' full-mode work (the settings are those the chapters use when MODE == "full" on CUDA) ----------

def _ch01() -> list[Work]:
    from ..attention import SelfAttention2d
    C, repeats, works = 256, 10, []
    sa = SelfAttention2d(C)
    for s in (16, 24, 32, 48, 64, 96, 128):
        x = torch.randn(1, C, s, s, requires_grad=True)
        with torch.no_grad():
            f, o = count(lambda: sa(x))
        works.append(Work(f"self-attention forward, C={C}, {s}x{s} (warm-up, {repeats} repeats, memory)", f, o,
                          repeats + 2))
        f, o = count(lambda: sa(x).sum().backward())
        works.append(Work(f"self-attention forward+backward, C={C}, {s}x{s}", f, o, repeats + 2))
    return works


def _ch02() -> list[Work]:
    torch.manual_seed(0)   # the chapter's tiny CNN, trained for 1,000 Adam steps on 32 16x16 digits each
    feat = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 32, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(32 * 8 * 8, 10))
    opt = torch.optim.Adam(feat.parameters(), lr=2e-3)
    x, y = torch.randn(1, 1, 16, 16), torch.zeros(1, dtype=torch.long)
    return [_batched("tiny CNN training step, batch 32, 16x16", _train_step(feat, [x], lambda o: F.cross_entropy(o, y),
                                                                           opt), 32, 1000)]


def _ch03() -> list[Work]:
    from .. import md
    x = torch.rand(1, 48, 96 * 128 // 16, dtype=torch.float64)   # 4x4 patches of the 96x128 photo: d=48, n=768
    works = []
    # convergence (2 temperatures x 3 methods x 50 seeds) and the 1/T sweep (2 photos x (2 x 6 + 1) x 25 seeds)
    for method, solves in (("vq", 2 * 50 + 2 * 6 * 25), ("cd", 2 * 50 + 2 * 6 * 25), ("nmf", 2 * 50 + 2 * 25)):
        alg = md.make_algorithm(method, inv_t=100.0)
        d0 = alg.init_bases(1, 48, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        f, o = count(lambda: md.solve(x, d0, method=alg, steps=50, return_trace=True))
        works.append(Work(f"{method.upper()} solve, d=48, n=768, r=8, 50 steps, with objective trace", f, o, solves))
    return works


def _ch04() -> list[Work]:
    from ..bench.core import MODULES, build_module
    C, repeats, works = 512, 10, []
    for s in (32, 64, 96, 128):
        for name in MODULES:
            m = build_module(name, C, C, 64, 6)
            x = torch.randn(1, C, s, s, requires_grad=True)
            with torch.no_grad():
                f, o = count(lambda: m(x))
            works.append(Work(f"{name} inference, C=d={C}, {s}x{s}", f, o, repeats + 2))
            f, o = count(lambda: m(x).sum().backward())
            works.append(Work(f"{name} forward+backward, C=d={C}, {s}x{s}", f, o, repeats + 2))
    return works


def _ch05() -> list[Work]:
    from .onestep import GlobalContextNet, OneStepConfig
    cfg = OneStepConfig()
    works = []
    for md_, grad in [("none", "one-step")] + [(m, g) for m in ("nmf", "vq", "cd") for g in ("one-step", "bptt")]:
        torch.manual_seed(0)
        net = GlobalContextNet(channels=cfg.channels, md=md_, grad=grad, R=cfg.R, train_steps=cfg.train_steps,
                               eval_steps=cfg.eval_steps)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        x, y = torch.randn(1, 3, cfg.size, cfg.size), torch.zeros(1, cfg.size, cfg.size, dtype=torch.long)
        step = _train_step(net, [x], lambda o: F.cross_entropy(o, y), opt)
        step()   # the first training forward checks its input once; count a steady-state step
        works.append(_batched(f"toy training step, {md_}/{grad}, batch 32, {cfg.size}x{cfg.size}", step, 32,
                              5 * 1000))
    return works


def _ch06() -> list[Work]:
    from ..seg.config import get_preset
    from ..seg.model import from_config
    from ..seg.train import seg_loss
    works = []
    for head in ("fcn", "attention", "ham"):
        cfg = get_preset("camvid", head=head, pretrained=None, download=False)
        torch.manual_seed(0)
        model = from_config(cfg)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        x = torch.randn(1, 3, *cfg.crop)
        y = torch.zeros(1, *cfg.crop, dtype=torch.long)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            out, aux = model(x, return_aux=True)
            seg_loss(out, aux, y, cfg.aux_weight).backward()
            opt.step()
        step()
        works.append(_batched(f"HamNet[{head}] training step, ResNet-50, batch {cfg.batch_size}, "
                              f"{cfg.crop[0]}x{cfg.crop[1]}", step, cfg.batch_size, cfg.iters))
        model.eval()
        xe = torch.randn(1, 3, 360, 480)
        evals = cfg.iters // cfg.eval_every
        with torch.no_grad():
            works.append(_batched(f"HamNet[{head}] evaluation, 360x480 ({evals} x 101 val + 233 test images)",
                                  lambda: model(xe), 1, evals * 101 + 233))
    return works


def _ch07() -> list[Work]:
    from ..gan.config import get_preset
    from ..gan.losses import d_hinge_loss, g_hinge_loss
    from ..gan.models import from_config
    works = []
    for context in ("none", "attention", "ham"):
        cfg = get_preset("cifar10", context=context, download=False)
        torch.manual_seed(0)
        G, D = from_config(cfg)
        opt_g = torch.optim.Adam(G.parameters(), cfg.lr_g, betas=cfg.betas)
        opt_d = torch.optim.Adam(D.parameters(), cfg.lr_d, betas=cfg.betas)
        xr, y = torch.randn(1, 3, 32, 32), torch.zeros(1, dtype=torch.long)

        def step() -> None:   # one D step and one G step, as in hamlib.gan.train (EMA update excluded)
            z = torch.randn(1, cfg.z_dim)
            with torch.no_grad():
                fake = G(z, y)
            opt_d.zero_grad(set_to_none=True)
            d_hinge_loss(D(xr, y), D(fake, y)).backward()
            opt_d.step()
            opt_g.zero_grad(set_to_none=True)
            g_hinge_loss(D(G(z, y), y)).backward()
            opt_g.step()
        step()
        works.append(_batched(f"HamGAN[{context}] iteration (D step + G step), SNGAN widths, batch "
                              f"{cfg.batch_size}", step, cfg.batch_size, 2_000))
    return works


_WORKS: dict[str, Callable[[], list[Work]]] = {
    "00_how_to_use": lambda: [], "01_global_context": _ch01, "02_low_rank_recovery": _ch02,
    "03_three_solvers": _ch03, "04_hamburger": _ch04, "05_one_step_gradient": _ch05, "06_hamnet": _ch06,
    "07_hamgan": _ch07,
}


def chapter_works(chapter: str) -> list[Work]:
    """The counted full-mode work of one chapter (see the module docstring)."""
    if chapter not in _WORKS:
        raise ValueError(f"chapter must be one of {sorted(_WORKS)}; got {chapter!r}")
    return _WORKS[chapter]()


def estimate(works: Sequence[Work], rate: float, t_op: float = T_OP) -> float:
    """Estimated GPU seconds: FLOPs / rate + operators x t_op, summed over the units."""
    return sum(w.total_flops / rate + w.total_ops * t_op for w in works)


def _duration(seconds: float) -> str:
    """'under a second', '40 s', '3 min', '1.5 h' (rounded: these are estimates or single measurements)."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"{max(1, round(seconds / 5) * 5) if seconds >= 10 else round(seconds)} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 10 else f"{round(hours)} h"


def _ops(n: int) -> str:
    return f"{n / 1e6:.1f} M operators" if n >= 1e6 else f"{max(1, round(n / 1e3))} k operators"


def box_lines(entry: dict) -> list[str]:
    """The two markdown bullets of a chapter's box, from its JSON entry."""
    cpu = entry.get("cpu_tiny_s")
    date = entry.get("cpu_measured_on", "")
    cpu_text = (f"about {_duration(cpu)}, measured ({entry.get('cpu_machine', 'a CPU')}, {date}: the notebook run "
                f"alone in an empty folder)" if cpu is not None else "not measured")
    lines = [f"{BOX_PREFIXES[0]} {cpu_text}."]
    gpu = entry["gpu_estimate_s"]
    if entry["full_flops"] == 0:
        lines.append(f"{BOX_PREFIXES[1]} the same as tiny mode: this chapter trains nothing.")
    else:
        tflop = entry["full_flops"] / 1e12
        amount = (f"{tflop:,.0f} TFLOP" if tflop >= 100 else f"{tflop:.1f} TFLOP" if tflop >= 0.1
                  else f"{entry['full_flops'] / 1e9:.1f} GFLOP")
        lines.append(f"{BOX_PREFIXES[1]} about {_duration(gpu['T4'])} on a Colab T4 and "
                     f"{_duration(gpu['H100'])} on an H100 for {entry['full_what']}: an *estimate* from counted work "
                     f"({amount}, {_ops(entry['full_ops'])}; see `hamlib.experiments.chapter_costs`), "
                     f"not a measurement; plotting and data loading come on top.")
    return lines


# --- measuring the tiny mode ------------------------------------------------------------------------------------------

def time_notebook(path: Path, timeout: int = 1800) -> float:
    """Seconds to execute ``path`` copied into an empty folder, in a fresh kernel, with no HAMLIB_* variable."""
    from nbclient import NotebookClient
    import nbformat

    env_backup = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("HAMLIB_")}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            dst = Path(tmp) / path.name
            shutil.copy(path, dst)
            nb = nbformat.read(dst, as_version=4)
            client = NotebookClient(nb, kernel_name="python3", timeout=timeout, allow_errors=False,
                                    resources={"metadata": {"path": tmp}})
            t0 = time.perf_counter()
            client.execute()
            return time.perf_counter() - t0
    finally:
        os.environ.update(env_backup)


def _cpu_machine() -> str:
    import platform
    return f"a {os.cpu_count()}-core {platform.machine()} CPU"


# --- writing the boxes ----------------------------------------------------------------------------------------------

def write_boxes(data: dict, book: Path) -> list[str]:
    """Replace the generated lines of every chapter's box by those of ``data``; returns the notebooks changed."""
    import nbformat

    changed = []
    for chapter, entry in data["chapters"].items():
        path = book / f"{chapter}.ipynb"
        nb = nbformat.read(path, as_version=4)
        cell = next((c for c in nb.cells if c.cell_type == "markdown" and "What you need" in c.source), None)
        if cell is None:
            raise SystemExit(f"{path}: no 'What you need / how long' box")
        lines = cell.source.splitlines()
        keep = [ln for ln in lines if not ln.startswith(BOX_PREFIXES)]
        head = next(i for i, ln in enumerate(keep) if ln.startswith(":class:") or "What you need" in ln)
        while head + 1 < len(keep) and keep[head + 1].startswith(":class:"):
            head += 1
        new = keep[:head + 1] + box_lines(entry) + keep[head + 1:]
        if new != lines:
            cell.source = "\n".join(new)
            nbformat.write(nb, path)
            changed.append(path.name)
    return changed


def main(argv: Optional[list[str]] = None) -> int:
    from ..train.provenance import provenance, read_json, write_json

    p = argparse.ArgumentParser(prog="python -m hamlib.experiments.chapter_costs", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("chapter_costs.json"), help="output JSON")
    p.add_argument("--chapters", nargs="+", choices=CHAPTERS, default=list(CHAPTERS))
    p.add_argument("--time-notebooks", type=Path, default=None, metavar="BOOK",
                   help="also execute each chapter from this folder (tiny mode, empty folder) and record its time")
    p.add_argument("--write-boxes", type=Path, default=None, metavar="BOOK",
                   help="only write the boxes of the notebooks in BOOK from --out (no counting)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.write_boxes is not None:
        changed = write_boxes(read_json(args.out), args.write_boxes)
        print("updated:", ", ".join(changed) or "nothing")
        return 0
    started = time.time()
    data = {"assumptions": {"rates_flop_per_s": RATES, "seconds_per_operator": T_OP,
                            "note": "GPU times are estimates from counted work, not measurements"},
            "chapters": {}}
    for chapter in args.chapters:
        t0 = time.time()
        works = chapter_works(chapter)
        entry = {"full_what": _FULL_WHAT[chapter], "full_flops": sum(w.total_flops for w in works),
                 "full_ops": sum(w.total_ops for w in works),
                 "gpu_estimate_s": {k: estimate(works, r) for k, r in RATES.items()},
                 "works": [{**asdict(w), "total_flops": w.total_flops} for w in works]}
        if args.time_notebooks is not None:
            entry["cpu_tiny_s"] = time_notebook(args.time_notebooks / f"{chapter}.ipynb")
            entry["cpu_machine"] = _cpu_machine()
            entry["cpu_measured_on"] = time.strftime("%Y-%m-%d")
        data["chapters"][chapter] = entry
        print(f"{chapter}: {entry['full_flops'] / 1e12:.2f} TFLOP, {entry['full_ops'] / 1e6:.2f} M ops, GPU est. "
              + ", ".join(f"{k} {_duration(v)}" for k, v in entry["gpu_estimate_s"].items())
              + (f"; CPU tiny {entry['cpu_tiny_s']:.0f} s" if "cpu_tiny_s" in entry else "")
              + f"  (counted in {time.time() - t0:.0f} s)", flush=True)
    data = {"provenance": provenance(device="cpu", wall_time_s=time.time() - started), **data}
    write_json(args.out, data)
    print(f"wrote {args.out}")
    return 0


_FULL_WHAT = {
    "00_how_to_use": "nothing",
    "01_global_context": "self-attention timed at C = 256 up to 128x128",
    "02_low_rank_recovery": "the CNN's 1,000 training steps",
    "03_three_solvers": "the 50-seed convergence and temperature studies",
    "04_hamburger": "every module timed at C = d = 512 up to 128x128",
    "05_one_step_gradient": "the 35 training runs of 1,000 iterations",
    "06_hamnet": "three ResNet-50 heads, 3,000 iterations each, with evaluation",
    "07_hamgan": "three GANs at SNGAN widths, 2,000 iterations each",
}

if __name__ == "__main__":
    raise SystemExit(main())
