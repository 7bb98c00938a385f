"""HamGAN training loop: exact resume, determinism, evaluation RNG isolation, artefacts with provenance, CLI."""
import json

import pytest
import torch

from hamlib.gan.__main__ import main
from hamlib.gan.config import get_preset
from hamlib.gan.models import from_config
from hamlib.gan.train import eval_rng, train
from hamlib.measure import saved_tensor_bytes
from hamlib.train import RunMismatchError, read_checkpoint

CFG = get_preset("tiny", data="shapes", n_train=64, g_ch=8, d_ch=8, z_dim=8, batch_size=4, iters=4,
                 eval_every=2, ckpt_every=2, log_every=1, n_eval=16)


def _state(path):
    return read_checkpoint(path / "last.pt")["models"]


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_interrupted_and_resumed_run_is_identical(tmp_path):
    torch.set_num_threads(1)
    full = train(CFG, tmp_path / "full", progress=False)
    assert train(CFG.replace(ckpt_every=2), tmp_path / "cut", progress=False, stop_after=3) == {"stopped_at": 3}
    assert read_checkpoint(tmp_path / "cut" / "last.pt")["step"] == 2   # killed after step 3, checkpoint at 2
    resumed = train(CFG, tmp_path / "cut", progress=False)
    m1, m2 = _state(tmp_path / "full"), _state(tmp_path / "cut")
    for k in ("G", "D", "ema"):
        _assert_same(m1[k], m2[k])
    assert full["history"] == resumed["history"] and full["evals"] == resumed["evals"]


def test_evaluation_does_not_shift_training_rng(tmp_path):
    """Training with an evaluation at every step ends with the same weights as with one evaluation at the end."""
    a = train(CFG.replace(eval_every=1), tmp_path / "a", progress=False)
    b = train(CFG.replace(eval_every=100), tmp_path / "b", progress=False)
    _assert_same(_state(tmp_path / "a")["G"], _state(tmp_path / "b")["G"])
    assert a["history"] == b["history"]


def test_eval_rng_restores_and_reseeds():
    torch.manual_seed(5)
    with eval_rng(torch.device("cpu"), 7):
        inside = torch.rand(3)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(3), after)          # training's stream continues as if nothing happened
    torch.manual_seed(7)
    assert torch.equal(torch.rand(3), inside)         # evaluation draws from its own seed


def test_ham_evaluates_with_fixed_bases():
    G, _ = from_config(CFG)
    G.eval()
    z, y = G.sample(4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(G(z, y), G(z, y), rtol=0, atol=0)


def test_seed_changes_weights(tmp_path):
    cfg = CFG.replace(iters=1, eval_every=1, context="none")
    train(cfg, tmp_path / "a", progress=False)
    train(cfg.replace(seed=1), tmp_path / "b", progress=False)
    assert not torch.equal(_state(tmp_path / "a")["G"]["linear.bias"], _state(tmp_path / "b")["G"]["linear.bias"])


def test_artefacts_and_config_mismatch(tmp_path):
    cfg = CFG.replace(iters=2, context="attention")
    res = train(cfg, tmp_path, progress=False)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["iters"] == 2 and m["provenance"]["device"] and "commit" in m["provenance"]
    assert m["memory"]["saved_tensor_bytes_G_step"] > 0 and res["sec_per_iter"] > 0
    assert m["memory"]["peak_rss_bytes_process"] > 0
    assert "classifier_fid" in m["skipped"]  # a metric that was not computed says so, with the reason
    assert (tmp_path / "samples" / "samples_000002.png").is_file()
    w = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert set(w["models"]) == {"G", "ema"} and w["config"]["context"] == "attention"
    with pytest.raises(RunMismatchError, match="context: run has 'attention', asked for 'ham'"):
        train(cfg.replace(context="ham"), tmp_path, progress=False)


def test_missing_data_is_an_error_not_synthetic(tmp_path):
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not found"):
        train(CFG.replace(data="cifar10", data_root=str(tmp_path / "nothing")), tmp_path / "run", progress=False)


def test_inception_skip_is_recorded(tmp_path, monkeypatch):
    import sys
    monkeypatch.setattr(sys.modules["hamlib.gan.train"], "inception_fid", lambda fn, n: {"skipped": "torch-fidelity is not installed"})
    with pytest.warns(RuntimeWarning, match="Inception FID skipped"):
        res = train(CFG.replace(iters=1, inception=True), tmp_path, progress=False)
    assert res["skipped"]["inception_fid"] == "torch-fidelity is not installed"
    assert json.loads((tmp_path / "metrics.json").read_text())["skipped"]["inception_fid"]


def test_inception_fid_generates_in_batches_without_grad(monkeypatch):
    import sys
    import types
    from hamlib.gan.fid import inception_fid
    seen = []

    def calc(input1, **kw):
        seen.append([input1[i] for i in range(len(input1))])
        return {"frechet_inception_distance": 1.0, "inception_score_mean": 2.0}
    monkeypatch.setitem(sys.modules, "torch_fidelity", types.SimpleNamespace(calculate_metrics=calc))
    calls = []

    def gen(b):
        calls.append((b, torch.is_grad_enabled()))
        return torch.zeros(b, 3, 32, 32, requires_grad=True)
    out = inception_fid(gen, 10, batch_size=4)
    assert out["inception_fid"] == 1.0 and calls == [(4, False), (4, False), (2, False)]
    assert all(x.dtype == torch.uint8 and x.device.type == "cpu" for x in seen[0]) and len(seen[0]) == 10


def test_attention_saves_more_than_none():
    sizes = {}
    for c in ("none", "attention"):
        G, D = from_config(get_preset("tiny", context=c))
        with saved_tensor_bytes() as s:
            D(G(*G.sample(4)), torch.zeros(4, dtype=torch.long))
        sizes[c] = s.bytes
    assert sizes["attention"] > sizes["none"]


def test_cli_tiny_on_shapes(tmp_path, capsys):
    assert main(["train", "--preset", "tiny", "--set", "iters=2", "context=ham", "--run-dir", str(tmp_path),
                 "--threads", "1", "--quiet"]) == 0
    assert "'context': 'ham'" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["train", "--preset", "huge", "--run-dir", str(tmp_path)])
    assert e.value.code == 2 and "invalid choice: 'huge'" in capsys.readouterr().err
