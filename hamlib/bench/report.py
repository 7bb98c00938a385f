"""Run a grid of benchmark configurations, judge the machine's load, write the JSON and markdown reports.

A benchmark that ran while other processes competed for the CPU can mislead by a factor of two or more
(a Hamburger's many small operations suffer more from contention than self-attention's few large ones).
So every report carries the torch thread count, the load averages and the CPU time other processes took
during the timing (:func:`load_verdict`); a busy run is marked *not for publication*.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Optional

from tqdm.auto import tqdm

from ..train.provenance import provenance, write_json
from .core import Config, memory, memory_in_subprocess, static_costs, time_interleaved

__all__ = ["run_bench", "load_verdict", "ratios", "markdown_table", "write_reports", "DEFAULT_MAX_LOAD"]

DEFAULT_MAX_LOAD = 0.5
"""Busy when other processes kept more than this many CPU cores busy (on average) during a timing."""


def run_bench(modules: Iterable[str], sizes: Iterable[int], *, C: int = 512, d: int = 512, r: int = 64, K: int = 6,
              B: int = 1, device: str = "cpu", warmup: int = 1, repeats: int = 5, threads: Optional[int] = None,
              subprocess: Optional[bool] = None, progress: bool = True) -> dict:
    """Measure every (module, size): counts and memory per configuration, time interleaved per size.

    Args:
        modules: names from :func:`hamlib.bench.available_modules`.
        sizes: spatial sizes H = W.
        C, d, r, K, B: input channels, ham channels, rank, iterations, batch.
        device: ``"cpu"`` or ``"cuda[:i]"``.
        warmup: untimed interleaved calls per module and mode. repeats: timed rounds.
        threads: torch threads (None: leave as is).
        subprocess: measure memory in a fresh process per configuration (default: on the CPU only).
        progress: show a progress bar.

    Returns:
        ``{"results": [one row per (module, size)], "timing": [one entry per (size, mode)]}``. A row holds
        ``params``, ``macs_counted``, ``macs_closed_form``, ``mem_infer_mb``, ``mem_train_mb``, ``infer_ms`` and
        ``train_ms`` (``{"median_ms", "q25_ms", "q75_ms", "iqr_ms", "times_ms"}``); a timing entry holds the
        thread count, load averages and ``other_cpu_cores`` of that comparison.
    """
    modules, sizes = list(modules), list(sizes)
    if not modules or not sizes:
        raise ValueError(f"modules and sizes must not be empty; got modules={modules}, sizes={sizes}")
    if subprocess is None:
        subprocess = device == "cpu"
    results, timing = [], []
    bar = tqdm(total=len(sizes) * (len(modules) + 1), desc="hamlib.bench", disable=not progress)
    for size in sizes:
        cfgs = [Config(m, size, C=C, d=d, r=r, K=K, B=B, device=device, warmup=warmup, repeats=repeats,
                       threads=threads) for m in modules]
        rows = {}
        for cfg in cfgs:
            bar.set_postfix_str(f"memory {cfg.module} {size}^2")
            costs = memory_in_subprocess(cfg) if subprocess else {**memory(cfg), **static_costs(cfg)}
            rows[cfg.module] = {**asdict(cfg), "n": size * size, **costs}
            bar.update()
        bar.set_postfix_str(f"time {size}^2 (interleaved)")
        timed = time_interleaved(cfgs)
        for mode, res in timed.items():
            for m, stats in res["candidates"].items():
                rows[m][f"{mode}_ms"] = stats
                rows[m]["timing"] = "interleaved"
            timing.append({"size": size, "mode": mode, **{k: v for k, v in res.items() if k != "candidates"}})
        bar.update()
        results += [rows[m] for m in modules]
    bar.close()
    return {"results": results, "timing": timing}


def load_verdict(timing: list[dict], max_load: float = DEFAULT_MAX_LOAD) -> dict:
    """Was the machine busy while the timings ran?

    Busy when other processes kept more than ``max_load`` CPU cores busy on average during any one
    comparison (``other_cpu_cores``, from ``/proc/stat``); where that is unavailable, when the 1-minute load
    average before a comparison exceeded ``max_load`` plus this process's torch threads.

    Returns:
        a dict {"busy": bool, "max_load": float, "other_cpu_cores_max": float or None, "loadavg_1min_max": float or None,
        "torch_threads": int or None, "cpu_count": int or None, "message": str}.
    """
    if max_load < 0:
        raise ValueError(f"max_load must be >= 0; got {max_load}")
    others = [t["other_cpu_cores"] for t in timing if t.get("other_cpu_cores") is not None]
    loads = [t["loadavg_before"][0] for t in timing if t.get("loadavg_before")]
    threads = next((t["torch_threads"] for t in timing if "torch_threads" in t), None)
    cpus = next((t["cpu_count"] for t in timing if "cpu_count" in t), None)
    other_max = max(others) if others else None
    load_max = max(loads) if loads else None
    if other_max is not None:
        busy = other_max > max_load
        msg = (f"other processes kept up to {other_max:.2f} CPU cores busy during the timings "
               f"(limit {max_load}); {threads} torch thread(s) on {cpus} cores")
    elif load_max is not None:
        busy = load_max > max_load + (threads or 1)
        msg = (f"1-minute load average up to {load_max:.2f} (limit {max_load} + {threads} own thread(s)); "
               f"{cpus} cores")
    else:
        busy, msg = False, "the machine's load could not be measured on this platform"
    return {"busy": busy, "max_load": max_load, "other_cpu_cores_max": other_max, "loadavg_1min_max": load_max,
            "torch_threads": threads, "cpu_count": cpus, "message": msg}


def _q(values: list[float], q: float) -> float:
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def ratios(results: list[dict], ham: str = "ham-nmf", sa: str = "sa") -> list[dict]:
    """``sa`` / ``ham`` ratios (MACs, time, memory) per spatial size; ``sa`` may name any module.

    Where both modules were timed interleaved in the same rounds, ``train_time`` / ``infer_time`` are the
    medians of the per-round ratios (each round's two calls ran under the same load) and ``*_time_iqr``
    their quartiles; otherwise the ratio of the medians, without a spread. ``*_time_of_medians`` is the
    ratio of the medians in both cases.
    """
    out = []
    by = {(r["module"], r["size"]): r for r in results}

    def safe(num, den):
        return num / den if num is not None and den else None

    for size in sorted({r["size"] for r in results}):
        h, a = by.get((ham, size)), by.get((sa, size))
        if h is None or a is None:
            continue
        row = {"size": size, "ham": ham, "sa": sa, "macs": safe(a["macs_counted"], h["macs_counted"]),
               "train_memory": safe(a["mem_train_mb"], h["mem_train_mb"]),
               "infer_memory": safe(a["mem_infer_mb"], h["mem_infer_mb"])}
        for mode in ("train", "infer"):
            ta, th = a[f"{mode}_ms"], h[f"{mode}_ms"]
            row[f"{mode}_time_of_medians"] = safe(ta["median_ms"], th["median_ms"])
            pa, ph = ta.get("times_ms") or [], th.get("times_ms") or []
            paired = (len(pa) == len(ph) > 0 and a.get("timing") == h.get("timing") == "interleaved")
            per_round = [x / y for x, y in zip(pa, ph) if y > 0] if paired else []
            row[f"{mode}_time"] = _q(per_round, 0.5) if per_round else row[f"{mode}_time_of_medians"]
            row[f"{mode}_time_iqr"] = [_q(per_round, 0.25), _q(per_round, 0.75)] if per_round else None
        out.append(row)
    return out


def _fmt(x: Optional[float], spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


def _fmt_ratio(q: dict, mode: str) -> str:
    iqr = q.get(f"{mode}_time_iqr")
    text = f"{_fmt(q[f'{mode}_time'], '.2f')}×"
    return text + (f" [{iqr[0]:.2f}, {iqr[1]:.2f}]" if iqr else "")


def markdown_table(results: list[dict], prov: Optional[dict] = None, verdict: Optional[dict] = None) -> str:
    """A markdown report: the load verdict, one row per (module, size), then ratio tables per size.

    A busy verdict (see :func:`load_verdict`) puts a warning above everything else.
    """
    lines = []
    if verdict is not None and verdict["busy"]:
        lines += [f"> **WARNING — NOT FOR PUBLICATION: the machine was busy.** {verdict['message']}. "
                  "Timings and their ratios are unreliable; rerun on an idle machine.", ""]
    if prov:
        lines += [f"Measured on **{prov.get('device')}**, {prov.get('date')}, commit `{prov.get('commit')}`, "
                  f"torch {prov.get('torch')}. {prov.get('note', '')}", ""]
    if verdict is not None and not verdict["busy"]:
        lines += [f"Machine load: {verdict['message']}.", ""]
    lines += ["| module | input | params (M) | GMACs counted | GMACs closed form | train mem (MB) | infer mem (MB) "
              "| train ms (median [IQR]) | infer ms (median [IQR]) |", "|" + "---|" * 9]
    for r in results:
        t, i = r["train_ms"], r["infer_ms"]
        closed = None if r["macs_closed_form"] is None else r["macs_closed_form"] / 1e9
        lines.append(f"| {r['module']} | {r['B']}×{r['C']}×{r['size']}×{r['size']} | {r['params'] / 2**20:.2f} "
                     f"| {r['macs_counted'] / 1e9:.2f} | {_fmt(closed, '.2f')} | {r['mem_train_mb']:.0f} "
                     f"| {r['mem_infer_mb']:.0f} | {t['median_ms']:.1f} [{t['q25_ms']:.1f}, {t['q75_ms']:.1f}] "
                     f"| {i['median_ms']:.1f} [{i['q25_ms']:.1f}, {i['q75_ms']:.1f}] |")
    interleaved = all(r.get("timing") == "interleaved" for r in results)
    lines += ["", "Params in units of 2^20 (as the paper's table); memory in MB = 2^20 bytes; MACs = FLOPs/2 "
              "counted by torch.utils.flop_counter (matrix products and convolutions only). "
              + ("All modules of one size were timed interleaved in one process; ratio spreads are the "
                 "quartiles of the per-round ratios." if interleaved else "Modules were timed one at a time.")]
    present = {r["module"] for r in results}
    pairs = [("ham-nmf", m) for m in ("sa", "sa-fused", "linear-attn", "ham-ref", "ham-vq", "ham-cd",
                                      "ham-nmf-compiled") if m in present]
    pairs += [("ham-ref", "sa")] if {"ham-ref", "sa"} <= present else []
    for ham, other in pairs:
        rows = ratios(results, ham=ham, sa=other)
        if rows:
            lines += ["", f"{other} / {ham} (higher = {ham} is cheaper):", "",
                      "| size | MACs | train time | infer time | train memory | infer memory |", "|" + "---|" * 6]
            lines += [f"| {q['size']}² | {_fmt(q['macs'])}× | {_fmt_ratio(q, 'train')} | {_fmt_ratio(q, 'infer')} "
                      f"| {_fmt(q['train_memory'])}× | {_fmt(q['infer_memory'])}× |" for q in rows]
    return "\n".join(lines) + "\n"


def write_reports(bench: dict, json_path: Path, md_path: Optional[Path], *, device: str, preset: str,
                  started: float, note: str = "", max_load: float = DEFAULT_MAX_LOAD,
                  allow_busy: bool = False) -> dict:
    """Write ``{"provenance", "load", "publishable", "settings", "results", "timing", "ratios"}`` as JSON, and
    the markdown.

    The JSON is always written (``"publishable": false`` when busy). The markdown, the file meant for the
    book, is written only when the machine was not busy, or with ``allow_busy``, and then under a warning.
    """
    verdict = load_verdict(bench["timing"], max_load)
    prov = provenance(device=device, preset=preset, wall_time_s=time.time() - started, note=note,
                      torch_threads=verdict["torch_threads"])
    results = bench["results"]
    data = {"provenance": prov, "load": verdict, "publishable": not verdict["busy"],
            "settings": bench.get("settings"), "results": results, "timing": bench["timing"],
            "ratios": {h: ratios(results, ham=h) for h in ("ham-nmf", "ham-ref")}}
    write_json(json_path, data)
    if md_path is not None and (allow_busy or not verdict["busy"]):
        Path(md_path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(md_path).with_name(Path(md_path).name + ".tmp")
        tmp.write_text(markdown_table(results, prov, verdict))
        tmp.replace(md_path)
    return data
