"""hamlib.seg.train: the tiny preset learns, a killed run resumes exactly, the resume rule, torchrun with 2 gloo
processes and a global batch."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hamlib.seg.config import get_preset
from hamlib.seg.model import from_config
from hamlib.seg.train import StepBatchSampler, train
from hamlib.train import RunDir, RunMismatchError, read_checkpoint, read_json

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_preset_learns(tmp_path):
    cfg = get_preset("tiny", iters=60, eval_every=30)  # the tiny preset, shortened to keep CI fast
    res = train(cfg, tmp_path / "run", progress=False, device="cpu", preset="tiny")
    loss = [r["loss"] for r in res["history"] if "loss" in r]
    assert loss[-1] < 0.5 * loss[0]
    chance = 1.0 / cfg.num_classes
    assert res["test"]["miou"] > 2 * chance, res["test"]
    m = read_json(tmp_path / "run" / "metrics.json")
    assert m["provenance"]["preset"] == "tiny" and m["config"]["iters"] == 60
    assert {"command", "commit", "device", "wall_time_s"} <= set(m["provenance"])
    run = RunDir(tmp_path / "run")
    assert run.config(type(cfg)) == cfg and run.history() == m["history"]  # config.json and log.jsonl
    w = torch.load(run.weights_path, weights_only=True)  # the inference-only export
    model = from_config(cfg)
    model.load_state_dict(w["models"]["model"])
    assert w["config"] == cfg.to_dict()
    for p in tmp_path.joinpath("run").iterdir():
        assert p.stat().st_mode & 0o777 == 0o644, p  # readable by everyone


def _weights(run_dir, cfg):
    return read_checkpoint(Path(run_dir) / "last.pt")["models"]["model"]


def test_killed_run_resumes_to_same_weights(tmp_path):
    cfg = get_preset("tiny", iters=8, ckpt_every=3, eval_every=4, synthetic_n=24, batch_size=4, log_every=2)
    train(cfg, tmp_path / "a", progress=False, device="cpu", final_eval=False)
    out = train(cfg, tmp_path / "b", progress=False, device="cpu", stop_after=5, final_eval=False)
    assert out == {"stopped_at": 5}
    assert read_checkpoint(tmp_path / "b" / "last.pt")["step"] == 3
    assert max(r["step"] for r in RunDir(tmp_path / "b").history()) == 4  # the log ran ahead of the checkpoint
    train(cfg, tmp_path / "b", progress=False, device="cpu", final_eval=False)  # resumes from step 3
    wa, wb = _weights(tmp_path / "a", cfg), _weights(tmp_path / "b", cfg)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ha = read_json(tmp_path / "a" / "metrics.json")["history"]
    hb = read_json(tmp_path / "b" / "metrics.json")["history"]
    assert ha == hb  # same losses and val mIoU, no duplicated lines from the killed part


def test_resume_rule_refuses_another_config(tmp_path):
    """The two cases of the reliability review: --set md=vq on an NMF run, --set lr=0.1 iters=40 on a finished run."""
    cfg = get_preset("tiny", iters=2, ckpt_every=2, eval_every=2, synthetic_n=16, batch_size=4, log_every=1)
    train(cfg, tmp_path, progress=False, device="cpu", final_eval=False)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(RunMismatchError, match=r"md: run has 'nmf', asked for 'vq'.*--no-resume"):
        train(cfg.replace(md="vq"), tmp_path, progress=False, device="cpu")
    with pytest.raises(RunMismatchError, match=r"iters: run has 2, asked for 40.*lr: run has 0.02, asked for 0.1"):
        train(cfg.replace(lr=0.1, iters=40), tmp_path, progress=False, device="cpu")
    assert (tmp_path / "last.pt").read_bytes() == before  # nothing touched
    res = train(cfg.replace(md="vq"), tmp_path, resume=False, progress=False, device="cpu", final_eval=False)
    assert res["config"]["md"] == "vq" and RunDir(tmp_path).config()["md"] == "vq"
    # runtime fields (where the data is, loader workers) may change on resume
    train(cfg.replace(md="vq", num_workers=0, data_root="elsewhere"), tmp_path, progress=False, device="cpu",
          final_eval=False)


def test_unwritable_run_folder_fails_before_training(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # running as root: permissions are not enforced
        pytest.skip("permissions are not enforced for this user")
    called = []
    monkeypatch.setattr(sys.modules["hamlib.seg.train"], "from_config", lambda cfg: called.append(1))
    with pytest.raises(PermissionError, match="not writable"):
        train(get_preset("tiny"), ro / "run", progress=False, device="cpu")
    assert not called


def test_unwritable_run_folder_probe(tmp_path, monkeypatch):
    """The probe write happens before any model is built (a failing write is simulated for root)."""
    import pathlib
    called = []
    monkeypatch.setattr(sys.modules["hamlib.seg.train"], "from_config", lambda cfg: called.append(1))
    real = pathlib.Path.write_bytes

    def deny(self, data):
        if self.name.startswith(".write-test"):
            raise PermissionError(13, "Permission denied")
        return real(self, data)
    monkeypatch.setattr(pathlib.Path, "write_bytes", deny)
    with pytest.raises(PermissionError, match=r"run folder .* is not writable"):
        train(get_preset("tiny"), tmp_path / "run", progress=False, device="cpu")
    assert not called


def test_step_batch_sampler_is_a_function_of_step():
    full = list(StepBatchSampler(20, 4, 12, seed=3))
    assert list(StepBatchSampler(20, 4, 12, start=7, seed=3)) == full[7:]
    r0 = list(StepBatchSampler(20, 4, 3, seed=3, rank=0, world_size=2))
    r1 = list(StepBatchSampler(20, 4, 3, seed=3, rank=1, world_size=2))
    one = list(StepBatchSampler(20, 4, 3, seed=3))
    for a, b, c in zip(r0, r1, one):  # batch_size is global: two processes split the one-process batch
        assert len(a) == len(b) == 2 and sorted(a + b) == sorted(c)
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        StepBatchSampler(20, 5, 3, world_size=2)


def test_torchrun_two_gloo_processes(tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "hamlib.seg", "train", "--preset", "tiny", "--threads", "1", "--quiet", "--device", "cpu",
           "--run-dir", str(run), "--set", "iters=3", "eval_every=3", "ckpt_every=3", "synthetic_n=16",
           "batch_size=4"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=170)
    assert p.returncode == 0, p.stderr[-3000:]
    m = read_json(run / "metrics.json")
    assert m["world_size"] == 2 and m["iters"] == 3
    ck = torch.load(run / "last.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in ck["models"]["model"])  # saved unwrapped, loads without DDP
