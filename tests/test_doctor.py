"""python -m hamlib.doctor on the CPU: the report, the skipped CUDA-only parts, and that each check can fail."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hamlib import doctor

ROOT = Path(__file__).resolve().parents[1]
STATUSES = {"ok", "failed", "error", "skipped"}


@pytest.fixture(scope="module")
def cpu_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("doctor") / "doctor.json"
    proc = subprocess.run([sys.executable, "-m", "hamlib.doctor", "--device", "cpu", "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=tmp_path_factory.getbasetemp(), timeout=900)
    assert out.is_file(), proc.stderr[-3000:]
    return json.loads(out.read_text()), proc


def test_cpu_self_check_is_green_and_complete(cpu_report) -> None:
    report, proc = cpu_report
    assert proc.returncode == 0, f"{report['summary']}\n{proc.stdout[-3000:]}"
    assert set(report["checks"]) == set(doctor.CHECKS)
    for name, res in report["checks"].items():
        assert res["status"] in STATUSES, (name, res)
        assert res["status"] != "skipped" or res["reason"], name
    prov = report["provenance"]
    for key in ("command", "commit", "device", "torch", "date", "wall_time_s"):
        assert key in prov, key
    assert "hamlib.doctor" in prov["command"] and prov["device"].startswith("cpu")
    assert report["summary"]["failed"] == [] and report["summary"]["error"] == []


def test_cuda_only_parts_are_skipped_with_reasons(cpu_report) -> None:
    checks = cpu_report[0]["checks"]
    for name in ("seg_resume", "ddp"):
        assert checks[name]["status"] == "skipped" and "CUDA" in checks[name]["reason"], checks[name]
    assert "skipped" in checks["compile"]["details"]["solve_compile"]
    assert "reduced size" in checks["bench"]["details"]["input"]
    assert checks["gan_latents"]["status"] in ("ok", "skipped")


def test_ham_matrix_covers_every_ham_and_gradient(cpu_report) -> None:
    res = cpu_report[0]["checks"]["hams"]
    cases = res["details"]["cases"]
    assert {(c["md"], c["grad"]) for c in cases} == {(m, g) for m in ("nmf", "vq", "cd")
                                                     for g in ("one-step", "bptt", "implicit")}
    assert {c["dtype"] for c in cases} == {"float32", "bfloat16", "float16"}
    # The one-step and BPTT gradients are well conditioned: they are always compared and must pass.
    assert all(c["ok"] is True for c in cases if c["grad"] != "implicit"), [c for c in cases if not c["ok"]]
    for c in cases:
        if c["ok"] is None:
            assert c["grad"] == "implicit" and c["reference"], c


def test_ham_case_fails_beyond_tolerance(monkeypatch: pytest.MonkeyPatch) -> None:
    case = doctor._ham_case("nmf", "one-step", "bfloat16", torch.device("cpu"), (1, 8, 4, 4), 2, 3, 0)
    assert case["ok"] is True and case["out_dtype"] == "bfloat16" and case["out_rel_err"] > 0
    monkeypatch.setitem(doctor.TOLERANCES, "bfloat16", (case["out_rel_err"] / 2, 1.0))
    assert doctor._ham_case("nmf", "one-step", "bfloat16", torch.device("cpu"), (1, 8, 4, 4), 2, 3, 0)["ok"] is False


def test_rel_err() -> None:
    ref = torch.ones(3)
    assert doctor.rel_err(ref, ref) == 0.0
    assert doctor.rel_err(torch.tensor([1.0, 1.0, float("nan")]), ref) == float("inf")
    assert abs(doctor.rel_err(torch.tensor([1.0, 1.0, 2.0]), ref) - 1 / 3 ** 0.5) < 1e-12


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="checks"):
        doctor.run("cpu", ["nope"], log=lambda s: None)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            doctor.run("cuda", ["hams"], log=lambda s: None)
    with pytest.raises(ValueError, match="device"):
        doctor.run("meta", ["hams"], log=lambda s: None)


def test_missing_api_is_skipped_with_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    import hamlib.gan as gan

    monkeypatch.setattr(gan, "get_preset", None, raising=False)
    rep = doctor.run("cpu", ["gan_latents"], log=lambda s: None)
    res = rep["checks"]["gan_latents"]
    assert res["status"] == "skipped" and "hamlib.gan" in res["reason"], res


def test_gan_check_catches_replayed_latents(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU fault of issue 11, made visible on the CPU: an evaluation that reseeds the training RNG."""
    gan_train = pytest.importorskip("hamlib.gan.train")
    if not hasattr(gan_train, "eval_rng") or not callable(getattr(__import__("hamlib.gan", fromlist=["train"]),
                                                                  "train", None)):
        pytest.skip("this version of hamlib.gan has no eval_rng / public train to break")

    @contextlib.contextmanager
    def leaky_eval_rng(device, seed):   # what fork_rng(devices=[]) + manual_seed did to the CUDA RNG
        torch.manual_seed(seed)
        yield

    monkeypatch.setattr(gan_train, "eval_rng", leaky_eval_rng)
    res = doctor.check_gan_latents(torch.device("cpu"))
    assert res["status"] == "failed", res
    assert not res["details"]["identical_to_run_without_evaluations"]
    assert res["details"]["repeated_batches"], res


@pytest.mark.slow
def test_seg_resume_machinery_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA check's work, run on the CPU: bit-exact, and a trainer that ignores resume is caught."""
    seg = pytest.importorskip("hamlib.seg")
    if not callable(getattr(seg, "train", None)) or not callable(getattr(seg, "get_preset", None)):
        pytest.skip("this version of hamlib.seg has no public get_preset/train")
    res = doctor.seg_resume(torch.device("cpu"), iters=4)
    assert res["status"] == "ok", res
    assert res["details"]["backward_calls_after_resume"] == 2 and res["details"]["tensors_compared"] > 0
    real = seg.train

    def no_resume(cfg, run_dir, *args, **kwargs):   # restarts from scratch: same weights, wrong work
        kwargs["resume"] = False
        return real(cfg, run_dir, *args, **kwargs)

    monkeypatch.setattr(seg, "train", no_resume)
    res = doctor.seg_resume(torch.device("cpu"), iters=4)
    assert res["status"] == "failed" and res["details"]["backward_calls_after_resume"] == 4, res
