"""HamGAN over seeds: no context, self-attention and the Hamburger, several seeds each, with intervals.

One run of each context (:mod:`hamlib.gan.report`) cannot tell a real difference from the seed's luck. This
module collects run folders that differ in ``context`` and ``seed`` only, and summarises them: the final
classifier-FID of every context as mean, std and 95% t interval over its seeds, the differences paired by
seed (Hamburger - none, Hamburger - attention, attention - none) with their intervals, the gate values of G and
D over training, and the real-vs-real floor of the classifier-FID. Data only; :func:`hamlib.viz.reports.gan_seed_curves`
draws the curves. Example (MNIST at 32 px on a CPU)::

    python -m hamlib.gan classifier --preset mnist --run-dir runs/hamgan-mnist/classifier --threads 1
    python -m hamlib.gan train --preset mnist-cpu --run-dir runs/hamgan-mnist/ham-0 --threads 1 \
        --set context=ham seed=0 classifier=runs/hamgan-mnist/classifier         # ... every context x seed
    python -m hamlib.gan study runs/hamgan-mnist/{ham,attention,none}-{0,1,2} \
        --classifier runs/hamgan-mnist/classifier --out book/results/hamgan
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..stats import paired_difference, t_interval
from ..train import RunDir, provenance, write_json
from .config import CONTEXTS
from .fid import OFFLINE_LABEL
from .report import load_run, real_fid_floor

__all__ = ["collect_seeds", "summarise_seeds", "make_study", "PAIRS"]

#: The paired differences reported, as (minuend, subtrahend) contexts.
PAIRS = (("ham", "none"), ("ham", "attention"), ("attention", "none"))


def collect_seeds(run_dirs: Sequence[Path]) -> List[dict]:
    """One record per run folder: its context, seed, final and best classifier-FID, evaluations, cost, provenance.

    Raises:
        ValueError: if two folders hold the same (context, seed), or if the runs' configs differ in anything
            but ``context``, ``seed`` and the runtime fields (they would not be comparable).
    """
    return _collect(run_dirs)[0]


def _collect(run_dirs: Sequence[Path]) -> tuple[List[dict], dict]:
    """:func:`collect_seeds` and the first run's config (the one all runs share but for context and seed)."""
    records, base, first_cfg = [], None, None
    for d in map(Path, run_dirs):
        m = load_run(d)
        cfg = dict(m["config"])
        key = {k: v for k, v in cfg.items() if k not in ("context", "seed", "classifier", "data_root", "download",
                                                          "inception")}
        if base is None:
            base, first_cfg = (d, key), cfg
        elif key != base[1]:
            diff = sorted(k for k in set(key) | set(base[1]) if key.get(k) != base[1].get(k))
            raise ValueError(f"run folders must differ only in context and seed; {d} and {base[0]} also differ in "
                             f"{diff}")
        records.append({"context": cfg["context"], "seed": cfg["seed"], "run": d.name, "iters": m["iters"],
                        "final_classifier_fid": m["final_classifier_fid"],
                        "best_classifier_fid": min((e["classifier_fid"] for e in m["evals"] if "classifier_fid" in e),
                                                   default=None),
                        "evals": [{k: e.get(k) for k in ("step", "classifier_fid", "gate_G", "gate_D")}
                                  for e in m["evals"]],
                        "sec_per_iter": m["sec_per_iter"], "train_wall_s": m["train_wall_s"],
                        "params_G": m["params_G"], "params_D": m["params_D"],
                        "saved_MiB_G_step": m.get("memory", {}).get("saved_tensor_bytes_G_step", float("nan")) / 2 ** 20,
                        "saved_MiB_D_step": m.get("memory", {}).get("saved_tensor_bytes_D_step", float("nan")) / 2 ** 20,
                        "provenance": {k: m["provenance"].get(k) for k in ("command", "commit", "device", "date",
                                                                           "wall_time_s")}})
    seen = [(r["context"], r["seed"]) for r in records]
    dup = sorted({s for s in seen if seen.count(s) > 1})
    if dup:
        raise ValueError(f"each (context, seed) must appear once; repeated: {dup}")
    return records, first_cfg


