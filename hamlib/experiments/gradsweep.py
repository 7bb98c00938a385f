"""The gradient chapter's sweeps: one-step vs BPTT over K and over 1/T, with what the gradients look like in training.

Chapter 05's study trains the global-context toy (:mod:`hamlib.experiments.onestep`) at one setting,
K = 6 and, for VQ/CD, 1/T = 10. This study varies them, one at a time:

* **K sweep**: every ham (NMF, VQ, CD) x {one-step, BPTT} x K in ``ks`` (training and evaluation steps alike),
  VQ/CD at 1/T = ``k_inv_t``;
* **1/T sweep**: VQ and CD x {one-step, BPTT} x 1/T in ``inv_ts`` at K = ``inv_t_k`` (NMF has no temperature);
* the CNN alone (no ham) as the floor;

each for ``seeds`` seeds. Every run records its test mIoU, its gradient norms along training (the whole net and
the stem below the ham, which only the gradient through the ham can teach to find distant pixels) and, at
``probes`` evenly spaced iterations, the spectral radius rho(J) of the solver's step at the state the ham
reaches (:func:`hamlib.experiments.onestep.state_spectral_radius`).

Run it (resumable: finished runs are kept in the run folder's ``log.jsonl``; the summary is written at the end)::

    python -m hamlib.experiments.gradsweep --run-dir runs/gradsweep
    python -m hamlib.experiments.gradsweep --run-dir runs/gradsweep --summary-only   # summary of what is logged

``metrics.json`` keeps every :data:`CURVE_STRIDE`-th point of the per-run curves to :data:`CURVE_DIGITS` significant
digits (``--compact IN OUT`` applies the same to a results file written before that rule).
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..stats import paired_difference, t_interval
from ..train.cli import positive_int
from ..train.config import Config, field
from .onestep import OneStepConfig, run_resumable, train_global_context

__all__ = ["SweepConfig", "grid", "run_sweep", "summarise", "compact", "main"]

GRADS = ("one-step", "bptt")
#: Significant digits and the stride (every n-th logged point, plus the last) of the per-run curves kept in
#: ``metrics.json``; ``log.jsonl`` keeps them whole. The committed results file stays under the book's 1 MB per file.
CURVE_DIGITS = 4
CURVE_STRIDE = 5


@dataclass(frozen=True)
class SweepConfig(Config):
    """The sweep's grid and the training settings shared by every run (the rest as in :class:`OneStepConfig`).

    Args:
        iters (int): training iterations per run. seeds (int): seeds per configuration.
        ks (tuple of int): K values of the K sweep. k_inv_t (float): VQ/CD's 1/T in the K sweep.
        inv_ts (tuple of float): 1/T values of the temperature sweep. inv_t_k (int): K in the temperature sweep.
        probes (int): spectral-radius probes along training (evenly spaced; the first and last iteration included).
    """
    iters: int = field(600, "training iterations per run", minimum=1)
    seeds: int = field(5, "seeds per configuration", minimum=1)
    ks: tuple[int, ...] = field((2, 6, 18), "K values of the K sweep (training and evaluation steps)")
    k_inv_t: float = field(10.0, "VQ/CD inverse temperature in the K sweep", above=0)
    inv_ts: tuple[float, ...] = field((1.0, 10.0, 100.0), "inverse temperatures of the 1/T sweep (VQ, CD)")
    inv_t_k: int = field(6, "K in the 1/T sweep", minimum=1)
    probes: int = field(4, "spectral-radius probes along training", minimum=0)

    def check(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError(f"ks must be a non-empty tuple of ints >= 1; got {self.ks!r}")
        if not self.inv_ts or any(not (math.isfinite(t) and t > 0) for t in self.inv_ts):
            raise ValueError(f"inv_ts must be a non-empty tuple of finite numbers > 0; got {self.inv_ts!r}")

    def run_config(self, K: int, inv_t: Optional[float]) -> OneStepConfig:
        """The :class:`OneStepConfig` of one grid point (``inv_t=None`` for NMF and the CNN alone)."""
        return OneStepConfig(iters=self.iters, train_steps=K, eval_steps=K, inv_t=inv_t)

    def probe_iterations(self) -> list[int]:
        """The iterations at which rho(J) is measured."""
        if self.probes == 0:
            return []
        if self.probes == 1:
            return [self.iters - 1]
        return sorted({round(i * (self.iters - 1) / (self.probes - 1)) for i in range(self.probes)})


def grid(cfg: SweepConfig) -> list[tuple[str, str, int, Optional[float]]]:
    """Every (ham, gradient, K, 1/T) of the sweep, without duplicates, the CNN alone first.

    Returns:
        a list of ``(md, grad, K, inv_t)``; ``inv_t`` is None for NMF and for ``md="none"``.
    """
    points = [("none", "one-step", cfg.inv_t_k, None)]
    for md in ("nmf", "vq", "cd"):
        for K in cfg.ks:
            for g in GRADS:
                points.append((md, g, K, None if md == "nmf" else cfg.k_inv_t))
    for md in ("vq", "cd"):
        for t in cfg.inv_ts:
            for g in GRADS:
                points.append((md, g, cfg.inv_t_k, t))
    seen, out = set(), []
    for p in points:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _key(r: dict) -> tuple:
    return r["md"], r["grad"], r["K"], r["inv_t"], r["seed"]


def run_sweep(cfg: SweepConfig, run_dir: Optional[Path] = None, *, resume: bool = True, progress: bool = True,
              device: torch.device | str = "cpu") -> dict:
    """Train every grid point for every seed; returns {"config", "runs", "summary", "provenance"}.

    With ``run_dir``, each finished run is appended to ``log.jsonl`` and runs already there are skipped (an
    interrupted sweep resumes); ``metrics.json`` holds the whole sweep at the end.
    """
    from ..train.provenance import provenance
    from ..train.run import RunDir

    device = torch.device(device)

    def train(md: str, g: str, K: int, t: Optional[float], s: int) -> dict:
        r = train_global_context(md, g, s, cfg.run_config(K, t), device=device, probe_at=cfg.probe_iterations())
        return {"K": K, "inv_t": t, **r}

    runs, wall = run_resumable([(md, g, K, t, s) for md, g, K, t in grid(cfg) for s in range(cfg.seeds)], _key,
                               train, cfg, run_dir=run_dir, resume=resume, progress=progress, desc="gradient sweep",
                               name=lambda md, g, K, t, s: f"{md}/{g}/K={K}/inv_t={t}/seed {s}")
    data = {"study": "gradsweep", "task": OneStepConfig().describe().split(";")[0], "config": cfg.to_dict(),
            "runs": runs, "summary": summarise(runs),
            "provenance": provenance(device=device, preset="cpu-reduced" if device.type == "cpu" else "gpu",
                                     wall_time_s=wall)}
    data = compact(data)
    if run_dir is not None:
        RunDir(run_dir).write_metrics(data)
    return data


def _round(x, digits: int):
    if isinstance(x, float):
        return float(f"{x:.{digits}g}") if math.isfinite(x) else x
    if isinstance(x, (list, tuple)):
        return [_round(v, digits) for v in x]
    return x


def _thin(curve: list, stride: int) -> list:
    kept = list(curve[::stride])
    if curve and kept[-1] is not curve[-1]:
        kept.append(curve[-1])
    return kept


def compact(data: dict, digits: int = CURVE_DIGITS, stride: int = CURVE_STRIDE) -> dict:
    """A copy of a sweep's results whose per-run curves (``loss``, ``grad_norm``) keep every ``stride``-th logged
    point (and the last) to ``digits`` significant digits.

    Everything else (test mIoU, gradient maxima, probes, the summary, the provenance) is kept exactly; the file
    records ``"curves": {"significant_digits", "stride"}``.
    """
    runs = [{k: (_round(_thin(v, stride), digits) if k in ("loss", "grad_norm") else v) for k, v in r.items()}
            for r in data["runs"]]
    return {**data, "runs": runs, "curves": {"significant_digits": digits, "stride": stride}}


def summarise(runs: Sequence[dict]) -> dict:
    """Statistics per grid point and the paired one-step - BPTT differences.

    Returns:
        A dict with ``"points"``, one dict per grid point (``md``, ``grad``, ``K``, ``inv_t``, ``n``, ``failed``,
        ``errors``, ``miou`` as a :func:`hamlib.stats.t_interval` dict of fractions, ``max_grad_norm_median``,
        ``stem_grad_norm_median``: the median over seeds of each run's median logged stem gradient norm, and
        ``rho``: iteration -> median over seeds), and ``"diffs"``, one dict per (``md``, ``K``, ``inv_t``) with
        ``onestep_minus_bptt`` as a :func:`hamlib.stats.paired_difference` dict. Failed runs count in ``failed``,
        not in the statistics.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["md"], r["grad"], r["K"], r["inv_t"]), []).append(r)
    points = []
    for (md, g, K, t), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        pt = {"md": md, "grad": g, "K": K, "inv_t": t, "n": len(ok), "failed": len(rs) - len(ok),
              "errors": sorted({r["error"] for r in rs if r["status"] != "ok"})}
        if len(ok) >= 2:
            pt["miou"] = t_interval([r["test_miou"] for r in ok])
        elif ok:
            pt["miou"] = {"mean": ok[0]["test_miou"], "n": 1}
        if ok:
            pt["max_grad_norm_median"] = float(np.median([r["max_grad_norm"] for r in ok]))
            pt["stem_grad_norm_median"] = float(np.median([np.median([s for _, _, s in r["grad_norm"]]) for r in ok]))
            rho: dict[int, list[float]] = {}
            for r in ok:
                for p in r.get("probes", []):
                    if isinstance(p["rho"], float):
                        rho.setdefault(p["it"], []).append(p["rho"])
            pt["rho"] = {str(i): float(np.median(v)) for i, v in sorted(rho.items())}
        points.append(pt)
    diffs = []
    for (md, g, K, t), rs in groups.items():
        if g != "one-step" or md == "none" or (md, "bptt", K, t) not in groups:
            continue
        one = {r["seed"]: r["test_miou"] for r in rs if r["status"] == "ok"}
        bp = {r["seed"]: r["test_miou"] for r in groups[(md, "bptt", K, t)] if r["status"] == "ok"}
        if len(set(one) & set(bp)) >= 2:
            diffs.append({"md": md, "K": K, "inv_t": t, "onestep_minus_bptt": paired_difference(one, bp)})
    return {"points": points, "diffs": diffs}


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m hamlib.experiments.gradsweep --run-dir DIR [--summary-only] [--set field=value ...]``."""
    p = argparse.ArgumentParser(prog="python -m hamlib.experiments.gradsweep",
                                description="One-step vs BPTT over K and 1/T on the global-context toy, with gradient "
                                            "norms and rho(J) along training. Re-running the same command resumes.")
    p.add_argument("--run-dir", type=Path, required=True, help="run folder (config.json, log.jsonl, metrics.json)")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help=f"change the grid, e.g. --set iters=300 seeds=3 'ks=(2, 6)'; fields: "
                        f"{', '.join(SweepConfig.field_names())}")
    p.add_argument("--summary-only", action="store_true",
                   help="print the summary of the runs already logged in --run-dir and train nothing")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if --run-dir holds a sweep")
    p.add_argument("--compact", nargs=2, metavar=("IN", "OUT"), default=None,
                   help="write a copy of the results file IN with its curves thinned and rounded (see compact) to OUT, and exit")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    args = p.parse_args(argv)
    if args.compact:
        from ..train.provenance import read_json, write_json
        import hashlib

        from ..train.provenance import command_line, git_commit
        src, dst = map(Path, args.compact)
        out = compact(read_json(src))
        out["compacted"] = {"from_sha256": hashlib.sha256(src.read_bytes()).hexdigest(), "commit": git_commit(),
                            "command": command_line()}
        write_json(dst, out)
        print(f"wrote {dst} ({dst.stat().st_size / 1e6:.2f} MB) from {src} ({src.stat().st_size / 1e6:.2f} MB)")
        return 0
    changes = {}
    for item in args.set:
        if "=" not in item:
            p.error(f"--set takes FIELD=VALUE items; got {item!r}")
        k, v = item.split("=", 1)
        changes[k.strip()] = v.strip()
    try:
        cfg = SweepConfig().replace(**changes)
    except (ValueError, TypeError) as e:
        p.error(str(e))
    torch.set_num_threads(args.threads)
    if args.summary_only:
        from ..train.run import RunDir
        runs = [{k: v for k, v in r.items() if k != "step"} for r in RunDir(args.run_dir).history()]
        for pt in summarise(runs)["points"]:
            m = pt.get("miou", {})
            print(f"{pt['md']:4s} {pt['grad']:8s} K={pt['K']:<3d} 1/T={pt['inv_t']!s:6s} n={pt['n']} "
                  f"mIoU {100 * m.get('mean', float('nan')):5.1f} ± {100 * m.get('std', float('nan')):4.1f}  "
                  f"max|g| {pt.get('max_grad_norm_median', float('nan')):.3g}  rho {pt.get('rho', {})}")
        return 0
    data = run_sweep(cfg, args.run_dir, resume=not args.no_resume)
    print(f"wrote {args.run_dir / 'metrics.json'}: {len(data['runs'])} runs, "
          f"{sum(r['status'] != 'ok' for r in data['runs'])} failed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
