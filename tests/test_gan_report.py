"""hamlib.gan.report: artefacts from finished and unfinished runs, comparison at a common step."""
import json

import pytest

from hamlib.gan.presets import get_preset
from hamlib.gan.report import make_report
from hamlib.gan.train import train_gan

CFG = get_preset("tiny", data="shapes", n_train=64, g_ch=8, d_ch=8, z_dim=8, batch_size=4, steps=4,
                 eval_every=2, ckpt_every=2, log_every=1, n_eval=16)


def test_report_finished_and_unfinished_runs(tmp_path):
    train_gan(CFG, "none", tmp_path / "none", progress=False)
    train_gan(CFG, "hamburger", tmp_path / "ham", progress=False)
    (tmp_path / "ham" / "metrics.json").unlink()          # pretend this run is unfinished: read last.pt
    s = make_report([tmp_path / "none", tmp_path / "ham"], tmp_path / "out", at_step=2)
    assert [r["context"] for r in s["rows"]] == ["none", "hamburger"] and all(r["steps"] == 2 for r in s["rows"])
    m = json.loads((tmp_path / "out" / "metrics_hamburger.json").read_text())
    assert max(h["step"] for h in m["history"]) == 2 and m["steps_run"] == 4
    for f in ("summary.json", "curves.png", "samples_none.png", "samples_hamburger.png"):
        assert (tmp_path / "out" / f).is_file()
    with pytest.raises(ValueError, match="no evaluation at step 3"):
        make_report([tmp_path / "none"], tmp_path / "out2", at_step=3)
    with pytest.raises(FileNotFoundError):
        make_report([tmp_path / "missing"], tmp_path / "out3")
