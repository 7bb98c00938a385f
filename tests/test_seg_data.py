"""hamlib.seg.data: CamVid / VOC / synthetic loaders, clear errors, download-and-extract."""
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hamlib.seg.data import (IGNORE_INDEX, CamVid, SegDataset, SyntheticShapes, VOCSegmentation,
                             download_and_extract)

CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"


def _write_pair(root: Path, name: str, lab: np.ndarray, img_size=None, split="train"):
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
    h, w = img_size or lab.shape
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(root / split / f"{name}.jpg")
    Image.fromarray(lab.astype(np.uint8)).save(root / f"{split}annot" / f"{name}.png")
    with open(root / f"{split}.txt", "a") as f:
        f.write(f"{split}/{name}.jpg {split}annot/{name}.png\n")


def test_synthetic_is_seeded_and_shares_colours():
    a, b = SyntheticShapes(4, 32, 3, seed=0), SyntheticShapes(4, 32, 3, seed=0)
    torch.testing.assert_close(a[2][0], b[2][0])
    assert torch.equal(a[2][1], b[2][1])
    c = SyntheticShapes(4, 32, 3, seed=1)
    torch.testing.assert_close(a.colors, c.colors)        # same class colours across splits
    assert not torch.equal(a[0][1], c[0][1])              # but different images
    labs = torch.stack([a[i][1] for i in range(4)])
    assert set(labs.unique().tolist()) <= {0, 1, 2, IGNORE_INDEX}


def test_camvid_local_layout_remaps_ignore(tmp_path):
    lab = np.zeros((20, 30), np.uint8)
    lab[:5] = 11
    lab[5:10] = 3
    _write_pair(tmp_path, "a", lab)
    ds = CamVid(tmp_path, "train")
    img, y = ds[0]
    assert img.shape == (3, 20, 30) and img.dtype == torch.float32 and 0 <= img.min() and img.max() <= 1
    assert (y[:5] == IGNORE_INDEX).all() and (y[5:10] == 3).all() and (y[10:] == 0).all()


def test_camvid_absolute_paths_in_list(tmp_path):
    _write_pair(tmp_path, "a", np.zeros((8, 8), np.uint8))
    (tmp_path / "train.txt").write_text("/SegNet/CamVid/train/a.jpg /SegNet/CamVid/trainannot/a.png\n")
    assert len(CamVid(tmp_path, "train")) == 1


def test_missing_directory_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        CamVid(tmp_path / "nope", "train")
    with pytest.raises(FileNotFoundError, match="VOCtrainval"):
        VOCSegmentation(tmp_path / "nope", "train")


def test_mismatched_pair_names_file(tmp_path):
    _write_pair(tmp_path, "bad", np.zeros((10, 10), np.uint8), img_size=(12, 10))
    with pytest.raises(ValueError, match="bad.jpg"):
        CamVid(tmp_path, "train")[0]


def test_unreadable_image_names_file(tmp_path):
    _write_pair(tmp_path, "x", np.zeros((10, 10), np.uint8))
    (tmp_path / "train" / "x.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="x.jpg"):
        CamVid(tmp_path, "train")[0]


def test_label_out_of_range(tmp_path):
    lab = np.zeros((10, 10), np.uint8)
    lab[0, 0] = 40
    _write_pair(tmp_path, "y", lab)
    with pytest.raises(ValueError, match=r"\[40\] outside the 11 classes"):
        CamVid(tmp_path, "train")[0]


def test_voc_layout_with_palette_png(tmp_path):
    base = tmp_path / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / d).mkdir(parents=True)
    Image.fromarray(np.zeros((6, 7, 3), np.uint8)).save(base / "JPEGImages" / "2007_000001.jpg")
    lab = Image.fromarray(np.array([[0, 15, 255] * 2 + [1]] * 6, np.uint8), mode="P")
    lab.putpalette([0, 0, 0, 128, 0, 0] * 128)
    lab.save(base / "SegmentationClass" / "2007_000001.png")
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000001\n")
    img, y = VOCSegmentation(tmp_path, "val")[0]
    assert img.shape == (3, 6, 7) and y[0].tolist() == [0, 15, 255, 0, 15, 255, 1]


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_download_and_extract_file_url(tmp_path, kind):
    src = tmp_path / ("data." + kind)
    payload = b"hello"
    if kind == "zip":
        with zipfile.ZipFile(src, "w") as z:
            z.writestr("CamVid/train.txt", payload)
    else:
        with tarfile.open(src, "w:gz") as t:
            info = tarfile.TarInfo("CamVid/train.txt")
            info.size = len(payload)
            t.addfile(info, io.BytesIO(payload))
    out = download_and_extract(src.as_uri(), tmp_path / "dl", progress=False)
    assert (out / "CamVid" / "train.txt").read_bytes() == payload
    assert (out / src.name).is_file()


def test_extract_refuses_path_traversal(tmp_path):
    src = tmp_path / "evil.zip"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("../evil.txt", b"x")
    with pytest.raises(ValueError, match="outside"):
        download_and_extract(src.as_uri(), tmp_path / "dl", progress=False)
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.skipif(not (CAMVID / "train.txt").is_file(), reason="real CamVid not present")
def test_real_camvid_split_sizes_and_labels():
    sizes = {s: len(CamVid(CAMVID, s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 367, "val": 101, "test": 233}
    img, lab = CamVid(CAMVID, "test")[0]
    assert img.shape == (3, 360, 480) and lab.shape == (360, 480)
    assert set(lab.unique().tolist()) <= set(range(11)) | {IGNORE_INDEX}


def test_segdataset_transform_applied(tmp_path):
    _write_pair(tmp_path, "t", np.ones((4, 4), np.uint8))
    ds = SegDataset([(tmp_path / "train" / "t.jpg", tmp_path / "trainannot" / "t.png")], 2,
                    transform=lambda i, l: (i * 0, l + 1))
    img, lab = ds[0]
    assert img.abs().sum() == 0 and (lab == 2).all()
