"""Loaders of hamlib.gan.data: CIFAR-10 (official batches, safe unpickling, jpg tarballs, content-keyed atomic
cache, download), MNIST IDX (mirrors, MD5), synthetic shapes, clear errors."""
import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import hamlib.gan.data as gd
from hamlib.gan.data import (CIFAR10_CLASSES, load_cifar10, load_mnist, restricted_unpickle, sample_batch,
                             synthetic_shapes, to_tensor)
from hamlib.train.download import DownloadError


def _real_data() -> Path:
    """The offline copies: $HAMLIB_DATA if set, else /work/shared/data (tests may know this layout)."""
    env = os.environ.get("HAMLIB_DATA")
    for c in ([Path(env)] if env else []) + [Path(__file__).resolve().parents[2] / "shared" / "data"]:
        if (c / "cifar10-jpg.tar.gz").exists() or (c / "mnist").is_dir():
            return c
    return Path("/nonexistent")


REAL = _real_data()


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
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not found"):
        load_cifar10(tmp_path / "empty_dir")
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


@pytest.mark.skipif(not (REAL / "mnist" / "t10k-images-idx3-ubyte.gz").exists(), reason="no offline MNIST copy")
def test_real_mnist_via_hamlib_data(monkeypatch):
    monkeypatch.setenv("HAMLIB_DATA", str(REAL))
    x, y = load_mnist()
    assert x.shape == (10000, 32, 32, 3) and sorted(set(y.tolist())) == list(range(10))
    np.testing.assert_array_equal(load_mnist(REAL)[1], y)                    # a data folder holding mnist/
    for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):     # the offline copy is the official one
        assert hashlib.md5((REAL / "mnist" / f).read_bytes()).hexdigest() == gd.MNIST_MD5[f]


@pytest.mark.skipif(not (REAL / "cifar10-jpg.tar.gz").exists(), reason="no offline CIFAR-10 copy")
def test_real_cifar10_test_split_via_hamlib_data(monkeypatch, tmp_path):
    monkeypatch.setenv("HAMLIB_DATA", str(REAL))
    x, y = load_cifar10(None, "test", cache_dir=tmp_path)
    assert x.shape == (10000, 32, 32, 3) and np.bincount(y).tolist() == [1000] * 10
    assert len(list(tmp_path.glob("cifar10-test-*.npz"))) == 1
    x2, _ = load_cifar10(None, "test", cache_dir=tmp_path)                   # from the cache
    np.testing.assert_array_equal(x, x2)


# ----------------------------------------------------------------------------------------- official batches
def _batches(n_train: int = 4, n_test: int = 3, seed: int = 0, protocol: int = 2) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else n_train
        out[name] = pickle.dumps({b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n).tolist(),
                                  b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                                  b"filenames": [b"x.png"] * n}, protocol=protocol)
    return out


def _official_tar(path: Path, batches: dict) -> Path:
    with tarfile.open(path, "w:gz") as t:
        for name, raw in batches.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            t.addfile(info, io.BytesIO(raw))
    return path


def _expected(batches: dict, split: str):
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    ds = [pickle.loads(batches[n], encoding="bytes") for n in names]
    x = np.concatenate([d[b"data"] for d in ds]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return x, np.concatenate([d[b"labels"] for d in ds])


@pytest.mark.parametrize("protocol", [2, 4])
def test_official_tarball_and_folder(tmp_path, protocol):
    b = _batches(protocol=protocol)
    tar = _official_tar(tmp_path / "cifar-10-python.tar.gz", b)
    for split, n in (("train", 20), ("test", 3)):
        x, y = load_cifar10(tmp_path, split, cache_dir="")                  # a data folder holding the tarball
        ex, ey = _expected(b, split)
        assert x.shape == (n, 32, 32, 3) and x.dtype == np.uint8
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)
    folder = tmp_path / "ex" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, raw in b.items():
        (folder / name).write_bytes(raw)
    np.testing.assert_array_equal(load_cifar10(folder, "test", cache_dir="")[0], _expected(b, "test")[0])
    np.testing.assert_array_equal(load_cifar10(tar, "test", cache_dir="")[0], _expected(b, "test")[0])


