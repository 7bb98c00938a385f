"""Command line: ``python -m hamlib.bench [--preset cpu|paper] [--sizes ...] [--modules ...] ...``.

Geng et al., ICLR 2021 (arXiv 2109.04553), cost table: ``--preset paper`` is the paper's
setting, one 1x512x128x128 input with d = 512, r = 64, K = 6 (meant for a GPU).

All modules of one size are timed interleaved in this process; memory is measured per module (on the CPU
in a fresh process each). The report states the torch thread count and the machine's load; when other
processes kept the CPU busy (``--max-load``) the markdown is not written unless ``--allow-busy`` is given,
and then it carries a warning, and the command exits with status 3.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ..train.cli import nonneg_int, positive_int
from .core import MODULES, available_modules, child_main
from .report import DEFAULT_MAX_LOAD, markdown_table, run_bench, write_reports

PRESETS = {
    "cpu": dict(C=256, d=256, r=64, K=6, sizes=[16, 32, 64], repeats=5, warmup=1),
    "paper": dict(C=512, d=512, r=64, K=6, sizes=[128], repeats=20, warmup=3),
}
BUSY_EXIT = 3


def _previous(path: Path, settings: dict) -> dict | None:
    """The results in ``path`` if it exists; refuse (SystemExit) when they were measured with other settings."""
    if not path.exists():
        return None
    from ..train.provenance import read_json

    old = read_json(path)
    if old.get("settings") != settings:
        raise SystemExit(f"--resume: {path} was measured with settings {old.get('settings')}, not {settings}; "
                         f"use another --json or drop --resume")
    return old


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hamlib.bench", description=__doc__.splitlines()[0],
                                epilog="Exit status 3: the machine was busy (see --max-load).")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="cpu (C=d=256, sizes 16 32 64) or paper (C=d=512, size 128); default: cpu on CPU, "
                        "paper on CUDA. Explicit options override the preset.")
    p.add_argument("--sizes", type=positive_int, nargs="+", help="spatial sizes H = W")
    p.add_argument("--modules", nargs="+", choices=available_modules(), default=list(MODULES),
                   help=f"default: {' '.join(MODULES)} (the *-compiled rows use torch.compile)")
    for name in ("C", "d", "r"):
        p.add_argument(f"--{name}", type=positive_int, help=f"{name} (see the preset)")
    p.add_argument("--K", type=nonneg_int, help="K (see the preset)")
    p.add_argument("--batch", type=positive_int, default=1, help="batch size B")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda[:i]")
    p.add_argument("--repeats", type=positive_int, help="timed interleaved rounds")
    p.add_argument("--warmup", type=nonneg_int, help="untimed warm-up calls per module")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads (default: 1 on the CPU, where more threads make small operations slower "
                        "on a shared machine; torch's default on CUDA)")
    p.add_argument("--no-subprocess", action="store_true", help="measure memory in this process (CPU: less sound)")
    p.add_argument("--max-load", type=float, default=DEFAULT_MAX_LOAD,
                   help=f"busy when other processes kept more than this many CPU cores busy (default "
                        f"{DEFAULT_MAX_LOAD})")
    p.add_argument("--allow-busy", action="store_true",
                   help="write the markdown even when the machine was busy (it then starts with a warning)")
    p.add_argument("--json", type=Path, default=Path("bench.json"), help="output JSON path")
    p.add_argument("--md", type=Path, default=Path("bench.md"), help="output markdown path")
    p.add_argument("--resume", action="store_true",
                   help="add to an existing --json measured with the same settings: sizes already in it are "
                        "kept, the others are measured (so a long sweep can run in chunks)")
    p.add_argument("--plot", type=Path, default=None, help="also save time and memory against n (needs matplotlib)")
    p.add_argument("--note", default="", help="free text stored in the provenance (e.g. 'shared CPU')")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args._child:  # internal: memory and counts of one configuration in this fresh process, printed as JSON
        print(json.dumps(child_main(args._child)))
        return 0
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise SystemExit(f"--device must be cpu or cuda[:i]; got {args.device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda given but CUDA is not available")
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device must be cpu or cuda[:i]; got {args.device!r}")
    if args.max_load < 0:
        raise SystemExit(f"--max-load must be >= 0; got {args.max_load}")
    preset = args.preset or ("paper" if device.type == "cuda" else "cpu")
    cfg = dict(PRESETS[preset])
    for key, val in (("sizes", args.sizes), ("C", args.C), ("d", args.d), ("r", args.r), ("K", args.K),
                     ("repeats", args.repeats), ("warmup", args.warmup)):
        if val is not None:
            cfg[key] = val
    threads = args.threads if args.threads is not None else (1 if device.type == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    started = time.time()
    settings = {"modules": list(args.modules), "C": cfg["C"], "d": cfg["d"], "r": cfg["r"], "K": cfg["K"],
                "B": args.batch, "device": str(device), "warmup": cfg["warmup"], "repeats": cfg["repeats"],
                "threads": threads}
    old = _previous(args.json, settings) if args.resume else None
    done = {r["size"] for r in old["results"]} if old else set()
    sizes = [s for s in cfg["sizes"] if s not in done]
    bench = {"results": [], "timing": []}
    if sizes:
        bench = run_bench(args.modules, sizes, C=cfg["C"], d=cfg["d"], r=cfg["r"], K=cfg["K"], B=args.batch,
                          device=str(device), warmup=cfg["warmup"], repeats=cfg["repeats"], threads=threads,
                          subprocess=False if args.no_subprocess else None)
    if old:
        print(f"resumed {args.json}: kept sizes {sorted(done)}, measured {sizes}")
        bench = {"results": sorted(old["results"] + bench["results"], key=lambda r: r["size"]),
                 "timing": sorted(old["timing"] + bench["timing"], key=lambda t: t["size"])}
        started -= old["provenance"].get("wall_time_s", 0.0)
    bench["settings"] = settings
    data = write_reports(bench, args.json, args.md, device=str(device), preset=preset, started=started,
                         note=args.note, max_load=args.max_load, allow_busy=args.allow_busy)
    print(markdown_table(data["results"], data["provenance"], data["load"]))
    if args.plot is not None:
        from ..viz.bench import plot_bench
        fig = plot_bench(data)
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"wrote {args.plot}")
    if data["load"]["busy"]:
        wrote = f"{args.md} (with a warning)" if args.allow_busy else "no markdown (use --allow-busy to write it)"
        print(f"\n*** MACHINE BUSY: {data['load']['message']}. NOT FOR PUBLICATION. Wrote {args.json} "
              f"(publishable: false) and {wrote}. ***", file=sys.stderr)
        return BUSY_EXIT
    print(f"wrote {args.json} and {args.md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
