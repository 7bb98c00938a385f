"""hamlib: matrix-decomposition attention (the Hamburger) in PyTorch, for the textbook.

Geng, Guo, Chen, Li, Wei, Lin. "Is Attention Better Than Matrix Decomposition?" ICLR 2021, arXiv 2109.04553.

The core (:mod:`hamlib.md`, :mod:`hamlib.hamburger`, :mod:`hamlib.attention`) imports only torch.
"""
from .attention import LinearAttention2d, SelfAttention2d
from .hamburger import Hamburger
from .md import CD2D, NMF2D, VQ2D, MatrixDecomposition2D, build_ham, solve

__version__ = "0.1.0"

__all__ = ["NMF2D", "VQ2D", "CD2D", "MatrixDecomposition2D", "build_ham", "solve", "Hamburger", "SelfAttention2d", "LinearAttention2d",
           "__version__"]
