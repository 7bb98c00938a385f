"""HamGAN over seeds (hamlib.gan.study) and the MNIST classifier-FID pieces it relies on."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hamlib.gan import study
from hamlib.gan.config import CLASSIFIER_PRESETS, ClassifierConfig, get_preset
from hamlib.train.provenance import write_json

MNIST = Path(os.environ.get("HAMLIB_DATA", "data")) / "mnist"


def _run(folder: Path, context: str, seed: int, fids, **cfg_changes) -> Path:
    """A finished run folder as the trainer leaves it (config.json + metrics.json), with given FIDs per eval."""
    cfg = get_preset("mnist-cpu", context=context, seed=seed, **cfg_changes).to_dict()
    folder.mkdir(parents=True)
    write_json(folder / "config.json", {"kind": "GANConfig", "config": cfg})
    evals = [{"step": 250 * (i + 1), "classifier_fid": f, "gate_G": None if context == "none" else 0.01 * i,
              "gate_D": None if context == "none" else -0.01 * i} for i, f in enumerate(fids)]
    write_json(folder / "metrics.json", {
        "context": context, "iters": 250 * len(fids), "config": cfg, "sec_per_iter": 0.2 + 0.01 * seed,
        "train_wall_s": 60.0, "params_G": 1000, "params_D": 900, "memory": {}, "history": [], "evals": evals,
        "provenance": {"command": "test", "commit": "abc", "device": "cpu", "date": "2026-11-26", "wall_time_s": 60.0}})
    (folder / "samples").mkdir()
    (folder / "samples" / f"samples_{250 * len(fids):06d}.png").write_bytes(b"png")
    return folder


FINAL = {"none": [5.0, 6.0, 5.5], "attention": [4.0, 5.0, 4.8], "ham": [3.0, 3.5, 3.2]}


@pytest.fixture
def runs(tmp_path):
    return [_run(tmp_path / f"{c}-{s}", c, s, [9.0, v]) for c, vals in FINAL.items() for s, v in enumerate(vals)]


def test_summary_statistics_are_paired_by_seed(runs):
    s = study.summarise_seeds(study.collect_seeds(runs))
    assert list(s["contexts"]) == ["none", "attention", "ham"]
    for c, vals in FINAL.items():
        f = s["contexts"][c]["final_fid"]
        assert f["n"] == 3 and f["mean"] == pytest.approx(sum(vals) / 3)
        assert f["ci95"][0] < f["mean"] < f["ci95"][1]
    d = s["diffs"]["ham-none"]
    assert d["mean"] == pytest.approx(sum(h - n for h, n in zip(FINAL["ham"], FINAL["none"])) / 3)
    assert d["ci95"][1] < 0                                   # the Hamburger is lower (better) on every seed
    assert set(s["diffs"]) == {"ham-none", "ham-attention", "attention-none"}


def test_make_study_writes_the_artefacts(runs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "samples_ham_worst_seed2.png").write_bytes(b"stale")        # left by an earlier study
    s = study.make_study(runs, out, label="test scale")
    saved = json.loads((out / "summary.json").read_text())
    assert saved["label"] == "test scale" and len(saved["records"]) == 9 and "provenance" in saved
    assert saved["config"]["data"] == "mnist" and "context" not in saved["config"]
    assert sorted(p.name for p in out.glob("samples_*.png")) == [
        "samples_attention.png", "samples_attention_worst_seed1.png", "samples_ham.png", "samples_ham_worst_seed1.png",
        "samples_none.png", "samples_none_worst_seed1.png"]          # seed 0, and each context's worst seed
    from hamlib.viz.reports import gan_seed_curves
    fig = gan_seed_curves(s, out / "curves.png")
    assert (out / "curves.png").stat().st_size > 0 and fig is not None


def test_runs_that_differ_in_more_than_context_and_seed_are_refused(tmp_path):
    a = _run(tmp_path / "a", "ham", 0, [3.0])
    b = _run(tmp_path / "b", "none", 0, [4.0], g_ch=32)
    with pytest.raises(ValueError, match="g_ch"):
        study.collect_seeds([a, b])


def test_a_repeated_context_and_seed_is_refused(tmp_path):
    a = _run(tmp_path / "a", "ham", 0, [3.0])
    b = _run(tmp_path / "b", "ham", 0, [4.0])
    with pytest.raises(ValueError, match="once"):
        study.collect_seeds([a, b])


def test_cli_study(runs, tmp_path, capsys):
    from hamlib.gan.__main__ import main
    assert main(["study", *map(str, runs), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "ham-none" in out and "final classifier-FID" in out
    assert (tmp_path / "o" / "curves.png").is_file()


def test_mnist_presets():
    cfg = get_preset("mnist-cpu")
    assert cfg.data == "mnist" and cfg.iters >= 1000
    c = CLASSIFIER_PRESETS.make("mnist")
    assert c.data == "mnist"
    with pytest.raises(ValueError, match="data"):
        ClassifierConfig(data="svhn")


@pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").is_file(), reason="MNIST test set not available")
def test_mnist_classifier_split_is_disjoint_and_fixed():
    from hamlib.gan.classifier import MNIST_HELD_OUT, classifier_data
    root = str(MNIST.parent)
    x, y, xt, yt = classifier_data(ClassifierConfig(data="mnist", data_root=root))
    assert len(xt) == MNIST_HELD_OUT and len(x) + len(xt) == 10_000 and x.shape[1:] == (3, 32, 32)
    x2, _, xt2, _ = classifier_data(ClassifierConfig(data="mnist", data_root=root))
    assert (xt2 == xt).all() and (x2 == x).all()
    assert set(y.unique().tolist()) == set(range(10)) == set(yt.unique().tolist())


@pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").is_file(), reason="MNIST test set not available")
def test_mnist_floor_refuses_overlapping_samples(tmp_path):
    from hamlib.gan.report import real_fid_floor
    with pytest.raises(ValueError, match="at most 5000"):
        real_fid_floor(tmp_path / "none", 6000, str(MNIST.parent), data="mnist")
