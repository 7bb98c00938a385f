"""hamlib.train.checkpoint and provenance: exact resume, weights_only checkpoints, atomic writes, clear errors."""
import errno
import json
import os
import random

import numpy as np
import pytest
import torch

from hamlib.train import (CheckpointError, atomic_write, load_checkpoint, provenance, read_json, rng_state,
                          save_checkpoint, seed_everything, set_rng_state, write_json)


def _step(model, opt):
    x = torch.randn(8, 4)
    loss = model(x).square().mean()
    opt.zero_grad(); loss.backward(); opt.step()


def test_exact_resume_gives_same_weights(tmp_path):
    def run(n, resume_at=None):
        seed_everything(0)
        m = torch.nn.Linear(4, 2); opt = torch.optim.Adam(m.parameters(), 1e-2)
        sched = torch.optim.lr_scheduler.StepLR(opt, 2)
        start = 0
        if resume_at is not None:
            start = load_checkpoint(tmp_path / "c.pt", models={"m": m}, optimizers={"opt": opt},
                                    schedulers={"s": sched})["step"]
        for i in range(start, n):
            _step(m, opt); sched.step()
            if i + 1 == 3 and resume_at is None:
                save_checkpoint(tmp_path / "c.pt", i + 1, models={"m": m}, optimizers={"opt": opt},
                                schedulers={"s": sched})
        return m.weight.detach().clone()

    full = run(6)
    resumed = run(6, resume_at=3)
    torch.testing.assert_close(full, resumed, rtol=0, atol=0)


def test_rng_state_is_weights_only_and_round_trips(tmp_path):
    seed_everything(3)
    random.random(); np.random.rand(); np.random.randn()  # a cached gaussian in NumPy's state
    state = rng_state()
    torch.save(state, tmp_path / "rng.pt")
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)   # no pickled numpy array inside
    expect = (random.random(), np.random.rand(), np.random.randn(), torch.rand(2))
    set_rng_state(loaded)
    got = (random.random(), np.random.rand(), np.random.randn(), torch.rand(2))
    assert expect[:3] == got[:3] and torch.equal(expect[3], got[3])


def test_checkpoint_holds_several_models_and_loads_weights_only(tmp_path):
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(3, 1)
    oa, ob = torch.optim.SGD(a.parameters(), 0.1), torch.optim.Adam(b.parameters())
    save_checkpoint(tmp_path / "c.pt", 7, models={"a": a, "b": b}, optimizers={"a": oa, "b": ob},
                    extra={"note": [1, 2.5, "x"]})
    ck = torch.load(tmp_path / "c.pt", weights_only=True)
    assert ck["step"] == 7 and set(ck["models"]) == {"a", "b"} and ck["extra"]["note"] == [1, 2.5, "x"]
    b2 = torch.nn.Linear(3, 1)
    load_checkpoint(tmp_path / "c.pt", models={"b": b2}, restore_rng=False)
    assert torch.equal(b2.weight, b.weight)
    with pytest.raises(CheckpointError, match="no model state 'c'"):
        load_checkpoint(tmp_path / "c.pt", models={"c": b2})
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(tmp_path / "c.pt", models={"a": b2}, restore_rng=False)


def test_missing_corrupt_and_foreign_checkpoints(tmp_path):
    m = torch.nn.Linear(2, 2)
    with pytest.raises(FileNotFoundError, match="missing checkpoint"):
        load_checkpoint(tmp_path / "nope.pt", models={"m": m})
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="truncated, corrupt or not a torch file"):
        load_checkpoint(tmp_path / "bad.pt", models={"m": m})
    torch.save({"width": 3}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a hamlib checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt", models={"m": m})
    save_checkpoint(tmp_path / "ok.pt", 1, models={"m": m})
    (tmp_path / "cut.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="not a readable hamlib checkpoint"):
        load_checkpoint(tmp_path / "cut.pt", models={"m": m})


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = str(tmp_path / "PWNED")
    torch.save({"format": "hamlib-checkpoint-v2", "models": {}, "step": 0, "x": _Evil(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="would run code"):
        load_checkpoint(tmp_path / "evil.pt", models={})
    assert not os.path.exists(marker)


def test_atomic_write_mode_cleanup_and_disk_full(tmp_path):
    p = atomic_write(tmp_path / "f.bin", lambda f: f.write(b"v1"))
    assert p.read_bytes() == b"v1" and p.stat().st_mode & 0o777 == 0o644

    def full_disk(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError, match="disk full") as e:
        atomic_write(tmp_path / "f.bin", full_disk)
    assert e.value.errno == errno.ENOSPC
    assert p.read_bytes() == b"v1" and sorted(x.name for x in tmp_path.iterdir()) == ["f.bin"]  # no orphan

    def torch_style(f):  # torch's zip writer reports a full disk as "unexpected pos"
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")
    import shutil
    from collections import namedtuple
    Usage = namedtuple("Usage", "total used free")
    orig = shutil.disk_usage
    shutil.disk_usage = lambda _: Usage(100, 100, 0)
    try:
        with pytest.raises(OSError, match="disk full"):
            atomic_write(tmp_path / "f.bin", torch_style)
    finally:
        shutil.disk_usage = orig
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f.bin"]


def test_provenance_and_json(tmp_path):
    rec = provenance(preset="tiny", wall_time_s=1.23456, note="x")
    for k in ("command", "commit", "device", "torch", "hamlib", "date"):
        assert k in rec
    assert rec["preset"] == "tiny" and rec["wall_time_s"] == 1.235
    p = write_json(tmp_path / "m.json", {"provenance": rec})
    assert read_json(p)["provenance"]["note"] == "x" and p.stat().st_mode & 0o777 == 0o644
    assert json.loads(p.read_text())["provenance"]["preset"] == "tiny"
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_command_line_shows_module_invocation():
    import subprocess, sys
    out = subprocess.run([sys.executable, "-c", "from hamlib.train import provenance; print(provenance()['command'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out.startswith("python") and "-c" in out and "__main__" not in out
