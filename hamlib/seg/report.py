"""Collect HamNet run folders (Geng et al., ICLR 2021, arXiv 2109.04553) into small, committable book artefacts.

``python -m hamlib.seg report --runs runs/camvid-cpu --out book/results/hamnet`` reads
``runs/camvid-cpu/<head>/metrics.json`` and ``last.pt`` for each head, measures the cost of each decode head
(:func:`hamlib.seg.evaluate.head_cost`) and writes, into ``out``:

* ``camvid_cpu.json``: per head the test scores, training history, training wall time, head cost and the
  run's provenance, plus the config and this report's own provenance;
* ``camvid_cpu_curves.png``: training loss and validation mIoU of every head;
* ``camvid_cpu_predictions.png``: a few test images, their ground truth and each head's prediction.

The run folders come from ``python -m hamlib.seg train --preset camvid-cpu --head <head> --run-dir
runs/camvid-cpu/<head>``. Matplotlib is imported only when a report is made.
"""
from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import torch

from ..train import load_checkpoint, provenance, read_json, write_json
from .presets import SegConfig

__all__ = ["CAMVID_PALETTE", "IGNORE_COLOR", "make_report", "load_run", "colorize"]

#: RGB colour (0-255) of each of the 11 CamVid classes, in the order of ``CAMVID_CLASSES`` (SegNet colours).
CAMVID_PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (0, 0, 192), (128, 128, 0), (192, 128, 128),
    (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))
#: RGB colour of the ignore label (255): black.
IGNORE_COLOR: Tuple[int, int, int] = (0, 0, 0)

_DATASET_NAMES = {"camvid": "CamVid", "voc": "PASCAL VOC", "synthetic": "synthetic shapes"}


def _config(d: dict) -> SegConfig:
    """A :class:`SegConfig` from its JSON form (lists back to tuples, unknown keys dropped)."""
    names = {f.name for f in dataclasses.fields(SegConfig)}
    kw = {k: v for k, v in d.items() if k in names}
    for k in ("crop", "resize", "scales", "eval_scales"):
        if isinstance(kw.get(k), list):
            kw[k] = tuple(kw[k])
    return SegConfig(**kw)


def _train_hint(run_dir: Path, head: str, preset: Optional[str]) -> str:
    return (f"python -m hamlib.seg train --preset {preset or 'camvid-cpu'} --head {head} "
            f"--run-dir {run_dir}")


def load_run(run_dir: Path, head: str = "ham", preset: Optional[str] = None) -> Tuple[dict, SegConfig, torch.nn.Module]:
    """Read one finished run folder.

    Args:
        run_dir: a folder written by :func:`hamlib.seg.train.train` (``metrics.json`` and ``last.pt``).
        head: the head this folder should hold; only used in error messages.
        preset: the preset to name in error messages.

    Returns:
        ``(metrics, config, model)``: the metrics record, its config and the model with the weights of
        ``last.pt``, in eval mode on the CPU.

    Raises:
        FileNotFoundError: the folder, ``metrics.json`` or ``last.pt`` is missing, with the command that makes it.
        ValueError: the run has no test scores (it was trained with ``final_eval=False`` or has no test split).
    """
    from .train import build_from_config

    run_dir = Path(run_dir)
    hint = _train_hint(run_dir, head, preset)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} for head {head!r} does not exist; create it with: {hint}")
    for name in ("metrics.json", "last.pt"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir / name} is missing (has the run for head {head!r} finished?); "
                                    f"create or finish it with: {hint}")
    m = read_json(run_dir / "metrics.json")
    if "test" not in m:
        raise ValueError(f"{run_dir / 'metrics.json'} has no test scores; evaluate it with: "
                         f"python -m hamlib.seg eval --run-dir {run_dir} --split test")
    cfg = _config(m["config"])
    model = build_from_config(cfg)
    load_checkpoint(run_dir / "last.pt", model=model, restore_rng=False)
    return m, cfg, model.eval()


def colorize(label: torch.Tensor, palette: Sequence[Sequence[int]] = CAMVID_PALETTE,
             ignore_index: int = 255):
    """An RGB image (H, W, 3) in [0, 1] of a label map (H, W); the ignore label is black.

    Classes beyond ``palette`` wrap around it.
    """
    import numpy as np

    pal = np.array([*palette, IGNORE_COLOR], dtype=np.float64) / 255
    lab = label.detach().cpu().numpy().astype(np.int64)
    idx = np.where(lab == ignore_index, len(palette), lab % len(palette))
    return pal[idx]


def _default_label(runs: Dict[str, dict], cfg: SegConfig, preset: Optional[str]) -> str:
    dev = {m["provenance"].get("device", "cpu").split(":")[0] for m in runs.values()}
    dev_s = "/".join(sorted("CPU" if d == "cpu" else "GPU" if d == "cuda" else d for d in dev))
    size = cfg.resize or cfg.crop
    bb = "tiny ResNet" if cfg.backbone == "tiny" else cfg.backbone.replace("resnet", "ResNet-")
    init = f"{cfg.pretrained}-pretrained" if cfg.pretrained else "from scratch"
    iters = sorted({m.get("iters", m["config"]["iters"]) for m in runs.values()})
    scale = "" if preset == "voc" else ", reduced scale"
    return (f"{dev_s}{scale} ({_DATASET_NAMES.get(cfg.dataset, cfg.dataset)} {size[0]}x{size[1]}, {bb} {init}, "
            f"{'/'.join(map(str, iters))} iterations, 1 seed) -- not comparable to published numbers")


