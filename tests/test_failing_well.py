"""The cases a hostile-user campaign found after the first round of fixes: each is refused clearly, not answered
silently, not a traceback, and never runs code from a file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from hamlib import CD2D, NMF2D, VQ2D
from hamlib.gan.__main__ import main as gan_main
from hamlib.gan.config import GANConfig
from hamlib.seg.__main__ import main as seg_main
from hamlib.seg.config import SegConfig
from hamlib.train import cli
from hamlib.train.run import RunDir, RunMismatchError

ROOT = Path(__file__).resolve().parents[1]
TINY_SEG = ["--preset", "tiny", "--quiet", "--set", "iters=2", "eval_every=1", "ckpt_every=1", "synthetic_n=16",
            "synthetic_size=32", "crop=32,32"]


def _exit(fn, argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        fn(argv)
    return e.value.code, capsys.readouterr().err


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pretrained_file_is_refused_unrun(tmp_path, capsys):
    marker, evil = tmp_path / "PWNED", tmp_path / "evil.pt"
    torch.save({"a": _Evil(marker)}, evil)
    code, err = _exit(seg_main, ["train", "--run-dir", str(tmp_path / "r"), *TINY_SEG,
                                 "backbone=resnet18", f"pretrained={evil}"], capsys)
    assert code == 2 and "refused without running it" in err and "Traceback" not in err
    assert not marker.exists()


@pytest.mark.parametrize("M", [NMF2D, VQ2D, CD2D])
def test_subnormal_inputs_give_finite_equivariant_output(M):
    x = torch.rand(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    y1 = M(R=4, eval_seed=0).eval()(x)
    y = M(R=4, eval_seed=0).eval()(x * 1e-40)          # subnormal in float32: 2^133 would overflow
    assert torch.isfinite(y).all()
    assert float((y / 1e-40 - y1).abs().max() / y1.abs().max()) < 0.1


def test_edited_config_is_not_evaluated_with_other_weights(tmp_path, capsys):
    rd = tmp_path / "r"
    assert seg_main(["train", "--run-dir", str(rd), *TINY_SEG]) == 0
    cfg = json.loads((rd / "config.json").read_text())
    cfg["config"]["md"] = "vq"
    (rd / "config.json").write_text(json.dumps(cfg))
    code, err = _exit(seg_main, ["eval", "--run-dir", str(rd), "--split", "val"], capsys)
    assert code == 2 and "trained with another config" in err and "md" in err


def test_splits_a_data_set_does_not_have_are_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="val_split"):
        SegConfig(val_split="nope")
    with pytest.raises(ValueError, match="train_split"):
        SegConfig(dataset="camvid", num_classes=11, train_split="trainaug")
    rd = tmp_path / "r"
    assert seg_main(["train", "--run-dir", str(rd), *TINY_SEG]) == 0
    code, err = _exit(seg_main, ["eval", "--run-dir", str(rd), "--split", "trainaug"], capsys)
    assert code == 2 and "synthetic" in err


def test_a_second_process_cannot_train_in_a_busy_run_folder(tmp_path):
    rd = tmp_path / "r"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from hamlib.seg.config import SegConfig
        from hamlib.train.run import RunDir
        RunDir({str(rd)!r}).start(SegConfig())
        print("locked", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunMismatchError, match="another process is already running"):
            RunDir(rd).start(SegConfig())
    finally:
        holder.kill()
        holder.wait()
    RunDir(rd).start(SegConfig())  # the lock died with its process


def test_a_refused_run_without_checkpoint_does_not_block_the_folder(tmp_path):
    rd = RunDir(tmp_path / "r")
    rd.start(SegConfig(val_split="val"))
    assert not rd.has_checkpoint()
    RunDir(tmp_path / "r").start(SegConfig(lr=0.05))  # nothing was trained: the new config simply replaces it
    assert RunDir(tmp_path / "r").config(SegConfig).lr == 0.05


@pytest.mark.parametrize("app", ["seg", "gan"])
def test_run_folder_under_a_file_is_a_clear_error(app, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("hi")
    main = seg_main if app == "seg" else gan_main
    for rd in (f / "run", f):
        code, err = _exit(main, ["train", "--preset", "tiny", "--run-dir", str(rd), "--set", "iters=2"], capsys)
        assert code == 2 and "Traceback" not in err and str(f) in err


def test_report_out_under_a_file_is_a_clear_error(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("hi")
    code, err = _exit(gan_main, ["report", str(tmp_path / "missing-run"), "--out", str(f / "rep")], capsys)
    assert code == 2 and "Traceback" not in err


def test_eval_scales_that_leave_no_pixels_are_refused(tmp_path, capsys):
    rd = tmp_path / "r"
    assert seg_main(["train", "--run-dir", str(rd), *TINY_SEG]) == 0
    code, err = _exit(seg_main, ["eval", "--run-dir", str(rd), "--split", "val", "--scales", "1e-6"], capsys)
    assert code == 2 and "scale" in err


def test_adam_betas_are_checked_in_the_config():
    with pytest.raises(ValueError, match="betas"):
        GANConfig(betas=(1.5, 0.9))


def test_ctrl_c_is_a_short_message_not_a_traceback(capsys):
    def run(sp, a, device):
        raise KeyboardInterrupt

    from hamlib.seg.__main__ import parser
    with pytest.raises(SystemExit) as e:
        cli.run_main(parser(), run, ["cost", "--size", "8", "8"])
    assert e.value.code == 130 and "resume" in capsys.readouterr().err
