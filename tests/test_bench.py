"""hamlib.bench: the reference NMF Hamburger, module builders, counts, interleaved timing, the load verdict,
the reports, the plot and the CLI."""
import json

import pytest
import torch

from hamlib.bench import (MODULES, Config, available_modules, build_module, closed_form_macs, load_verdict,
                          markdown_table, measure, ratios, ref_nmf, run_bench, static_costs, time_interleaved,
                          write_reports)
from hamlib.bench import report as bench_report
from hamlib.bench.__main__ import BUSY_EXIT, main
from hamlib.md.nmf import nmf_final, nmf_init_coef, nmf_step

SMALL = dict(C=8, d=8, r=2, K=1, repeats=2, warmup=0)


def test_ref_nmf_matches_hamlib_solver_given_same_bases():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(12, 30, generator=g, dtype=torch.float64)
    g1 = torch.Generator().manual_seed(3)
    out = ref_nmf(X, 5, 4, generator=g1)
    g2 = torch.Generator().manual_seed(3)
    bases = torch.nn.functional.normalize(torch.rand(12, 5, generator=g2, dtype=torch.float64), dim=0)[None]
    x = X[None]
    coef = nmf_init_coef(x, bases)
    for _ in range(4):
        bases, coef = nmf_step(x, bases, coef)
    coef = nmf_final(x, bases, coef)
    torch.testing.assert_close(out, (bases @ coef.transpose(1, 2))[0])


def test_ref_hamburger_shapes_and_one_step_gradient():
    torch.manual_seed(0)
    ref = build_module("ham-ref", 8, 6, 3, 2)
    z = torch.randn(2, 8, 4, 5, requires_grad=True)
    y = ref(z)
    assert y.shape == z.shape
    y.sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


@pytest.mark.parametrize("name", MODULES)
def test_every_module_builds_and_keeps_shape(name):
    m = build_module(name, 8, 8, 4, 2)
    z = torch.randn(1, 8, 4, 4)
    assert m(z).shape == z.shape


def test_linear_attention_row_is_feature_detected():
    import hamlib.attention
    assert ("linear-attn" in MODULES) == hasattr(hamlib.attention, "LinearAttention2d")


def test_compiled_rows_wrap_the_eager_hamburger():
    m = build_module("ham-vq-compiled", 8, 8, 4, 2)   # compiled lazily, on the first call (not made here)
    assert type(m._orig_mod).__name__ == "Hamburger" and m._orig_mod.md == "vq"
    assert "ham-vq-compiled" in available_modules() and "ham-vq-compiled" not in MODULES


def test_build_module_and_config_reject_bad_input():
    with pytest.raises(ValueError, match="module must be one of"):
        build_module("mlp", 8, 8, 4, 2)
    with pytest.raises(ValueError, match="module must be one of"):
        Config("mlp", 8)
    with pytest.raises(ValueError, match="size must be an int >= 1"):
        Config("sa", 0)
    with pytest.raises(ValueError, match="threads"):
        Config("sa", 4, threads=0)


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("size", [6, 16])
def test_counts_match_closed_form(name, size):
    # sa-fused: FlopCounterMode counts the CPU flash kernel's products as 0; the bench counts on the math path
    cfg = Config(name, size, C=16, d=16, r=4, K=2)
    c = static_costs(cfg)
    assert c["macs_counted"] == c["macs_closed_form"] == closed_form_macs(cfg)
    assert c["params"] == sum(p.numel() for p in build_module(name, 16, 16, 4, 2).parameters())


def test_measure_alone_still_gives_every_field():
    r = measure(Config("ham-nmf", 6, **SMALL))
    assert r["timing"] == "alone" and r["train_ms"]["median_ms"] > 0 and r["infer_ms"]["median_ms"] > 0
    assert r["mem_train_mb"] >= 0 and r["macs_counted"] > 0


def test_time_interleaved_times_every_module_in_the_same_rounds():
    cfgs = [Config(m, 4, **SMALL) for m in ("ham-nmf", "sa")]
    res = time_interleaved(cfgs)
    assert set(res) == {"infer", "train"}
    for mode in res.values():
        assert set(mode["candidates"]) == {"ham-nmf", "sa"}
        assert all(len(s["times_ms"]) == 2 for s in mode["candidates"].values())
        assert mode["torch_threads"] == torch.get_num_threads()
    with pytest.raises(ValueError, match="differ in module only"):
        time_interleaved([Config("sa", 4, **SMALL), Config("ham-nmf", 5, **SMALL)])
    with pytest.raises(ValueError, match="each module once"):
        time_interleaved([Config("sa", 4, **SMALL), Config("sa", 4, **SMALL)])


