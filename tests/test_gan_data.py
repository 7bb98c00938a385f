"""Loaders of hamlib.gan.data: synthetic shapes, image tarballs/folders, MNIST IDX, clear errors."""
import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hamlib.gan.data import (CIFAR10_CLASSES, REPO_ROOT, load_cifar10, load_mnist, sample_batch, synthetic_shapes,
                             to_tensor)


def test_synthetic_shapes_deterministic_and_classes():
    x, y = synthetic_shapes(40, seed=1)
    x2, y2 = synthetic_shapes(40, seed=1)
    assert x.shape == (40, 32, 32, 3) and x.dtype == np.uint8 and set(y) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(x, synthetic_shapes(40, seed=2)[0])
    t = to_tensor(x)
    assert t.shape == (40, 3, 32, 32) and t.min() >= -1 and t.max() <= 1


def _write_tar(path: Path, n_per_class: int = 2, split: str = "test") -> np.ndarray:
    from PIL import Image

    x, _ = synthetic_shapes(n_per_class * 3, seed=0)
    with tarfile.open(path, "w:gz") as tar:
        for i, img in enumerate(x):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")  # lossless, so pixels can be compared
            info = tarfile.TarInfo(f"{split}/{CIFAR10_CLASSES[i % 3]}/{i:04d}.jpg")
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
    return x


def test_tarball_loader_and_cache(tmp_path):
    x = _write_tar(tmp_path / "c.tar.gz")
    imgs, labels = load_cifar10(tmp_path / "c.tar.gz", "test", cache_dir=tmp_path / "cache")
    assert imgs.shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(imgs, x)
    np.testing.assert_array_equal(labels, [0, 1, 2, 0, 1, 2])
    assert list((tmp_path / "cache").glob("*.npz"))
    with pytest.raises(ValueError, match="no images under train"):
        load_cifar10(tmp_path / "c.tar.gz", "train", cache_dir="")


def test_missing_and_corrupt_cifar(tmp_path):
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not found"):
        load_cifar10(tmp_path / "nope.tar.gz")
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(ValueError, match="not a readable CIFAR-10 tarball"):
        load_cifar10(tmp_path / "bad.tar.gz", cache_dir="")
    with pytest.raises(ValueError, match="split"):
        load_cifar10(tmp_path, "val")


def _idx(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return gzip.compress(head + arr.astype(np.uint8).tobytes())


def test_mnist_idx_roundtrip_and_errors(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(_idx(imgs))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(_idx(np.arange(5)))
    x, y = load_mnist(tmp_path)
    assert x.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(x[:, 2:30, 2:30, 0], imgs)
    np.testing.assert_array_equal(y, np.arange(5))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(_idx(np.arange(5))[:-20])
    with pytest.raises(ValueError):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="train-images"):
        load_mnist(tmp_path, "train")


def test_sample_batch_is_function_of_step():
    x, y = torch.arange(100.0)[:, None], torch.arange(100)
    a, b = sample_batch(x, y, 8, step=3, seed=0), sample_batch(x, y, 8, step=3, seed=0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[0][:, 0].long(), a[1])
    assert not torch.equal(a[0], sample_batch(x, y, 8, step=4, seed=0)[0])


REAL = REPO_ROOT.parent / "shared" / "data"


@pytest.mark.skipif(not (REAL / "mnist" / "t10k-images-idx3-ubyte.gz").exists(), reason="no offline MNIST copy")
def test_real_mnist():
    x, y = load_mnist(REAL / "mnist")
    assert x.shape == (10000, 32, 32, 3) and sorted(set(y.tolist())) == list(range(10))


@pytest.mark.skipif(not (REAL / "cifar10-jpg.tar.gz").exists(), reason="no offline CIFAR-10 copy")
def test_real_cifar10_test_split():
    x, y = load_cifar10(REAL / "cifar10-jpg.tar.gz", "test")  # uses data/cache after the first decode
    assert x.shape == (10000, 32, 32, 3) and np.bincount(y).tolist() == [1000] * 10
