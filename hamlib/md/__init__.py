"""The three matrix decompositions ("hams"): functional steps, the generic solver, and modules."""
from .base import (CD2D, HAMS, MMSEG_NAMES, NMF2D, SAFE_MAX_HIGH, SAFE_MAX_LOW, VQ2D, MatrixDecomposition2D, build_ham,
                   safe_scale, translate_mmseg_kwargs)
from .cd import cd_final, cd_final_rn, cd_init_bases, cd_iterate, cd_objective, cd_step
from .implicit import ImplicitGradientError, ImplicitGradientWarning
from .nmf import (nmf_bases_update, nmf_coef_update, nmf_final, nmf_final_rn, nmf_init_bases, nmf_init_coef,
                  nmf_iterate, nmf_objective, nmf_step)
from .solver import GRAD_MODES, METHODS, Algorithm, Solution, Trace, check_hyperparameters, make_algorithm, solve
from .vq import vq_assign, vq_final, vq_final_rn, vq_init_bases, vq_iterate, vq_objective, vq_step

__all__ = [
    "MatrixDecomposition2D", "NMF2D", "VQ2D", "CD2D", "HAMS", "build_ham",
    "SAFE_MAX_LOW", "SAFE_MAX_HIGH", "safe_scale", "MMSEG_NAMES", "translate_mmseg_kwargs",
    "Algorithm", "Solution", "Trace", "GRAD_MODES", "METHODS", "make_algorithm", "solve", "check_hyperparameters",
    "ImplicitGradientError", "ImplicitGradientWarning",
    "nmf_init_bases", "nmf_init_coef", "nmf_coef_update", "nmf_bases_update", "nmf_step", "nmf_final", "nmf_objective",
    "nmf_iterate", "nmf_final_rn",
    "vq_init_bases", "vq_assign", "vq_step", "vq_final", "vq_objective", "vq_iterate", "vq_final_rn",
    "cd_init_bases", "cd_step", "cd_final", "cd_objective", "cd_iterate", "cd_final_rn",
]
