"""One-step gradient vs BPTT vs implicit gradient in training, on a task that needs global context.

The experiment of the book's chapter 05 (Geng et al., "Is Attention Better Than Matrix Decomposition?",
ICLR 2021, arXiv 2109.04553, Sec. "One-step gradient"): every pixel must be labelled with the majority
colour of a few scattered marker pixels (:func:`majority_task`). A small CNN sees a 5x5 neighbourhood and
cannot count them; a Hamburger after it can (:class:`GlobalContextNet`). One run trains the net with one
ham (``md``) and one gradient mode (``grad``) for one seed (:func:`train_global_context`); a run whose
gradient cannot be used (an error from the solver, a non-finite loss or gradient) is recorded as failed
with its reason, so that e.g. ``grad="implicit"`` is reported honestly instead of crashing the sweep.

Command line (a run folder like every trainer's: ``config.json``, ``log.jsonl`` with one line per finished run,
``metrics.json`` with provenance; re-running the same command resumes, skipping the runs already logged)::

    python -m hamlib.experiments.onestep --run-dir runs/onestep --hams nmf,vq,cd --modes one-step,bptt,implicit
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..md.solver import GRAD_MODES, METHODS
from ..train.cli import positive_int
from ..train.config import Config, field

__all__ = ["majority_task", "GlobalContextNet", "miou", "OneStepConfig", "train_global_context", "run_resumable", "run_experiment",
           "main"]

MDS = ("none",) + METHODS          # the ham kind; "none" is the local CNN alone


def majority_task(n: int, *, size: int = 16, classes: int = 3, markers: tuple[int, int] = (4, 3), noise: float = 0.1,
                  generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
    """Images whose every pixel must be labelled with the majority colour of a few scattered marker pixels.

    Each image has ``markers[0]`` pixels of its label class and ``markers[1]`` pixels of other classes
    (so the label is the unique majority), at random positions, on Gaussian noise. A CNN that sees only
    a small neighbourhood cannot count them; a global block can.

    Args:
        n: number of images B.
        size: height H = width W of each image.
        classes: number of colours (channels) and of labels.
        markers: (majority markers, other markers); majority must exceed other.
        noise: standard deviation of the background noise.
        generator: CPU random generator.

    Returns:
        ``(x, y)``: x of shape (B, classes, H, W), y of shape (B, H, W) with values in [0, classes).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    if classes < 2 or markers[0] <= markers[1] or sum(markers) > size * size:
        raise ValueError(f"need classes >= 2 and markers[0] > markers[1] fitting in {size}x{size}; "
                         f"got classes={classes}, markers={markers}")
    x = noise * torch.randn(n, classes, size, size, generator=generator)
    y = torch.randint(classes, (n,), generator=generator)
    pos = torch.stack([torch.randperm(size * size, generator=generator)[:sum(markers)] for _ in range(n)])
    other = (y[:, None] + torch.randint(1, classes, (n, markers[1]), generator=generator)) % classes
    cls = torch.cat([y[:, None].expand(n, markers[0]), other], dim=1)       # (B, m) colour of each marker
    x.view(n, classes, -1)[torch.arange(n)[:, None], cls, pos] += 1.0
    return x, y[:, None, None].expand(n, size, size).clone()


