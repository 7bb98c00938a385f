"""The three matrix decompositions ("hams"): functional steps, the generic solver, and modules."""
from .base import CD2D, HAMS, NMF2D, VQ2D, MatrixDecomposition2D, build_ham
from .cd import cd_final, cd_init_bases, cd_objective, cd_step
from .nmf import (nmf_bases_update, nmf_coef_update, nmf_final, nmf_init_bases, nmf_init_coef, nmf_objective,
                  nmf_step)
from .solver import GRAD_MODES, METHODS, Algorithm, Solution, Trace, make_algorithm, solve
from .vq import vq_assign, vq_final, vq_init_bases, vq_objective, vq_step

__all__ = [
    "MatrixDecomposition2D", "NMF2D", "VQ2D", "CD2D", "HAMS", "build_ham",
    "Algorithm", "Solution", "Trace", "GRAD_MODES", "METHODS", "make_algorithm", "solve",
    "nmf_init_bases", "nmf_init_coef", "nmf_coef_update", "nmf_bases_update", "nmf_step", "nmf_final", "nmf_objective",
    "vq_init_bases", "vq_assign", "vq_step", "vq_final", "vq_objective",
    "cd_init_bases", "cd_step", "cd_final", "cd_objective",
]
