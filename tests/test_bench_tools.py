"""The benchmark's side tools: versions (earlier commit vs now), roofline, and threads (idle vs busy)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from hamlib.bench import roofline, threads, versions

ROOT = Path(__file__).resolve().parents[1]


def _is_git_checkout() -> bool:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{versions.DEFAULT_BASE}^{{commit}}"],
                              capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _is_git_checkout(), reason="needs a git checkout holding the base commit")
def test_versions_compares_an_earlier_block_with_equal_outputs(tmp_path: Path) -> None:
    out = tmp_path / "v.json"
    assert versions.main(["--hams", "nmf", "cd", "--sizes", "4", "--C", "16", "--r", "4", "--rounds", "2", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data["base_commit"]) == 40 and len(data["rows"]) == 2
    for row in data["rows"]:
        assert row["eval_output_rel_diff"] < 1e-4        # same weights, same bases: the same block
        for mode in ("infer", "train"):
            assert row[mode]["before_ms"] > 0 and row[mode]["after_ms"] > 0
            assert row[mode]["speedup_min"] <= row[mode]["speedup"] <= row[mode]["speedup_max"]


def test_versions_refuses_an_unknown_commit(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="git checkout"):
        versions.load_base("0" * 40, ROOT, tmp_path)


def test_roofline_reports_a_fraction_of_the_matmul_rate() -> None:
    row = roofline.roofline("nmf", 8, C=32, r=4, K=2, rounds=2)
    for mode in ("infer", "train"):
        r = row[mode]
        assert r["gflop"] > 0 and r["block_gflops"] > 0 and r["matmul_gflops"] > 0
        assert r["fraction"] == pytest.approx(r["block_gflops"] / r["matmul_gflops"])


def test_thread_table_times_every_thread_count_and_restores_nothing_hidden() -> None:
    before = torch.get_num_threads()
    rows = threads.thread_table(["ham-nmf"], 4, [1, 2], C=16, rounds=2)
    torch.set_num_threads(before)
    assert [r["mode"] for r in rows] == ["infer", "train"]
    assert set(rows[0]["median_ms"]) == {"1 thread", "2 threads"}


def _spinner_pids() -> set[int]:
    pids = set()
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if b"while True: pass" in (d / "cmdline").read_bytes():
                pids.add(int(d.name))
        except OSError:
            pass
    return pids


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_spinners_are_stopped() -> None:
    before = _spinner_pids()
    with threads.spinners(1):
        assert len(_spinner_pids() - before) == 1
    assert _spinner_pids() - before == set()
