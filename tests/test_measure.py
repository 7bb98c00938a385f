"""hamlib.measure: FLOP counts match the closed forms, timing statistics, memory, input errors."""
import pytest
import torch

import hamlib
from hamlib.measure import count_flops, count_params, ham_nmf_macs, peak_memory, sa_macs, time_fn


def test_sa_closed_form_matches_counter_and_paper():
    torch.manual_seed(0)
    sa = hamlib.SelfAttention2d(32)
    x = torch.randn(1, 32, 6, 6)
    assert count_flops(lambda: sa(x)) == 2 * sa_macs(32, 36)
    # The paper's cost table (1x512x128x128): 292G MACs for self-attention.
    assert sa_macs(512, 128 * 128) / 1e9 == pytest.approx(292.06, abs=0.01)


def test_sa_closed_form_with_reduced_key_channels():
    sa = hamlib.SelfAttention2d(16, key_channels=4, value_channels=8)
    x = torch.randn(2, 16, 5, 5)
    assert count_flops(lambda: sa(x)) == 2 * 2 * sa_macs(16, 25, 4, 8)


def test_ham_nmf_closed_form_matches_counter_and_paper():
    torch.manual_seed(0)
    ham = hamlib.Hamburger(24, 16, "nmf", R=4, train_steps=3, eval_steps=3).eval()
    x = torch.randn(1, 24, 5, 7)
    with torch.no_grad():
        assert count_flops(lambda: ham(x)) == 2 * ham_nmf_macs(24, 16, 35, 4, 3)
    assert ham_nmf_macs(512, 512, 128 * 128, 64, 6) / 1e9 == pytest.approx(17.5, abs=0.1)  # paper: 17.6G


def test_count_params():
    assert count_params(torch.nn.Linear(3, 2)) == 8
    assert count_params(hamlib.SelfAttention2d(512)) == 4 * 512 * 512 + 4 * 512
    with pytest.raises(ValueError, match="module"):
        count_params("not a module")


def test_time_fn_statistics_and_errors():
    calls = []
    stats = time_fn(lambda: calls.append(1), warmup=2, repeats=4)
    assert len(calls) == 6 and len(stats["times_ms"]) == 4
    assert stats["q25_ms"] <= stats["median_ms"] <= stats["q75_ms"]
    assert stats["iqr_ms"] == pytest.approx(stats["q75_ms"] - stats["q25_ms"])
    with pytest.raises(ValueError, match="repeats"):
        time_fn(lambda: None, repeats=0)


def test_peak_memory_sees_a_large_allocation():
    # 64 MiB touched inside the call must raise the peak RSS (fresh high-water mark in this test process).
    def alloc():
        t = torch.ones(2 ** 24 * 2)  # 128 MiB of float32, written
        return t.sum()
    assert peak_memory(alloc, "cpu") > 32 * 2 ** 20
    with pytest.raises(ValueError, match="device"):
        peak_memory(lambda: None, "meta")


def test_peak_memory_sees_a_smaller_allocation_after_a_larger_one():
    from hamlib.measure import _reset_peak_rss
    if not _reset_peak_rss():
        pytest.skip("peak RSS cannot be reset on this platform")
    big = torch.ones(2 ** 26)  # 256 MiB, then freed: raises the process's all-time peak
    del big
    got = peak_memory(lambda: torch.ones(2 ** 24).sum(), "cpu")  # 64 MiB
    assert 32 * 2 ** 20 < got < 200 * 2 ** 20
