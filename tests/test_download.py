"""hamlib.train.download: data_root, verified atomic downloads with mirrors, safe tar/zip extraction."""
import errno
import hashlib
import io
import os
import stat
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch.multiprocessing as mp

import hamlib.train.download as dl
from hamlib.train.download import DownloadError, UnsafeArchiveError, data_root, download, safe_extract


def _leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if ".part-" in p.name or ".extract-" in p.name)


# ----------------------------------------------------------------------------------------------- data_root
def test_data_root_default_is_cwd_data(tmp_path, monkeypatch):
    monkeypatch.delenv("HAMLIB_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert data_root() == tmp_path / "data"
    assert data_root("camvid") == tmp_path / "data" / "camvid"
    assert "site-packages" not in str(data_root()) and data_root().is_absolute()


def test_data_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HAMLIB_DATA", str(tmp_path / "shared"))
    assert data_root() == tmp_path / "shared" and data_root("mnist") == tmp_path / "shared" / "mnist"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HAMLIB_DATA", "rel/dir")                  # relative: to the working directory
    assert data_root() == tmp_path / "rel" / "dir"
    monkeypatch.setenv("HAMLIB_DATA", "")                         # empty counts as unset
    assert data_root() == tmp_path / "data"


@pytest.mark.parametrize("bad", ["", "..", "a/b", "../x", "a\\b"])
def test_data_root_rejects_paths_as_names(bad):
    with pytest.raises(ValueError, match="name"):
        data_root(bad)


# ----------------------------------------------------------------------------------------------- download
def _src(tmp_path: Path, payload: bytes = b"hamburger" * 1000, name: str = "src.bin") -> Path:
    p = tmp_path / name
    p.write_bytes(payload)
    return p


def test_download_verifies_and_renames(tmp_path):
    src = _src(tmp_path)
    sha, md5 = hashlib.sha256(src.read_bytes()).hexdigest(), hashlib.md5(src.read_bytes()).hexdigest()
    out = download(src.as_uri(), tmp_path / "dl" / "f.bin", sha256=sha, md5=md5.upper(), progress=False)
    assert out == tmp_path / "dl" / "f.bin" and out.read_bytes() == src.read_bytes()
    assert _leftovers(out.parent) == []


def test_wrong_checksum_rejected_and_nothing_left(tmp_path):
    src = _src(tmp_path)
    dest = tmp_path / "dl" / "f.bin"
    with pytest.raises(DownloadError, match="sha256 mismatch") as e:
        download(src.as_uri(), dest, sha256="0" * 64, progress=False)
    assert src.as_uri() in str(e.value) and str(dest) in str(e.value)
    assert not dest.exists() and _leftovers(dest.parent) == []


def test_mirrors_tried_in_order_and_all_listed(tmp_path):
    good = _src(tmp_path, b"good", "good.bin")
    wrong = _src(tmp_path, b"evil", "wrong.bin")
    md5 = hashlib.md5(b"good").hexdigest()
    dest = tmp_path / "dl" / "g.bin"
    missing = (tmp_path / "missing.bin").as_uri()
    out = download(missing, dest, md5=md5, mirrors=[wrong.as_uri(), good.as_uri()], progress=False)
    assert out.read_bytes() == b"good" and _leftovers(dest.parent) == []
    dest.unlink()
    with pytest.raises(DownloadError) as e:
        download(missing, dest, md5=md5, mirrors=[wrong.as_uri()], progress=False)
    msg = str(e.value)
    assert "tried 2 source(s)" in msg and missing in msg and wrong.as_uri() in msg and "md5 mismatch" in msg
    assert not dest.exists() and _leftovers(dest.parent) == []


def test_existing_file_reused_if_valid_replaced_if_not(tmp_path):
    src = _src(tmp_path, b"v1")
    md5 = hashlib.md5(b"v1").hexdigest()
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"v1")
    assert download((tmp_path / "gone").as_uri(), dest, md5=md5, progress=False).read_bytes() == b"v1"
    dest.write_bytes(b"corrupt")
    assert download(src.as_uri(), dest, md5=md5, progress=False).read_bytes() == b"v1"


def test_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    src = _src(tmp_path)

    def partial(url, part, hashes, progress, timeout, name):
        part.write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(dl, "_fetch", partial)
    dest = tmp_path / "dl" / "f.bin"
    dest.parent.mkdir()
    with pytest.raises(KeyboardInterrupt):
        download(src.as_uri(), dest, progress=False)
    assert not dest.exists() and _leftovers(dest.parent) == []


def test_disk_full_said_in_words(tmp_path, monkeypatch):
    def full(url, part, *a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dl, "_fetch", full)
    with pytest.raises(DownloadError, match="disk full"):
        download(_src(tmp_path).as_uri(), tmp_path / "f.bin", progress=False)


