"""Figures of the application reports (HamNet and HamGAN runs; Geng et al., ICLR 2021, arXiv 2109.04553).

:mod:`hamlib.seg.report` and :mod:`hamlib.gan.report` return data; the functions here draw it. Each returns
the matplotlib figure and, given ``path``, also saves it as a PNG (and closes it).
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Dict, Optional

from .style import COLORS, book_style

__all__ = ["seg_curves", "seg_predictions", "gan_curves", "gan_seed_curves", "history_series", "CONTEXT_COLORS"]

#: Colour of each global-context choice (seg heads and GAN contexts share them).
CONTEXT_COLORS = {"fcn": COLORS["fcn"], "none": COLORS["none"], "attention": COLORS["attention"],
                  "ham": COLORS["nmf"], "hamburger": COLORS["nmf"]}


def _plt():
    import matplotlib.pyplot as plt  # headless machines fall back to the Agg backend by themselves
    return plt


def _save(fig, path: Optional[Path], dpi: int):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
        _plt().close(fig)
    return fig


def history_series(history, key: str):
    """``(steps, values)`` of ``key`` from a history: a list of log records (``log.jsonl``) or the older dict of
    lists (``{"step": [...], "loss": [...], "val_step": [...], "val_miou": [...]}``)."""
    if isinstance(history, dict):
        steps = history["val_step"] if key.startswith("val_") else history["step"]
        return list(steps), list(history[key])
    rows = [r for r in history if key in r]
    return [r["step"] for r in rows], [r[key] for r in rows]


def seg_curves(summary: dict, path: Optional[Path] = None, *, dpi: int = 80):
    """Training loss and validation mIoU of every head of a :func:`hamlib.seg.report.make_report` summary."""
    plt = _plt()
    book_style()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.6))
    for h, r in summary["heads"].items():
        c = CONTEXT_COLORS.get(h, COLORS.get(r.get("md", ""), "k")) if h not in ("ham", "lightham") \
            else COLORS.get(r.get("md", "nmf"), "k")
        ax[0].plot(*history_series(r["history"], "loss"), label=h, color=c)
        s, v = history_series(r["history"], "val_miou")
        ax[1].plot(s, [100 * x for x in v], "o-", label=h, color=c)
    ax[0].set(xlabel="iteration", ylabel="training loss (cross-entropy, nats)", title="Training loss")
    ax[1].set(xlabel="iteration", ylabel="val mIoU (%)", title="Validation mIoU")
    ax[0].legend()
    ax[1].legend()
    fig.suptitle("\n".join(textwrap.wrap(summary.get("label", ""), 110)), fontsize=8)
    fig.tight_layout()
    return _save(fig, path, dpi)


def seg_predictions(examples: dict, path: Optional[Path] = None, *, dpi: int = 70):
    """Images, ground truth and each head's prediction from :func:`hamlib.seg.report.prediction_examples`."""
    plt = _plt()
    heads = list(examples["predictions"])
    n = len(examples["images"])
    fig, axs = plt.subplots(n, 2 + len(heads), figsize=(2.4 * (2 + len(heads)), 1.9 * n), squeeze=False)
    for r in range(n):
        axs[r, 0].imshow(examples["images"][r])
        axs[r, 1].imshow(examples["labels"][r])
        for c, h in enumerate(heads):
            axs[r, 2 + c].imshow(examples["predictions"][h][r])
    for c, t in enumerate(["image", "ground truth", *(examples["titles"][h] for h in heads)]):
        axs[0, c].set_title(t, fontsize=9)
    for a in axs.flat:
        a.axis("off")
    fig.tight_layout()
    return _save(fig, path, dpi)


def gan_curves(runs: Dict[str, dict], path: Optional[Path] = None, *, dpi: int = 90,
               title: str = "CPU, reduced scale"):
    """Hinge losses and classifier-FID over training of HamGAN runs (``{context: metrics}``)."""
    plt = _plt()
    book_style()
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for c, m in runs.items():
        h, col = m["history"], CONTEXT_COLORS.get(c, "k")
        ax[0].plot([r["step"] for r in h], [r["d_loss"] for r in h], color=col, label=f"{c}: D")
        ax[0].plot([r["step"] for r in h], [r["g_loss"] for r in h], color=col, ls="--", label=f"{c}: G")
        e = [r for r in m["evals"] if "classifier_fid" in r]
        ax[1].plot([r["step"] for r in e], [r["classifier_fid"] for r in e], "o-", color=col, label=c)
    ax[0].set(xlabel="training iteration", ylabel="hinge loss", title=f"losses ({title})")
    ax[1].set(xlabel="training iteration", ylabel="classifier-FID (offline)",
              title="classifier-FID of EMA G, lower is better")
    ax[0].legend(fontsize=7, ncol=3)
    ax[1].legend()
    fig.tight_layout()
    return _save(fig, path, dpi)


def gan_seed_curves(summary: dict, path: Optional[Path] = None, *, dpi: int = 90):
    """Classifier-FID and the gates over training, per context: the mean over seeds and the band from the lowest
    to the highest seed (a :func:`hamlib.gan.study.make_study` summary)."""
    import numpy as np

    plt = _plt()
    book_style()
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.6))
    for c in summary["contexts"]:
        recs = [r for r in summary["records"] if r["context"] == c]
        steps = sorted({e["step"] for r in recs for e in r["evals"] if e.get("classifier_fid") is not None})
        col = CONTEXT_COLORS.get(c, "k")
        for key, axis in (("classifier_fid", ax[0]), ("gate_G", ax[1]), ("gate_D", ax[2])):
            rows = [[next((e[key] for e in r["evals"] if e["step"] == s and e.get(key) is not None), np.nan)
                     for s in steps] for r in recs]
            v = np.array(rows, dtype=float)
            if np.isnan(v).all():
                continue
            axis.plot(steps, np.nanmean(v, 0), "o-", color=col, label=f"{c} ({len(recs)} seeds)", ms=3)
            axis.fill_between(steps, np.nanmin(v, 0), np.nanmax(v, 0), color=col, alpha=0.2)
    ax[0].set(xlabel="training iteration", ylabel="classifier-FID (offline, log scale)", yscale="log",
              title="classifier-FID of EMA G (lower is better)")
    ax[1].set(xlabel="training iteration", ylabel="gate", title="gate of G's context block")
    ax[2].set(xlabel="training iteration", ylabel="gate", title="gate of D's context block")
    for a in ax:
        a.legend(fontsize=7)
    fig.suptitle("\n".join(textwrap.wrap(summary.get("label", "") + ": mean over seeds, band from the lowest to "
                                           "the highest seed", 120)), fontsize=8)
    fig.tight_layout()
    return _save(fig, path, dpi)
