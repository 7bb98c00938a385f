"""hamlib.experiments.camvid_heads: the heads, training on a feature cache, evaluation, statistics, the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hamlib.experiments import camvid_heads as ch


def _fake_split(n: int, flips: bool, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, ch.NUM_CLASSES, (n, 24, 32), generator=g).to(torch.uint8)
    labels[:, :2] = ch.IGNORE
    blob = {"feats": torch.randn(n, ch.IN_CHANNELS, 3, 4, generator=g).half(), "labels": labels}
    if flips:
        blob["feats_flip"] = blob["feats"].flip(-1)
    return blob


@pytest.mark.parametrize("name", ch.HEADS + ch.GRAD_HEADS)
def test_every_head_maps_features_to_class_logits(name: str) -> None:
    if name == "linear":
        pytest.importorskip("hamlib.attention").LinearAttention2d
    head = ch.build_head(name, d=16, R=2).eval()
    with torch.no_grad():
        y = head(torch.randn(2, ch.IN_CHANNELS, 3, 4))
    assert y.shape == (2, ch.NUM_CLASSES, 3, 4) and torch.isfinite(y).all()


def test_grad_heads_differ_only_in_the_gradient() -> None:
    one, bptt = ch.build_head("ham-vq", 16, 2), ch.build_head("ham-vq-bptt", 16, 2)
    assert one.context.ham.grad == "one-step" and bptt.context.ham.grad == "bptt"
    assert [k for k, _ in one.named_parameters()] == [k for k, _ in bptt.named_parameters()]
    with pytest.raises(ValueError, match="head must be one of"):
        ch.build_head("ham-svd")


def test_training_is_seeded_and_evaluation_scores_every_class() -> None:
    train, test = _fake_split(6, True), _fake_split(3, False, seed=1)
    a = ch.train_head("ham-nmf", 3, train, iters=3, batch=2, d=16, R=2, loss_size=(12, 16))
    b = ch.train_head("ham-nmf", 3, train, iters=3, batch=2, d=16, R=2, loss_size=(12, 16))
    for (k, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), k
    scores = ch.evaluate_head(a, test)
    assert 0.0 <= scores["miou"] <= 1.0 and set(scores["iou"]) == set(ch.CLASSES)


def test_training_stats_leave_training_unchanged_and_count_implicit_backwards() -> None:
    train = _fake_split(6, True)
    kw = dict(iters=3, batch=2, d=16, R=2, loss_size=(12, 16))
    plain = ch.train_head("ham-nmf-implicit", 1, train, **kw)
    stats: dict = {}
    logged = ch.train_head("ham-nmf-implicit", 1, train, stats=stats, **kw)
    for (k, p), (_, q) in zip(plain.state_dict().items(), logged.state_dict().items()):
        assert torch.equal(p, q), k
    assert stats["implicit"]["backward_passes"] == 3 and len(stats["grad_norm"]["curve"]) == 1
    assert 0 < stats["grad_norm"]["median"] <= stats["grad_norm"]["max"]
    one: dict = {}
    ch.train_head("ham-nmf", 1, train, stats=one, **kw)
    assert one["implicit"]["backward_passes"] == 0


def test_summary_pairs_the_differences_by_seed() -> None:
    recs = [{"head": h, "seed": s, "test": {"miou": v}} for h, s, v in
            [("fcn", 0, 0.50), ("fcn", 1, 0.40), ("fcn", 2, 0.45),
             ("ham-nmf", 0, 0.52), ("ham-nmf", 1, 0.42), ("ham-nmf", 2, 0.47), ("ham-nmf", 3, 0.99)]]
    s = ch.summarise(recs)
    d = s["heads"]["ham-nmf"]["diff_vs_fcn"]
    assert d["n"] == 3 and d["mean"] == pytest.approx(0.02) and d["std"] == pytest.approx(0.0, abs=1e-12)
    assert "diff_vs_fcn" not in s["heads"]["fcn"]


def test_train_cli_resumes_and_summary_writes_costs(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    for split, n, flips in (("train", 4, True), ("val", 2, False), ("test", 2, False)):
        torch.save(_fake_split(n, flips), cache / f"{split}.pt")
    recs = tmp_path / "r.json"
    args = ["train", "--cache", str(cache), "--heads", "fcn", "ham-cd", "--seeds", "0", "1", "--iters", "2",
            "--records", str(recs)]
    assert ch.main(args) == 0
    first = json.loads(recs.read_text())["records"]
    assert sorted((r["head"], r["seed"]) for r in first) == [("fcn", 0), ("fcn", 1), ("ham-cd", 0), ("ham-cd", 1)]
    assert ch.main(args) == 0                                   # everything done: nothing is retrained
    assert json.loads(recs.read_text())["records"] == first
    assert all(r["train"]["implicit"]["backward_passes"] == 0 and r["train"]["grad_norm"]["max"] > 0 for r in first)
    out = tmp_path / "summary"
    assert ch.main(["summary", "--cache", str(cache), "--records", str(recs), "--out", str(out)]) == 0
    summ = json.loads((out / "summary.json").read_text())
    assert set(summ["cost"]) == {"fcn", "ham-cd"}
    assert [c["size"] for c in summ["cost"]["fcn"]["per_size"]][0] == [3, 4]
    assert summ["heads"]["ham-cd"]["diff_vs_fcn"]["n"] == 2
    # a busy machine reuses the earlier cost table instead of timing again, and says so
    out2 = tmp_path / "summary2"
    assert ch.main(["summary", "--cache", str(cache), "--records", str(recs), "--out", str(out2),
                    "--cost-from", str(out / "summary.json")]) == 0
    summ2 = json.loads((out2 / "summary.json").read_text())
    assert summ2["cost"] == summ["cost"] and "copied from" in summ2["protocol"]["cost"]
    out3 = tmp_path / "summary3"                                # copying the copy keeps naming the measurement
    assert ch.main(["summary", "--cache", str(cache), "--records", str(recs), "--out", str(out3),
                    "--cost-from", str(out2 / "summary.json")]) == 0
    summ3 = json.loads((out3 / "summary.json").read_text())
    assert summ3["cost"] == summ["cost"] and summ3["protocol"]["cost"] == summ2["protocol"]["cost"]
    assert summ["provenance"]["commit"][:10] in summ3["protocol"]["cost"]


def test_a_missing_cache_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="camvid_heads cache"):
        ch.load_split(tmp_path, "train")
