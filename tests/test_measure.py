"""hamlib.measure: FLOP counts match the closed forms, timing statistics, interleaved comparison, memory,
saved-tensor bytes, input errors."""
import time

import pytest
import torch

import hamlib
from hamlib.measure import (compare, count_flops, count_params, ham_cd_macs, ham_nmf_macs, ham_vq_macs,
                            linear_attention_macs, machine_load, max_rss_bytes, peak_memory, sa_macs,
                            saved_tensor_bytes, time_fn)


def test_sa_closed_form_matches_counter_and_paper():
    torch.manual_seed(0)
    sa = hamlib.SelfAttention2d(32)
    x = torch.randn(1, 32, 6, 6)
    assert count_flops(lambda: sa(x)) == 2 * sa_macs(32, 36)
    # The paper's cost table (1x512x128x128): 292G MACs for self-attention.
    assert sa_macs(512, 128 * 128) / 1e9 == pytest.approx(292.06, abs=0.01)


@pytest.mark.parametrize("size", [6, 16])
def test_fused_attention_is_counted_like_the_explicit_one(size):
    # FlopCounterMode has no formula for the CPU flash kernel: without the math path its products count 0
    sa = hamlib.SelfAttention2d(32, fused=True).eval()
    x = torch.randn(1, 32, size, size)
    with torch.no_grad():
        assert count_flops(lambda: sa(x)) == 2 * sa_macs(32, size * size)
        assert count_flops(lambda: sa(x), math_attention=False) <= 2 * sa_macs(32, size * size)


def test_linear_attention_closed_form_matches_counter():
    la = hamlib.attention.LinearAttention2d(16, key_channels=4, value_channels=8).eval()
    x = torch.randn(2, 16, 5, 6)
    with torch.no_grad():
        assert count_flops(lambda: la(x)) == 2 * 2 * linear_attention_macs(16, 30, 4, 8)
    assert linear_attention_macs(512, 2 * 4096) == 2 * linear_attention_macs(512, 4096)   # linear in n


def test_sa_closed_form_with_reduced_key_channels():
    sa = hamlib.SelfAttention2d(16, key_channels=4, value_channels=8)
    x = torch.randn(2, 16, 5, 5)
    assert count_flops(lambda: sa(x)) == 2 * 2 * sa_macs(16, 25, 4, 8)


@pytest.mark.parametrize("md", ["nmf", "vq", "cd"])
@pytest.mark.parametrize("grad", ["one-step", "bptt"])
def test_ham_closed_forms_match_counter(md, grad):
    # one-step: the fast solve (D^T X once; no unused initial assignment); bptt: the step-by-step form
    torch.manual_seed(0)
    ham = hamlib.Hamburger(24, 16, md, R=4, train_steps=3, eval_steps=3, grad=grad).eval()
    x = torch.randn(1, 24, 5, 7)
    closed = {"nmf": ham_nmf_macs, "vq": ham_vq_macs, "cd": ham_cd_macs}[md]
    with torch.no_grad():
        assert count_flops(lambda: ham(x)) == 2 * closed(24, 16, 35, 4, 3, skip_redundant=grad == "one-step")


def test_ham_nmf_closed_form_paper_value():
    # The paper's cost table (1x512x128x128, r = 64, K = 6): 17.6G MACs for Ham (NMF).
    assert ham_nmf_macs(512, 512, 128 * 128, 64, 6, skip_redundant=False) / 1e9 == pytest.approx(17.5, abs=0.1)
    saved = ham_nmf_macs(512, 512, 128 * 128, 64, 6, skip_redundant=False) - ham_nmf_macs(512, 512, 128 * 128, 64, 6)
    assert saved == 512 * 128 * 128 * 64
    assert ham_nmf_macs(8, 8, 16, 2, 0) == ham_nmf_macs(8, 8, 16, 2, 0, skip_redundant=False)  # K = 0: no reuse


def test_closed_forms_reject_bad_sizes():
    with pytest.raises(ValueError, match="n must be a positive int"):
        sa_macs(8, 0)
    with pytest.raises(ValueError, match="K must be an int >= 0"):
        ham_nmf_macs(8, 8, 16, 2, -1)
    with pytest.raises(ValueError, match="r must be a positive int"):
        ham_vq_macs(8, 8, 16, 0, 2)


def test_count_flops_counts_backward_inside_the_thunk_and_rejects_non_callables():
    lin = torch.nn.Linear(8, 4, bias=False)
    x = torch.randn(3, 8)
    assert count_flops(lambda: lin(x)) == 2 * 3 * 8 * 4
    assert count_flops(lambda: lin(x).sum().backward()) == 2 * 2 * 3 * 8 * 4  # fwd + weight grad
    with pytest.raises(ValueError, match="fn must be callable"):
        count_flops(lin(x))


def test_count_params_all_by_default_and_trainable_only():
    assert count_params(torch.nn.Linear(3, 2)) == 8
    assert count_params(hamlib.SelfAttention2d(512)) == 4 * 512 * 512 + 4 * 512
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 5))
    net[0].requires_grad_(False)
    assert count_params(net) == 8 + 15
    assert count_params(net, trainable_only=True) == 15
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
    with pytest.raises(ValueError, match="warmup"):
        time_fn(lambda: None, warmup=-1)


