"""The gradient sweep (hamlib.experiments.gradsweep) and the probes it relies on (state_spectral_radius)."""
from __future__ import annotations

import json

import pytest
import torch

from hamlib import analysis
from hamlib.experiments import gradsweep, onestep
from hamlib.experiments.gradsweep import SweepConfig, grid, run_sweep, summarise
from hamlib.experiments.onestep import GlobalContextNet, OneStepConfig, majority_task, state_spectral_radius


def _image(seed: int = 0) -> torch.Tensor:
    x, _ = majority_task(1, generator=torch.Generator().manual_seed(seed))
    return x


@pytest.mark.parametrize("md", ["nmf", "vq", "cd"])
def test_spectral_radius_is_the_jacobians_at_the_training_state(md):
    torch.manual_seed(0)
    net = GlobalContextNet(md=md, R=2, channels=4, train_steps=3, eval_steps=3)
    x = _image()
    torch.manual_seed(5)
    rho = state_spectral_radius(net, x)
    # the same state by hand: training-mode features and the ham's own solve
    ref = GlobalContextNet(md=md, R=2, channels=4, train_steps=3, eval_steps=3)
    ref.load_state_dict(net.state_dict())
    ref.train()
    torch.manual_seed(5)                                       # the same random bases
    with torch.no_grad():
        h = ref.ham.lower_bread(ref.stem(x))
        _, sol = ref.ham.ham.solve(h)
    J = analysis.state_jacobian(ref.ham.ham.unfold(h) * sol.scale, sol.bases, sol.coef, md,
                                inv_t=ref.ham.ham.inv_t, beta=ref.ham.ham.beta)
    assert J.shape == (2 * (4 + 256),) * 2
    assert rho == pytest.approx(analysis.jacobian_spectrum(J)["spectral_radius"], rel=1e-5)
    assert rho > 0


def test_probe_leaves_the_net_untouched():
    torch.manual_seed(0)
    net = GlobalContextNet(md="vq", R=2, channels=4).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    state_spectral_radius(net, _image())
    assert not net.training                                    # its mode is kept
    for k, v in net.state_dict().items():                      # BatchNorm running statistics included
        assert torch.equal(v, before[k]), k


def test_low_temperature_contracts_and_bad_input_is_refused():
    torch.manual_seed(0)
    cold = GlobalContextNet(md="vq", R=2, channels=4, inv_t=0.5, train_steps=20)
    assert state_spectral_radius(cold, _image()) < 1           # a smooth soft-assignment is a contraction
    with pytest.raises(ValueError, match="md='none'"):
        state_spectral_radius(GlobalContextNet(md="none"), _image())
    with pytest.raises(ValueError, match="one image"):
        state_spectral_radius(GlobalContextNet(md="nmf"), torch.rand(2, 3, 16, 16))


def test_training_records_gradient_norms_and_probes():
    r = onestep.train_global_context("cd", "bptt", 0, OneStepConfig(iters=4, log_every=2, batch_size=4,
                                                                     test_size=8), probe_at=(0, 3))
    assert r["status"] == "ok"
    assert [g[0] for g in r["grad_norm"]] == [0, 2, 3]
    assert all(total >= stem > 0 for _, total, stem in r["grad_norm"])
    assert [p["it"] for p in r["probes"]] == [0, 3]
    assert all(isinstance(p["rho"], float) and p["rho"] > 0 for p in r["probes"])
    plain = onestep.train_global_context("cd", "bptt", 0, OneStepConfig(iters=2, batch_size=4, test_size=8))
    assert "probes" not in plain


def test_grid_has_every_point_once():
    cfg = SweepConfig(ks=(2, 6), k_inv_t=10.0, inv_ts=(1.0, 10.0), inv_t_k=6)
    pts = grid(cfg)
    assert len(pts) == len(set(pts))
    assert pts[0] == ("none", "one-step", 6, None)
    # 3 hams x 2 K x 2 gradients, plus VQ/CD x 1/T=1 x 2 gradients (1/T=10 at K=6 is already in the K sweep)
    assert len(pts) == 1 + 12 + 4
    assert all(t is None for md, _, _, t in pts if md in ("nmf", "none"))


@pytest.mark.parametrize("bad", [dict(ks=()), dict(ks=(0,)), dict(inv_ts=(float("inf"),)), dict(iters=0),
                                 dict(k_inv_t=0.0)])
