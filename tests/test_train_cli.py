"""The shared command line of hamlib.seg and hamlib.gan: same flags, every field in --help, --set for the ham
options, bad values refused before any work, and crafted checkpoints refused in every CLI path."""
import os
import re

import pytest
import torch

from hamlib.gan.__main__ import main as gan_main
from hamlib.gan.__main__ import parser as gan_parser
from hamlib.gan.config import ClassifierConfig, GANConfig
from hamlib.seg.__main__ import main as seg_main
from hamlib.seg.__main__ import parser as seg_parser
from hamlib.seg.config import SegConfig

HAM = ("md", "S", "R", "train_steps", "eval_steps", "grad", "inv_t", "beta", "eval_seed")


def _help(parser, cmd):
    sub = parser()._subparsers._group_actions[0].choices[cmd]
    return sub.format_help()


def _flags(text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", text.split("presets:")[0]))


def test_train_help_same_flags_and_every_field():
    seg, gan = _help(seg_parser, "train"), _help(gan_parser, "train")
    assert _flags(seg) == _flags(gan) == {"--help", "--preset", "--set", "--run-dir", "--device", "--threads",
                                          "--no-resume", "--print-config", "--quiet"}
    for cls, text in ((SegConfig, seg), (GANConfig, gan)):
        for name in cls.field_names():
            assert f"\n  {name} (" in text, name
    for name in HAM:  # one spelling of the ham options in both applications
        assert name in SegConfig.field_names() and name in GANConfig.field_names()
    for name in ("iters", "batch_size", "seed", "eval_every", "ckpt_every", "log_every", "data_root", "download"):
        assert name in SegConfig.field_names() and name in GANConfig.field_names()
    assert all(_help(p, c) for p, c in ((seg_parser, "eval"), (seg_parser, "cost"), (seg_parser, "report"),
                                        (gan_parser, "classifier"), (gan_parser, "report")))
    for p in (seg_parser(), gan_parser()):  # every subcommand has a help line
        assert all(a.help for a in p._subparsers._group_actions[0]._choices_actions)


@pytest.mark.parametrize("main", [seg_main, gan_main], ids=["seg", "gan"])
def test_set_grad_bptt_reaches_the_model(main, tmp_path, capsys):
    assert main(["train", "--run-dir", str(tmp_path), "--set", "grad=bptt", "R=4", "md=vq", "--print-config"]) == 0
    cfg = __import__("json").loads(capsys.readouterr().out)
    assert (cfg["grad"], cfg["R"], cfg["md"]) == ("bptt", 4, "vq")
    assert not tmp_path.joinpath("config.json").exists()  # --print-config does no work


def test_set_grad_bptt_trains_both(tmp_path):
    assert seg_main(["train", "--run-dir", str(tmp_path / "s"), "--quiet", "--threads", "1", "--set", "grad=bptt",
                     "iters=1", "synthetic_n=8", "batch_size=4", "eval_every=1", "ckpt_every=1", "test_split=none"]) == 0
    assert gan_main(["train", "--run-dir", str(tmp_path / "g"), "--quiet", "--threads", "1", "--set", "grad=bptt",
                     "iters=1", "n_train=16", "batch_size=4", "g_ch=8", "d_ch=8", "z_dim=8", "n_eval=8"]) == 0
    from hamlib.gan.models import from_config as gan_model
    from hamlib.seg.model import from_config as seg_model
    from hamlib.train import RunDir
    assert seg_model(RunDir(tmp_path / "s").config(SegConfig)).head.context.ham.grad == "bptt"
    G, D = gan_model(RunDir(tmp_path / "g").config(GANConfig))
    assert G.context.ham.grad == D.context.ham.grad == "bptt"


BAD = [(["--set", "iters=abc"], "iters must be an integer; got 'abc'"), (["--set", "iters=0"], "iters must be >= 1"),
       (["--set", "iters=-5"], "iters must be >= 1; got -5"), (["--set", "batch_size=0"], "batch_size must be >= 1"),
       (["--set", "eval_every=0"], "eval_every must be >= 1"), (["--set", "ckpt_every=0"], "ckpt_every must be >= 1"),
       (["--set", "grad=nope"], "grad must be one of"), (["--set", "iters"], "--set expects KEY=VALUE"),
       (["--set", "steps=5"], "unknown config field 'steps'"), (["--threads", "0"], "expected a positive integer"),
       (["--preset", "huge"], "invalid choice: 'huge'")]


@pytest.mark.parametrize("main", [seg_main, gan_main], ids=["seg", "gan"])
@pytest.mark.parametrize("args,msg", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_values_are_argparse_errors_before_any_work(main, args, msg, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--run-dir", str(tmp_path / "run"), *args])
    assert e.value.code == 2 and msg in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_other_bad_values(tmp_path, capsys, monkeypatch):
    cases = [(seg_main, ["eval", "--run-dir", str(tmp_path), "--split", "nope"], "invalid choice: 'nope'"),
             (seg_main, ["eval", "--run-dir", str(tmp_path), "--scales", "0"], "expected a positive finite number"),
             (seg_main, ["cost", "--size", "0", "0"], "expected a positive integer"),
             (gan_main, ["classifier", "--run-dir", str(tmp_path), "--set", "iters=-5"], "iters must be >= 1"),
             (seg_main, ["eval", "--run-dir", str(tmp_path / "none")], "holds no run"),
             (gan_main, ["report", str(tmp_path / "none"), "--out", str(tmp_path / "o")], "has the run started")]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cases += [(m, ["train", "--run-dir", str(tmp_path / "x"), "--device", "cuda"], "CUDA is not available")
              for m in (seg_main, gan_main)]
    for main, args, msg in cases:
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2 and msg in capsys.readouterr().err, args


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _plant(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "hamlib-checkpoint-v2", "models": {"model": _Evil(marker)}, "step": 1,
                "extra": {"x": _Evil(marker)}}, path)


def test_malicious_checkpoint_runs_nothing_in_any_cli_path(tmp_path, capsys):
    marker = str(tmp_path / "PWNED")
    small = ["--quiet", "--threads", "1"]
    seg_set = ["--set", "iters=1", "synthetic_n=8", "batch_size=4"]
    gan_set = ["--set", "iters=1", "n_train=16", "batch_size=4", "g_ch=8", "d_ch=8", "z_dim=8", "n_eval=8"]
    clf_set = ["--preset", "tiny", "--set", "iters=1"]
    from hamlib.train import RunDir, write_json

    def folder(name, cfg):  # a run folder whose config matches the command, with a crafted last.pt
        run = RunDir(tmp_path / name)
        write_json(run.config_path, {"kind": type(cfg).__name__, "config": cfg.to_dict()})
        _plant(run.checkpoint, marker)
        return str(run.path)

    seg_cfg = SegConfig().replace(iters=1, synthetic_n=8, batch_size=4)
    from hamlib.gan.config import CLASSIFIER_PRESETS, PRESETS
    gan_cfg = PRESETS.make("tiny", n_train=16, g_ch=8, d_ch=8, z_dim=8, batch_size=4, iters=1, n_eval=8)
    evil_weights = tmp_path / "clf" / "weights.pt"
    _plant(evil_weights, marker)
    paths = [
        (seg_main, ["train", "--run-dir", folder("seg", seg_cfg), *small, *seg_set]),
        (seg_main, ["eval", "--run-dir", folder("seg-eval", seg_cfg)]),
        (gan_main, ["train", "--run-dir", folder("gan", gan_cfg), *small, *gan_set]),
        (gan_main, ["train", "--run-dir", str(tmp_path / "gan2"), *small, *gan_set, f"classifier={evil_weights}"]),
        (gan_main, ["train", "--run-dir", str(tmp_path / "gan3"), *small, *gan_set,
                    f"classifier={evil_weights.parent}"]),
        (gan_main, ["report", folder("gan-report", gan_cfg), "--out", str(tmp_path / "out")]),
        (gan_main, ["classifier", "--run-dir", folder("clf-run", CLASSIFIER_PRESETS.make("tiny", iters=1)), *small,
                    *clf_set]),
    ]
    for main, args in paths:
        with pytest.raises(SystemExit) as e:
            main(args)
        err = capsys.readouterr().err
        assert e.value.code == 2 and ("would run code" in err or "refused without running it" in err), (args, err)
        assert not os.path.exists(marker), args


def test_chance_level_classifier_is_refused(tmp_path):
    from hamlib.gan.classifier import FeatureClassifier, load_classifier
    from hamlib.train import RunDir
    run = RunDir(tmp_path)
    run.export_weights({"model": FeatureClassifier(4, 10)}, cfg=ClassifierConfig(width=4),
                       meta={"width": 4, "num_classes": 10, "test_accuracy": 0.1, "usable": False})
    with pytest.raises(ValueError, match="cannot tell the classes apart"):
        load_classifier(tmp_path)
    assert isinstance(load_classifier(tmp_path, allow_unusable=True), FeatureClassifier)


def test_classifier_trains_in_a_run_folder_and_flags_chance_level(tmp_path, monkeypatch):
    import sys
    from hamlib.gan.classifier import train_classifier
    monkeypatch.setattr(sys.modules["hamlib.gan.classifier"], "evaluate_classifier", lambda *a, **k: 0.25)
    from hamlib.gan.data import synthetic_shapes, to_tensor
    x, y = synthetic_shapes(64, seed=0)
    x, y = to_tensor(x), torch.from_numpy(y)
    cfg = ClassifierConfig(width=4, iters=2, batch_size=8, ckpt_every=1, log_every=1)
    with pytest.warns(RuntimeWarning, match="unusable"):  # 4 classes, 2 iterations: at chance
        _, m = train_classifier(cfg, tmp_path, (x, y, x, y), progress=False)
    assert m["usable"] is False and RunDir_has(tmp_path)


def RunDir_has(path):
    return all((path / f).is_file() for f in ("config.json", "last.pt", "log.jsonl", "metrics.json", "weights.pt"))


def test_seg_eval_cost_and_corrupt_checkpoints(tmp_path, capsys):
    run = tmp_path / "run"
    assert seg_main(["train", "--run-dir", str(run), "--quiet", "--threads", "1", "--set", "iters=1", "synthetic_n=8",
                     "batch_size=4", "test_split=none"]) == 0
    assert seg_main(["eval", "--run-dir", str(run), "--split", "val", "--scales", "1", "--flip"]) == 0
    rec = __import__("json").loads((run / "eval_val.json").read_text())
    assert 0 <= rec["miou"] <= 1 and rec["config"]["iters"] == 1   # scored with the run's own config
    with pytest.raises(SystemExit) as e:
        seg_main(["eval", "--run-dir", str(run), "--set", "md=vq"])  # the model's fields come from the run
    assert e.value.code == 2 and "eval uses the run's own config" in capsys.readouterr().err
    assert seg_main(["cost", "--size", "32", "32", "--heads", "fcn", "ham"]) == 0
    assert "head GFLOPs" in capsys.readouterr().out
    for content, msg in ((b"garbage", "truncated, corrupt or not a torch file"), (None, "not a hamlib checkpoint")):
        if content is None:
            torch.save({"width": 3}, run / "last.pt")
        else:
            (run / "last.pt").write_bytes(content)
        for args in (["eval", "--run-dir", str(run)],
                     ["train", "--run-dir", str(run), "--set", "iters=1", "synthetic_n=8", "batch_size=4",
                      "test_split=none"]):
            with pytest.raises(SystemExit) as e:
                seg_main(args)
            assert e.value.code == 2 and msg in capsys.readouterr().err, (args, msg)