def summarise_seeds(records: Sequence[dict]) -> dict:
    """Per context the final classifier-FID over seeds (:func:`hamlib.stats.t_interval`), and :data:`PAIRS`.

    Returns:
        ``{"contexts": {context: {"final_fid": t_interval dict or {"mean", "n": 1}, "seeds": [...],
        "sec_per_iter_median": float}}, "diffs": {"ham-none": paired_difference dict, ...}}`` (a difference only
        where both contexts share at least two seeds). Runs without a classifier-FID are left out.
    """
    by: Dict[str, Dict[int, float]] = {}
    cost: Dict[str, List[float]] = {}
    for r in records:
        if r["final_classifier_fid"] is not None:
            by.setdefault(r["context"], {})[r["seed"]] = r["final_classifier_fid"]
            cost.setdefault(r["context"], []).append(r["sec_per_iter"])
    out: dict = {"contexts": {}, "diffs": {}}
    for c in [c for c in CONTEXTS if c in by]:
        vals = by[c]
        out["contexts"][c] = {"final_fid": t_interval(list(vals.values())) if len(vals) > 1
                              else {"mean": next(iter(vals.values())), "n": 1},
                              "seeds": sorted(vals), "sec_per_iter_median": sorted(cost[c])[len(cost[c]) // 2]}
    for a, b in PAIRS:
        if a in by and b in by and len(set(by[a]) & set(by[b])) > 1:
            out["diffs"][f"{a}-{b}"] = paired_difference(by[a], by[b])
    return out


def make_study(run_dirs: Sequence[Path], out: Path, *, classifier: Optional[Path] = None,
               label: str = "CPU, reduced scale", samples_seed: int = 0) -> dict:
    """Write ``summary.json`` (records, statistics, classifier, real-vs-real floor, provenance) and the final sample
    grid of each context's ``samples_seed`` run (``samples_{context}.png``) into ``out``, plus that of its worst seed
    (highest final classifier-FID; ``samples_{context}_worst_seed{S}.png``) when that is another seed; returns the
    summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records, cfg = _collect(run_dirs)
    summary = {"label": label, "fid_label": OFFLINE_LABEL, **summarise_seeds(records), "records": records}
    summary["config"] = {k: v for k, v in cfg.items() if k not in ("context", "seed")}
    for stale in out.glob("samples_*_worst_seed*.png"):   # a rerun's worst seed may differ: never show an old grid
        stale.unlink()
    scored = [r for r in records if r["final_classifier_fid"] is not None]
    worst = {c: max((r for r in scored if r["context"] == c), key=lambda r: r["final_classifier_fid"])
             for c in {r["context"] for r in scored}}
    for r, d in zip(records, map(Path, run_dirs)):
        grid = d / "samples" / f"samples_{r['iters']:06d}.png"
        if not grid.is_file():
            continue
        if r["seed"] == samples_seed:
            shutil.copyfile(grid, out / f"samples_{r['context']}.png")
        elif worst.get(r["context"]) is r:      # the worst seed too, so that a failed run is seen, not only read
            shutil.copyfile(grid, out / f"samples_{r['context']}_worst_seed{r['seed']}.png")
    if classifier is not None:
        clf = Path(classifier)
        clf_run = RunDir(clf if clf.is_dir() else clf.parent)
        if clf_run.metrics_path.is_file():
            summary["classifier"] = {k: v for k, v in clf_run.metrics().items() if k != "history"}
        n = cfg["n_eval"]
        summary["real_vs_real_classifier_fid"] = {"n": n, "fid": real_fid_floor(clf, n, cfg.get("data_root"),
                                                                                data=cfg["data"])}
    summary["provenance"] = provenance()
    write_json(out / "summary.json", summary)
    return summary
