"""Command line for HamNet (Geng et al., ICLR 2021, arXiv 2109.04553).

Examples::

    python -m hamlib.seg train --preset tiny --head ham --run-dir runs/tiny-ham
    python -m hamlib.seg train --preset camvid-cpu --head fcn --run-dir runs/cpu-fcn --set iters=400
    torchrun --nproc_per_node 8 -m hamlib.seg train --preset voc --run-dir runs/voc-ham
    python -m hamlib.seg eval --run-dir runs/tiny-ham --split test --scales 0.75 1 1.25 --flip
    python -m hamlib.seg cost --preset camvid-cpu --size 180 240
    python -m hamlib.seg report --runs runs/camvid-cpu --out book/results/hamnet --threads 1

A run folder resumes from its ``last.pt`` when the same command is run again.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import torch

from .presets import PRESETS, SegConfig, get_preset


def _overrides(pairs):
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise SystemExit(f"--set expects key=value; got {p!r}")
        k, v = p.split("=", 1)
        try:
            out[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k] = v
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hamlib.seg", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("train", "eval", "cost"):
        p = sub.add_parser(name)
        p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
        p.add_argument("--head", default=None, help="fcn | attention | ham | lightham")
        p.add_argument("--md", default=None, help="nmf | vq | cd")
        p.add_argument("--data-root", default=None)
        p.add_argument("--device", default=None)
        p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
        p.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override config fields")
        if name in ("train", "eval"):
            p.add_argument("--run-dir", required=True)
        if name == "train":
            p.add_argument("--no-resume", action="store_true")
            p.add_argument("--quiet", action="store_true")
        if name == "eval":
            p.add_argument("--split", default="test")
            p.add_argument("--scales", type=float, nargs="*", default=[1.0])
            p.add_argument("--flip", action="store_true")
        if name == "cost":
            p.add_argument("--size", type=int, nargs=2, default=None)
            p.add_argument("--heads", nargs="*", default=["fcn", "attention", "ham"])
    p = sub.add_parser("report", help="collect runs/<head> folders into book artefacts (JSON + 2 figures)")
    p.add_argument("--runs", required=True, help="folder with one run folder per head")
    p.add_argument("--out", required=True, help="artefact folder, e.g. book/results/hamnet")
    p.add_argument("--heads", nargs="*", default=["fcn", "attention", "ham"])
    p.add_argument("--label", default=None, help="what the numbers are; default: derived from the config")
    p.add_argument("--name", default="camvid_cpu", help="file stem of the JSON and the figures")
    p.add_argument("--size", type=int, nargs=2, default=[180, 240], help="image size for the head cost")
    p.add_argument("--repeats", type=int, default=20, help="forwards for the head latency median")
    p.add_argument("--indices", type=int, nargs="*", default=[10, 120, 200], help="test images to show")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.cmd == "report":
        from .report import make_report
        try:
            rep = make_report(a.runs, a.out, a.heads, size=tuple(a.size), latency_repeats=a.repeats,
                              prediction_indices=a.indices, label=a.label, name=a.name, data_root=a.data_root,
                              device=a.device)
        except FileNotFoundError as e:
            raise SystemExit(str(e))
        print(rep["label"])
        for h, r in rep["heads"].items():
            c = r["cost"]
            print(f"{h:10s} test mIoU {r['test']['miou']:.4f}  head params {c['head_params'] / 1e3:.1f}k  "
                  f"head GFLOPs {c['head_gflops']:.4f}  head latency {c['head_latency_ms']:.2f} ms")
        return 0
    kw = _overrides(a.set)
    for k in ("head", "md", "data_root"):
        if getattr(a, k, None):
            kw[k] = getattr(a, k)
    cfg: SegConfig = get_preset(a.preset, **kw)
    if a.cmd == "train":
        from .train import train
        res = train(cfg, a.run_dir, resume=not a.no_resume, progress=not a.quiet, device=a.device, preset=a.preset)
        if "test" in res:
            print(f"test mIoU {res['test']['miou']:.4f}  pixel acc {res['test']['pixel_acc']:.4f}")
        return 0
    if a.cmd == "eval":
        from torch.utils.data import DataLoader

        from ..train import load_checkpoint, provenance, write_json
        from .evaluate import evaluate
        from .train import build_data, build_from_config, class_names
        ck = torch.load(Path(a.run_dir) / "last.pt", map_location="cpu", weights_only=False) \
            if (Path(a.run_dir) / "last.pt").is_file() else None
        if ck is not None:
            cfg = SegConfig(**{**ck["extra"]["config"], **kw})
        model = build_from_config(cfg)
        load_checkpoint(Path(a.run_dir) / "last.pt", model=model, restore_rng=False)
        dev = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
        sc = evaluate(model.to(dev), DataLoader(build_data(cfg, a.split), batch_size=1), cfg.num_classes,
                      device=dev, scales=a.scales, flip=a.flip, class_names=class_names(cfg), progress=True)
        sc["provenance"] = provenance(device=dev, preset=a.preset, split=a.split, scales=a.scales, flip=a.flip)
        write_json(Path(a.run_dir) / f"eval_{a.split}.json", sc)
        print(f"{a.split} mIoU {sc['miou']:.4f}  pixel acc {sc['pixel_acc']:.4f}")
        return 0
    from .evaluate import head_cost
    from .train import build_from_config
    size = tuple(a.size) if a.size else (tuple(cfg.resize) if cfg.resize else tuple(cfg.crop))
    for h in a.heads:
        c = head_cost(build_from_config(cfg.replace(head=h)), size, device=a.device or "cpu")
        print(f"{h:10s} head params {c['head_params'] / 1e6:.3f}M  head GFLOPs {c['head_gflops']:.3f}  "
              f"head latency {c['head_latency_ms']:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
