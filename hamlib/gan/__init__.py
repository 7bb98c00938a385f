"""HamGAN (Geng et al., "Is Attention Better Than Matrix Decomposition?", ICLR 2021, arXiv 2109.04553) on 32x32
images: SNGAN/SAGAN ResNet G and projection D with a global-context slot (none / self-attention / Hamburger),
hinge loss, EMA, exact resume, and an offline classifier-FID. Run ``python -m hamlib.gan --help``.

Unlike :mod:`hamlib.md`, this subpackage may use Pillow and tqdm (data and progress bars).
"""
from .config import CONTEXTS, PRESETS, ClassifierConfig, GANConfig, get_preset
from .fid import OFFLINE_LABEL, frechet_distance, gaussian_stats, inception_fid
from .layers import CondBatchNorm2d, context_block
from .losses import d_hinge_loss, g_hinge_loss
from .models import EMA, Discriminator, Generator, from_config
from .train import train

__all__ = ["Generator", "Discriminator", "EMA", "from_config", "CondBatchNorm2d", "context_block", "CONTEXTS",
           "d_hinge_loss", "g_hinge_loss", "frechet_distance", "gaussian_stats", "inception_fid", "OFFLINE_LABEL",
           "GANConfig", "ClassifierConfig", "PRESETS", "get_preset", "train"]
