"""A real kill (SIGKILL, at whatever moment it lands, a checkpoint write included) of ``python -m hamlib.gan train``:
running the same command again finishes with exactly the weights and history of an uninterrupted run, and no
temporary file is left behind."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from hamlib.train import RunDir, read_checkpoint, read_json

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["-m", "hamlib.gan", "train", "--preset", "tiny", "--quiet", "--threads", "1", "--device", "cpu", "--set",
        "iters=24", "ckpt_every=2", "eval_every=8", "log_every=1", "n_train=64", "g_ch=8", "d_ch=8", "z_dim=8",
        "batch_size=4", "n_eval=16"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}


def _run(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *ARGS, "--run-dir", str(run_dir)], env=ENV, capture_output=True,
                          text=True, timeout=300)


def _kill_when(run_dir: Path, min_step: int, delay: float) -> None:
    p = subprocess.Popen([sys.executable, *ARGS, "--run-dir", str(run_dir)], env=ENV, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    ckpt = RunDir(run_dir).checkpoint
    t0 = time.time()
    while time.time() - t0 < 240 and p.poll() is None:
        try:
            if ckpt.is_file() and read_checkpoint(ckpt)["step"] >= min_step:
                break
        except Exception:  # being replaced right now
            pass
        time.sleep(0.05)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait()


def test_sigkill_then_rerun_equals_uninterrupted(tmp_path):
    ref = _run(tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-2000:]
    run = tmp_path / "killed"
    for min_step, delay in ((2, 0.0), (10, 0.13)):   # two kills, right after a checkpoint and at a later moment
        _kill_when(run, min_step, delay)
        assert not (run / "metrics.json").exists() and read_checkpoint(run / "last.pt")["step"] < 24  # really cut
    done = _run(run)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = read_checkpoint(tmp_path / "ref" / "last.pt"), read_checkpoint(run / "last.pt")
    assert a["step"] == b["step"] == 24
    for name in ("G", "D", "ema"):
        for k, v in a["models"][name].items():
            assert torch.equal(v, b["models"][name][k]), (name, k)
    ma, mb = read_json(tmp_path / "ref" / "metrics.json"), read_json(run / "metrics.json")
    assert ma["history"] == mb["history"] and ma["evals"] == mb["evals"]
    assert not list(run.glob(".*.tmp")) and not list(run.glob(".write-test*"))
