"""One thread or two? The Hamburger and self-attention on an idle and on a busy CPU, interleaved.

``python -m hamlib.bench.threads --modules ham-nmf sa --size 64 --threads 1 2 --json threads.json``

Each module is timed with every thread count interleaved in one process (the count is switched before each
call, :func:`hamlib.measure.compare`), first on the machine as it is, then with ``--spinners`` extra
processes that each keep one core busy (a busy-loop, as another user's job would). On a small shared CPU
this shows why the benchmark pins one thread: many small operations synchronise their threads after every
call, so a second thread that has to wait for a busy core costs more than it gives; a few large products
(self-attention) hardly notice.
"""
from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch

from ..measure import compare
from ..train.cli import nonneg_int, positive_int
from .core import Config, _Case


@contextlib.contextmanager
def spinners(n: int) -> Iterator[None]:
    """``n`` child processes that each keep one CPU core busy until the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(0.5 if n else 0.0)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def thread_table(modules: Sequence[str], size: int, threads: Sequence[int], *, C: int = 512, rounds: int = 5,
                 warmup: int = 1) -> list[dict]:
    """Median ms of each module in each mode for each thread count, timed interleaved."""
    rows = []
    for name in modules:
        case = _Case(Config(name, size, C=C, d=C, r=64, K=6, warmup=warmup, repeats=rounds))
        case.load_kernels()
        for mode in ("infer", "train"):
            call = getattr(case, mode)

            def with_threads(t: int):
                def run() -> None:
                    torch.set_num_threads(t)
                    call()
                return run

            res = compare({f"{t} thread{'s' if t > 1 else ''}": with_threads(t) for t in threads}, rounds=rounds,
                          warmup=warmup)
            rows.append({"module": name, "mode": mode, "size": size, "C": C,
                         "median_ms": {k: v["median_ms"] for k, v in res["candidates"].items()},
                         "times_ms": {k: v["times_ms"] for k, v in res["candidates"].items()},
                         "other_cpu_cores": res["other_cpu_cores"], "loadavg": res["loadavg_after"]})
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    from ..train.provenance import provenance, write_json

    p = argparse.ArgumentParser(prog="python -m hamlib.bench.threads", description=__doc__.splitlines()[0])
    p.add_argument("--modules", nargs="+", default=["ham-nmf", "sa"])
    p.add_argument("--size", type=positive_int, default=64)
    p.add_argument("--C", type=positive_int, default=512)
    p.add_argument("--threads", nargs="+", type=positive_int, default=[1, 2])
    p.add_argument("--spinners", type=nonneg_int, default=1, help="busy processes in the second pass")
    p.add_argument("--rounds", type=positive_int, default=5)
    p.add_argument("--json", type=Path, default=Path("threads.json"))
    p.add_argument("--note", default="")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    started, out = time.time(), {}
    for label, n in (("idle", 0), (f"{args.spinners} busy core(s)", args.spinners)):
        with spinners(n):
            out[label] = thread_table(args.modules, args.size, args.threads, C=args.C, rounds=args.rounds)
        for row in out[label]:
            print(f"[{label}] {row['module']} {row['mode']}: "
                  + ", ".join(f"{k} {v:.1f} ms" for k, v in row["median_ms"].items()), flush=True)
    write_json(args.json, {"provenance": provenance(device="cpu", wall_time_s=time.time() - started, note=args.note),
                           "spinners": args.spinners, "passes": out})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