def _head_title(head: str, cfg: SegConfig) -> str:
    return {"fcn": "FCN", "attention": "self-attention", "ham": f"HamNet ({cfg.md.upper()})",
            "lightham": f"LightHam ({cfg.md.upper()})"}.get(head, head)


def _head_color(head: str, cfg: SegConfig, colors: dict) -> str:
    return colors.get(cfg.md if head in ("ham", "lightham") else head, "k")


def make_report(runs_dir: Path | str, out_dir: Path | str, heads: Sequence[str] = ("fcn", "attention", "ham"), *,
                size: Optional[Tuple[int, int]] = (180, 240), latency_repeats: int = 20,
                prediction_indices: Sequence[int] = (10, 120, 200), label: Optional[str] = None,
                name: str = "camvid_cpu", data_root: Optional[str] = None, device: str = "cpu") -> dict:
    """Write the JSON summary, the curves figure and the predictions figure of a set of HamNet runs.

    Args:
        runs_dir: folder holding one run folder per head, ``runs_dir/<head>/{metrics.json,last.pt}``.
        out_dir: the artefact folder (e.g. ``book/results/hamnet``); created if needed.
        heads: the heads to collect, in table and figure order.
        size: (H, W) of the image at which the head cost is measured; ``None``: the config's resize or crop.
        latency_repeats: forwards whose median gives the head latency.
        prediction_indices: test images to show; indices past the end of the test set are dropped (if none
            is left, the first three images are shown).
        label: one line that says what these numbers are; default: derived from the runs' config.
        name: stem of the three files (``<name>.json``, ``<name>_curves.png``, ``<name>_predictions.png``).
        data_root: override the runs' ``data_root`` (to find the test images elsewhere).
        device: where the head cost is measured and the predictions are made.

    Returns:
        The summary written to ``<name>.json``: ``label``, ``heads`` (per head: ``test``, ``history``,
        ``train_wall_s``, ``cost``, ``run_provenance``), ``config`` and ``provenance``.

    Raises:
        FileNotFoundError: a run folder or one of its files is missing; the message names the train command.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..viz import COLORS, book_style
    from .evaluate import head_cost, predict
    from .train import build_data

    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"runs folder {runs_dir} does not exist; train one run per head into it, e.g.: "
                                + _train_hint(runs_dir / heads[0], heads[0], None))
    runs, cfgs, models = {}, {}, {}
    for h in heads:  # check every folder before the slow part
        runs[h], cfgs[h], models[h] = load_run(runs_dir / h, h, None)
    cfg = cfgs[heads[-1]]
    preset = runs[heads[-1]]["provenance"].get("preset")
    size = tuple(size) if size else tuple(cfg.resize or cfg.crop)

    out: dict = {"label": label or _default_label(runs, cfg, preset), "heads": {}}
    for h in heads:
        m = runs[h]
        cost = head_cost(models[h], size, device=device, repeats=latency_repeats)
        models[h] = models[h].cpu()
        out["heads"][h] = {"test": m["test"], "history": m["history"], "train_wall_s": m["train_wall_s"],
                           "cost": cost, "run_provenance": m["provenance"]}
    out["config"] = runs[heads[-1]]["config"]
    out["provenance"] = provenance(
        device=device, preset=preset, runs_dir=str(runs_dir),
        cost_note=f"head latency: median of {latency_repeats} forwards at {size[0]}x{size[1]}, "
                  f"{torch.get_num_threads()} thread(s) on {device}; compare ratios, not absolute ms")
    write_json(out_dir / f"{name}.json", out)

    book_style()
    title = "\n".join(textwrap.wrap(out["label"], 110))
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.6))
    for h in heads:
        hist, c = out["heads"][h]["history"], _head_color(h, cfgs[h], COLORS)
        ax[0].plot(hist["step"], hist["loss"], label=h, color=c)
        ax[1].plot(hist["val_step"], [100 * v for v in hist["val_miou"]], "o-", label=h, color=c)
    ax[0].set(xlabel="iteration", ylabel="training loss (cross-entropy, nats)", title="Training loss")
    ax[1].set(xlabel="iteration", ylabel="val mIoU (%)", title="Validation mIoU")
    ax[0].legend()
    ax[1].legend()
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / f"{name}_curves.png", dpi=80)
    plt.close(fig)

    pcfg = cfg if data_root is None else cfg.replace(data_root=data_root)
    test = build_data(pcfg, cfg.test_split or cfg.val_split)
    idx = [i for i in prediction_indices if 0 <= i < len(test)] or list(range(min(3, len(test))))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    fig, axs = plt.subplots(len(idx), 2 + len(heads), figsize=(2.4 * (2 + len(heads)), 1.9 * len(idx)),
                            squeeze=False)
    with torch.no_grad():
        for r, i in enumerate(idx):
            img, lab = test[i]
            axs[r, 0].imshow((img * std + mean).clamp(0, 1).permute(1, 2, 0).numpy())
            axs[r, 1].imshow(colorize(lab))
            for c, h in enumerate(heads):
                axs[r, 2 + c].imshow(colorize(predict(models[h], img[None])[0].argmax(0)))
    for c, t in enumerate(["image", "ground truth", *(_head_title(h, cfgs[h]) for h in heads)]):
        axs[0, c].set_title(t, fontsize=9)
    for a in axs.flat:
        a.axis("off")
    fig.tight_layout()
    fig.savefig(out_dir / f"{name}_predictions.png", dpi=70)
    plt.close(fig)
    return out
