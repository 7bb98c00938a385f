"""hamlib.experiments.onestep: the majority task, the model, one training run, failures recorded, CLI."""
import json

import pytest
import torch

from hamlib.experiments import onestep
from hamlib.experiments.onestep import (GlobalContextNet, OneStepConfig, main, majority_task, miou, run_experiment,
                                        train_global_context)

TINY = OneStepConfig(iters=3, batch_size=4, test_size=8, size=8, channels=8, R=2, log_every=1)


def test_majority_task_labels_are_the_majority_colour():
    x, y = majority_task(20, size=8, classes=3, markers=(3, 2), noise=0.0, generator=torch.Generator().manual_seed(0))
    assert x.shape == (20, 3, 8, 8) and y.shape == (20, 8, 8)
    counts = (x > 0.5).sum(dim=(2, 3))  # markers per colour
    assert torch.equal(counts.argmax(1), y[:, 0, 0]) and (counts.sum(1) == 5).all()
    assert (y == y[:, :1, :1]).all()
    with pytest.raises(ValueError, match="markers"):
        majority_task(2, markers=(2, 2))


def test_miou_and_net_shapes_and_ham_options():
    t = torch.tensor([0, 0, 1, 1])
    assert miou(t, t, 2) == 1.0
    assert miou(torch.tensor([0, 0, 0, 1]), t, 2) == pytest.approx((2 / 3 + 1 / 2) / 2)
    with pytest.raises(ValueError, match="same shape"):
        miou(t, t[:3], 2)
    for md in ("none", "nmf", "vq"):
        out = GlobalContextNet(md=md)(torch.randn(2, 3, 8, 8))
        assert out.shape == (2, 3, 8, 8)
    net = GlobalContextNet(md="cd", R=3, train_steps=2, eval_steps=5, grad="bptt", inv_t=7.0)
    ham = net.ham.ham
    assert (ham.R, ham.train_steps, ham.eval_steps, ham.grad, ham.inv_t) == (3, 2, 5, "bptt", 7.0)
    with pytest.raises(ValueError, match="md must be one of"):
        GlobalContextNet(md="ham-nmf")
    with pytest.raises(ValueError, match="grad must be one of"):
        GlobalContextNet(grad="full")


def test_config_validates_every_field():
    with pytest.raises(ValueError, match="iters must be >= 1"):
        OneStepConfig(iters=0)
    with pytest.raises(ValueError, match="lr must be"):
        OneStepConfig(lr=float("nan"))
    with pytest.raises(ValueError, match="inv_t must be"):
        OneStepConfig(inv_t=float("inf"))
    assert "train_steps=6" in OneStepConfig().describe()


def test_one_run_trains_and_is_reproducible():
    a = train_global_context("nmf", "one-step", 0, TINY)
    b = train_global_context("nmf", "one-step", 0, TINY)
    assert a["status"] == "ok" and a["error"] is None and len(a["loss"]) == 3
    assert 0 <= a["test_acc"] <= 1 and a["max_grad_norm"] > 0
    assert a["loss"] == b["loss"] and a["test_acc"] == b["test_acc"]


def test_a_model_error_is_recorded_as_a_failed_run(monkeypatch):
    # e.g. the implicit solver reporting that its Neumann series did not converge
    def boom(self, x):
        raise RuntimeError("implicit backward did not converge (relative change 0.17 after 50 terms)")
    monkeypatch.setattr(GlobalContextNet, "forward", boom)
    r = train_global_context("nmf", "implicit", 0, TINY)
    assert r["status"] == "failed" and r["failed_at"] == 0
    assert "did not converge" in r["error"] and r["test_acc"] is None


def test_a_non_finite_loss_is_recorded_before_the_weights_are_poisoned(monkeypatch):
    real = GlobalContextNet.forward
    calls = []

    def nan_on_second(self, x):
        calls.append(1)
        out = real(self, x)
        return out * float("nan") if len(calls) == 2 else out
    monkeypatch.setattr(GlobalContextNet, "forward", nan_on_second)
    r = train_global_context("nmf", "one-step", 0, TINY)
    assert r["status"] == "failed" and r["failed_at"] == 1 and "non-finite loss" in r["error"]


def test_implicit_mode_runs_to_a_result_instead_of_crashing():
    # `python -m hamlib.gradients --modes implicit` used to crash (a NaN input error from the Hamburger)
    cfg = OneStepConfig(iters=2, batch_size=2, test_size=4, size=8, channels=8, R=2)
    r = train_global_context("vq", "implicit", 0, cfg)
    assert r["status"] in ("ok", "failed")
    assert (r["error"] is None) == (r["status"] == "ok")


def test_cli_writes_results_with_provenance_and_resumes(tmp_path, monkeypatch):
    rd = tmp_path / "run"
    args = ["--run-dir", str(rd), "--hams", "nmf", "--modes", "one-step,bptt", "--seeds", "1", "--iters", "2",
            "--batch-size", "2", "--test-size", "4", "--size", "8", "--channels", "8", "--R", "2"]
    assert main(args) == 0
    data = json.loads((rd / "metrics.json").read_text())
    # the shared run-folder layout: config.json at the start, one log line per finished run, metrics at the end
    assert json.loads((rd / "config.json").read_text())["kind"] == "OneStepConfig"
    logged = [json.loads(line) for line in (rd / "log.jsonl").read_text().splitlines()]
    assert [(r["md"], r["grad"], r["step"]) for r in logged] == [("none", "one-step", 1), ("nmf", "one-step", 2),
                                                                 ("nmf", "bptt", 3)]
    assert [(r["md"], r["grad"]) for r in data["runs"]] == [("none", "one-step"), ("nmf", "one-step"),
                                                            ("nmf", "bptt")]
    assert data["config"]["train_steps"] == 6 and data["failed"] == 0
    assert "commit" in data["provenance"] and "command" in data["provenance"]
    # same command again: nothing is retrained
    monkeypatch.setattr(onestep, "train_global_context", lambda *a, **k: pytest.fail("retrained a finished run"))
    assert main(args) == 0
    # different settings in the same folder: refused (the trainers' resume rule) unless --no-resume
    with pytest.raises(SystemExit):
        main(args[:-2] + ["--R", "3"])
    monkeypatch.undo()
    assert main(args[:-2] + ["--R", "3", "--no-resume"]) == 0
    assert json.loads((rd / "config.json").read_text())["config"]["R"] == 3


def test_cli_rejects_bad_values(capsys):
    for bad in (["--modes", "full"], ["--hams", "pca"], ["--iters", "0"], ["--seeds", "-1"], ["--lr", "-1"]):
        with pytest.raises(SystemExit):
            main(["--run-dir", "x", *bad])
        assert "error" in capsys.readouterr().err


def test_run_experiment_validates():
    with pytest.raises(ValueError, match="modes"):
        run_experiment(["nmf"], ["unrolled"], 1, TINY, progress=False)
    with pytest.raises(ValueError, match="hams"):
        run_experiment(["svd"], ["bptt"], 1, TINY, progress=False)
