"""Collect HamNet run folders (Geng et al., ICLR 2021, arXiv 2109.04553) into small, committable book artefacts.

Data only: the figures are drawn by :mod:`hamlib.viz.reports` from what these functions return.
``python -m hamlib.seg report --runs runs/camvid-cpu --out book/results/hamnet`` reads
``runs/camvid-cpu/<head>/`` (its config, metrics and checkpoint) for each head, measures the
cost of each decode head (:func:`hamlib.seg.evaluate.head_cost`) and writes ``<name>.json``: per head the
test scores, training history, training wall time, head cost and the run's provenance, plus the config and
this report's own provenance; then the two figures ``<name>_curves.png`` and ``<name>_predictions.png``.

The run folders come from ``python -m hamlib.seg train --preset camvid-cpu --set head=<head> --run-dir
runs/camvid-cpu/<head>``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ..train import RunDir, provenance, write_json
from .config import SegConfig
from .evaluate import head_cost, predict
from .model import from_config
from .transforms import build_data

__all__ = ["CAMVID_PALETTE", "IGNORE_COLOR", "make_report", "load_run", "colorize", "prediction_examples",
           "head_title"]

#: RGB colour (0-255) of each of the 11 CamVid classes, in the order of ``CAMVID_CLASSES`` (SegNet colours).
CAMVID_PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (0, 0, 192), (128, 128, 0), (192, 128, 128),
    (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))
#: RGB colour of the ignore label (255): black.
IGNORE_COLOR: Tuple[int, int, int] = (0, 0, 0)

_DATASET_NAMES = {"camvid": "CamVid", "voc": "PASCAL VOC", "synthetic": "synthetic shapes"}


def _train_hint(run_dir: Path, head: str, preset: Optional[str]) -> str:
    return (f"python -m hamlib.seg train --preset {preset or 'camvid-cpu'} --set head={head} "
            f"--run-dir {run_dir}")


def load_run(run_dir: Path, head: str = "ham", preset: Optional[str] = None) -> Tuple[dict, SegConfig, torch.nn.Module]:
    """Read one finished run folder.

    Args:
        run_dir: a folder written by :func:`hamlib.seg.train.train`.
        head: the head this folder should hold; only used in error messages.
        preset: the preset to name in error messages.

    Returns:
        ``(metrics, config, model)``: the metrics record, its config (from ``config.json``) and the model
        with the weights of the checkpoint, in eval mode on the CPU.

    Raises:
        FileNotFoundError: the folder or one of its files is missing, with the command that makes it.
        ValueError: the run has no test scores (it was trained with ``final_eval=False`` or has no test split).
    """
    run = RunDir(run_dir)
    hint = _train_hint(run.path, head, preset)
    if not run.path.is_dir():
        raise FileNotFoundError(f"run folder {run.path} for head {head!r} does not exist; create it with: {hint}")
    for p in (run.config_path, run.metrics_path, run.checkpoint):
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing (has the run for head {head!r} finished?); "
                                    f"create or finish it with: {hint}")
    m = run.metrics()
    if "test" not in m:
        raise ValueError(f"{run.metrics_path} has no test scores; evaluate it with: "
                         f"python -m hamlib.seg eval --run-dir {run.path} --split test")
    cfg = run.config(SegConfig)
    model = from_config(cfg)
    run.load(models={"model": model}, restore_rng=False)
    return m, cfg, model.eval()


def colorize(label: torch.Tensor, palette: Sequence[Sequence[int]] = CAMVID_PALETTE,
             ignore_index: int = 255) -> np.ndarray:
    """An RGB image (H, W, 3) in [0, 1] of a label map (H, W); the ignore label is black.

    Classes beyond ``palette`` wrap around it.
    """
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


def head_title(head: str, md: str) -> str:
    """How a head is named in tables and figures, e.g. ``HamNet (NMF)``."""
    return {"fcn": "FCN", "attention": "self-attention", "ham": f"HamNet ({md.upper()})",
            "lightham": f"LightHam ({md.upper()})"}.get(head, head)


def make_report(runs_dir: Path | str, out_dir: Path | str, heads: Sequence[str] = ("fcn", "attention", "ham"), *,
                size: Optional[Tuple[int, int]] = (180, 240), latency_repeats: int = 20,
                label: Optional[str] = None, name: str = "camvid_cpu", device: str = "cpu") -> dict:
    """Write ``<name>.json`` summarising a set of HamNet runs (one per head) and return it.

    Args:
        runs_dir: folder holding one run folder per head, ``runs_dir/<head>/``.
        out_dir: the artefact folder (e.g. ``book/results/hamnet``); created if needed.
        heads: the heads to collect, in table order.
        size: (H, W) of the image at which the head cost is measured; ``None``: the config's resize or crop.
        latency_repeats: forwards whose median gives the head latency.
        label: one line that says what these numbers are; default: derived from the runs' config.
        name: stem of the JSON file.
        device: where the head cost is measured.

    Returns:
        ``label``, ``heads`` (per head: ``test``, ``history``, ``train_wall_s``, ``cost``, ``md``,
        ``run_provenance``), ``config`` and ``provenance``.

    Raises:
        FileNotFoundError: a run folder or one of its files is missing; the message names the train command.
    """
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
        out["heads"][h] = {"test": m["test"], "history": m["history"], "train_wall_s": m["train_wall_s"],
                           "cost": cost, "md": cfgs[h].md, "run_provenance": m["provenance"]}
    out["config"] = runs[heads[-1]]["config"]
    out["provenance"] = provenance(
        device=device, preset=preset, runs_dir=str(runs_dir),
        cost_note=f"head latency: median of {latency_repeats} forwards at {size[0]}x{size[1]}, "
                  f"{torch.get_num_threads()} thread(s) on {device}; compare ratios, not absolute ms")
    write_json(out_dir / f"{name}.json", out)
    return out


@torch.no_grad()
def prediction_examples(runs_dir: Path | str, heads: Sequence[str], indices: Sequence[int] = (10, 120, 200), *,
                        data_root: Optional[str] = None) -> dict:
    """Test images, their ground truth and each head's prediction, as RGB arrays for a figure.

    Indices past the end of the test set are dropped (if none is left, the first three images are used).

    Returns:
        A dict: ``images`` and ``labels``, lists of RGB arrays (H, W, 3); ``predictions``, one such list per
        head; ``titles``, one name per head. Colours are in [0, 1].
    """
    loaded = {h: load_run(Path(runs_dir) / h, h) for h in heads}
    cfg = loaded[heads[-1]][1]
    if data_root is not None:
        cfg = cfg.replace(data_root=data_root)
    test = build_data(cfg, cfg.test_split or cfg.val_split)
    idx = [i for i in indices if 0 <= i < len(test)] or list(range(min(3, len(test))))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    out: dict = {"images": [], "labels": [], "predictions": {h: [] for h in heads},
                 "titles": {h: head_title(h, loaded[h][1].md) for h in heads}}
    for i in idx:
        img, lab = test[i]
        out["images"].append((img * std + mean).clamp(0, 1).permute(1, 2, 0).numpy())
        out["labels"].append(colorize(lab))
        for h in heads:
            out["predictions"][h].append(colorize(predict(loaded[h][2], img[None])[0].argmax(0)))
    return out