def test_time_fn_measures_the_call():
    stats = time_fn(lambda: time.sleep(0.02), warmup=0, repeats=3)
    assert 19 <= stats["median_ms"] < 200


def test_compare_interleaves_and_rotates_and_reports_the_machine():
    order = []
    cands = {name: (lambda name=name: order.append(name)) for name in "abc"}
    res = compare(cands, rounds=3, warmup=1)
    # warm-up a b c, then rounds rotated: a b c, b c a, c a b
    assert order == list("abc") + list("abc") + list("bca") + list("cab")
    assert set(res["candidates"]) == set("abc")
    for st in res["candidates"].values():
        assert len(st["times_ms"]) == 3 and st["q25_ms"] <= st["median_ms"] <= st["q75_ms"]
    assert res["torch_threads"] == torch.get_num_threads() and res["cpu_count"] >= 1
    assert res["rounds"] == 3 and res["warmup"] == 1 and res["device"] == "cpu"
    assert "loadavg_before" in res and "loadavg_after" in res
    if res["other_cpu_cores"] is not None:
        assert 0 <= res["other_cpu_cores"] <= res["cpu_count"] + 1
    # a run far shorter than the 10 ms clock tick of /proc/stat reports no figure instead of a wrong one
    assert compare({"x": lambda: None}, rounds=3, warmup=1)["other_cpu_cores"] is None


def test_compare_tells_a_slow_candidate_from_a_fast_one():
    res = compare({"fast": lambda: time.sleep(0.002), "slow": lambda: time.sleep(0.012)}, rounds=5, warmup=0)
    fast, slow = res["candidates"]["fast"]["median_ms"], res["candidates"]["slow"]["median_ms"]
    assert fast >= 1.9 and slow >= 11.9 and slow > 2 * fast


def test_compare_rejects_bad_input():
    with pytest.raises(ValueError, match="candidates"):
        compare({}, rounds=2)
    with pytest.raises(ValueError, match=r"candidates\['x'\] must be callable"):
        compare({"x": 3}, rounds=2)
    with pytest.raises(ValueError, match="rounds"):
        compare({"x": lambda: None}, rounds=0)


def test_machine_load_fields():
    m = machine_load()
    assert m["cpu_count"] >= 1 and m["torch_threads"] == torch.get_num_threads()
    assert m["loadavg"] is None or len(m["loadavg"]) == 3


def test_peak_memory_sees_a_large_allocation():
    # 128 MiB touched inside the call must raise the peak RSS (fresh high-water mark in this test process).
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


def test_max_rss_bytes_is_at_least_the_current_resident_size():
    t = torch.ones(2 ** 23)  # 32 MiB, written
    assert max_rss_bytes() >= t.numel() * 4
    del t


def test_saved_tensor_bytes_counts_each_storage_once():
    x = torch.randn(1000, requires_grad=True)
    with saved_tensor_bytes() as s:
        x.exp().sum()                   # exp saves its result: 4000 bytes
    assert s.bytes == 4000 and s.tensors == 1
    w = torch.randn(1000, requires_grad=True)
    with saved_tensor_bytes() as s:
        (x * w).sum()                   # mul saves both inputs
        (x[:500] * w[:500]).sum()       # views of the same storages: not counted again
    assert s.bytes == 8000 and s.tensors == 2
    with saved_tensor_bytes() as s, torch.no_grad():
        (x * w).sum()
    assert s.bytes == 0


def test_saved_tensor_bytes_is_device_independent():
    def run(device):
        x = torch.ones(64, 32, device=device, requires_grad=True)
        w = torch.ones(32, 16, device=device, requires_grad=True)
        with saved_tensor_bytes() as s:
            (x @ w).relu().sum()
        return s.bytes
    # mm saves x and w, relu its output: (64*32 + 32*16 + 64*16) floats
    assert run("cpu") == run("meta") == 4 * (64 * 32 + 32 * 16 + 64 * 16)


def test_saved_tensor_bytes_grows_with_bptt_steps():
    x = torch.rand(1, 16, 64).requires_grad_(True)
    b = torch.rand(1, 16, 4)

    def saved(K, grad):
        with saved_tensor_bytes() as s:
            hamlib.md.solve(x, b, method="nmf", steps=K, grad=grad).recon.sum()
        return s.bytes

    assert saved(2, "one-step") == saved(8, "one-step") > 0
    assert saved(8, "bptt") > 2 * saved(2, "bptt") > 0


def test_compare_sees_another_process_spinning():
    import subprocess
    import sys
    from hamlib.measure import _cpu_jiffies
    if _cpu_jiffies() is None:
        pytest.skip("no /proc/stat on this platform")
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 30: pass"])
    try:
        time.sleep(0.3)
        res = compare({"a": lambda: time.sleep(0.02), "b": lambda: time.sleep(0.02)}, rounds=10, warmup=0)
    finally:
        spinner.kill()
        spinner.wait()
    assert res["other_cpu_cores"] > 0.5      # the spinner kept about one core busy; our sleeps used none