def test_config_errors_name_the_field(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        SweepConfig(**bad)


def test_probe_iterations():
    assert SweepConfig(iters=600, probes=4).probe_iterations() == [0, 200, 399, 599]
    assert SweepConfig(iters=10, probes=1).probe_iterations() == [9]
    assert SweepConfig(probes=0).probe_iterations() == []


def test_sweep_resumes_and_summarises(tmp_path, monkeypatch):
    cfg = SweepConfig(iters=2, seeds=2, ks=(1,), inv_ts=(1.0,), inv_t_k=1, k_inv_t=1.0, probes=0)
    calls = []
    real = gradsweep.train_global_context

    def counted(md, g, s, c, **kw):
        calls.append((md, g, c.train_steps, c.inv_t, s))
        return real(md, g, s, c.replace(batch_size=4, test_size=8), **kw)

    monkeypatch.setattr(gradsweep, "train_global_context", counted)
    data = run_sweep(cfg, tmp_path / "run", progress=False)
    assert len(calls) == len(grid(cfg)) * 2 == len(data["runs"])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["config"] == cfg.to_dict()
    calls.clear()
    again = run_sweep(cfg, tmp_path / "run", progress=False)            # everything is logged: nothing is retrained
    assert calls == [] and [r["test_miou"] for r in again["runs"]] == [r["test_miou"] for r in data["runs"]]
    s = summarise(data["runs"])
    assert {(d["md"], d["K"], d["inv_t"]) for d in s["diffs"]} == {("nmf", 1, None), ("vq", 1, 1.0), ("cd", 1, 1.0)}
    d = s["diffs"][0]["onestep_minus_bptt"]
    assert d["n"] == 2 and d["ci95"][0] <= d["mean"] <= d["ci95"][1]


def test_summary_counts_failures_apart():
    ok = lambda seed, v: {"md": "vq", "grad": "bptt", "K": 6, "inv_t": 100.0, "seed": seed, "status": "ok",
                          "test_miou": v, "max_grad_norm": 1.0, "grad_norm": [(0, 1.0, 0.5)], "error": None}
    bad = dict(ok(2, None), status="failed", error="non-finite loss")
    pt = summarise([ok(0, 0.5), ok(1, 0.7), bad])["points"][0]
    assert pt["n"] == 2 and pt["failed"] == 1 and pt["errors"] == ["non-finite loss"]
    assert pt["miou"]["mean"] == pytest.approx(0.6)


def test_cli_summary_only(tmp_path, capsys, monkeypatch):
    cfg_args = ["--set", "iters=2", "seeds=2", "ks=(1,)", "inv_ts=(1.0,)", "inv_t_k=1", "k_inv_t=1.0", "probes=0"]
    real = gradsweep.train_global_context
    monkeypatch.setattr(gradsweep, "train_global_context",
                        lambda md, g, s, c, **kw: real(md, g, s, c.replace(batch_size=4, test_size=8), **kw))
    monkeypatch.setattr(gradsweep, "run_sweep", lambda cfg, d, **kw: run_sweep(cfg, d, progress=False, **kw))
    assert gradsweep.main(["--run-dir", str(tmp_path / "r"), *cfg_args]) == 0
    assert gradsweep.main(["--run-dir", str(tmp_path / "r"), "--summary-only"]) == 0
    out = capsys.readouterr().out
    assert "nmf  bptt" in out and "mIoU" in out
    with pytest.raises(SystemExit):
        gradsweep.main(["--run-dir", str(tmp_path / "r"), "--set", "nonsense=1"])


def test_compact_rounds_only_the_curves(tmp_path):
    loss = [(10 * i, 1.23456789 + i) for i in range(12)]
    data = {"runs": [{"loss": loss, "grad_norm": [(0, 2.3456789, 0.0123456789)],
                      "test_miou": 0.123456789, "probes": [{"rho": 1.23456789}]}], "summary": {"x": 0.123456789}}
    c = gradsweep.compact(data)
    r = c["runs"][0]
    assert [p[0] for p in r["loss"]] == [0, 50, 100, 110] and r["loss"][0] == [0, 1.235]   # every 5th and the last
    assert r["grad_norm"] == [[0, 2.346, 0.01235]]
    assert r["test_miou"] == 0.123456789 and r["probes"] == [{"rho": 1.23456789}] and c["summary"] == data["summary"]
    assert c["curves"] == {"significant_digits": 4, "stride": 5} and data["runs"][0]["loss"] == loss   # a copy
    src, dst = tmp_path / "in.json", tmp_path / "out.json"
    src.write_text(json.dumps(data))
    assert gradsweep.main(["--run-dir", str(tmp_path / "unused"), "--compact", str(src), str(dst)]) == 0
    assert json.loads(dst.read_text())["runs"][0]["loss"][0] == [0, 1.235]
