"""Run a grid of benchmark configurations and write the JSON and markdown reports."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Optional

from tqdm.auto import tqdm

from ..train.provenance import provenance, write_json
from .core import Config, measure, measure_in_subprocess

__all__ = ["run_bench", "ratios", "markdown_table"]


def run_bench(modules: Iterable[str], sizes: Iterable[int], *, C: int = 512, d: int = 512, r: int = 64, K: int = 6,
              B: int = 1, device: str = "cpu", warmup: int = 1, repeats: int = 5, threads: Optional[int] = None,
              subprocess: Optional[bool] = None, progress: bool = True) -> list[dict]:
    """Measure every (module, size) pair; on CPU each in a fresh process by default (sound peak RSS)."""
    if subprocess is None:
        subprocess = device == "cpu"
    cfgs = [Config(m, s, C=C, d=d, r=r, K=K, B=B, device=device, warmup=warmup, repeats=repeats, threads=threads)
            for s in sizes for m in modules]
    results = []
    for cfg in tqdm(cfgs, desc="hamlib.bench", disable=not progress):
        results.append(measure_in_subprocess(cfg) if subprocess else measure(cfg))
    return results


def ratios(results: list[dict], ham: str = "ham-nmf", sa: str = "sa") -> list[dict]:
    """Self-attention / Hamburger ratios (MACs, train time, train memory, ...) per spatial size."""
    out = []
    by = {(r["module"], r["size"]): r for r in results}
    for size in sorted({r["size"] for r in results}):
        h, a = by.get((ham, size)), by.get((sa, size))
        if h is None or a is None:
            continue
        safe = lambda num, den: num / den if den else None  # noqa: E731
        out.append({"size": size, "ham": ham, "sa": sa, "macs": safe(a["macs_counted"], h["macs_counted"]),
                    "train_time": safe(a["train_ms"]["median_ms"], h["train_ms"]["median_ms"]),
                    "infer_time": safe(a["infer_ms"]["median_ms"], h["infer_ms"]["median_ms"]),
                    "train_memory": safe(a["mem_train_mb"], h["mem_train_mb"]),
                    "infer_memory": safe(a["mem_infer_mb"], h["mem_infer_mb"])})
    return out


def _fmt(x: Optional[float], spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


def markdown_table(results: list[dict], prov: Optional[dict] = None) -> str:
    """A markdown report: one row per (module, size), then SA/Ham ratio tables."""
    lines = []
    if prov:
        lines += [f"Measured on **{prov.get('device')}**, {prov.get('date')}, commit `{prov.get('commit')}`, "
                  f"torch {prov.get('torch')}. {prov.get('note', '')}", ""]
    lines += ["| module | input | params (M) | GMACs counted | GMACs closed form | train mem (MB) | infer mem (MB) "
              "| train ms (median [IQR]) | infer ms (median [IQR]) |", "|" + "---|" * 9]
    for r in results:
        t, i = r["train_ms"], r["infer_ms"]
        closed = None if r["macs_closed_form"] is None else r["macs_closed_form"] / 1e9
        lines.append(f"| {r['module']} | {r['B']}×{r['C']}×{r['size']}×{r['size']} | {r['params'] / 2**20:.2f} "
                     f"| {r['macs_counted'] / 1e9:.2f} | {_fmt(closed, '.2f')} | {r['mem_train_mb']:.0f} "
                     f"| {r['mem_infer_mb']:.0f} | {t['median_ms']:.1f} [{t['q25_ms']:.1f}, {t['q75_ms']:.1f}] "
                     f"| {i['median_ms']:.1f} [{i['q25_ms']:.1f}, {i['q75_ms']:.1f}] |")
    lines += ["", "Params in units of 2^20 (as the paper's table); memory in MB = 2^20 bytes; MACs = FLOPs/2 "
              "counted by torch.utils.flop_counter (matrix products and convolutions only)."]
    for ham in ("ham-nmf", "ham-ref"):
        rows = ratios(results, ham=ham)
        if rows:
            lines += ["", f"Self-attention / {ham} ratios (higher = the Hamburger is cheaper):", "",
                      "| size | MACs | train time | infer time | train memory | infer memory |", "|" + "---|" * 6]
            lines += [f"| {q['size']}² | {_fmt(q['macs'])}× | {_fmt(q['train_time'])}× | {_fmt(q['infer_time'])}× "
                      f"| {_fmt(q['train_memory'])}× | {_fmt(q['infer_memory'])}× |" for q in rows]
    return "\n".join(lines) + "\n"


def write_reports(results: list[dict], json_path: Path, md_path: Optional[Path], *, device: str, preset: str,
                  started: float, note: str = "") -> dict:
    """Write ``{"provenance", "results", "ratios"}`` to ``json_path`` and the markdown table to ``md_path``."""
    prov = provenance(device=device, preset=preset, wall_time_s=time.time() - started, note=note)
    data = {"provenance": prov, "results": results,
            "ratios": {h: ratios(results, ham=h) for h in ("ham-nmf", "ham-ref")}}
    write_json(json_path, data)
    if md_path is not None:
        Path(md_path).parent.mkdir(parents=True, exist_ok=True)
        Path(md_path).write_text(markdown_table(results, prov))
    return data
