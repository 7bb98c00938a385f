"""hamlib.seg.report (data) + hamlib.viz.reports (figures): book artefacts from tiny run folders."""
import pytest
import torch

from hamlib.seg.__main__ import main
from hamlib.seg.config import get_preset
from hamlib.seg.report import make_report, prediction_examples
from hamlib.seg.train import train
from hamlib.train import read_json

HEADS = ("fcn", "ham")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    for h in HEADS:  # the tiny preset, cut to a handful of iterations: the report only needs finished folders
        cfg = get_preset("tiny", head=h, iters=4, eval_every=2, ckpt_every=4, log_every=1, synthetic_n=16,
                         batch_size=4, amp=False)
        train(cfg, root / h, progress=False, device="cpu", preset="tiny")
    return root


def test_make_report_writes_json_and_figures(runs, tmp_path):
    rep = make_report(runs, tmp_path / "out", HEADS, size=(64, 64), latency_repeats=2, name="tiny")
    js = read_json(tmp_path / "out" / "tiny.json")
    assert js == rep and list(js["heads"]) == list(HEADS)
    assert "synthetic shapes 64x64" in js["label"] and "4 iterations" in js["label"]
    for h in HEADS:
        r = js["heads"][h]
        assert 0.0 <= r["test"]["miou"] <= 1.0 and "pixel_acc" in r["test"]
        assert r["cost"]["head_params"] > 0 and r["cost"]["head_gflops"] > 0 and r["cost"]["head_latency_ms"] > 0
        assert r["cost"]["image_size"] == [64, 64]
        assert [x for x in r["history"] if "loss" in x] and r["run_provenance"]["preset"] == "tiny"
    assert js["config"]["head"] == HEADS[-1]
    assert {"command", "commit", "device"} <= set(js["provenance"]) and js["provenance"]["preset"] == "tiny"
    assert js["provenance"]["device"].startswith("cpu")
    ex = prediction_examples(runs, HEADS, (0, 3, 999))
    assert len(ex["images"]) == 2 and ex["images"][0].shape == (64, 64, 3) and set(ex["predictions"]) == set(HEADS)
    assert ex["titles"]["ham"] == "HamNet (NMF)"


def test_cli_report_writes_json_and_figures(runs, tmp_path):
    assert main(["report", "--runs", str(runs), "--out", str(tmp_path / "out"), "--heads", *HEADS, "--name",
                 "tiny", "--size", "64", "64", "--repeats", "2", "--indices", "0", "3"]) == 0
    for f in ("tiny_curves.png", "tiny_predictions.png"):
        p = tmp_path / "out" / f
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000, f


def test_missing_run_folder_names_the_train_command(runs, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"attention.*python -m hamlib\.seg train .*--set head=attention"):
        make_report(runs, tmp_path / "out", ("fcn", "attention"))
    assert not (tmp_path / "out" / "camvid_cpu.json").exists()  # nothing half-written
    with pytest.raises(FileNotFoundError, match="nowhere.*python -m hamlib.seg train"):
        make_report(tmp_path / "nowhere", tmp_path / "out")


def test_missing_checkpoint_is_named(runs, tmp_path):
    import shutil
    shutil.copytree(runs / "fcn", tmp_path / "fcn")
    (tmp_path / "fcn" / "last.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"last\.pt is missing"):
        make_report(tmp_path, tmp_path / "out", ("fcn",))
