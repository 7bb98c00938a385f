"""How close the Hamburger block runs to this machine's matrix-product speed (a one-number roofline).

``python -m hamlib.bench.roofline --sizes 64 128 --json roofline.json``

For each ham and spatial size, the block's counted FLOPs (matrix products and convolutions, from
``FlopCounterMode``) divided by its median time gives its achieved rate; a plain ``(C x C) @ (C x n)``
product of the same sizes, timed interleaved with the block (:func:`hamlib.measure.compare`), gives the rate
the hardware reaches on the block's largest kind of operation. Their ratio is the fraction reported: near
100% means the block spends its time in large, efficient products, and the rest (element-wise updates,
normalisations, small products) costs little.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from ..measure import compare, count_flops
from ..train.cli import positive_int


def roofline(ham: str, size: int, *, C: int = 512, r: int = 64, K: int = 6, rounds: int = 7) -> dict:
    """Achieved GFLOP/s of the ``ham`` block (inference and forward + backward) against a ``C x C x n`` product."""
    from ..hamburger import Hamburger

    torch.manual_seed(0)
    blk = Hamburger(C, C, md=ham, R=r, train_steps=K, eval_steps=K)
    x = torch.randn(1, C, size, size)
    A, B = torch.randn(C, C), torch.randn(C, size * size)

    def infer():
        with torch.inference_mode():
            blk(x, generator=torch.Generator().manual_seed(0))

    def train():
        xr = x.clone().requires_grad_(True)
        blk(xr, generator=torch.Generator().manual_seed(0)).sum().backward()

    mm_flops = 2 * C * C * size * size
    out = {"ham": ham, "size": size, "C": C, "r": r, "K": K}
    for mode, fn in (("infer", infer), ("train", train)):
        blk.train(mode == "train")
        flops = count_flops(fn)
        res = compare({"block": fn, "matmul": lambda: A @ B}, rounds=rounds)
        t_blk = res["candidates"]["block"]["median_ms"] / 1e3
        t_mm = res["candidates"]["matmul"]["median_ms"] / 1e3
        out[mode] = {"gflop": flops / 1e9, "block_gflops": flops / t_blk / 1e9, "matmul_gflops": mm_flops / t_mm / 1e9,
                     "fraction": (flops / t_blk) / (mm_flops / t_mm), "other_cpu_cores": res["other_cpu_cores"]}
    return out


def main(argv: Optional[list[str]] = None) -> int:
    from ..train.provenance import provenance, write_json

    p = argparse.ArgumentParser(prog="python -m hamlib.bench.roofline", description=__doc__.splitlines()[0])
    p.add_argument("--hams", nargs="+", choices=("nmf", "vq", "cd"), default=["nmf", "vq", "cd"])
    p.add_argument("--sizes", nargs="+", type=positive_int, default=[64, 128])
    p.add_argument("--C", type=positive_int, default=512)
    p.add_argument("--rounds", type=positive_int, default=7)
    p.add_argument("--json", type=Path, default=Path("roofline.json"))
    p.add_argument("--note", default="")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(1)
    started, rows = time.time(), []
    for size in args.sizes:
        for ham in args.hams:
            row = roofline(ham, size, C=args.C, rounds=args.rounds)
            rows.append(row)
            print(" ".join(f"{ham} {size}^2 {m}: {row[m]['block_gflops']:.1f} GFLOP/s of "
                           f"{row[m]['matmul_gflops']:.1f} ({100 * row[m]['fraction']:.0f}%);" for m in ("infer", "train")),
                  flush=True)
    write_json(args.json, {"provenance": provenance(device="cpu", wall_time_s=time.time() - started, note=args.note,
                                                    torch_threads=1), "rows": rows})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
