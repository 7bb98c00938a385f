"""Small, offline data for the book's solver figures: 2-D toy blobs and real photos as pixel matrices.

Used by the chapters on low-rank recovery and on the three solvers of Geng et al.
(ICLR 2021, arXiv 2109.04553). Photos come from scikit-learn's bundled sample
images, or from CamVid when it is present under a shared data folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["toy_blobs", "find_data_dir", "load_photo", "image_to_matrix", "matrix_to_image"]


def toy_blobs(n: int = 240, centers: int = 4, *, spread: float = 0.07, seed: int = 0,
              dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Gaussian blobs in the positive quadrant, at different angles (so cosine similarity separates them).

    Args:
        n: N, number of points (split evenly over the blobs).
        centers: number of blobs.
        spread: standard deviation of each blob.
        seed: seed of the draw.

    Returns:
        ``(X, labels)``: X of shape (D=2, N) with non-negative entries, labels of shape (N,).
    """
    if n < centers or centers < 1:
        raise ValueError(f"need n >= centers >= 1; got n={n!r}, centers={centers!r}")
    g = torch.Generator().manual_seed(seed)
    angles = torch.linspace(0.15, 1.42, centers, dtype=torch.float64)          # radians in (0, pi/2)
    radii = 0.7 + 0.5 * torch.rand(centers, generator=g, dtype=torch.float64)
    mu = torch.stack([radii * angles.cos(), radii * angles.sin()])             # (2, centers)
    labels = torch.arange(n) % centers
    x = mu[:, labels] + spread * torch.randn((2, n), generator=g, dtype=torch.float64)
    return x.clamp_min(0.0).to(dtype), labels


def find_data_dir(start: Optional[Path] = None) -> Optional[Path]:
    """The shared data folder: ``$HAMLIB_DATA`` if set, else ``../shared/data`` or ``../../shared/data`` from ``start``.

    Returns ``None`` when none exists (callers then fall back to bundled data).
    """
    env = os.environ.get("HAMLIB_DATA")
    if env:
        return Path(env) if Path(env).is_dir() else None
    start = Path.cwd() if start is None else Path(start)
    for rel in ("../shared/data", "../../shared/data", "shared/data"):
        p = (start / rel).resolve()
        if p.is_dir():
            return p
    return None


def _resize(img: np.ndarray, size: Sequence[int]) -> np.ndarray:
    t = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    t = torch.nn.functional.interpolate(t, size=tuple(size), mode="area")
    return t[0].permute(1, 2, 0).numpy()


def load_photo(size: Sequence[int] = (96, 128), *, source: str = "auto", index: int = 0) -> tuple[np.ndarray, str]:
    """A real photo as float array (H, W, 3) in [0, 1], resized (area averaging) to ``size``.

    Args:
        size: (H, W) after resizing.
        source: ``"camvid"`` (first test image under the shared data folder), ``"sklearn"`` (bundled
            sample photos: index 0 = china.jpg, 1 = flower.jpg) or ``"auto"`` (CamVid if present, else sklearn).
        index: which image of the chosen source.

    Returns:
        ``(image, description)``.
    """
    if source not in ("auto", "camvid", "sklearn"):
        raise ValueError(f"source must be 'auto', 'camvid' or 'sklearn'; got {source!r}")
    if source in ("auto", "camvid"):
        root = find_data_dir()
        files = sorted((root / "camvid" / "test").glob("*.png")) + sorted((root / "camvid" / "test").glob("*.jpg")) \
            if root is not None and (root / "camvid" / "test").is_dir() else []
        if files:
            from matplotlib.image import imread

            img = np.asarray(imread(files[index % len(files)]), dtype=np.float32)[..., :3]
            img = img / 255.0 if img.max() > 1.0 else img
            return _resize(img, size), f"CamVid test image {files[index % len(files)].name}"
        if source == "camvid":
            raise FileNotFoundError("source='camvid' but no CamVid test images were found under $HAMLIB_DATA, "
                                    "../shared/data or ../../shared/data")
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    img = np.asarray(data.images[index % len(data.images)], dtype=np.float32) / 255.0
    name = Path(data.filenames[index % len(data.filenames)]).name
    return _resize(img, size), f"scikit-learn sample image {name}"


def image_to_matrix(img: np.ndarray) -> Tensor:
    """Unfold an image (H, W, C) into X of shape (D=C, N=H*W): one column per pixel."""
    if img.ndim != 3:
        raise ValueError(f"img must have shape (H, W, C); got {img.shape}")
    H, W, C = img.shape
    return torch.as_tensor(np.ascontiguousarray(img), dtype=torch.float32).reshape(H * W, C).T.contiguous()


def matrix_to_image(x: Tensor, shape: Sequence[int]) -> np.ndarray:
    """Fold X (D, N=H*W) back into an image (H, W, D), clipped to [0, 1] for display."""
    H, W = int(shape[0]), int(shape[1])
    if x.shape[-1] != H * W:
        raise ValueError(f"x has N={x.shape[-1]} columns but shape {tuple(shape)} needs {H * W}")
    return x.detach().cpu().T.reshape(H, W, -1).clamp(0, 1).numpy()
