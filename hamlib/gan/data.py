"""Data for HamGAN (Geng et al., ICLR 2021, arXiv 2109.04553): CIFAR-10, MNIST and synthetic shapes.

Every loader returns ``(images, labels)`` with ``images`` a uint8 array of shape (N, H, W, 3) and ``labels``
an int64 array of shape (N,). :func:`to_tensor` maps images to floats in [-1, 1] of shape (N, 3, H, W).

Where the data comes from (``root=None`` means :func:`hamlib.train.download.data_root`, i.e. ``$HAMLIB_DATA``
or ``./data``):

* CIFAR-10: the official ``cifar-10-python.tar.gz`` (read straight from the tarball, or from its extracted
  ``cifar-10-batches-py/`` folder), or a tarball/folder of ``train|test/CLASS/NNNN.jpg`` images such as
  ``cifar10-jpg.tar.gz``. ``download=True`` fetches the official tarball (MD5-verified) when none is found.
  The batches are Python pickles; they are read with a restricted unpickler that can build nothing but
  dicts, lists, strings, numbers and plain numpy arrays, so a crafted file cannot run code.
* MNIST: the four IDX ``.gz`` files (``t10k-*`` for the test split), fetched with ``download=True`` from
  working mirrors (the historic host refuses downloads), each MD5-verified.

Decoded CIFAR arrays are cached as ``.npz`` files keyed by the SHA-256 of the source's bytes (a different
tarball with the same name is never confused with a cached one) and written atomically (a temporary file,
then a rename), so a killed run never leaves a cache that breaks the next one; an unreadable cache entry is
rebuilt. The cache lives in ``$HAMLIB_CACHE`` if set, else ``data_root("cache")``, or ``~/.cache/hamlib`` when
the data folder is read-only; it is skipped, with a warning, where it cannot be written.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import warnings
from pathlib import Path, PurePosixPath
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..train.download import data_root, download as fetch_file, file_digest, pid_alive, rank_zero_first

__all__ = ["CIFAR10_CLASSES", "CIFAR10_URL", "CIFAR10_MD5", "CIFAR10_MIRRORS", "MNIST_MIRRORS", "MNIST_MD5",
           "load_cifar10", "load_mnist", "synthetic_shapes", "to_tensor", "sample_batch", "restricted_unpickle"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # 170,498,071 bytes; the value torchvision checks
CIFAR10_MIRRORS: Tuple[str, ...] = ()
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_JPG = "cifar10-jpg.tar.gz"
# yann.lecun.com answers 403 to scripts; the PyTorch CI bucket and Google's CVDF bucket serve the same bytes.
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/",
                 "http://yann.lecun.com/exdb/mnist/")
MNIST_MD5 = {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
             "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
             "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
             "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}
_CACHE_VERSION = 1
Arrays = Tuple[np.ndarray, np.ndarray]


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")


# --------------------------------------------------------------------------------------------- safe pickles
def _reconstruct_fn() -> Callable:
    return np.ndarray.__reduce__(np.zeros(1, np.uint8))[0]  # numpy's array-rebuild function, any numpy version


def _safe_dtype(*args, **kwargs) -> np.dtype:
    d = np.dtype(*args, **kwargs)
    if d.hasobject:
        raise pickle.UnpicklingError("object arrays are refused: they could hold arbitrary pickled objects")
    return d


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """What Python 3 pickles of ``bytes`` at protocol <= 2 call (``_codecs.encode(s, "latin1")``), latin-1 only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with {encoding!r}: only latin1 text is allowed")
    return text.encode("latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a plain numpy array needs (its rebuild function, ``ndarray``,
    ``dtype`` without object fields, and latin-1 ``bytes`` as Python 3 writes them); anything else is refused."""

    def find_class(self, module: str, name: str):
        allowed: Dict[Tuple[str, str], Callable] = {
            ("numpy.core.multiarray", "_reconstruct"): _reconstruct_fn(),
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct_fn(),
            ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _safe_dtype, ("_codecs", "encode"): _latin1}
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only plain numpy arrays, "
                                         f"dicts, lists, strings and numbers are allowed in a data file")
        return allowed[(module, name)]


def restricted_unpickle(data: bytes, *, encoding: str = "bytes"):
    """Unpickle ``data`` without running code: only dicts, lists, tuples, str/bytes, numbers and numpy arrays
    (no object dtype) can be built. A pickle that names any other callable raises
    :class:`pickle.UnpicklingError` before anything is called."""
    return _RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()


def _parse_batch(raw: bytes, where: str) -> Arrays:
    try:
        d = restricted_unpickle(raw)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise ValueError(f"{where} is not a CIFAR-10 python batch ({type(e).__name__}: {e})") from e
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise ValueError(f"{where} is not a CIFAR-10 python batch (expected a dict with b'data' and b'labels')")
    x = np.asarray(d[b"data"])
    y = np.asarray(d[b"labels"], dtype=np.int64)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(y) != len(x):
        raise ValueError(f"{where}: data must be uint8 (N, 3072) with N labels; got {x.dtype} {x.shape}, "
                         f"{len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{where}: labels must be in 0..9; got {y.min()}..{y.max()}")
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), y


def _batch_names(split: str) -> List[str]:
    return [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]


# --------------------------------------------------------------------------------------------- readers
def _decode(data: bytes, where: str) -> np.ndarray:
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"cannot decode image {where}: {e}") from e


def _read_tar(path: Path, split: str) -> Arrays:
    """A tarball: the official python batches (``*/data_batch_1``, ...) or images ``SPLIT/CLASS/NAME``."""
    imgs, labels, batches = [], [], {}
    want = set(_batch_names(split))
    try:
        with tarfile.open(path) as tar:
            for m in tar:
                if not m.isfile():
                    continue
                parts = PurePosixPath(m.name).parts
                if parts and parts[-1] in want:
                    batches[parts[-1]] = tar.extractfile(m).read()
                elif len(parts) >= 3 and parts[-3] == split and parts[-2] in CIFAR10_CLASSES:
                    imgs.append(_decode(tar.extractfile(m).read(), f"{path}:{m.name}"))
                    labels.append(CIFAR10_CLASSES.index(parts[-2]))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(f"{path} is not a readable CIFAR-10 tarball ({type(e).__name__}: {e})") from e
    if batches:
        missing = sorted(want - set(batches))
        if missing:
            raise ValueError(f"{path} lacks CIFAR-10 batches {missing}")
        xs, ys = zip(*(_parse_batch(batches[n], f"{path}:{n}") for n in _batch_names(split)))
        return np.concatenate(xs), np.concatenate(ys)
    if not imgs:
        raise ValueError(f"{path} holds no images under {split}/CLASS/*.jpg (classes {CIFAR10_CLASSES}) and no "
                         f"python batches")
    return np.stack(imgs), np.asarray(labels, dtype=np.int64)


def _read_python_batches(path: Path, split: str) -> Arrays:
    xs, ys = [], []
    for f in _batch_names(split):
        if not (path / f).is_file():
            raise FileNotFoundError(f"CIFAR-10 batch {path / f} is missing")
        x, y = _parse_batch((path / f).read_bytes(), str(path / f))
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def _image_files(path: Path, split: str) -> List[Tuple[Path, int]]:
    return [(f, c) for c, name in enumerate(CIFAR10_CLASSES) for f in sorted((path / split / name).glob("*"))
            if f.is_file()]


def _read_image_folder(path: Path, split: str) -> Arrays:
    files = _image_files(path, split)
    if not files:
        raise ValueError(f"{path} holds no images under {split}/CLASS/ (classes {CIFAR10_CLASSES})")
    return (np.stack([_decode(f.read_bytes(), str(f)) for f, _ in files]),
            np.asarray([c for _, c in files], dtype=np.int64))


# --------------------------------------------------------------------------------------------- cache
def _source_digest(path: Path, split: str) -> str:
    """SHA-256 over the bytes the decoder reads (and their names, for folders)."""
    if path.is_file():
        return file_digest(path)
    h = hashlib.sha256()
    files = ([path / f for f in _batch_names(split)] if (path / "test_batch").is_file()
             else [f for f, _ in _image_files(path, split)])
    for f in files:
        h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def _cache_read(key: Path) -> Optional[Arrays]:
    if not key.is_file():
        return None
    try:
        with np.load(key, allow_pickle=False) as d:
            x, y = d["x"], d["y"]
        if x.dtype != np.uint8 or x.ndim != 4 or y.shape != (len(x),):
            raise ValueError(f"unexpected arrays {x.dtype} {x.shape}, {y.shape}")
        return x, y.astype(np.int64, copy=False)
    except Exception as e:  # noqa: BLE001 - any unreadable cache entry is rebuilt, never fatal
        warnings.warn(f"ignoring unreadable cache {key} ({type(e).__name__}: {e}); rebuilding it", stacklevel=3)
        key.unlink(missing_ok=True)
        return None


def _cache_write(key: Path, x: np.ndarray, y: np.ndarray) -> None:
    try:
        key.parent.mkdir(parents=True, exist_ok=True)
        for old in key.parent.glob(f".{key.name}.tmp-*"):  # leftovers of killed writers of this key
            pid = old.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not pid_alive(int(pid)):
                old.unlink(missing_ok=True)
        tmp = key.parent / f".{key.name}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                np.savez(f, x=x, y=y)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, key)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as e:
        warnings.warn(f"could not write the CIFAR-10 cache {key} ({e}); continuing without it", stacklevel=3)


def _default_cache() -> Path:
    """``$HAMLIB_CACHE``; else ``data_root("cache")`` unless the data folder is read-only (no write bit for anyone,
    as a shared copy is: honoured even for root), then ``$XDG_CACHE_HOME/hamlib`` (``~/.cache/hamlib``)."""
    env = os.environ.get("HAMLIB_CACHE", "").strip()
    if env:
        return Path(env).expanduser()
    root = data_root()
    try:
        read_only = root.exists() and not (root.stat().st_mode & 0o222)
    except OSError:
        read_only = True
    if not read_only:
        return root / "cache"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "hamlib"


# --------------------------------------------------------------------------------------------- CIFAR-10
def _find_cifar(base: Path) -> Optional[Path]:
    """The CIFAR-10 source ``base`` is or contains, or None."""
    if base.is_file():
        return base
    if (base / "test_batch").is_file() or (base / "train").is_dir() or (base / "test").is_dir():
        return base
    for name in (CIFAR10_FOLDER, CIFAR10_ARCHIVE, CIFAR10_JPG):
        if (base / name).exists():
            return base / name
    return None


def load_cifar10(root: Optional[os.PathLike] = None, split: str = "train", *, download: bool = False,
                 cache_dir: Optional[os.PathLike] = None, progress: bool = True) -> Arrays:
    """Load CIFAR-10 as uint8 images (N, 32, 32, 3) and labels (N,).

    Args:
        root: a data folder holding ``cifar-10-python.tar.gz``, ``cifar-10-batches-py/`` or
            ``cifar10-jpg.tar.gz``; or one of those itself; or a folder/tarball of ``SPLIT/CLASS/*.jpg``.
            None: ``data_root()``.
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000).
        download: fetch the official tarball (MD5-verified) into ``root`` (a folder) when nothing is found.
        cache_dir: where decoded arrays are cached; ``""`` disables the cache. Default: ``$HAMLIB_CACHE``, else
            ``data_root("cache")``, or ``~/.cache/hamlib`` when the data folder is read-only.
        progress: byte counter while downloading.

    Raises:
        FileNotFoundError: nothing found and ``download`` is False (the message says where it looked).
        ValueError: a bad split, or a source that is not CIFAR-10.
    """
    _check_split(split)
    base = Path(root) if root is not None else data_root()
    if download:
        if base.suffix in (".gz", ".tar", ".tgz") and not base.exists():
            raise ValueError(f"root {base} looks like an archive but does not exist; pass its folder to download")
        with rank_zero_first() as mine:  # every rank enters; rank 0 decides and downloads
            if mine and _find_cifar(base) is None:
                _download_cifar(base, progress)
    path = _find_cifar(base)
    if path is None:
        raise FileNotFoundError(f"CIFAR-10 not found in {base} (looked for {CIFAR10_ARCHIVE}, {CIFAR10_FOLDER}/ "
                                f"and {CIFAR10_JPG}). Pass download=True when online, set HAMLIB_DATA, or pass "
                                f"root= a folder or tarball.")
    cache = None if cache_dir is not None and str(cache_dir) == "" else \
        (Path(cache_dir) if cache_dir is not None else _default_cache())
    key = None
    if cache is not None:
        key = cache / f"cifar10-{split}-v{_CACHE_VERSION}-{_source_digest(path, split)[:32]}.npz"
        hit = _cache_read(key)
        if hit is not None:
            return hit
    if path.is_file():
        x, y = _read_tar(path, split)
    elif (path / "test_batch").is_file():
        x, y = _read_python_batches(path, split)
    else:
        x, y = _read_image_folder(path, split)
    if key is not None:
        _cache_write(key, x, y)
    return x, y


def _download_cifar(folder: Path, progress: bool) -> Path:
    # The module constants are read at call time, so a user (or a test) can point them at another copy.
    return fetch_file(CIFAR10_URL, folder / CIFAR10_ARCHIVE, md5=CIFAR10_MD5, mirrors=CIFAR10_MIRRORS,
                      progress=progress)


# --------------------------------------------------------------------------------------------- MNIST
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


def load_mnist(root: Optional[os.PathLike] = None, split: str = "test", *, download: bool = False,
               progress: bool = True) -> Arrays:
    """MNIST from the original IDX ``.gz`` files, padded to 32x32 and repeated to 3 channels: (N, 32, 32, 3).

    Args:
        root: the folder of the ``.gz`` files (a folder named ``mnist`` or holding ``*-ubyte.gz`` files), or
            else a data folder whose ``mnist/`` is used; downloads go to that same folder. None:
            ``data_root("mnist")``.
        split: ``"test"`` (10,000 digits, ``t10k-*``) or ``"train"`` (60,000).
        download: fetch missing files from ``MNIST_MIRRORS`` (MD5-verified; a wrong file is never kept).
        progress: byte counter while downloading.
    """
    _check_split(split)
    prefix = "train" if split == "train" else "t10k"
    root = Path(root) if root is not None else data_root("mnist")
    names = [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"]
    if root.name.lower() != "mnist" and not any(root.glob("*-ubyte.gz")):
        root = root / "mnist"  # a data folder (e.g. $HAMLIB_DATA itself): MNIST lives in its mnist/
    files = [root / n for n in names]
    if download:
        with rank_zero_first() as mine:  # every rank enters; rank 0 decides and downloads
            for f in files:
                if mine and not f.is_file():
                    urls = [m + f.name for m in MNIST_MIRRORS]
                    fetch_file(urls[0], f, md5=MNIST_MD5[f.name], mirrors=urls[1:], progress=progress)
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"MNIST file missing: expected {f}. Pass download=True when online, or set "
                                    f"HAMLIB_DATA to a folder holding mnist/.")
    x, y = _read_idx(files[0]), _read_idx(files[1]).astype(np.int64)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"MNIST files in {root} disagree: images {x.shape}, labels {y.shape}")
    x = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    return np.repeat(x[..., None], 3, axis=-1), y


# --------------------------------------------------------------------------------------------- synthetic
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
