"""``python -m hamlib.bench``: what the Hamburger costs against self-attention.

Reproduces the cost comparison of Geng et al., "Is Attention Better Than Matrix
Decomposition?" (ICLR 2021, arXiv 2109.04553): parameters, MACs (counted and closed form),
peak memory and forward / forward+backward latency of Hamburger (NMF, VQ, CD), a naive
reference NMF Hamburger, and self-attention (explicit and fused) over a range of spatial sizes.
"""
from .core import MODULES, Config, build_module, closed_form_macs, measure, measure_in_subprocess
from .ref import RefNMFHamburger, ref_nmf
from .report import markdown_table, ratios, run_bench

__all__ = ["MODULES", "Config", "build_module", "closed_form_macs", "measure", "measure_in_subprocess",
           "RefNMFHamburger", "ref_nmf", "run_bench", "markdown_table", "ratios"]