def test_run_bench_in_process_rows_and_timing_entries():
    b = run_bench(["ham-nmf", "sa"], [4, 6], **SMALL, subprocess=False, progress=False)
    assert [(r["module"], r["size"]) for r in b["results"]] == [("ham-nmf", 4), ("sa", 4), ("ham-nmf", 6), ("sa", 6)]
    assert all(r["timing"] == "interleaved" and len(r["train_ms"]["times_ms"]) == 2 for r in b["results"])
    assert [(t["size"], t["mode"]) for t in b["timing"]] == [(4, "infer"), (4, "train"), (6, "infer"), (6, "train")]
    assert all("loadavg_before" in t and "other_cpu_cores" in t for t in b["timing"])


def test_run_bench_memory_in_a_fresh_process():
    b = run_bench(["ham-nmf"], [4], **SMALL, subprocess=True, progress=False)
    r = b["results"][0]
    assert "fresh process" in r["memory_method"] and r["macs_counted"] == r["macs_closed_form"]


def _row(m, mac, mem, times, timing="interleaved"):
    t = sorted(times)
    return {"module": m, "size": 8, "B": 1, "C": 4, "params": 10, "macs_counted": mac, "macs_closed_form": None,
            "mem_train_mb": mem, "mem_infer_mb": mem, "timing": timing,
            "train_ms": {"median_ms": t[len(t) // 2], "q25_ms": t[0], "q75_ms": t[-1], "times_ms": times},
            "infer_ms": {"median_ms": t[len(t) // 2], "q25_ms": t[0], "q75_ms": t[-1], "times_ms": times}}


def test_ratios_pair_the_rounds_and_markdown_shows_them():
    rows = [_row("ham-nmf", 10, 2.0, [1.0, 2.0, 1.0]), _row("sa", 40, 8.0, [5.0, 10.0, 5.0])]
    q = ratios(rows)[0]
    assert q["macs"] == 4 and q["train_time"] == 5 and q["train_memory"] == 4
    assert q["train_time_iqr"] == [5.0, 5.0]          # every round: SA took 5x the Hamburger's time
    drift = [_row("ham-nmf", 10, 2.0, [1.0, 4.0, 2.0]), _row("sa", 40, 8.0, [3.0, 12.0, 3.0])]
    q = ratios(drift)[0]                               # rounds 3x, 3x, 1.5x: median 3, not 3 / 2 = 1.5
    assert q["train_time"] == 3.0 and q["train_time_of_medians"] == 1.5 and q["train_time_iqr"] == [2.25, 3.0]
    md = markdown_table(rows)
    assert "| sa | 1×4×8×8 |" in md and "5.00× [5.00, 5.00]" in md and "interleaved" in md
    alone = [_row("ham-nmf", 10, 2.0, [1.0], "alone"), _row("sa", 40, 8.0, [5.0], "alone")]
    assert ratios(alone)[0]["train_time_iqr"] is None    # not timed in the same rounds: no paired spread


def test_load_verdict():
    quiet = [{"other_cpu_cores": 0.1, "loadavg_before": (3.0, 1, 1), "torch_threads": 1, "cpu_count": 2}]
    busy = [{"other_cpu_cores": 0.2}, {"other_cpu_cores": 1.3, "loadavg_before": (0.1, 0, 0)}]
    assert not load_verdict(quiet)["busy"]
    v = load_verdict(busy)
    assert v["busy"] and v["other_cpu_cores_max"] == 1.3 and "1.30 CPU cores" in v["message"]
    # without /proc/stat figures: the load average, less this process's own threads
    assert load_verdict([{"other_cpu_cores": None, "loadavg_before": (2.0, 0, 0), "torch_threads": 1}])["busy"]
    assert not load_verdict([{"other_cpu_cores": None, "loadavg_before": (1.2, 0, 0), "torch_threads": 1}])["busy"]
    with pytest.raises(ValueError, match="max_load"):
        load_verdict(quiet, -1)


def test_a_busy_run_is_not_published(tmp_path):
    rows = [_row("ham-nmf", 10, 2.0, [1.0, 2.0]), _row("sa", 40, 8.0, [5.0, 9.0])]
    bench = {"results": rows, "timing": [{"other_cpu_cores": 1.5, "torch_threads": 1, "cpu_count": 2}]}
    j, m = tmp_path / "b.json", tmp_path / "b.md"
    data = write_reports(bench, j, m, device="cpu", preset="cpu", started=0.0)
    assert not data["publishable"] and json.loads(j.read_text())["publishable"] is False
    assert not m.exists()
    write_reports(bench, j, m, device="cpu", preset="cpu", started=0.0, allow_busy=True)
    assert m.read_text().startswith("> **WARNING — NOT FOR PUBLICATION")


def test_plot_bench_log_axes(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    from hamlib.viz import plot_bench
    rows = [_row("ham-nmf", 10, 2.0, [1.0, 2.0]), _row("sa", 40, 8.0, [5.0, 9.0])]
    rows += [{**r, "size": 16, "n": 256} for r in rows]
    rows[0]["n"] = rows[1]["n"] = 64
    fig = plot_bench({"results": rows}, modes=("train",))
    ax_t, ax_m = fig.axes
    assert ax_t.get_xscale() == ax_t.get_yscale() == ax_m.get_yscale() == "log"
    assert [t.get_text() for t in ax_t.get_legend().get_texts()] == ["ham-nmf", "sa"]
    with pytest.raises(ValueError, match="modes"):
        plot_bench({"results": rows}, modes=("backward",))


def test_cli_writes_json_and_markdown(tmp_path):
    j, m = tmp_path / "b.json", tmp_path / "b.md"
    assert main(["--sizes", "4", "--modules", "ham-nmf", "sa", "--C", "8", "--d", "8", "--r", "2", "--K", "1",
                 "--repeats", "2", "--warmup", "0", "--no-subprocess", "--max-load", "1000",
                 "--json", str(j), "--md", str(m)]) == 0
    data = json.loads(j.read_text())
    assert {r["module"] for r in data["results"]} == {"ham-nmf", "sa"}
    assert "commit" in data["provenance"] and "date" in data["provenance"]
    assert data["provenance"]["torch_threads"] == 1 and data["publishable"] is True   # 1 thread on the CPU
    assert "ham-nmf" in m.read_text() and "Machine load" in m.read_text()


def test_cli_exits_3_and_writes_no_markdown_when_busy(tmp_path, monkeypatch, capsys):
    real = bench_report.load_verdict
    monkeypatch.setattr(bench_report, "load_verdict",
                        lambda timing, max_load: {**real(timing, max_load), "busy": True, "message": "test"})
    j, m = tmp_path / "b.json", tmp_path / "b.md"
    assert main(["--sizes", "4", "--modules", "sa", "--C", "8", "--repeats", "1", "--warmup", "0",
                 "--no-subprocess", "--json", str(j), "--md", str(m)]) == BUSY_EXIT
    assert j.exists() and not m.exists() and "NOT FOR PUBLICATION" in capsys.readouterr().err


def test_cli_rejects_bad_values(capsys):
    for bad in (["--sizes", "0"], ["--repeats", "x"], ["--modules", "mlp"], ["--K", "-1"]):
        with pytest.raises(SystemExit):
            main(bad)
        assert "error" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="max-load"):
        main(["--max-load", "-1"])


def test_cli_resume_adds_sizes_and_refuses_other_settings(tmp_path):
    j, m = tmp_path / "b.json", tmp_path / "b.md"
    args = ["--modules", "ham-nmf", "sa", "--C", "8", "--d", "8", "--r", "2", "--K", "1", "--repeats", "1",
            "--warmup", "0", "--no-subprocess", "--max-load", "1000", "--json", str(j), "--md", str(m), "--resume"]
    assert main(["--sizes", "4", *args]) == 0
    first = json.loads(j.read_text())
    assert main(["--sizes", "4", "6", *args]) == 0
    data = json.loads(j.read_text())
    assert [(r["module"], r["size"]) for r in data["results"]] == [("ham-nmf", 4), ("sa", 4), ("ham-nmf", 6),
                                                                   ("sa", 6)]
    assert data["results"][:2] == first["results"]            # size 4 kept, not re-measured
    assert [t["size"] for t in data["timing"]] == [4, 4, 6, 6]
    with pytest.raises(SystemExit, match="settings"):
        main(["--sizes", "8", *args[:3], "--C", "16", *args[5:]])
