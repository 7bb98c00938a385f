"""Collect HamGAN runs (Geng et al., ICLR 2021, arXiv 2109.04553) into small, committable book artefacts.

``python -m hamlib.gan report runs/hamgan/cpu-* --out book/results/hamgan --classifier runs/hamgan/classifier.pt``
copies each run's ``metrics.json`` and final sample grid, adds the classifier's record and a real-vs-real
classifier-FID floor (same number of images), and writes ``summary.json`` (with provenance) and ``curves.png``.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..train import provenance, read_json, write_json
from .fid import OFFLINE_LABEL, feature_stats, frechet_distance

__all__ = ["real_fid_floor", "make_report"]


@torch.no_grad()
def real_fid_floor(classifier: Path, n: int, data_root: Optional[str] = None) -> float:
    """Classifier-FID between ``n`` CIFAR-10 training images (the subset the trainer uses) and ``n`` test images:
    what two real samples of this size score, i.e. the best a generator can hope for at this ``n``."""
    import numpy as np

    from .classifier import load_classifier
    from .data import load_cifar10, to_tensor

    clf = load_classifier(classifier)
    xs = []
    for split in ("train", "test"):
        x, _ = load_cifar10(data_root, split)
        xs.append(to_tensor(np.ascontiguousarray(x[np.random.default_rng(0).permutation(len(x))[:n]])))
    s = [feature_stats(clf.features, lambda i, b, x=x: x[i:i + b], n) for x in xs]
    return frechet_distance(*s[0], *s[1])


def _curves(runs: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..viz import COLORS, book_style

    book_style()
    colors = {"none": COLORS["none"], "attention": COLORS["attention"], "hamburger": COLORS["nmf"]}
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for c, m in runs.items():
        h = m["history"]
        ax[0].plot([r["step"] for r in h], [r["d_loss"] for r in h], color=colors[c], label=f"{c}: D")
        ax[0].plot([r["step"] for r in h], [r["g_loss"] for r in h], color=colors[c], ls="--", label=f"{c}: G")
        e = [r for r in m["evals"] if "classifier_fid" in r]
        ax[1].plot([r["step"] for r in e], [r["classifier_fid"] for r in e], "o-", color=colors[c], label=c)
    ax[0].set(xlabel="training step", ylabel="hinge loss", title="losses (CPU, reduced scale)")
    ax[1].set(xlabel="training step", ylabel="classifier-FID (offline)", title="classifier-FID of EMA G, lower is better")
    ax[0].legend(fontsize=7, ncol=3)
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _load_run(d: Path, at_step: Optional[int]) -> dict:
    """A run's metrics: ``metrics.json`` of a finished run, else the state in its last checkpoint; with
    ``at_step``, cut back to that step (which must be an evaluation step)."""
    if (d / "metrics.json").is_file():
        m = read_json(d / "metrics.json")
    elif (d / "last.pt").is_file():  # unfinished run: rebuild the record from the checkpoint
        from .presets import GANConfig
        from .train import build_models

        ck = torch.load(d / "last.pt", map_location="cpu", weights_only=False)
        st, cfg = ck["extra"]["state"], dict(ck["extra"]["config"])
        cfg["betas"] = tuple(cfg["betas"])
        G, D = build_models(GANConfig(**cfg), ck["extra"]["context"])
        m = {"context": ck["extra"]["context"], "steps": st["step"], "config": st["config"],
             "sec_per_step": st["train_time_s"] / max(1, st["step"]), "train_time_s": st["train_time_s"],
             "params_G": sum(p.numel() for p in G.parameters()), "params_D": sum(p.numel() for p in D.parameters()),
             "memory": st.get("memory", {}), "history": st["history"], "evals": st["evals"],
             "provenance": provenance(note=f"rebuilt from {d.name}/last.pt of an unfinished run")}
    else:
        raise FileNotFoundError(f"no metrics.json or last.pt in {d}; has the run started?")
    if at_step is not None:
        if not any(e["step"] == at_step for e in m["evals"]):
            raise ValueError(f"{d} has no evaluation at step {at_step}; it has {[e['step'] for e in m['evals']]}")
        m["history"] = [h for h in m["history"] if h["step"] <= at_step]
        m["evals"] = [e for e in m["evals"] if e["step"] <= at_step]
        m["steps_run"], m["steps"] = m["steps"], at_step
        fids = [e["classifier_fid"] for e in m["evals"] if "classifier_fid" in e]
        m["final_classifier_fid"] = fids[-1] if fids else None
    m["fid_label"] = OFFLINE_LABEL
    return m


def make_report(run_dirs: Sequence[Path], out: Path, *, classifier: Optional[Path] = None,
                data_root: Optional[str] = None, label: str = "CPU, reduced scale",
                at_step: Optional[int] = None) -> dict:
    """Copy metrics and samples of ``run_dirs`` into ``out`` and write ``summary.json`` and ``curves.png``.

    Args:
        run_dirs: run folders written by :func:`hamlib.gan.train.train_gan`.
        out: the artefact folder (e.g. ``book/results/hamgan``).
        classifier: ``classifier.pt``; adds its record and the real-vs-real classifier-FID floor.
        at_step: compare all runs at this evaluation step (e.g. when one run could not finish); the
            seconds per step then average over what each run trained.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs, rows = {}, []
    for d in map(Path, run_dirs):
        m = _load_run(d, at_step)
        c = m["context"]
        runs[c] = m
        write_json(out / f"metrics_{c}.json", m)
        grid = d / f"samples_{m['steps']:06d}.png"
        shutil.copyfile(grid if grid.is_file() else sorted(d.glob("samples_*.png"))[-1], out / f"samples_{c}.png")
        rows.append({"context": c, "steps": m["steps"], "steps_run": m.get("steps_run", m["steps"]),
                     "classifier_fid": m["final_classifier_fid"],
                     "best_classifier_fid": min((e["classifier_fid"] for e in m["evals"] if "classifier_fid" in e),
                                                default=None),
                     "sec_per_step": m["sec_per_step"], "train_time_s": m["train_time_s"],
                     "params_G": m["params_G"], "params_D": m["params_D"],
                     "saved_MiB_G_step": m["memory"]["saved_tensor_bytes_G_step"] / 2 ** 20,
                     "saved_MiB_D_step": m["memory"]["saved_tensor_bytes_D_step"] / 2 ** 20,
                     "gate_G": m["evals"][-1].get("gate_G"), "gate_D": m["evals"][-1].get("gate_D"),
                     "device": m["provenance"]["device"], "date": m["provenance"]["date"]})
    summary = {"label": label, "fid_label": OFFLINE_LABEL, "rows": rows, "at_step": at_step,
               "config": next(iter(runs.values()))["config"] if runs else None}
    if classifier is not None:
        clf_json = Path(classifier).with_suffix(".json")
        if clf_json.is_file():
            summary["classifier"] = read_json(clf_json)
            shutil.copyfile(clf_json, out / "classifier.json")
        n = summary["config"]["n_eval"]
        summary["real_vs_real_classifier_fid"] = {"n": n, "fid": real_fid_floor(Path(classifier), n, data_root)}
    summary["provenance"] = provenance()
    write_json(out / "summary.json", summary)
    if runs:
        _curves(runs, out / "curves.png")
    return summary
