"""hamlib.gan.report: artefacts from finished and unfinished runs, comparison at a common step; the figure."""
import json

import pytest

from hamlib.gan.config import get_preset
from hamlib.gan.report import collect_runs, make_report
from hamlib.gan.train import train

CFG = get_preset("tiny", data="shapes", n_train=64, g_ch=8, d_ch=8, z_dim=8, batch_size=4, iters=4,
                 eval_every=2, ckpt_every=2, log_every=1, n_eval=16)


def test_report_finished_and_unfinished_runs(tmp_path):
    train(CFG.replace(context="none"), tmp_path / "none", progress=False)
    train(CFG, tmp_path / "ham", progress=False)
    (tmp_path / "ham" / "metrics.json").unlink()          # pretend this run is unfinished: read its folder
    s = make_report([tmp_path / "none", tmp_path / "ham"], tmp_path / "out", at_step=2)
    assert [r["context"] for r in s["rows"]] == ["none", "ham"] and all(r["iters"] == 2 for r in s["rows"])
    m = json.loads((tmp_path / "out" / "metrics_ham.json").read_text())
    assert max(h["step"] for h in m["history"]) == 2 and m["iters_run"] == 4
    for f in ("summary.json", "samples_none.png", "samples_ham.png"):
        assert (tmp_path / "out" / f).is_file()
    with pytest.raises(ValueError, match="no evaluation at step 3"):
        make_report([tmp_path / "none"], tmp_path / "out2", at_step=3)
    with pytest.raises(FileNotFoundError):
        make_report([tmp_path / "missing"], tmp_path / "out3")
    from hamlib.viz.reports import gan_curves
    gan_curves(collect_runs([tmp_path / "none", tmp_path / "ham"]), tmp_path / "out" / "curves.png")
    assert (tmp_path / "out" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
