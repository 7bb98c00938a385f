"""Run every chapter as a Colab reader does: the wheel installed normally into a fresh environment that
already has torch, each notebook executed on the CPU from an empty folder (tiny mode).

The environment: ``python -m venv --without-pip`` plus one ``.pth`` line that makes the project venv's
third-party packages visible (torch, numpy, matplotlib, ipykernel, ... as Colab preinstalls them) through a
folder of links that leaves out every trace of hamlib (the editable install and its metadata). The wheel is
built from a copy of the sources (``pip wheel --no-deps --no-build-isolation``) and installed with
``pip install --no-deps --no-index``. Each chapter's first cell must then find ``hamlib-book`` installed and
not run ``%pip``; a check cell right after it asserts that ``hamlib`` comes from the fresh environment.
Per-chapter wall times are printed (``pytest -s``) and written to ``$HAMLIB_COLAB_TIMES`` when set.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from test_notebooks import NOTEBOOKS, ROOT, execute_notebook
from test_results import build_wheel

pytestmark = [pytest.mark.notebook, pytest.mark.slow]

KERNEL = "hamlib-colab"
HIDDEN = ("hamlib", "__editable__", "_hamlib")   # left out of the visible project packages
SHARED_DATA = ROOT.parent / "shared" / "data"     # offline data sets, when this machine has them

CHECK = """\
import importlib.metadata, json, os, sys
import hamlib, hamlib.results
_dist = importlib.metadata.distribution("hamlib-book")
_direct = json.loads(_dist.read_text("direct_url.json") or "{{}}")
assert hamlib.__file__.startswith({site!r}), f"hamlib imported from {{hamlib.__file__}}, not the fresh venv"
assert not _direct.get("dir_info", {{}}).get("editable"), "hamlib-book is an editable install"
assert os.getcwd() == {cwd!r}, os.getcwd()
assert hamlib.results.search_path() == [hamlib.results.PACKAGE_DATA], hamlib.results.search_path()
print("colab check:", sys.executable, hamlib.__file__, os.getcwd())
"""


def _children_cpu_s() -> float:
    """User + system CPU seconds of this process's finished children (the kernels)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


@dataclass
class ColabEnv:
    python: Path
    site: Path
    jupyter_path: Path


def _make_env(base: Path) -> ColabEnv:
    wheel = build_wheel(base / "wheel")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The project's third-party packages, minus hamlib: a folder of links, added to the venv by one .pth line.
    visible = base / "preinstalled"
    visible.mkdir()
    project_site = Path(sysconfig.get_paths()["purelib"])
    for entry in project_site.iterdir():
        if entry.name.startswith(HIDDEN) or entry.suffix == ".pth" or entry.name == "__pycache__":
            continue
        (visible / entry.name).symlink_to(entry)
    (site / "preinstalled.pth").write_text(f"{visible}\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, text=True)
    # A kernelspec that starts IPython in the fresh venv.
    spec = base / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "hamlib Colab-style venv", "language": "python"}))
    return ColabEnv(python=python, site=site, jupyter_path=base / "jupyter")


@pytest.fixture(scope="module")
def colab_env(tmp_path_factory: pytest.TempPathFactory) -> ColabEnv:
    return _make_env(tmp_path_factory.mktemp("colab-env"))


def test_fresh_env_has_wheel_and_torch_but_no_checkout(colab_env: ColabEnv, tmp_path: Path) -> None:
    code = ("import importlib.metadata as m, torch, hamlib, hamlib.results as r; "
            "print(m.version('hamlib-book'), hamlib.__file__, len(r.names()))")
    out = subprocess.run([str(colab_env.python), "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         check=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}).stdout.split()
    import hamlib
    assert out[0] == hamlib.__version__
    assert out[1].startswith(str(colab_env.site)), out
    assert int(out[2]) > 0, "the installed wheel carries no committed results"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_chapter_runs_like_colab(path: Path, colab_env: ColabEnv, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "content"   # Colab's working folder; nothing of the repository in it
    folder.mkdir()
    shutil.copy2(path, folder / path.name)
    nb = nbformat.read(folder / path.name, as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    nb.cells.insert(first + 1, nbformat.v4.new_code_cell(CHECK.format(site=str(colab_env.site), cwd=str(folder))))
    # The kernel inherits this environment: tiny mode, nothing that points back at the checkout.
    monkeypatch.setenv("HAMLIB_TINY", "1")
    monkeypatch.delenv("HAMLIB_FULL", raising=False)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.setenv("HAMLIB_RUNS", str(folder / "runs"))
    monkeypatch.setenv("JUPYTER_PATH", str(colab_env.jupyter_path))
    monkeypatch.setenv("PATH", f"{colab_env.python.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("VIRTUAL_ENV", str(colab_env.python.parent.parent))
    if SHARED_DATA.is_dir():
        monkeypatch.setenv("HAMLIB_DATA", str(SHARED_DATA))
    t0, c0 = time.perf_counter(), _children_cpu_s()
    failure = execute_notebook(nb, folder, path.name, kernel_name=KERNEL)
    wall, cpu = time.perf_counter() - t0, _children_cpu_s() - c0   # the kernel is reaped at shutdown
    print(f"colab-style run of {path.name}: {wall:.1f} s wall, {cpu:.1f} s CPU ({'FAILED' if failure else 'ok'})")
    times = os.environ.get("HAMLIB_COLAB_TIMES")
    if times:
        with open(times, "a", encoding="utf-8") as f:
            f.write(json.dumps({"chapter": path.name, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                                "ok": failure is None}) + "\n")
    if failure is not None:
        pytest.fail(failure, pytrace=False)
