"""hamlib.experiments.chapter_costs: the counting, the estimate, and every chapter's box saying what the JSON says."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
import torch

from hamlib.experiments import chapter_costs as cc

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
COSTS = BOOK / "results" / "chapter_costs.json"


def test_count_gives_matmul_flops_and_operators() -> None:
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    flops, ops = cc.count(lambda: (a @ b).relu().t())
    assert flops == 2 * 8 * 16 * 4
    assert ops == 2          # mm and relu; the transpose is a view


def test_batched_unit_scales_flops_not_operators() -> None:
    w = cc._batched("x", lambda: torch.randn(1, 3) @ torch.randn(3, 5), 7, 10)
    assert w.flops == 7 * 2 * 3 * 5 and w.units == 10
    assert w.total_flops == 10 * w.flops
    flops1, ops1 = cc.count(lambda: torch.randn(1, 3) @ torch.randn(3, 5))
    assert w.ops == ops1


def test_estimate_is_flops_over_rate_plus_operator_overhead() -> None:
    works = [cc.Work("a", flops=4_000, ops=3, units=10), cc.Work("b", flops=0, ops=1, units=5)]
    assert cc.estimate(works, rate=1_000.0, t_op=0.5) == pytest.approx(40_000 / 1_000 + 35 * 0.5)


@pytest.mark.parametrize("seconds, text", [(0.3, "under a second"), (4.4, "4 s"), (27, "25 s"), (120, "2 min"),
                                           (3 * 3600, "3.0 h"), (30 * 3600, "30 h")])
def test_durations_are_rounded_for_reading(seconds: float, text: str) -> None:
    assert cc._duration(seconds) == text


def test_cheap_chapter_counts_are_positive() -> None:
    works = cc.chapter_works("02_low_rank_recovery")
    assert len(works) == 1 and works[0].units == 1000 and works[0].flops > 0 and works[0].ops > 10
    assert cc.chapter_works("00_how_to_use") == []
    with pytest.raises(ValueError, match="chapter must be one of"):
        cc.chapter_works("99_nothing")


def _box(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "markdown" and "What you need" in c.source)


@pytest.mark.skipif(not COSTS.exists(), reason="book/results/chapter_costs.json not committed yet")
@pytest.mark.parametrize("chapter", cc.CHAPTERS)
def test_every_box_says_what_the_committed_costs_say(chapter: str) -> None:
    data = json.loads(COSTS.read_text())
    box = _box(BOOK / f"{chapter}.ipynb")
    lines = cc.box_lines(data["chapters"][chapter])
    missing = [ln for ln in lines if ln not in box.splitlines()]
    assert not missing, (f"{chapter}: the box does not state the committed costs; run "
                         f"python -m hamlib.experiments.chapter_costs --out {COSTS.relative_to(ROOT)} "
                         f"--write-boxes book\nmissing: {missing}")
    assert sum(ln.startswith(cc.BOX_PREFIXES) for ln in box.splitlines()) == len(lines), f"{chapter}: stale lines"


@pytest.mark.skipif(not COSTS.exists(), reason="book/results/chapter_costs.json not committed yet")
def test_write_boxes_replaces_only_its_own_lines(tmp_path: Path) -> None:
    chapter = "04_hamburger"
    shutil.copy(BOOK / f"{chapter}.ipynb", tmp_path)
    data = json.loads(COSTS.read_text())
    entry = dict(data["chapters"][chapter], cpu_tiny_s=1200.0)
    before = _box(tmp_path / f"{chapter}.ipynb")
    assert cc.write_boxes({"chapters": {chapter: entry}}, tmp_path) == [f"{chapter}.ipynb"]
    after = _box(tmp_path / f"{chapter}.ipynb")
    assert "about 20 min, measured" in after
    kept = [ln for ln in before.splitlines() if not ln.startswith(cc.BOX_PREFIXES)]
    assert [ln for ln in after.splitlines() if not ln.startswith(cc.BOX_PREFIXES)] == kept
    assert cc.write_boxes({"chapters": {chapter: entry}}, tmp_path) == []   # idempotent