class GlobalContextNet(nn.Module):
    """Two 3x3 conv layers (a 5x5 receptive field), an optional Hamburger, a 1x1 classifier.

    Args:
        classes (int): input channels and output classes. Defaults: 3.
        channels (int): width C (= the ham's d). Defaults: 16.
        md (str): the ham kind, ``"nmf"``, ``"vq"``, ``"cd"``, or ``"none"`` (the local CNN alone).
            Defaults: ``"nmf"``.
        grad (str): the ham's gradient mode, ``"one-step"``, ``"bptt"`` or ``"implicit"``. Defaults: ``"one-step"``.
        R (int): rank. Defaults: 4.
        train_steps (int): K in training. Defaults: 6.
        eval_steps (int): K in evaluation. Defaults: 6.
        inv_t (float, optional): inverse temperature of VQ/CD; ``None``: 10 for VQ/CD (NMF ignores it).
    """

    def __init__(self, classes: int = 3, channels: int = 16, md: str = "nmf", grad: str = "one-step", R: int = 4,
                 train_steps: int = 6, eval_steps: int = 6, inv_t: Optional[float] = None) -> None:
        super().__init__()
        if md not in MDS:
            raise ValueError(f"md must be one of {MDS}; got {md!r}")
        if grad not in GRAD_MODES:
            raise ValueError(f"grad must be one of {GRAD_MODES}; got {grad!r}")
        from ..hamburger import Hamburger

        def block(cin: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU()]

        self.stem = nn.Sequential(*block(classes), *block(channels))
        kw = {} if md == "nmf" else {"inv_t": 10.0 if inv_t is None else inv_t}
        self.ham = nn.Identity() if md == "none" else Hamburger(channels, ham_channels=channels, md=md, R=R,
                                                                 train_steps=train_steps, eval_steps=eval_steps,
                                                                 grad=grad, **kw)
        self.head = nn.Conv2d(channels, classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, classes, H, W) -> logits (B, classes, H, W)."""
        return self.head(self.ham(self.stem(x)))


def miou(pred: Tensor, target: Tensor, classes: int) -> float:
    """Mean intersection-over-union over ``classes`` (classes absent from both are skipped)."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape; got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    cm = torch.bincount(target.reshape(-1) * classes + pred.reshape(-1), minlength=classes * classes)
    cm = cm.view(classes, classes).double()
    inter, union = cm.diag(), cm.sum(0) + cm.sum(1) - cm.diag()
    return float((inter[union > 0] / union[union > 0]).mean())


