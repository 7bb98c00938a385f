"""hamlib.train.config and hamlib.train.run: validated configs, presets, the run folder and its resume rule."""
from dataclasses import FrozenInstanceError, dataclass
from typing import Optional, Tuple

import pytest
import torch

from hamlib.train import Config, HamConfig, HamOptions, Presets, RunDir, RunMismatchError, field


@dataclass(frozen=True)
class Toy(HamConfig):
    iters: int = field(10, "iterations", minimum=1)
    lr: float = field(0.1, "learning rate", above=0)
    crop: Tuple[int, int] = field((4, 4), "crop")
    root: Optional[str] = field(None, "data folder", runtime=True)
    amp: bool = field(False, "mixed precision")


def test_validation_names_field_expected_and_received():
    c = Toy()
    for bad, msg in [({"iters": "abc"}, "iters must be an integer; got 'abc'"), ({"iters": 0}, "iters must be >= 1"),
                     ({"iters": -5}, "iters must be >= 1; got -5"), ({"lr": 0}, "lr must be > 0"),
                     ({"lr": "inf"}, "lr must be finite"), ({"amp": "maybe"}, "amp must be true or false"),
                     ({"crop": (1, 2, 3)}, "crop must have 2 values"), ({"md": "svd"}, "md must be one of"),
                     ({"grad": "implicit-ish"}, "grad must be one of"), ({"R": 0}, "R must be >= 1"),
                     ({"inv_t": 2.0}, "inv_t applies to md='vq' and md='cd' only"),
                     ({"nope": 1}, r"unknown config field\(s\) \['nope'\].*valid fields: md, S, R")]:
        with pytest.raises(ValueError, match=msg):
            c.replace(**bad)
    with pytest.raises(FrozenInstanceError):
        c.iters = 3


def test_strings_are_converted_and_dict_round_trip():
    c = Toy().replace(iters="7", lr="0.5", crop="8,6", amp="true", root="none", md="vq", inv_t="20", grad="bptt")
    assert (c.iters, c.lr, c.crop, c.amp, c.root, c.inv_t) == (7, 0.5, (8, 6), True, None, 20.0)
    d = c.to_dict()
    assert d["crop"] == [8, 6] and Toy.from_dict(d) == c
    with pytest.raises(ValueError, match="unknown config field"):
        Toy.from_dict({**d, "extra": 1})
    assert c.ham() == HamOptions(md="vq", R=16, grad="bptt", inv_t=20.0)
    assert c.ham().kwargs() == dict(S=1, R=16, train_steps=6, eval_steps=7, grad="bptt", eval_seed=0, inv_t=20.0)
    assert "iters (int, default 10): iterations" in Toy.fields_help() and Toy.runtime_fields() == ("root",)


def test_presets():
    P = Presets(Toy, {"tiny": (Toy(iters=2), "two iterations")})
    assert P.make("tiny", lr=0.2) == Toy(iters=2, lr=0.2) and list(P) == ["tiny"] and "two iterations" in P.help()
    with pytest.raises(ValueError, match=r"preset must be one of \('tiny',\)"):
        P.make("huge")
    with pytest.raises(TypeError):
        Presets(Toy, {"x": (Config(), "")})


def test_run_dir_layout_resume_rule_and_log(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.start(Toy()) is False and run.config(Toy) == Toy()
    assert run.config() == Toy().to_dict()  # without the class: the plain dict, no torch.load
    m = torch.nn.Linear(2, 2)
    for s in (1, 2, 3):
        run.log({"step": s, "loss": 1.0 / s})
    run.save(2, models={"m": m})
    run.log({"step": 4, "loss": 0.2})
    (run.path / ".last.pt.abc.tmp").write_bytes(b"orphan of a killed write")
    assert run.start(Toy(root="elsewhere")) is True  # a runtime field may change
    assert not list(run.path.glob(".*.tmp"))          # orphans removed
    assert run.load(models={"m": torch.nn.Linear(2, 2)})["step"] == 2
    assert [r["step"] for r in run.history()] == [1, 2]  # lines after the checkpoint are dropped
    with pytest.raises(RunMismatchError, match="iters: run has 10, asked for 11"):
        run.start(Toy(iters=11))
    assert run.start(Toy(iters=11), resume=False) is False and not run.checkpoint.exists()
    assert run.history() == [] and run.config(Toy).iters == 11
    run.write_metrics({"a": 1})
    assert run.metrics() == {"a": 1} and run.metrics_path.stat().st_mode & 0o777 == 0o644


def test_run_dir_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no run"):
        RunDir(tmp_path).config()
    run = RunDir(tmp_path / "r")
    run.start(Toy())
    with pytest.raises(RunMismatchError, match="holds a Toy run"):
        run.config(HamConfig)


def test_export_weights_loads_weights_only(tmp_path):
    run = RunDir(tmp_path)
    m = torch.nn.Linear(3, 2)
    p = run.export_weights({"m": m}, cfg=Toy(), meta={"acc": 0.5})
    w = torch.load(p, weights_only=True)
    assert torch.equal(w["models"]["m"]["weight"], m.weight) and w["config"] == Toy().to_dict()
    assert RunDir.read_weights(p)["meta"] == {"acc": 0.5} and p.stat().st_mode & 0o777 == 0o644
