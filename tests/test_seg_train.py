"""hamlib.seg.train: the tiny preset learns, a killed run resumes exactly, torchrun with 2 gloo processes."""
import os
import subprocess
import sys
from pathlib import Path

import torch

from hamlib.seg.presets import get_preset
from hamlib.seg.train import StepBatchSampler, build_from_config, train
from hamlib.train import load_checkpoint, read_json

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_preset_learns(tmp_path):
    cfg = get_preset("tiny", iters=60, eval_every=30)  # the tiny preset, shortened to keep CI fast
    res = train(cfg, tmp_path / "run", progress=False, device="cpu", preset="tiny")
    loss = res["history"]["loss"]
    assert loss[-1] < 0.5 * loss[0]
    chance = 1.0 / cfg.num_classes
    assert res["test"]["miou"] > 2 * chance, res["test"]
    m = read_json(tmp_path / "run" / "metrics.json")
    assert m["provenance"]["preset"] == "tiny" and m["config"]["iters"] == 60
    assert {"command", "commit", "device", "wall_time_s"} <= set(m["provenance"])


def _weights(run_dir, cfg):
    model = build_from_config(cfg)
    load_checkpoint(run_dir / "last.pt", model=model, restore_rng=False)
    return model.state_dict()


def test_killed_run_resumes_to_same_weights(tmp_path):
    cfg = get_preset("tiny", iters=8, ckpt_every=3, eval_every=4, synthetic_n=24, batch_size=4, log_every=2)
    train(cfg, tmp_path / "a", progress=False, device="cpu", final_eval=False)
    out = train(cfg, tmp_path / "b", progress=False, device="cpu", stop_after=5, final_eval=False)
    assert out == {"stopped_at": 5}
    assert load_checkpoint(tmp_path / "b" / "last.pt", model=build_from_config(cfg), restore_rng=False)["step"] == 3
    train(cfg, tmp_path / "b", progress=False, device="cpu", final_eval=False)  # resumes from step 3
    wa, wb = _weights(tmp_path / "a", cfg), _weights(tmp_path / "b", cfg)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ha = read_json(tmp_path / "a" / "metrics.json")["history"]
    hb = read_json(tmp_path / "b" / "metrics.json")["history"]
    assert ha["loss"] == hb["loss"] and ha["val_miou"] == hb["val_miou"]


def test_step_batch_sampler_is_a_function_of_step():
    full = list(StepBatchSampler(20, 4, 12, seed=3))
    assert list(StepBatchSampler(20, 4, 12, start=7, seed=3)) == full[7:]
    r0 = list(StepBatchSampler(20, 2, 3, seed=3, rank=0, world_size=2))
    r1 = list(StepBatchSampler(20, 2, 3, seed=3, rank=1, world_size=2))
    assert all(not set(a) & set(b) for a, b in zip(r0, r1))  # ranks see disjoint samples


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
    ck = torch.load(run / "last.pt", weights_only=False)
    assert not any(k.startswith("module.") for k in ck["model"])  # saved unwrapped, loads without DDP