@dataclass(frozen=True)
class OneStepConfig(Config):
    """Everything a run depends on except the ham kind, the gradient mode and the seed.

    Args:
        iters (int): training iterations. batch_size (int): images per iteration. lr (float): Adam's rate.
        channels (int): width C = d. R (int): rank. train_steps / eval_steps (int): K.
        inv_t (float, optional): VQ/CD inverse temperature (None: 10). size (int): H = W of the task.
        test_size (int): images in the fixed test set. log_every (int): iterations between logged losses.
    """
    iters: int = field(300, "training iterations", minimum=1)
    batch_size: int = field(32, "images per iteration", minimum=1)
    lr: float = field(3e-3, "Adam's learning rate", above=0)
    channels: int = field(16, "width C = d of the net", minimum=1)
    R: int = field(4, "rank r of the ham", minimum=1)
    train_steps: int = field(6, "K, ham iterations in training", minimum=1)
    eval_steps: int = field(6, "K, ham iterations at evaluation", minimum=1)
    inv_t: Optional[float] = field(None, "VQ/CD inverse temperature (None: 10)", above=0)
    size: int = field(16, "H = W of the task's images", minimum=1)
    test_size: int = field(256, "images in the fixed test set", minimum=1)
    log_every: int = field(10, "iterations between logged losses", minimum=1)

    def check(self) -> None:
        for name in ("lr", "inv_t"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number > 0; got {v!r}")

    def describe(self) -> str:
        """One line describing the task and the model, for results files."""
        return (f"majority_task(size={self.size}, classes=3, markers=(4, 3)); GlobalContextNet(channels="
                f"{self.channels}, R={self.R}, train_steps={self.train_steps}, eval_steps={self.eval_steps}); "
                f"Adam lr {self.lr}, batch_size {self.batch_size}")


def state_spectral_radius(net: "GlobalContextNet", x: Tensor) -> float:
    """Spectral radius rho(J) of the ham's solver step J = dF/dh at the state h^K it reaches on ``x``.

    The state is the one a training forward reaches: the net's stem and lower bread map ``x`` (one image,
    shape (1, classes, H, W)) to the ham's data X (d x n), the ham runs its ``train_steps`` from random
    bases, and J is the dense Jacobian of one more step there (size r(d + n) squared). rho(J) < 1 means the
    iteration contracts near h^K (BPTT's and the implicit gradient's series converge); NMF always has an
    eigenvalue 1 (its scaling symmetry), so its rho is at least 1.

    Raises:
        ValueError: if the net has no ham (``md="none"``) or ``x`` is not one image.
    """
    from .. import analysis

    if isinstance(net.ham, nn.Identity):
        raise ValueError("net must have a ham (md='nmf', 'vq' or 'cd') to measure its Jacobian; got md='none'")
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image of shape (1, C, H, W); got {tuple(x.shape)}")
    probe = copy.deepcopy(net).train()   # the state a training forward reaches (train_steps, batch statistics),
    ham = probe.ham.ham                  # on a copy, so that the net's BatchNorm running statistics stay as they are
    with torch.no_grad():
        h = probe.ham.lower_bread(probe.stem(x))
        _, sol = ham.solve(h)
    xm = ham.unfold(h).to(sol.bases.dtype) * sol.scale
    J = analysis.state_jacobian(xm, sol.bases, sol.coef, ham.method, inv_t=ham.inv_t, beta=ham.beta)
    return analysis.jacobian_spectrum(J)["spectral_radius"]


def train_global_context(md: str, grad: str, seed: int, cfg: OneStepConfig = OneStepConfig(), *,
                         device: torch.device | str = "cpu", progress: bool = False,
                         probe_at: Sequence[int] = ()) -> dict:
    """Train :class:`GlobalContextNet` on :func:`majority_task` with one ham and gradient mode; evaluate it.

    Data are drawn on the CPU (seeded) and moved to ``device``; the test set is the same for every run.
    The run stops as *failed* (not with an exception) when the model raises (e.g. a solver that reports
    non-convergence), or when the loss or the gradient norm is not finite; the reason is recorded. Warnings
    raised while training are recorded too.

    Args:
        md: the ham kind, ``"nmf"``, ``"vq"``, ``"cd"`` or ``"none"``.
        grad: ``"one-step"``, ``"bptt"`` or ``"implicit"``.
        seed: seeds the weights and the training batches.
        cfg: the run's settings.
        device: where to train.
        progress: show a tqdm bar.
        probe_at: iterations at which to measure :func:`state_spectral_radius` on a fixed test image
            (after the backward of that iteration; ignored for ``md="none"``).

    Returns:
        a dict {"md", "grad", "seed", "iters", "status": "ok" or "failed", "error": str or None, "failed_at": int or None,
        "loss": [(iteration, train loss)], "grad_norm": [(iteration, whole net, stem below the ham)],
        "max_grad_norm", "warnings": [str], "test_acc", "test_miou" (None if failed), "wall_s"}, plus
        "probes": [{"it", "rho", "grad_norm", "stem_grad_norm"}] when ``probe_at`` is given.
    """
    if md not in MDS:
        raise ValueError(f"md must be one of {MDS}; got {md!r}")
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES}; got {grad!r}")
    if not isinstance(cfg, OneStepConfig):
        raise ValueError(f"cfg must be a OneStepConfig; got {type(cfg).__name__}")
    device = torch.device(device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(1000 + seed)
    x_te, y_te = majority_task(cfg.test_size, size=cfg.size, generator=torch.Generator().manual_seed(12345))
    x_te, y_te = x_te.to(device), y_te.to(device)
    net = GlobalContextNet(md=md, grad=grad, channels=cfg.channels, R=cfg.R, train_steps=cfg.train_steps,
                           eval_steps=cfg.eval_steps, inv_t=cfg.inv_t).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    curve: list[tuple[int, float]] = []
    gcurve: list[tuple[int, float, float]] = []
    probes: list[dict] = []
    probe_set = set(int(i) for i in probe_at) if md != "none" else set()
    x_probe = x_te[:1]
    error, failed_at, max_gn = None, None, 0.0
    t0 = time.perf_counter()
    it_range = range(cfg.iters)
    if progress:
        from tqdm.auto import tqdm
        it_range = tqdm(it_range, desc=f"{md}/{grad}/seed {seed}", leave=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for it in it_range:
            x, y = majority_task(cfg.batch_size, size=cfg.size, generator=gen)
            x, y = x.to(device), y.to(device)
            try:
                loss = F.cross_entropy(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
            except (RuntimeError, ValueError, ArithmeticError) as e:   # e.g. a solver that did not converge
                error, failed_at = f"{type(e).__name__}: {e}", it
                break
            gn = float(torch.nn.utils.clip_grad_norm_(net.parameters(), float("inf")))
            lv = float(loss.detach())
            if not math.isfinite(lv) or not math.isfinite(gn):
                error, failed_at = f"non-finite {'loss' if not math.isfinite(lv) else 'gradient norm'} " \
                                   f"(loss {lv}, gradient norm {gn}) at iteration {it}", it
                break
            max_gn = max(max_gn, gn)
            logged = it % cfg.log_every == 0 or it == cfg.iters - 1
            if logged or it in probe_set:
                stem_gn = float(torch.sqrt(sum(p.grad.detach().pow(2).sum() for p in net.stem.parameters()
                                               if p.grad is not None)))
            if it in probe_set:
                try:
                    rho = state_spectral_radius(net, x_probe)
                except (RuntimeError, ValueError, ArithmeticError) as e:   # e.g. eigvals of a non-finite J
                    rho = f"{type(e).__name__}: {e}"
                probes.append({"it": it, "rho": rho, "grad_norm": gn, "stem_grad_norm": stem_gn})
            opt.step()
            if logged:
                curve.append((it, lv))
                gcurve.append((it, gn, stem_gn))
        test_acc = test_miou = None
        if error is None:
            net.eval()
            try:
                with torch.no_grad():
                    pred = net(x_te).argmax(1)
                test_acc = float((pred == y_te).float().mean())
                test_miou = miou(pred.cpu(), y_te.cpu(), 3)
            except (RuntimeError, ValueError, ArithmeticError) as e:
                error, failed_at = f"evaluation: {type(e).__name__}: {e}", cfg.iters
    msgs = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    return {"md": md, "grad": grad, "seed": seed, "iters": cfg.iters, "status": "ok" if error is None else "failed",
            "error": error, "failed_at": failed_at, "loss": curve, "grad_norm": gcurve, "max_grad_norm": max_gn,
            "warnings": msgs[:20], "test_acc": test_acc, "test_miou": test_miou, "wall_s": time.perf_counter() - t0,
            **({"probes": probes} if probe_at else {})}


def run_resumable(jobs: Sequence[tuple], key: Callable[[dict], tuple], train: Callable[..., dict], cfg: Config, *,
                  run_dir: Optional[os.PathLike] = None, resume: bool = True, progress: bool = True,
                  desc: str = "runs", name: Callable[..., str] = lambda *job: "/".join(map(str, job))
                  ) -> tuple[list[dict], float]:
    """Run ``train(*job)`` once per job, in a run folder that makes a killed sweep resume where it stopped.

    With ``run_dir`` (a :class:`hamlib.train.RunDir` holding ``cfg``), every finished run is appended to
    ``log.jsonl`` and the checkpoint records how many are complete; runs already logged (``key(record) == job``)
    are reused instead of trained again. A failed run (``record["status"] == "failed"``) is reported on stderr
    with ``name(*job)`` and kept.

    Returns:
        ``(records in job order, wall time in seconds of every run, earlier calls included)``.
    """
    from ..train.run import RunDir

    run = RunDir(run_dir) if run_dir is not None else None
    done: dict[tuple, dict] = {}
    if run is not None:
        if run.start(cfg, resume=resume):  # a checkpoint marks how many logged runs are complete
            run.load(models={}, restore_rng=False)  # cuts the log back to it (a run logged after it is redone)
        done = {key(r): {k: v for k, v in r.items() if k != "step"} for r in run.history()}
    wall_before = sum(r.get("wall_s", 0.0) for r in done.values())
    t0 = time.perf_counter()
    it = jobs
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(jobs, desc=desc)
    records = []
    for job in it:
        rec = done.get(tuple(job))
        if rec is None:
            rec = train(*job)
            if rec["status"] == "failed":
                print(f"run {name(*job)} failed: {rec['error']}", file=sys.stderr)
            if run is not None:
                done[tuple(job)] = rec
                run.log({"step": len(done), **rec})
                run.save(len(done), models={})  # no model to keep: the checkpoint only records the step
        records.append(rec)
    return records, wall_before + time.perf_counter() - t0


def run_experiment(hams: Sequence[str], modes: Sequence[str], seeds: int, cfg: OneStepConfig = OneStepConfig(), *,
                   baseline: bool = True, device: torch.device | str = "cpu", run_dir: Optional[os.PathLike] = None,
                   resume: bool = True, progress: bool = True) -> dict:
    """Train every (ham, mode) pair (plus the CNN-only baseline) for ``seeds`` seeds, in a shared run folder.

    With ``run_dir`` (a :class:`hamlib.train.RunDir`), ``config.json`` holds ``cfg``, every finished run is
    appended to ``log.jsonl`` as it ends, and ``metrics.json`` holds the whole sweep at the end. Runs already in
    the log are reused, so an interrupted sweep resumes where it stopped; a folder holding another config is
    refused (the same rule as every trainer) unless ``resume=False``, which starts afresh there.

    Returns:
        a dict {"task": str, "config": dict, "seeds": int, "iters": int, "runs": [run dicts], "failed": int,
        "provenance": dict}.
    """
    from ..train.provenance import provenance
    from ..train.run import RunDir

    for h in hams:
        if h not in METHODS:
            raise ValueError(f"hams must be drawn from {METHODS}; got {h!r}")
    for m in modes:
        if m not in GRAD_MODES:
            raise ValueError(f"modes must be drawn from {GRAD_MODES}; got {m!r}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1; got {seeds}")
    device = torch.device(device)
    todo = ([("none", "one-step")] if baseline else []) + [(h, m) for h in hams for m in modes]
    runs, wall = run_resumable([(md, g, s) for md, g in todo for s in range(seeds)],
                               lambda r: (r["md"], r["grad"], r["seed"]),
                               lambda md, g, s: train_global_context(md, g, s, cfg, device=device),
                               cfg, run_dir=run_dir, resume=resume, progress=progress, desc="onestep runs",
                               name=lambda md, g, s: f"{md}/{g}/seed {s}")
    data = {"task": cfg.describe(), "config": cfg.to_dict(), "seeds": seeds, "iters": cfg.iters, "runs": runs,
            "failed": sum(r["status"] == "failed" for r in runs),
            "provenance": provenance(device=device, preset="cpu-reduced" if device.type == "cpu" else "gpu",
                                     wall_time_s=wall)}
    if run_dir is not None:
        RunDir(run_dir).write_metrics(data)
    return data


def _csv(choices: Sequence[str], what: str):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if not items or bad:
            raise argparse.ArgumentTypeError(f"{what} must be a comma-separated list drawn from {list(choices)}; "
                                             f"got {text!r}")
        return items
    return parse


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m hamlib.experiments.onestep --run-dir DIR``: every (ham, gradient mode) over seeds."""
    d = OneStepConfig()
    p = argparse.ArgumentParser(prog="python -m hamlib.experiments.onestep",
                                description="One-step vs BPTT vs implicit gradient on the majority task. Re-running "
                                            "the same command resumes from the runs already in --run-dir.")
    p.add_argument("--run-dir", type=Path, required=True,
                   help="run folder: config.json, log.jsonl (one line per finished run), metrics.json")
    p.add_argument("--hams", type=_csv(METHODS, "--hams"), default=list(METHODS), help="default: nmf,vq,cd")
    p.add_argument("--modes", type=_csv(GRAD_MODES, "--modes"), default=["one-step", "bptt"],
                   help="comma-separated gradient modes from one-step,bptt,implicit (default: one-step,bptt)")
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds per configuration (default 3)")
    p.add_argument("--no-baseline", action="store_true", help="skip the CNN-only run (md=none)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if --run-dir holds a sweep (of another config)")
    for f in fields(OneStepConfig):
        if f.name in ("inv_t", "lr"):
            p.add_argument(f"--{f.name.replace('_', '-')}", type=float, default=getattr(d, f.name),
                           help=f"default {getattr(d, f.name)}")
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=positive_int, default=getattr(d, f.name),
                           help=f"default {getattr(d, f.name)}")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads on the CPU (default 1)")
    args = p.parse_args(argv)
    try:
        cfg = OneStepConfig(**{f.name: getattr(args, f.name) for f in fields(OneStepConfig)})
    except ValueError as e:
        p.error(str(e))
    try:
        device = torch.device(args.device)
    except RuntimeError:
        p.error(f"--device must be cpu or cuda; got {args.device!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda given but CUDA is not available")
    torch.set_num_threads(args.threads)
    try:
        data = run_experiment(args.hams, args.modes, args.seeds, cfg, baseline=not args.no_baseline, device=device,
                              run_dir=args.run_dir, resume=not args.no_resume)
    except ValueError as e:
        p.error(str(e))
    print(f"wrote {args.run_dir / 'metrics.json'}: {len(data['runs'])} runs, {data['failed']} failed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
