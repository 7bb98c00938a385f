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


def make_report(run_dirs: Sequence[Path], out: Path, *, classifier: Optional[Path] = None,
                data_root: Optional[str] = None, label: str = "CPU, reduced scale") -> dict:
    """Copy metrics and final samples of ``run_dirs`` into ``out`` and write ``summary.json`` and ``curves.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs, rows = {}, []
    for d in map(Path, run_dirs):
        if not (d / "metrics.json").is_file():
            raise FileNotFoundError(f"no metrics.json in {d}; has the run finished?")
        m = read_json(d / "metrics.json")
        c = m["context"]
        runs[c] = m
        shutil.copyfile(d / "metrics.json", out / f"metrics_{c}.json")
        shutil.copyfile(sorted(d.glob("samples_*.png"))[-1], out / f"samples_{c}.png")
        rows.append({"context": c, "steps": m["steps"], "classifier_fid": m["final_classifier_fid"],
                     "best_classifier_fid": min((e["classifier_fid"] for e in m["evals"] if "classifier_fid" in e),
                                                default=None),
                     "sec_per_step": m["sec_per_step"], "train_time_s": m["train_time_s"],
                     "params_G": m["params_G"], "params_D": m["params_D"],
                     "saved_MiB_G_step": m["memory"]["saved_tensor_bytes_G_step"] / 2 ** 20,
                     "saved_MiB_D_step": m["memory"]["saved_tensor_bytes_D_step"] / 2 ** 20,
                     "gate_G": m["evals"][-1].get("gate_G"), "gate_D": m["evals"][-1].get("gate_D"),
                     "device": m["provenance"]["device"], "date": m["provenance"]["date"]})
    summary = {"label": label, "fid_label": OFFLINE_LABEL, "rows": rows,
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
