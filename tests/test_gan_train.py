"""HamGAN training loop: exact resume, determinism, artefacts with provenance, CLI on synthetic data."""
import json

import pytest
import torch

from hamlib.gan.__main__ import main
from hamlib.gan.presets import get_preset
from hamlib.gan.train import build_models, train_gan

CFG = get_preset("tiny", data="shapes", n_train=64, g_ch=8, d_ch=8, z_dim=8, batch_size=4, steps=4,
                 eval_every=2, ckpt_every=2, log_every=1, n_eval=16)


def _state(path):
    ck = torch.load(path / "last.pt", weights_only=False)
    return ck["model"], ck["modules"]


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_interrupted_and_resumed_run_is_identical(tmp_path):
    torch.set_num_threads(1)
    full = train_gan(CFG, "hamburger", tmp_path / "full", progress=False)
    train_gan(get_preset("tiny", **{**CFG.to_dict(), "steps": 2}), "hamburger", tmp_path / "cut", progress=False)
    # the 2-step run wrote its checkpoint with steps=2; rewrite its config to continue as the 4-step run
    ck = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    ck["extra"]["config"] = CFG.to_dict()
    torch.save(ck, tmp_path / "cut" / "last.pt")
    resumed = train_gan(CFG, "hamburger", tmp_path / "cut", progress=False)
    g1, m1 = _state(tmp_path / "full")
    g2, m2 = _state(tmp_path / "cut")
    _assert_same(g1, g2)
    _assert_same(m1["D"], m2["D"])
    _assert_same(m1["ema"], m2["ema"])
    assert full["history"] == resumed["history"]


def test_seed_changes_weights(tmp_path):
    cfg = get_preset("tiny", **{**CFG.to_dict(), "steps": 1, "eval_every": 1})
    train_gan(cfg, "none", tmp_path / "a", progress=False)
    train_gan(get_preset("tiny", **{**cfg.to_dict(), "seed": 1}), "none", tmp_path / "b", progress=False)
    assert not torch.equal(_state(tmp_path / "a")[0]["linear.bias"], _state(tmp_path / "b")[0]["linear.bias"])


def test_artefacts_and_config_mismatch(tmp_path):
    cfg = get_preset("tiny", **{**CFG.to_dict(), "steps": 2})
    res = train_gan(cfg, "attention", tmp_path, progress=False)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["steps"] == 2 and m["provenance"]["device"] and "commit" in m["provenance"]
    assert m["memory"]["saved_tensor_bytes_G_step"] > 0 and res["sec_per_step"] > 0
    assert (tmp_path / "samples_000002.png").is_file()
    with pytest.raises(ValueError, match="another config"):
        train_gan(cfg, "hamburger", tmp_path, progress=False)


def test_attention_saves_more_than_none():
    cfg = get_preset("tiny", g_ch=16, d_ch=16)
    from hamlib.gan.train import saved_tensor_bytes
    sizes = {}
    for c in ("none", "attention"):
        G, D = build_models(cfg, c)
        with saved_tensor_bytes() as s:
            D(G(*G.sample(4)), torch.zeros(4, dtype=torch.long))
        sizes[c] = s.bytes
    assert sizes["attention"] > sizes["none"]


def test_cli_tiny_on_shapes(tmp_path, capsys):
    assert main(["train", "--preset", "tiny", "--data", "shapes", "--steps", "2", "--context", "hamburger",
                 "--out", str(tmp_path), "--threads", "1"]) == 0
    assert "hamburger" in capsys.readouterr().out
    with pytest.raises(ValueError, match="preset"):
        main(["train", "--preset", "huge", "--out", str(tmp_path)])
