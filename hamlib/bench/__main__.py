"""Command line: ``python -m hamlib.bench [--preset cpu|paper] [--sizes ...] [--modules ...] ...``.

Geng et al., ICLR 2021 (arXiv 2109.04553), cost table: ``--preset paper`` is the paper's
setting, one 1x512x128x128 input with d = 512, r = 64, K = 6 (meant for a GPU).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from pathlib import Path

import torch

from .core import MODULES, Config, measure
from .report import markdown_table, run_bench, write_reports

PRESETS = {
    "cpu": dict(C=256, d=256, r=64, K=6, sizes=[16, 32, 64], repeats=5, warmup=1),
    "paper": dict(C=512, d=512, r=64, K=6, sizes=[128], repeats=20, warmup=3),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hamlib.bench", description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="cpu (C=d=256, sizes 16 32 64) or paper (C=d=512, size 128); default: cpu on CPU, "
                        "paper on CUDA. Explicit options override the preset.")
    p.add_argument("--sizes", type=int, nargs="+", help="spatial sizes H = W")
    p.add_argument("--modules", nargs="+", choices=MODULES, default=list(MODULES))
    for name in ("C", "d", "r", "K"):
        p.add_argument(f"--{name}", type=int, help=f"{name} (see the preset)")
    p.add_argument("--batch", type=int, default=1, help="batch size B")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, help="timed repeats")
    p.add_argument("--warmup", type=int, help="untimed warm-up calls")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    p.add_argument("--no-subprocess", action="store_true", help="measure in this process (CPU memory less sound)")
    p.add_argument("--json", type=Path, default=Path("bench.json"), help="output JSON path")
    p.add_argument("--md", type=Path, default=Path("bench.md"), help="output markdown path")
    p.add_argument("--note", default="", help="free text stored in the provenance (e.g. 'shared CPU')")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args._child:  # internal: measure one configuration in this fresh process, print JSON
        spec = json.loads(args._child)
        print(json.dumps(measure(Config(**{f.name: spec[f.name] for f in fields(Config) if f.name in spec}))))
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda given but CUDA is not available")
    preset = args.preset or ("paper" if device.type == "cuda" else "cpu")
    cfg = dict(PRESETS[preset])
    for key, val in (("sizes", args.sizes), ("C", args.C), ("d", args.d), ("r", args.r), ("K", args.K),
                     ("repeats", args.repeats), ("warmup", args.warmup)):
        if val is not None:
            cfg[key] = val
    if min(cfg["sizes"]) < 1 or cfg["repeats"] < 1:
        raise SystemExit(f"sizes and repeats must be >= 1; got sizes={cfg['sizes']}, repeats={cfg['repeats']}")
    started = time.time()
    results = run_bench(args.modules, cfg["sizes"], C=cfg["C"], d=cfg["d"], r=cfg["r"], K=cfg["K"], B=args.batch,
                        device=str(device), warmup=cfg["warmup"], repeats=cfg["repeats"], threads=args.threads,
                        subprocess=False if args.no_subprocess else None)
    data = write_reports(results, args.json, args.md, device=str(device), preset=preset, started=started,
                         note=args.note)
    print(markdown_table(results, data["provenance"]))
    print(f"wrote {args.json} and {args.md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
