"""hamlib.book: run size from HAMLIB_TINY / HAMLIB_FULL / the device, and run folders from HAMLIB_RUNS."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import hamlib.book as book


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in (book.TINY_VAR, book.FULL_VAR, book.RUNS_VAR):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def _cuda(monkeypatch: pytest.MonkeyPatch, available: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)


@pytest.mark.parametrize("cuda", [False, True])
def test_default_is_full_only_on_cuda(env: pytest.MonkeyPatch, cuda: bool) -> None:
    _cuda(env, cuda)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no warning in the default path
        assert book.mode() == ("full" if cuda else "tiny")
    assert book.device() == ("cuda" if cuda else "cpu")


@pytest.mark.parametrize("cuda", [False, True])
def test_tiny_wins_on_any_device(env: pytest.MonkeyPatch, cuda: bool) -> None:
    _cuda(env, cuda)
    env.setenv("HAMLIB_TINY", "1")
    assert book.mode() == "tiny"


def test_zero_means_unset(env: pytest.MonkeyPatch) -> None:
    _cuda(env, False)
    env.setenv("HAMLIB_TINY", "0")
    env.setenv("HAMLIB_FULL", "0")
    assert book.mode() == "tiny"


def test_forced_full_on_cpu_warns_with_the_cost(env: pytest.MonkeyPatch) -> None:
    _cuda(env, False)
    env.setenv("HAMLIB_FULL", "1")
    with pytest.warns(book.CPUFullModeWarning, match="about 3 h on 4 cores"):
        assert book.mode(cpu_cost="about 3 h on 4 cores") == "full"
    with pytest.warns(book.CPUFullModeWarning, match="hours"):
        assert book.mode() == "full"


def test_forced_full_on_cuda_is_silent(env: pytest.MonkeyPatch) -> None:
    _cuda(env, True)
    env.setenv("HAMLIB_FULL", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert book.mode(cpu_cost="3 h") == "full"


def test_both_flags_is_an_error(env: pytest.MonkeyPatch) -> None:
    env.setenv("HAMLIB_TINY", "1")
    env.setenv("HAMLIB_FULL", "1")
    with pytest.raises(ValueError, match="HAMLIB_TINY=1 and HAMLIB_FULL=1"):
        book.mode()


def test_bad_flag_value_names_the_variable(env: pytest.MonkeyPatch) -> None:
    env.setenv("HAMLIB_TINY", "tiny")
    with pytest.raises(ValueError, match="HAMLIB_TINY.*'tiny'"):
        book.mode()
    with pytest.raises(TypeError, match="cpu_cost"):
        book.mode(cpu_cost=3)  # type: ignore[arg-type]


def test_runs_dir_defaults_to_cwd_runs(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.chdir(tmp_path)
    assert book.runs_dir() == tmp_path / "runs"
    assert book.runs_dir("hamnet") == tmp_path / "runs" / "hamnet"
    assert (tmp_path / "runs" / "hamnet").is_dir()


def test_runs_dir_from_env(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    drive = tmp_path / "drive" / "MyDrive" / "hamlib-runs"
    env.setenv("HAMLIB_RUNS", str(drive))
    env.chdir(tmp_path)
    assert book.runs_dir("hamgan", create=False) == drive / "hamgan"
    assert not drive.exists()
    assert book.runs_dir("hamgan").is_dir()
    env.setenv("HAMLIB_RUNS", "rel/runs")
    assert book.runs_dir() == tmp_path / "rel" / "runs"
    env.setenv("HAMLIB_RUNS", "~/hr")
    env.setenv("HOME", str(tmp_path / "home"))
    assert book.runs_dir(create=False) == tmp_path / "home" / "hr"


@pytest.mark.parametrize("bad", ["", "/abs", "../up", "a/../../b", 5])
def test_runs_dir_rejects_bad_names(env: pytest.MonkeyPatch, tmp_path: Path, bad) -> None:
    env.chdir(tmp_path)
    with pytest.raises(ValueError, match="name"):
        book.runs_dir(bad)


def test_book_module_imports_no_plotting() -> None:
    code = "import sys, hamlib.book; bad = [m for m in ('matplotlib', 'ipywidgets', 'sklearn') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"hamlib.book imported {out}"