def _py2_batch(raw: bytes, labels: list) -> bytes:
    """A batch as Python 2's cPickle wrote the official files: str as BINSTRING opcodes, numpy 1.x globals."""
    def u(b):
        return b"U" + bytes([len(b)]) + b

    n = len(labels)
    arr = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + u(b"b") + b"\x87R(K\x01"
           + b"J" + n.to_bytes(4, "little") + b"M\x00\x0c\x86cnumpy\ndtype\n" + u(b"u1") + b"K\x00K\x01\x87R(K\x03"
           + u(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T" + len(raw).to_bytes(4, "little") + raw
           + b"tb")
    labs = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return b"\x80\x02}(" + u(b"data") + arr + u(b"labels") + labs + b"u."


def test_python2_format_batch_reads_like_plain_pickle():
    raw = np.random.default_rng(3).integers(0, 256, 2 * 3072, dtype=np.uint8).tobytes()
    p = _py2_batch(raw, [4, 9])
    ref = pickle.loads(p, encoding="bytes")                                   # what the CIFAR site tells users
    safe = restricted_unpickle(p)
    np.testing.assert_array_equal(safe[b"data"], ref[b"data"])
    assert safe[b"data"].shape == (2, 3072) and safe[b"labels"] == [4, 9]


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_malicious_batch_runs_nothing(tmp_path):
    marker = tmp_path / "pwned.txt"
    evil = pickle.dumps({b"data": _Exploit(marker), b"labels": [0]}, protocol=2)
    assert pickle.loads(evil, encoding="bytes") and marker.exists()          # plain pickle would run it ...
    marker.unlink()
    b = _batches()
    b["test_batch"] = evil
    _official_tar(tmp_path / "cifar-10-python.tar.gz", b)
    with pytest.raises(ValueError, match="refusing to load global .*exec"):
        load_cifar10(tmp_path, "test", cache_dir="")
    assert not marker.exists()                                                # ... the loader does not
    with pytest.raises(pickle.UnpicklingError, match="object arrays"):
        restricted_unpickle(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        restricted_unpickle(b"cos\nsystem\n(S'true'\ntR.")


def test_download_official_tarball(tmp_path, monkeypatch):
    b = _batches()
    src = _official_tar(tmp_path / "src.tar.gz", b)
    monkeypatch.setattr(gd, "CIFAR10_URL", (tmp_path / "host-down.tar.gz").as_uri())
    monkeypatch.setattr(gd, "CIFAR10_MIRRORS", (src.as_uri(),))
    monkeypatch.setattr(gd, "CIFAR10_MD5", hashlib.md5(src.read_bytes()).hexdigest())
    monkeypatch.setenv("HAMLIB_DATA", str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_cifar10()
    x, y = load_cifar10(split="test", download=True, progress=False)
    np.testing.assert_array_equal(x, _expected(b, "test")[0])
    assert (tmp_path / "data" / "cifar-10-python.tar.gz").is_file()
    assert list((tmp_path / "data" / "cache").glob("cifar10-test-*.npz"))


def test_download_with_wrong_checksum_leaves_nothing(tmp_path, monkeypatch):
    src = _official_tar(tmp_path / "src.tar.gz", _batches())
    monkeypatch.setattr(gd, "CIFAR10_URL", src.as_uri())
    with pytest.raises(DownloadError, match="md5 mismatch"):
        load_cifar10(tmp_path / "data", "test", download=True, progress=False)
    assert list((tmp_path / "data").iterdir()) == []


# ----------------------------------------------------------------------------------------- cache
def test_cache_is_keyed_by_content_not_name(tmp_path):
    """Old behaviour: a different tarball under the same name silently loaded the first one's cached arrays."""
    p = tmp_path / "c.tar.gz"
    _write_tar(p, n_per_class=2)
    assert len(load_cifar10(p, "test", cache_dir=tmp_path / "cache")[0]) == 6
    _write_tar(p, n_per_class=1)
    assert len(load_cifar10(p, "test", cache_dir=tmp_path / "cache")[0]) == 3
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


def test_partial_cache_file_is_rebuilt(tmp_path):
    p = tmp_path / "c.tar.gz"
    x = _write_tar(p)
    load_cifar10(p, "test", cache_dir=tmp_path / "cache")
    (key,) = (tmp_path / "cache").glob("*.npz")
    key.write_bytes(key.read_bytes()[:100])                                   # what a non-atomic kill left
    with pytest.warns(UserWarning, match="unreadable cache"):
        imgs, _ = load_cifar10(p, "test", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(imgs, x)
    np.testing.assert_array_equal(load_cifar10(p, "test", cache_dir=tmp_path / "cache")[0], x)


_KILLER = """
import os, signal, sys
import numpy as np
import hamlib.gan.data as gd
real = np.savez
def dying(f, **kw):
    f.write(b"PK\\x03\\x04 half an npz")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
gd.np.savez = dying
gd.load_cifar10(sys.argv[1], "test", cache_dir=sys.argv[2])
"""


def test_kill_during_cache_write_never_breaks_later_runs(tmp_path):
    p = tmp_path / "c.tar.gz"
    x = _write_tar(p)
    cache = tmp_path / "cache"
    r = subprocess.run([sys.executable, "-c", _KILLER, str(p), str(cache)], capture_output=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == -9, r.stderr.decode()[-2000:]
    assert list(cache.glob("*.npz")) == [] and len(list(cache.glob(".*.tmp-*"))) == 1  # only a temp file
    imgs, _ = load_cifar10(p, "test", cache_dir=cache)
    np.testing.assert_array_equal(imgs, x)
    assert len(list(cache.glob("*.npz"))) == 1 and list(cache.glob(".*.tmp-*")) == []   # leftover cleaned


# ----------------------------------------------------------------------------------------- MNIST download
def test_mnist_download_from_mirrors_with_md5(tmp_path, monkeypatch):
    host = tmp_path / "host"
    host.mkdir()
    imgs = np.random.default_rng(1).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    files = {"t10k-images-idx3-ubyte.gz": _idx(imgs), "t10k-labels-idx1-ubyte.gz": _idx(np.arange(3))}
    for n, raw in files.items():
        (host / n).write_bytes(raw)
    monkeypatch.setattr(gd, "MNIST_MIRRORS", ((tmp_path / "refuses").as_uri() + "/", host.as_uri() + "/"))
    monkeypatch.setattr(gd, "MNIST_MD5", {n: hashlib.md5(r).hexdigest() for n, r in files.items()})
    monkeypatch.setenv("HAMLIB_DATA", str(tmp_path / "data"))
    x, y = load_mnist(download=True, progress=False)
    np.testing.assert_array_equal(x[:, 2:30, 2:30, 0], imgs)
    assert (tmp_path / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file()
    monkeypatch.setattr(gd, "MNIST_MD5", {n: "0" * 32 for n in files})
    with pytest.raises(DownloadError, match="md5 mismatch"):
        load_mnist(tmp_path / "other", download=True, progress=False)
    assert [p for p in (tmp_path / "other").rglob("*") if p.is_file()] == []
    monkeypatch.setattr(gd, "MNIST_MD5", {n: hashlib.md5(r).hexdigest() for n, r in files.items()})
    load_mnist(tmp_path / "datafolder", download=True, progress=False)         # a data folder: files go to mnist/
    assert sorted(p.name for p in (tmp_path / "datafolder" / "mnist").iterdir()) == sorted(files)


def test_no_package_relative_paths():
    src = Path(gd.__file__).read_text()
    for bad in ("REPO_ROOT", "__file__", "shared/data", "site-packages"):
        assert bad not in src, bad


def test_default_cache_places(tmp_path, monkeypatch):
    monkeypatch.delenv("HAMLIB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    data = tmp_path / "data"
    data.mkdir()
    _write_tar(data / "cifar10-jpg.tar.gz", split="test")
    monkeypatch.setenv("HAMLIB_DATA", str(data))
    load_cifar10(split="test")
    assert len(list((data / "cache").glob("cifar10-test-*.npz"))) == 1
    ro = tmp_path / "ro"
    ro.mkdir()
    _write_tar(ro / "cifar10-jpg.tar.gz", split="test")
    ro.chmod(0o555)                                                           # a read-only shared copy
    try:
        monkeypatch.setenv("HAMLIB_DATA", str(ro))
        load_cifar10(split="test")
        assert not (ro / "cache").exists()
        assert len(list((tmp_path / "xdg" / "hamlib").glob("cifar10-test-*.npz"))) == 1
    finally:
        ro.chmod(0o755)
    monkeypatch.setenv("HAMLIB_CACHE", str(tmp_path / "mine"))
    load_cifar10(split="test")
    assert len(list((tmp_path / "mine").glob("*.npz"))) == 1
