"""``python -m hamlib.bench``: what the Hamburger costs against self-attention, measured so it cannot mislead.

Reproduces the cost comparison of Geng et al., "Is Attention Better Than Matrix
Decomposition?" (ICLR 2021, arXiv 2109.04553): parameters, MACs (counted and closed form),
peak memory and forward / forward+backward latency of Hamburger (NMF, VQ, CD), a naive
reference NMF Hamburger, self-attention (explicit and fused) and, when available, linear
attention, over a range of spatial sizes. All modules of one size are timed interleaved in one
process; the report states the thread count and the machine's load and flags a busy machine.
"""
from .core import (MODULES, OPTIONAL_MODULES, Config, available_modules, build_module, closed_form_macs, measure,
                   memory, memory_in_subprocess, static_costs, time_interleaved)
from .ref import RefNMFHamburger, ref_nmf
from .report import DEFAULT_MAX_LOAD, load_verdict, markdown_table, ratios, run_bench, write_reports

__all__ = ["MODULES", "OPTIONAL_MODULES", "available_modules", "Config", "build_module", "closed_form_macs",
           "static_costs", "memory", "memory_in_subprocess", "time_interleaved", "measure", "RefNMFHamburger",
           "ref_nmf", "run_bench", "load_verdict", "markdown_table", "ratios", "write_reports", "DEFAULT_MAX_LOAD"]
