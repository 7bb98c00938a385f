import json

import pytest
import torch

from hamlib.train import load_checkpoint, provenance, read_json, save_checkpoint, seed_everything, write_json


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
            start = load_checkpoint(tmp_path / "c.pt", model=m, optimizer=opt, scheduler=sched)["step"]
        for i in range(start, n):
            _step(m, opt); sched.step()
            if i + 1 == 3 and resume_at is None:
                save_checkpoint(tmp_path / "c.pt", model=m, optimizer=opt, scheduler=sched, step=i + 1)
        return m.weight.detach().clone()

    full = run(6)
    resumed = run(6, resume_at=3)
    torch.testing.assert_close(full, resumed, rtol=0, atol=0)


def test_missing_and_corrupt_checkpoint(tmp_path):
    m = torch.nn.Linear(2, 2)
    with pytest.raises(FileNotFoundError, match="missing checkpoint"):
        load_checkpoint(tmp_path / "nope.pt", model=m)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.pt", model=m)


def test_provenance_and_json(tmp_path):
    rec = provenance(preset="tiny", wall_time_s=1.23456, note="x")
    for k in ("command", "commit", "device", "torch", "hamlib", "date"):
        assert k in rec
    assert rec["preset"] == "tiny" and rec["wall_time_s"] == 1.235
    p = write_json(tmp_path / "m.json", {"provenance": rec})
    assert read_json(p)["provenance"]["note"] == "x"
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_command_line_shows_module_invocation():
    import subprocess, sys
    out = subprocess.run([sys.executable, "-c", "from hamlib.train import provenance; print(provenance()['command'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out.startswith("python") and "-c" in out and "__main__" not in out
