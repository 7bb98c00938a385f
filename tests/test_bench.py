"""hamlib.bench: the reference NMF Hamburger, module builders, one measured config, the CLI and reports."""
import json

import pytest
import torch

import hamlib
from hamlib.bench import MODULES, Config, build_module, closed_form_macs, markdown_table, measure, ratios, ref_nmf
from hamlib.bench.__main__ import main
from hamlib.md.nmf import nmf_init_coef, nmf_step, nmf_final


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


def test_build_module_rejects_unknown_name():
    with pytest.raises(ValueError, match="module must be one of"):
        build_module("mlp", 8, 8, 4, 2)


@pytest.mark.parametrize("name", ["ham-nmf", "ham-ref", "sa", "sa-fused"])
def test_measure_counts_match_closed_form(name):
    r = measure(Config(name, 6, C=16, d=16, r=4, K=2, repeats=1, warmup=0))
    assert r["macs_counted"] == r["macs_closed_form"] == closed_form_macs(Config(name, 6, C=16, d=16, r=4, K=2))
    assert r["train_ms"]["median_ms"] > 0 and r["infer_ms"]["median_ms"] > 0
    assert r["params"] == sum(p.numel() for p in build_module(name, 16, 16, 4, 2).parameters())


def test_ratios_and_markdown():
    rows = [{"module": m, "size": 8, "B": 1, "C": 4, "params": 10, "macs_counted": mac, "macs_closed_form": None,
             "mem_train_mb": mem, "mem_infer_mb": mem, "train_ms": t, "infer_ms": t}
            for m, mac, mem, t in [("ham-nmf", 10, 2.0, {"median_ms": 1.0, "q25_ms": 1.0, "q75_ms": 1.0}),
                                   ("sa", 40, 8.0, {"median_ms": 5.0, "q25_ms": 4.0, "q75_ms": 6.0})]]
    q = ratios(rows)[0]
    assert q["macs"] == 4 and q["train_time"] == 5 and q["train_memory"] == 4
    md = markdown_table(rows)
    assert "| sa | 1×4×8×8 |" in md and "5.0×" in md


def test_cli_writes_json_and_markdown(tmp_path):
    j, m = tmp_path / "b.json", tmp_path / "b.md"
    assert main(["--sizes", "4", "--modules", "ham-nmf", "sa", "--C", "8", "--d", "8", "--r", "2", "--K", "1",
                 "--repeats", "1", "--warmup", "0", "--no-subprocess", "--json", str(j), "--md", str(m)]) == 0
    data = json.loads(j.read_text())
    assert {r["module"] for r in data["results"]} == {"ham-nmf", "sa"}
    assert "commit" in data["provenance"] and "date" in data["provenance"]
    assert "ham-nmf" in m.read_text()
