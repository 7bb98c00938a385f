"""hamlib.stats: the t interval and the paired difference behind every comparison table."""
from __future__ import annotations

import math

import pytest

from hamlib.experiments import camvid_heads as ch
from hamlib.stats import paired_difference, t_interval


def test_t_interval_matches_a_hand_computation() -> None:
    r = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.776 * math.sqrt(2.5) / math.sqrt(5)
    assert r["mean"] == 3.0 and r["std"] == pytest.approx(math.sqrt(2.5)) and r["n"] == 5
    assert r["ci95"] == pytest.approx([3.0 - half, 3.0 + half])


@pytest.mark.parametrize("bad, match", [([1.0], "at least 2"), ([1.0, float("nan")], "finite")])
def test_t_interval_refuses_what_it_cannot_summarise(bad, match) -> None:
    with pytest.raises(ValueError, match=match):
        t_interval(bad)


def test_paired_difference_removes_the_shared_seed_effect() -> None:
    a = {0: 0.50, 1: 0.40, 2: 0.60, 7: 0.9}
    b = {0: 0.48, 1: 0.38, 2: 0.58}
    d = paired_difference(a, b)
    assert d["seeds"] == [0, 1, 2] and d["mean"] == pytest.approx(0.02) and d["std"] == pytest.approx(0, abs=1e-12)
    unpaired = t_interval([0.50, 0.40, 0.60])
    assert unpaired["std"] > 0.09                       # the seeds alone vary by ten points
    with pytest.raises(ValueError, match="common seeds"):
        paired_difference({0: 1.0}, {0: 1.0, 1: 2.0})


def test_camvid_summary_pairs_table1_heads_with_their_one_step_twin() -> None:
    recs = [{"head": h, "seed": s, "test": {"miou": v, "iou": {"Road": v}}} for h, s, v in
            [("ham-cd", 0, 0.5), ("ham-cd", 1, 0.6), ("ham-cd-bptt", 0, 0.45), ("ham-cd-bptt", 1, 0.56)]]
    s = ch.summarise(recs)
    d = s["heads"]["ham-cd-bptt"]["diff_vs_onestep"]
    assert d["mean"] == pytest.approx(-0.045) and d["n"] == 2
    assert s["heads"]["ham-cd"]["class_iou_mean"] == {"Road": pytest.approx(0.55)}