def test_stale_part_of_dead_process_removed(tmp_path):
    p = subprocess.Popen(["true"])
    p.wait()
    stale = tmp_path / f".f.bin.part-{p.pid}-{dl._HOST}-deadbeef"
    stale.write_bytes(b"half")
    other_host = tmp_path / f".f.bin.part-{p.pid}-00000000-deadbeef"     # another machine on a shared disk
    other_host.write_bytes(b"theirs")
    download(_src(tmp_path).as_uri(), tmp_path / "f.bin", progress=False)
    assert not stale.exists() and other_host.exists()


def test_http_protocol_error_moves_on_to_the_next_mirror(tmp_path, monkeypatch):
    import http.client

    real = dl.urllib.request.urlopen

    def flaky(req, timeout):
        if req.full_url.startswith("https://"):
            raise http.client.IncompleteRead(b"abc", 10)
        return real(req, timeout=timeout)

    monkeypatch.setattr(dl.urllib.request, "urlopen", flaky)
    src = _src(tmp_path, b"ok")
    out = download("https://example.invalid/f", tmp_path / "f.bin", mirrors=[src.as_uri()], progress=False)
    assert out.read_bytes() == b"ok"


def test_short_transfer_rejected_even_without_checksum(tmp_path, monkeypatch):
    class Short(io.BytesIO):
        headers = {"content-length": "100"}

    monkeypatch.setattr(dl.urllib.request, "urlopen", lambda req, timeout: Short(b"x" * 60))
    with pytest.raises(DownloadError, match="incomplete transfer: got 60 of 100 bytes"):
        download("https://example.invalid/f.bin", tmp_path / "f.bin", progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kw", [dict(url="ftp://x/y"), dict(sha256="abc"), dict(md5="z" * 32),
                                dict(mirrors="https://one/string")])
def test_download_rejects_bad_arguments(tmp_path, kw):
    url = kw.pop("url", _src(tmp_path).as_uri())
    with pytest.raises(ValueError, match="url|sha256|md5|mirrors"):
        download(url, tmp_path / "f.bin", progress=False, **kw)


def _rank_worker(rank: int, init: str, src: str, dest: str, log: str) -> None:
    import torch.distributed as tdist

    import hamlib.train.download as m

    tdist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    real = m._fetch

    def logged(*a, **k):
        with open(log, "a") as f:
            f.write(f"{rank}\n")
        return real(*a, **k)

    m._fetch = logged
    out = m.download(src, dest, progress=False)
    assert Path(out).read_bytes() == b"payload"
    dest2 = Path(dest).with_name("nested.bin")
    with m.rank_zero_first() as mine:                 # the loaders' pattern: decide and download inside one block
        if mine and not dest2.exists():
            m.download(src, dest2, progress=False)    # nested: no second barrier, no deadlock
    assert dest2.read_bytes() == b"payload"
    missing = src.replace("src.bin", "missing.bin")
    try:                                              # rank 0 fails: every rank gets an error, none hangs
        m.download(missing, Path(dest).with_name("never.bin"), progress=False)
    except m.DownloadError as e:
        assert ("tried 1 source" in str(e)) if rank == 0 else ("rank 0 did not produce" in str(e))
    else:
        raise AssertionError("no error")
    tdist.destroy_process_group()


def test_only_rank_zero_downloads_under_torchrun(tmp_path):
    src = _src(tmp_path, b"payload")
    log = tmp_path / "log.txt"
    mp.spawn(_rank_worker, args=((tmp_path / "pg").as_uri(), src.as_uri(), str(tmp_path / "d.bin"), str(log)),
             nprocs=2, join=True)
    assert log.read_text().split() == ["0", "0", "0"]


# ----------------------------------------------------------------------------------------------- extraction
def _tar(path: Path, members: list) -> Path:
    """members: (name, kind, data_or_linkname) with kind in file | dir | sym | hard | chr."""
    with tarfile.open(path, "w:gz") as t:
        for name, kind, arg in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(arg)
                t.addfile(info, io.BytesIO(arg))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                         "chr": tarfile.CHRTYPE}[kind]
            if kind in ("sym", "hard"):
                info.linkname = arg
            t.addfile(info)
    return path


def _zip(path: Path, members: list) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, kind, arg in members:
            info = zipfile.ZipInfo(name)
            if kind == "sym":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            elif kind == "chr":
                info.external_attr = (stat.S_IFCHR | 0o600) << 16
            z.writestr(info, arg)
    return path


