"""hamlib.results: committed results are found from a checkout and from an installed (non-editable) wheel."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import hamlib.results as results

ROOT = Path(__file__).resolve().parents[1]
BOOK_RESULTS = ROOT / "book" / "results"
# What a wheel build needs from the source tree (everything pyproject.toml reads, and the packages).
WHEEL_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "hamlib", "book/results")


def committed_results() -> list[str]:
    """Files under book/results, as POSIX paths relative to it (git-tracked ones when git is available)."""
    try:
        out = subprocess.run(["git", "ls-files", "book/results"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
        if out:
            return sorted(Path(p).relative_to("book/results").as_posix() for p in out)
    except (OSError, subprocess.CalledProcessError):
        pass
    return sorted(p.relative_to(BOOK_RESULTS).as_posix() for p in BOOK_RESULTS.rglob("*") if p.is_file())


def _setuptools_major() -> int:
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return 0


def build_wheel(out_dir: Path) -> Path:
    """Build the hamlib-book wheel as pip does for ``pip install <repo>``, from a copy of the sources.

    The copy keeps ``build/`` and ``*.egg-info`` out of the shared working tree.
    """
    src = out_dir / "src"
    for rel in WHEEL_SOURCES:
        s, d = ROOT / rel, src / rel
        if s.is_dir():
            shutil.copytree(s, d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, d)
    dist = out_dir / "dist"
    # pyproject.toml needs setuptools >= 77 (SPDX licence): build with this environment's setuptools when it is
    # new enough (offline), else in pip's isolated build environment (fetches setuptools from the registry).
    isolation = [] if _setuptools_major() >= 77 else ["--use-pep517"]
    offline = ["--no-build-isolation", "--no-index"] if not isolation else []
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *offline, *isolation, "-q",
                           "-w", str(dist), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, f"wheel build failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    (wheel,) = dist.glob("hamlib_book-*.whl")
    return wheel


def test_checkout_finds_every_committed_result() -> None:
    assert results.CHECKOUT == BOOK_RESULTS
    committed = committed_results()
    assert committed, "no committed results under book/results"
    for name in committed:
        assert results.path(name).read_bytes() == (BOOK_RESULTS / name).read_bytes(), name
    assert set(committed) <= set(results.names())
    assert results.path("hamgan").is_dir()


def test_load_json_matches_file() -> None:
    assert results.load_json("bench_cpu.json") == json.loads((BOOK_RESULTS / "bench_cpu.json").read_text())
    assert "provenance" in results.load_json("camvid_heads/summary.json")


def test_package_data_is_searched_before_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "data"
    (pkg / "camvid_heads").mkdir(parents=True)
    (pkg / "camvid_heads" / "summary.json").write_text('{"from": "package"}')
    monkeypatch.setattr(results, "PACKAGE_DATA", pkg)
    assert results.search_path() == [pkg, BOOK_RESULTS]
    assert results.load_json("camvid_heads/summary.json") == {"from": "package"}
    assert results.path("bench_cpu.json") == BOOK_RESULTS / "bench_cpu.json"   # falls through to the checkout


def test_placeholder_only_package_data_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "README.md").write_text("placeholder")
    monkeypatch.setattr(results, "PACKAGE_DATA", tmp_path)
    monkeypatch.setattr(results, "CHECKOUT", tmp_path / "missing")
    assert results.search_path() == []
    with pytest.raises(FileNotFoundError, match="bench_cpu.json"):
        results.path("bench_cpu.json")


@pytest.mark.parametrize("bad", ["../pyproject.toml", "/etc/passwd", "results/bench_cpu.json", "hamnet/../../x"])
def test_bad_names_raise_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="name"):
        results.path(bad)


@pytest.mark.parametrize("bad", ["", None, 3])
def test_non_string_names_raise_type_error(bad) -> None:
    with pytest.raises(TypeError, match="name"):
        results.path(bad)


def test_missing_and_non_json_names() -> None:
    with pytest.raises(FileNotFoundError, match="no_such_result.json"):
        results.path("no_such_result.json")
    with pytest.raises(ValueError, match=r"\.json"):
        results.load_json("bench_cpu.md")


def test_results_stay_small() -> None:
    sizes = {n: (BOOK_RESULTS / n).stat().st_size for n in committed_results()}
    assert max(sizes.values()) < 1_000_000, f"a committed result over 1 MB: {max(sizes, key=sizes.get)}"
    assert sum(sizes.values()) < 10_000_000, f"book/results holds {sum(sizes.values()) / 1e6:.1f} MB"


@pytest.mark.slow
def test_wheel_carries_every_committed_result(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        members = set(zf.namelist())
        for name in committed_results():
            member = f"hamlib/results/data/{name}"
            assert member in members, (f"{name} is not in the wheel: add its extension to "
                                       f"[tool.setuptools.package-data] in pyproject.toml")
            assert zf.read(member) == (BOOK_RESULTS / name).read_bytes(), name
        assert "hamlib/results/__init__.py" in members
        assert not [m for m in members if m.startswith("book/")], "book/ leaked into the wheel's top level"


@pytest.mark.slow
def test_installed_wheel_finds_results_from_any_folder(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:   # a wheel install is an unzip into site-packages
        zf.extractall(site)
    code = ("import hamlib.results as r, json; "
            "print(json.dumps([str(r.path('camvid_heads/summary.json')), r.load_json('bench_cpu.json')['provenance'], "
            "[str(p) for p in r.search_path()]]))")
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {code}"],
                         cwd=empty, capture_output=True, text=True, check=True).stdout
    found, prov, roots = json.loads(out)
    assert found == str(site / "hamlib" / "results" / "data" / "camvid_heads" / "summary.json")
    assert prov == results.load_json("bench_cpu.json")["provenance"]
    assert roots == [str(site / "hamlib" / "results" / "data")]
