"""Command line for HamNet (Geng et al., ICLR 2021, arXiv 2109.04553).

Examples::

    python -m hamlib.seg train --preset tiny --run-dir runs/tiny-ham
    python -m hamlib.seg train --preset camvid-cpu --run-dir runs/cpu-fcn --set head=fcn iters=400
    python -m hamlib.seg train --preset tiny --run-dir runs/tiny-bptt --set grad=bptt md=vq R=8
    torchrun --nproc_per_node 8 -m hamlib.seg train --preset voc --run-dir runs/voc-ham
    python -m hamlib.seg eval --run-dir runs/tiny-ham --split test --scales 0.75 1 1.25 --flip
    python -m hamlib.seg cost --preset camvid-cpu --size 180 240
    python -m hamlib.seg report --runs runs/camvid-cpu --out book/results/hamnet --threads 1

A run folder resumes when the same command is run again; another config there is refused (--no-resume).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

from ..train import cli
from .config import HEADS, PRESETS, SegConfig

__all__ = ["main", "parser"]

SPLITS = ("train", "val", "test", "trainaug")


def parser():
    """The argument parser of ``python -m hamlib.seg``."""
    ap = cli.new_parser("python -m hamlib.seg", __doc__)
    sub = cli.subparsers(ap)
    epilog = cli.fields_epilog(SegConfig, PRESETS)
    t = cli.add_command(sub, "train", "train (or resume) a HamNet run in a run folder", epilog=epilog)
    cli.add_config_args(t, PRESETS, default="tiny")
    cli.add_run_args(t)
    e = cli.add_command(sub, "eval", "evaluate a trained run folder (its own config) on a split")
    e.add_argument("--run-dir", required=True, help="a run folder written by train")
    e.add_argument("--split", default="test", choices=SPLITS, help="split to score (default test)")
    e.add_argument("--scales", type=cli.positive_float, nargs="+", default=[1.0], help="test-time scales")
    e.add_argument("--flip", action="store_true", help="also average horizontally flipped images")
    e.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help=f"runtime fields only: {', '.join(SegConfig.runtime_fields())}")
    cli.add_runtime_args(e)
    c = cli.add_command(sub, "cost", "params, FLOPs and latency of each decode head on one image", epilog=epilog)
    cli.add_config_args(c, PRESETS, default="tiny")
    c.add_argument("--size", type=cli.positive_int, nargs=2, default=None, metavar=("H", "W"),
                   help="image size (default: the config's resize or crop)")
    c.add_argument("--heads", nargs="+", default=["fcn", "attention", "ham"], choices=HEADS)
    cli.add_runtime_args(c)
    r = cli.add_command(sub, "report", "collect runs/<head> folders into book artefacts (JSON + 2 figures)")
    r.add_argument("--runs", required=True, help="folder with one run folder per head")
    r.add_argument("--out", required=True, help="artefact folder, e.g. book/results/hamnet")
    r.add_argument("--heads", nargs="+", default=["fcn", "attention", "ham"], choices=HEADS)
    r.add_argument("--label", default=None, help="what the numbers are; default: derived from the config")
    r.add_argument("--name", default="camvid_cpu", help="file stem of the JSON and the figures")
    r.add_argument("--size", type=cli.positive_int, nargs=2, default=[180, 240], metavar=("H", "W"),
                   help="image size for the head cost")
    r.add_argument("--repeats", type=cli.positive_int, default=20, help="forwards for the head latency median")
    r.add_argument("--indices", type=int, nargs="+", default=[10, 120, 200], help="test images to show")
    r.add_argument("--data-root", default=None, help="where the test images are (default: the runs' config)")
    cli.add_runtime_args(r)
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    return cli.run_main(parser(), _run, argv)


def _run(sp, a, device: Optional[str]) -> int:
    import torch

    if a.cmd == "report":
        from ..viz.reports import seg_curves, seg_predictions
        from .report import make_report, prediction_examples
        rep = make_report(a.runs, a.out, a.heads, size=tuple(a.size), latency_repeats=a.repeats,
                          label=a.label, name=a.name, device=device or "cpu")
        seg_curves(rep, Path(a.out) / f"{a.name}_curves.png")
        seg_predictions(prediction_examples(a.runs, a.heads, a.indices, data_root=a.data_root),
                        Path(a.out) / f"{a.name}_predictions.png")
        print(rep["label"])
        for h, r in rep["heads"].items():
            c = r["cost"]
            print(f"{h:10s} test mIoU {r['test']['miou']:.4f}  head params {c['head_params'] / 1e3:.1f}k  "
                  f"head GFLOPs {c['head_gflops']:.4f}  head latency {c['head_latency_ms']:.2f} ms")
        return 0
    if a.cmd == "train":
        cfg: SegConfig = cli.config_from_args(sp, a, PRESETS)
        if a.print_config:
            cli.print_config(cfg)
            return 0
        from .train import train
        res = train(cfg, a.run_dir, resume=not a.no_resume, progress=not a.quiet, device=device, preset=a.preset)
        if "test" in res:
            print(f"test mIoU {res['test']['miou']:.4f}  pixel acc {res['test']['pixel_acc']:.4f}")
        return 0
    if a.cmd == "eval":
        from torch.utils.data import DataLoader

        from ..train import RunDir, provenance, write_json
        from .evaluate import evaluate
        from .model import from_config
        from .transforms import build_data, class_names
        run = RunDir(a.run_dir)
        cfg = run.config(SegConfig)
        over = cli.parse_sets(sp, a.set, SegConfig)
        bad = sorted(set(over) - set(SegConfig.runtime_fields()))
        if bad:
            sp.error(f"eval uses the run's own config; only {SegConfig.runtime_fields()} can be set, not {bad}")
        cfg = cfg.replace(**over)
        model = from_config(cfg)
        run.load(models={"model": model}, restore_rng=False)
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        sc = evaluate(model.to(dev), DataLoader(build_data(cfg, a.split), batch_size=1), cfg.num_classes,
                      device=dev, scales=a.scales, flip=a.flip, class_names=class_names(cfg), progress=True)
        sc["config"] = cfg.to_dict()
        sc["provenance"] = provenance(device=dev, split=a.split, scales=a.scales, flip=a.flip)
        write_json(Path(a.run_dir) / f"eval_{a.split}.json", sc)
        print(f"{a.split} mIoU {sc['miou']:.4f}  pixel acc {sc['pixel_acc']:.4f}")
        return 0
    from .evaluate import head_cost
    from .model import from_config
    cfg = cli.config_from_args(sp, a, PRESETS)
    size = tuple(a.size) if a.size else tuple(cfg.resize or cfg.crop)
    for h in a.heads:
        c = head_cost(from_config(cfg.replace(head=h)), size, device=device or "cpu")
        print(f"{h:10s} head params {c['head_params'] / 1e6:.3f}M  head GFLOPs {c['head_gflops']:.3f}  "
              f"head latency {c['head_latency_ms']:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
