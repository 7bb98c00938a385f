"""Figures of :mod:`hamlib.bench` results: time and memory against the number of pixels n, on log axes."""
from __future__ import annotations

from typing import Optional, Sequence

from .style import COLORS

__all__ = ["plot_bench", "BENCH_STYLES"]

#: module name -> (colour key in COLORS, line style, marker)
BENCH_STYLES = {"ham-nmf": ("nmf", "-", "o"), "ham-vq": ("vq", "-", "s"), "ham-cd": ("cd", "-", "^"),
                "ham-ref": ("nmf", "--", "o"), "ham-nmf-compiled": ("nmf", ":", "x"),
                "ham-vq-compiled": ("vq", ":", "x"), "ham-cd-compiled": ("cd", ":", "x"),
                "sa": ("attention", "-", "D"), "sa-fused": ("attention", "--", "D"),
                "linear-attn": ("svd", "-", "v")}


def plot_bench(data: dict, *, modes: Sequence[str] = ("train", "infer"), modules: Optional[Sequence[str]] = None,
               title: Optional[str] = None):
    """Median time (with its interquartile range) and peak memory against n = H*W, log-log, one line per module.

    Args:
        data: what :func:`hamlib.bench.write_reports` returns or writes as JSON (``"results"``; optional
            ``"provenance"`` and ``"load"``), or a plain list of result rows.
        modes: ``"train"`` (forward + backward) and/or ``"infer"``; one row of two panels per mode.
        modules: the modules to draw (default: all in ``data``, in their order).
        title: figure title (default: device, date, C and the load verdict from ``data``).

    Returns:
        The matplotlib ``Figure`` (time on the left, memory on the right).
    """
    import matplotlib.pyplot as plt

    rows = data["results"] if isinstance(data, dict) else list(data)
    if not rows:
        raise ValueError("data has no results to plot")
    for mode in modes:
        if mode not in ("train", "infer"):
            raise ValueError(f"modes must be drawn from ('train', 'infer'); got {mode!r}")
    names = list(dict.fromkeys(r["module"] for r in rows)) if modules is None else list(modules)
    fig, axes = plt.subplots(len(modes), 2, figsize=(11, 3.8 * len(modes)), squeeze=False)
    for (ax_t, ax_m), mode in zip(axes, modes):
        for m in names:
            rs = sorted((r for r in rows if r["module"] == m), key=lambda r: r["n"])
            if not rs:
                continue
            colour, ls, marker = BENCH_STYLES.get(m, ("none", "-", "."))
            kw = dict(color=COLORS.get(colour, "#444444"), linestyle=ls, marker=marker, label=m)
            n = [r["n"] for r in rs]
            t = [r[f"{mode}_ms"] for r in rs]
            med = [s["median_ms"] for s in t]
            err = [[s["median_ms"] - s["q25_ms"] for s in t], [s["q75_ms"] - s["median_ms"] for s in t]]
            ax_t.errorbar(n, med, yerr=err, capsize=2, **kw)
            ax_m.plot(n, [max(r[f"mem_{mode}_mb"], 1e-2) for r in rs], **kw)
        what = "forward+backward" if mode == "train" else "inference"
        ax_t.set(ylabel=f"{what} time (ms, median, IQR bars)")
        ax_m.set(ylabel=f"{what} peak memory (MB)")
        for ax in (ax_t, ax_m):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("pixels n = H·W")
        ax_t.legend(fontsize=7, ncol=2)
    if title is None and isinstance(data, dict) and "provenance" in data:
        p = data["provenance"]
        title = f"{p.get('device')}, {str(p.get('date', ''))[:10]}, C = {rows[0].get('C')}"
        load = data.get("load")
        if load and load.get("busy"):
            title += " — MACHINE BUSY: not for publication"
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