GOOD = [("pkg/a.txt", "file", b"A"), ("pkg/sub/b.txt", "file", b"B")]


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_extract_good_archive(tmp_path, fmt):
    arc = (_tar if fmt == "tar" else _zip)(tmp_path / f"a.{fmt}", GOOD)
    out = safe_extract(arc, tmp_path / "out")
    assert (out / "pkg" / "a.txt").read_bytes() == b"A" and (out / "pkg" / "sub" / "b.txt").read_bytes() == b"B"
    sub = safe_extract(arc, tmp_path / "only", subdir="pkg/sub")
    assert sorted(p.name for p in sub.iterdir()) == ["b.txt"]
    assert _leftovers(tmp_path) == []


def test_extract_into_existing_folder_refuses_clobbering(tmp_path):
    arc = _tar(tmp_path / "a.tar", GOOD)
    out = tmp_path / "out"
    (out / "pkg").mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="pkg"):
        safe_extract(arc, out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "pkg"] and _leftovers(tmp_path) == []
    (out / "pkg").rmdir()
    safe_extract(arc, out)
    assert (out / "pkg" / "a.txt").is_file() and (out / "keep.txt").read_text() == "mine"


def _malicious(outside: Path) -> dict:
    """name -> (formats, members). ``outside`` is an existing file next to the target folder ``dl``."""
    return {
        "dotdot": (("tar", "zip"), [("ok.txt", "file", b"1"), ("../evil.txt", "file", b"x")]),
        "absolute": (("tar", "zip"), [(str(outside.parent / "abs_evil.txt"), "file", b"x")]),
        "sibling-prefix": (("tar", "zip"), [("../dl_evil/x", "file", b"x")]),
        "symlink-then-write": (("tar", "zip"), [("link", "sym", str(outside.parent)), ("link/evil.txt", "file",
                                                                                        b"x")]),
        "dotdot-symlink": (("tar", "zip"), [("up", "sym", ".."), ("up/evil.txt", "file", b"x")]),
        "hardlink-outside": (("tar",), [("h", "hard", str(outside)), ("h", "file", b"overwritten")]),
        "hardlink-relative": (("tar",), [("h", "hard", "../outside.txt"), ("h", "file", b"overwritten")]),
        "device": (("tar", "zip"), [("dev", "chr", b"")]),
    }


CASES = [(n, f) for n, (fmts, _) in _malicious(Path("/x/outside.txt")).items() for f in fmts]


@pytest.mark.parametrize("case,fmt", CASES)
def test_malicious_archives_refused_and_nothing_written(tmp_path, case, fmt):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    members = _malicious(outside)[case][1]
    arc = (_tar if fmt == "tar" else _zip)(tmp_path / f"evil.{fmt}", members)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(UnsafeArchiveError):
        safe_extract(arc, tmp_path / "dl")
    assert outside.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == before        # no dl/, no dl_evil/, no temp folder
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "abs_evil.txt").exists()


def test_interrupted_extraction_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    arc = _zip(tmp_path / "a.zip", GOOD)
    calls = []

    def dies(src, dst, *a):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        dst.write(src.read())

    monkeypatch.setattr(dl.shutil, "copyfileobj", dies)
    with pytest.raises(KeyboardInterrupt):
        safe_extract(arc, tmp_path / "out")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_extraction_leftover_of_killed_process_removed(tmp_path):
    p = subprocess.Popen(["true"])
    p.wait()
    stale = tmp_path / f".out.extract-{p.pid}-{dl._HOST}-deadbeef"
    (stale / "pkg").mkdir(parents=True)
    safe_extract(_tar(tmp_path / "a.tar", GOOD), tmp_path / "out")
    assert not stale.exists() and (tmp_path / "out" / "pkg" / "a.txt").is_file()


def test_extract_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        safe_extract(tmp_path / "none.tar", tmp_path / "o")
    (tmp_path / "junk.tar").write_bytes(b"not an archive at all" * 50)
    with pytest.raises(ValueError, match="neither a zip nor"):
        safe_extract(tmp_path / "junk.tar", tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="no folder 'nope'"):
        safe_extract(_tar(tmp_path / "a.tar", GOOD), tmp_path / "o", subdir="nope")
    assert not (tmp_path / "o").exists() and _leftovers(tmp_path) == []


def test_old_prefix_check_would_have_passed_sibling_prefix(tmp_path):
    """Documents the fixed bug: str.startswith containment accepts ../dl_evil/x for dest dl."""
    dest = tmp_path / "dl"
    target = (dest / "../dl_evil/x").resolve()
    assert str(target).startswith(str(dest.resolve()))             # what the old check tested
    assert not target.is_relative_to(dest.resolve())                # what the new one tests
    assert os.sep not in "dl_evil"
