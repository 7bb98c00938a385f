"""Fréchet distance between Gaussians fitted to features, for HamGAN (Geng et al., ICLR 2021, arXiv 2109.04553).

    d^2((mu1, S1), (mu2, S2)) = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2})

One implementation serves both the offline *classifier-FID* (features of a CIFAR-10 classifier trained by hamlib;
not comparable with published FIDs) and the standard Inception FID (via torch-fidelity, when installed and its
weights can be downloaded). tr((S1 S2)^{1/2}) is computed as the sum of the square roots of the eigenvalues of the
symmetric PSD matrix S1^{1/2} S2 S1^{1/2}, in float64.
"""
from __future__ import annotations

from typing import Callable, Tuple

import numpy as np
import torch

__all__ = ["gaussian_stats", "frechet_distance", "feature_stats", "OFFLINE_LABEL", "inception_fid"]

OFFLINE_LABEL = "classifier-FID (offline), not comparable with published FIDs"


def gaussian_stats(features: np.ndarray | torch.Tensor) -> Tuple[np.ndarray, np.ndarray]:
    """Mean (F,) and unbiased covariance (F, F) of features (N, F), N >= 2."""
    f = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape (N >= 2, F); got {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    Args:
        mu1, mu2: means (F,). sigma1, sigma2: covariances (F, F), symmetric positive semi-definite.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    F = mu1.shape[0]
    for name, v, shape in (("mu2", mu2, (F,)), ("sigma1", s1, (F, F)), ("sigma2", s2, (F, F))):
        if v.shape != shape:
            raise ValueError(f"{name} must have shape {shape} to match mu1; got {v.shape}")
    r1 = _sqrtm_psd(s1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * cross)


@torch.no_grad()
def feature_stats(feature_fn: Callable[[torch.Tensor], torch.Tensor], images_fn: Callable[[int, int], torch.Tensor],
                  n: int, batch_size: int = 250) -> Tuple[np.ndarray, np.ndarray]:
    """Gaussian stats of ``feature_fn`` over ``n`` images produced batch by batch by ``images_fn(start, size)``."""
    feats = [feature_fn(images_fn(i, min(batch_size, n - i))).double().cpu() for i in range(0, n, batch_size)]
    return gaussian_stats(torch.cat(feats))


def inception_fid(generator_fn: Callable[[int], torch.Tensor], n: int = 10_000, *, real: str = "cifar10-train",
                  batch_size: int = 250) -> dict:
    """Standard Inception-v3 FID and IS via torch-fidelity (online, e.g. Colab).

    The ``n`` images are generated first, in batches under ``no_grad`` on the generator's device, and handed
    to torch-fidelity as a CPU uint8 tensor: no generator runs inside the data loader's workers.

    Args:
        generator_fn: ``generator_fn(b)`` returns b images (b, 3, H, W) in [-1, 1].
        n: number of generated images (use 50,000 for paper-style numbers).
        real: a torch-fidelity registered input, e.g. ``"cifar10-train"``.
        batch_size: images generated per call.

    Returns:
        ``{"inception_fid", "inception_score", "n"}``, or ``{"skipped": reason}`` when torch-fidelity is not
        installed or fails (e.g. no network for its weights); the caller records the reason.
    """
    try:
        import torch_fidelity
    except ImportError:
        return {"skipped": "torch-fidelity is not installed (pip install torch-fidelity; it downloads the "
                           "Inception weights, so it needs internet); only the offline classifier-FID is reported"}
    chunks = []
    with torch.no_grad():
        for i in range(0, n, batch_size):
            x = generator_fn(min(batch_size, n - i))
            chunks.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
    images = torch.cat(chunks)

    class _Images(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int) -> torch.Tensor:
            return images[i]

    try:
        m = torch_fidelity.calculate_metrics(input1=_Images(), input2=real, fid=True, isc=True, verbose=False)
    except Exception as e:  # no network, no weights
        return {"skipped": f"torch-fidelity failed ({type(e).__name__}: {str(e)[:300]})"}
    return {"inception_fid": float(m["frechet_inception_distance"]),
            "inception_score": float(m["inception_score_mean"]), "n": n}
