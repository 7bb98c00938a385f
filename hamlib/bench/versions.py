"""The Hamburger block of an earlier commit against this one, timed interleaved in one process.

``python -m hamlib.bench.versions --base 87e735b --hams nmf vq cd --sizes 64 128 --json out.json``

Used for the solver speed-ups of the performance work (issue 14): the block is built from the ``base``
commit's ``hamlib/hamburger.py``, ``hamlib/layers.py`` and ``hamlib/md/`` (read with ``git show``, imported
under another package name) and from this checkout, with the same weights and the same random bases; both
are timed with :func:`hamlib.measure.compare` (A B, B A, ...), one torch thread, inference and
forward + backward, and their eval outputs compared. Needs a git checkout (a clone, not an installed wheel).

Before the performance work, hamlib's block was measured at parity with the official PyTorch block
(0.90-1.05x), so the ratio to ``87e735b`` (the last commit before it) also stands for the ratio to the
official code, which this repository does not contain (GPL-3.0).
"""
from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

from ..measure import compare
from ..train.cli import positive_int

FILES = ("hamlib/hamburger.py", "hamlib/layers.py")
PACKAGE = "hamlib_base"
#: The last commit before the solver speed-ups (md: fast one-step solver, 8b25d3a).
DEFAULT_BASE = "87e735bc4b8d55ae829724653e21370b8d6955d4"


def _git(root: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                              text=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise SystemExit(f"--base needs a git checkout of hamlib at {root} with that commit: {err}") from None


def load_base(commit: str, root: Path, into: Path):
    """Import the ``Hamburger`` class of ``commit`` (from ``root``'s git history) as package ``hamlib_base``."""
    files = list(FILES) + [f for f in _git(root, "ls-tree", "-r", "--name-only", commit, "hamlib/md").split()
                           if f.endswith(".py")]
    pkg = into / PACKAGE
    for f in files:
        dst = pkg / Path(f).relative_to("hamlib")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(_git(root, "show", f"{commit}:{f}"))
    (pkg / "__init__.py").write_text("")
    sys.path.insert(0, str(into))
    try:
        return importlib.import_module(f"{PACKAGE}.hamburger").Hamburger
    finally:
        sys.path.remove(str(into))


def ab(Base, ham: str, size: int, *, C: int = 512, r: int = 64, K: int = 6, rounds: int = 7,
       warmup: int = 1) -> dict:
    """Time ``Base`` (earlier) and this checkout's Hamburger, interleaved; returns both modes and the difference."""
    from ..hamburger import Hamburger

    torch.manual_seed(0)
    base = Base(C, C, md=ham, R=r, train_steps=K, eval_steps=K)
    new = Hamburger(C, C, md=ham, R=r, train_steps=K, eval_steps=K)
    new.load_state_dict(base.state_dict())
    x = torch.randn(1, C, size, size)
    with torch.no_grad():
        base.eval(), new.eval()
        yb = base(x, generator=torch.Generator().manual_seed(0))
        yn = new(x, generator=torch.Generator().manual_seed(0))
    rel = float((yb - yn).abs().max() / yb.abs().max())

    def infer(m):
        def call():
            with torch.inference_mode():
                m(x, generator=torch.Generator().manual_seed(0))
        return call

    def train(m):
        def call():
            xr = x.clone().requires_grad_(True)
            m(xr, generator=torch.Generator().manual_seed(0)).sum().backward()
        return call

    out = {"ham": ham, "size": size, "C": C, "r": r, "K": K, "eval_output_rel_diff": rel}
    for mode, make in (("infer", infer), ("train", train)):
        for m in (base, new):
            m.train(mode == "train")
        res = compare({"before": make(base), "after": make(new)}, rounds=rounds, warmup=warmup)
        tb, tn = res["candidates"]["before"]["times_ms"], res["candidates"]["after"]["times_ms"]
        per_round = sorted(b / a for b, a in zip(tb, tn))
        out[mode] = {"before_ms": res["candidates"]["before"]["median_ms"],
                     "after_ms": res["candidates"]["after"]["median_ms"],
                     "speedup": per_round[len(per_round) // 2], "speedup_min": per_round[0],
                     "speedup_max": per_round[-1], "other_cpu_cores": res["other_cpu_cores"],
                     "loadavg": res["loadavg_after"]}
    return out


def main(argv: Optional[list[str]] = None) -> int:
    from tqdm.auto import tqdm

    from ..train.provenance import provenance, write_json

    p = argparse.ArgumentParser(prog="python -m hamlib.bench.versions", description=__doc__.splitlines()[0])
    p.add_argument("--base", default=DEFAULT_BASE, help="the earlier commit (default: the last before the speed-ups)")
    p.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2], help="git checkout to read it from")
    p.add_argument("--hams", nargs="+", choices=("nmf", "vq", "cd"), default=["nmf", "vq", "cd"])
    p.add_argument("--sizes", nargs="+", type=positive_int, default=[64, 128])
    p.add_argument("--C", type=positive_int, default=512)
    p.add_argument("--r", type=positive_int, default=64)
    p.add_argument("--rounds", type=positive_int, default=7)
    p.add_argument("--json", type=Path, default=Path("versions.json"))
    p.add_argument("--note", default="")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(1)
    started = time.time()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        Base = load_base(args.base, args.repo, Path(tmp))
        jobs = [(h, s) for s in args.sizes for h in args.hams]
        for ham, size in tqdm(jobs, desc="versions"):
            row = ab(Base, ham, size, C=args.C, r=args.r, rounds=args.rounds)
            rows.append(row)
            print(f"{ham} {size}^2: infer {row['infer']['speedup']:.2f}x  train {row['train']['speedup']:.2f}x  "
                  f"(eval outputs differ by {row['eval_output_rel_diff']:.1e} relative; other cores busy "
                  f"{row['train']['other_cpu_cores']})", flush=True)
    base_commit = _git(args.repo, "rev-parse", args.base).strip()
    write_json(args.json, {"provenance": provenance(device="cpu", wall_time_s=time.time() - started, note=args.note,
                                                    torch_threads=1),
                           "base_commit": base_commit, "rows": rows})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
