"""Data for HamGAN (Geng et al., ICLR 2021, arXiv 2109.04553): CIFAR-10, MNIST and synthetic shapes.

Every loader returns ``(images, labels)`` with ``images`` a uint8 array of shape (N, H, W, 3) and ``labels``
an int64 array of shape (N,). :func:`to_tensor` maps images to floats in [-1, 1] of shape (N, 3, H, W).

CIFAR-10 is read from (first that exists) an explicit ``root``, ``$HAMLIB_CIFAR10``, ``data/cifar-10-batches-py``
(the official Python archive), or ``../shared/data/cifar10-jpg.tar.gz`` (a tarball of
``train|test/CLASS/NNNN.jpg``); with ``download=True`` the official archive is fetched into ``data/``.
Decoded arrays are cached as ``.npy`` under ``data/cache/`` (git-ignored).
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

__all__ = ["CIFAR10_CLASSES", "CIFAR10_URL", "load_cifar10", "load_mnist", "synthetic_shapes", "to_tensor",
           "sample_batch", "REPO_ROOT"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
REPO_ROOT = Path(__file__).resolve().parents[2]
Arrays = Tuple[np.ndarray, np.ndarray]


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")


def _read_image_tar(path: Path, split: str) -> Arrays:
    from PIL import Image  # Pillow ships with matplotlib

    imgs, labels = [], []
    try:
        with tarfile.open(path) as tar:
            for m in tar:
                parts = Path(m.name).parts
                if not m.isfile() or len(parts) < 3 or parts[-3] != split or parts[-2] not in CIFAR10_CLASSES:
                    continue
                data = tar.extractfile(m).read()
                imgs.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8))
                labels.append(CIFAR10_CLASSES.index(parts[-2]))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(f"{path} is not a readable CIFAR-10 tarball ({type(e).__name__}: {e})") from e
    if not imgs:
        raise ValueError(f"{path} holds no images under {split}/CLASS/*.jpg (classes {CIFAR10_CLASSES})")
    return np.stack(imgs), np.asarray(labels, dtype=np.int64)


def _read_image_folder(path: Path, split: str) -> Arrays:
    from PIL import Image

    imgs, labels = [], []
    for c, name in enumerate(CIFAR10_CLASSES):
        for f in sorted((path / split / name).glob("*")):
            imgs.append(np.asarray(Image.open(f).convert("RGB"), dtype=np.uint8))
            labels.append(c)
    if not imgs:
        raise ValueError(f"{path} holds no images under {split}/CLASS/ (classes {CIFAR10_CLASSES})")
    return np.stack(imgs), np.asarray(labels, dtype=np.int64)


def _read_python_batches(path: Path, split: str) -> Arrays:
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    xs, ys = [], []
    for f in files:
        with open(path / f, "rb") as fh:
            d = pickle.load(fh, encoding="bytes")
        xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(d[b"labels"], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _candidates(root: Optional[os.PathLike]) -> list:
    if root is not None:
        return [Path(root)]
    c = [Path(os.environ["HAMLIB_CIFAR10"])] if os.environ.get("HAMLIB_CIFAR10") else []
    return c + [REPO_ROOT / "data" / "cifar-10-batches-py", REPO_ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"]


def load_cifar10(root: Optional[os.PathLike] = None, split: str = "train", *, download: bool = False,
                 cache_dir: Optional[os.PathLike] = None) -> Arrays:
    """Load CIFAR-10 as uint8 images (N, 32, 32, 3) and labels (N,).

    Args:
        root: a ``cifar-10-batches-py`` folder, a folder or tarball with ``SPLIT/CLASS/*.jpg``; None searches
            the default places (see the module docstring).
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000).
        download: fetch the official archive into ``data/`` when nothing is found.
        cache_dir: where decoded ``.npy`` arrays are cached (default ``data/cache``); None-equivalent ``""``
            disables the cache.
    """
    _check_split(split)
    cands = _candidates(root)
    path = next((p for p in cands if p.exists()), None)
    if path is None and download and root is None:
        import urllib.request

        dest = REPO_ROOT / "data"
        dest.mkdir(parents=True, exist_ok=True)
        archive = dest / "cifar-10-python.tar.gz"
        urllib.request.urlretrieve(CIFAR10_URL, archive)
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
        path = dest / "cifar-10-batches-py"
    if path is None:
        raise FileNotFoundError(f"CIFAR-10 not found; looked in {[str(p) for p in cands]}. Pass root=, set "
                                f"HAMLIB_CIFAR10, or use download=True when online.")
    cache = Path(cache_dir if cache_dir is not None else REPO_ROOT / "data" / "cache")
    key = cache / f"cifar10_{path.name.replace('.', '_')}_{split}.npz"
    if str(cache_dir) != "" and key.is_file():
        d = np.load(key)
        return d["x"], d["y"]
    if path.is_dir() and (path / "test_batch").exists():
        x, y = _read_python_batches(path, split)
    elif path.is_dir():
        x, y = _read_image_folder(path, split)
    else:
        x, y = _read_image_tar(path, split)
    if str(cache_dir) != "":
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(key, x=x, y=y)
    return x, y


def _read_idx(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path} is not a readable gzip IDX file ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {raw[:4]!r})")
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: header says {dims}, found {data.size} bytes")
    return data.reshape(dims)


def load_mnist(root: os.PathLike, split: str = "test") -> Arrays:
    """MNIST from the original IDX ``.gz`` files, padded to 32x32 and repeated to 3 channels: (N, 32, 32, 3)."""
    _check_split(split)
    prefix = "train" if split == "train" else "t10k"
    root = Path(root)
    xf, yf = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
    for f in (xf, yf):
        if not f.is_file():
            raise FileNotFoundError(f"MNIST file missing: expected {f}")
    x, y = _read_idx(xf), _read_idx(yf).astype(np.int64)
    x = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    return np.repeat(x[..., None], 3, axis=-1), y


def synthetic_shapes(n: int, size: int = 32, num_classes: int = 4, seed: int = 0) -> Arrays:
    """Coloured shapes on a dark background; the class picks the shape (square, disc, bar, cross)."""
    if n <= 0 or size < 8 or not 1 <= num_classes <= 4:
        raise ValueError(f"need n > 0, size >= 8, 1 <= num_classes <= 4; got {n}, {size}, {num_classes}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    x = np.zeros((n, size, size, 3), np.uint8)
    y = rng.integers(0, num_classes, n)
    for i in range(n):
        cx, cy = rng.integers(size // 4, 3 * size // 4, 2)
        r = rng.integers(size // 8, size // 4)
        masks = [(abs(xx - cx) <= r) & (abs(yy - cy) <= r), (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r,
                 (abs(xx - cx) <= r) & (abs(yy - cy) <= r // 3),
                 ((abs(xx - cx) <= r // 3) | (abs(yy - cy) <= r // 3)) & (abs(xx - cx) <= r) & (abs(yy - cy) <= r)]
        x[i][masks[y[i]]] = rng.integers(80, 256, 3)
    return x, y.astype(np.int64)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [-1, 1]."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 of shape (N, H, W, 3); got {images.dtype} {images.shape}")
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def sample_batch(x: torch.Tensor, y: torch.Tensor, batch_size: int, step: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The real batch of ``step``: a pure function of (seed, step), so resumed training sees the same data."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    idx = torch.randint(len(x), (batch_size,), generator=g)
    return x[idx], y[idx]
