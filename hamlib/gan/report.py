"""Collect HamGAN runs (Geng et al., ICLR 2021, arXiv 2109.04553) into small, committable book artefacts.

``python -m hamlib.gan report runs/hamgan/cpu-* --out book/results/hamgan --classifier runs/hamgan/classifier``
copies each run's metrics and final sample grid, adds the classifier's record and a real-vs-real
classifier-FID floor (same number of images), and writes ``summary.json`` (with provenance); the CLI then
draws ``curves.png`` with :mod:`hamlib.viz.reports`. Data only: nothing here imports matplotlib, and no
checkpoint is unpickled beyond tensors (an unfinished run is read from its ``config.json``, ``log.jsonl`` and
the checked checkpoint reader).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

from ..measure import count_params
from ..train import RunDir, provenance, read_checkpoint, write_json
from .config import GANConfig
from .fid import OFFLINE_LABEL, feature_stats, frechet_distance
from .models import from_config

__all__ = ["real_fid_floor", "load_run", "collect_runs", "make_report"]


@torch.no_grad()
def real_fid_floor(classifier: Path, n: int, data_root: Optional[str] = None, *, data: str = "cifar10") -> float:
    """Classifier-FID between two real samples of ``n`` images: what a perfect generator would score at this ``n``.

    CIFAR-10: ``n`` training images (the subset the trainer uses) against ``n`` test images. MNIST (only its
    test set is used offline): the trainer's ``n`` against ``n`` other images of the same set (needs 2n <= 10,000).
    """
    import numpy as np

    from .classifier import load_classifier
    from .data import load_cifar10, load_mnist, to_tensor

    if data == "mnist":
        x, _ = load_mnist(Path(data_root) / "mnist" if data_root else None, "test")
        if 2 * n > len(x):
            raise ValueError(f"n must be at most {len(x) // 2} for two disjoint MNIST samples; got {n}")
        perm = np.random.default_rng(0).permutation(len(x))
        samples = [x[perm[:n]], x[perm[n:2 * n]]]
    else:
        samples = []
        for split in ("train", "test"):
            x, _ = load_cifar10(data_root, split)
            samples.append(x[np.random.default_rng(0).permutation(len(x))[:n]])
    xs = [to_tensor(np.ascontiguousarray(s)) for s in samples]
    clf = load_classifier(classifier)
    s = [feature_stats(clf.features, lambda i, b, x=x: x[i:i + b], n) for x in xs]
    return frechet_distance(*s[0], *s[1])


def load_run(d: Path, at_step: Optional[int] = None) -> dict:
    """A run's metrics: ``metrics.json`` of a finished run, else rebuilt from its ``config.json``, ``log.jsonl``
    and checkpoint; with ``at_step``, cut back to that step (which must be an evaluation step)."""
    run = RunDir(d)
    if run.metrics_path.is_file():
        m = run.metrics()
    elif run.checkpoint.is_file():  # unfinished run
        cfg = run.config(GANConfig)
        extra = read_checkpoint(run.checkpoint)["extra"]
        G, D = from_config(cfg)
        log = run.history()
        step = max((r["step"] for r in log), default=0)
        m = {"context": cfg.context, "iters": step, "config": cfg.to_dict(),
             "sec_per_iter": extra["train_wall_s"] / max(1, step), "train_wall_s": extra["train_wall_s"],
             "params_G": count_params(G), "params_D": count_params(D), "memory": extra.get("memory", {}),
             "history": [r for r in log if "d_loss" in r], "evals": [r for r in log if "d_loss" not in r],
             "provenance": provenance(note=f"rebuilt from {run.path.name}/ of an unfinished run")}
    else:
        raise FileNotFoundError(f"no {RunDir.METRICS} or {RunDir.CHECKPOINT} in {d}; has the run started?")
    if at_step is not None:
        if not any(e["step"] == at_step for e in m["evals"]):
            raise ValueError(f"{d} has no evaluation at step {at_step}; it has {[e['step'] for e in m['evals']]}")
        m["history"] = [h for h in m["history"] if h["step"] <= at_step]
        m["evals"] = [e for e in m["evals"] if e["step"] <= at_step]
        m["iters_run"], m["iters"] = m["iters"], at_step
    fids = [e["classifier_fid"] for e in m["evals"] if "classifier_fid" in e]
    m["final_classifier_fid"] = fids[-1] if fids else None
    m["fid_label"] = OFFLINE_LABEL
    return m


def collect_runs(run_dirs: Sequence[Path], at_step: Optional[int] = None) -> Dict[str, dict]:
    """``{context: metrics}`` of the runs (see :func:`load_run`), in the given order."""
    runs = {}
    for d in map(Path, run_dirs):
        m = load_run(d, at_step)
        runs[m["context"]] = m
    return runs


def make_report(run_dirs: Sequence[Path], out: Path, *, classifier: Optional[Path] = None,
                data_root: Optional[str] = None, label: str = "CPU, reduced scale",
                at_step: Optional[int] = None) -> dict:
    """Copy metrics and samples of ``run_dirs`` into ``out`` and write ``summary.json``; returns the summary.

    Args:
        run_dirs: run folders written by :func:`hamlib.gan.train.train`.
        out: the artefact folder (e.g. ``book/results/hamgan``).
        classifier: the classifier's run folder (or weights); adds its record and the real-vs-real
            classifier-FID floor.
        at_step: compare all runs at this evaluation step (e.g. when one run could not finish); the
            seconds per iteration then average over what each run trained.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    runs = collect_runs(run_dirs, at_step)
    for d, (c, m) in zip(map(Path, run_dirs), runs.items()):
        write_json(out / f"metrics_{c}.json", m)
        grids = sorted((d / "samples").glob("samples_*.png"))
        grid = d / "samples" / f"samples_{m['iters']:06d}.png"
        if grid.is_file() or grids:
            shutil.copyfile(grid if grid.is_file() else grids[-1], out / f"samples_{c}.png")
        rows.append({"context": c, "iters": m["iters"], "iters_run": m.get("iters_run", m["iters"]),
                     "classifier_fid": m["final_classifier_fid"],
                     "best_classifier_fid": min((e["classifier_fid"] for e in m["evals"] if "classifier_fid" in e),
                                                default=None),
                     "sec_per_iter": m["sec_per_iter"], "train_wall_s": m["train_wall_s"],
                     "params_G": m["params_G"], "params_D": m["params_D"],
                     "saved_MiB_G_step": m["memory"]["saved_tensor_bytes_G_step"] / 2 ** 20,
                     "saved_MiB_D_step": m["memory"]["saved_tensor_bytes_D_step"] / 2 ** 20,
                     "gate_G": m["evals"][-1].get("gate_G") if m["evals"] else None,
                     "gate_D": m["evals"][-1].get("gate_D") if m["evals"] else None,
                     "device": m["provenance"]["device"], "date": m["provenance"]["date"]})
    summary = {"label": label, "fid_label": OFFLINE_LABEL, "rows": rows, "at_step": at_step,
               "config": next(iter(runs.values()))["config"] if runs else None}
    if classifier is not None:
        clf = Path(classifier)
        clf_run = RunDir(clf if clf.is_dir() else clf.parent)
        if clf_run.metrics_path.is_file():
            rec = clf_run.metrics()
            summary["classifier"] = {k: v for k, v in rec.items() if k != "history"}
            write_json(out / "classifier.json", summary["classifier"])
        n = summary["config"]["n_eval"]
        summary["real_vs_real_classifier_fid"] = {"n": n, "fid": real_fid_floor(clf, n, data_root)}
    summary["provenance"] = provenance()
    write_json(out / "summary.json", summary)
    return summary
