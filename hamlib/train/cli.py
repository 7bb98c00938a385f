"""The command-line flags every application shares, so ``python -m hamlib.seg train`` and ``python -m
hamlib.gan train`` read the same way::

    --preset NAME          a named recipe (choices listed)
    --set KEY=VALUE ...    override config fields (every field, its type and default are listed in --help)
    --run-dir DIR          the run folder (checkpoint, config.json, log.jsonl, metrics.json)
    --device cpu|cuda      default: CUDA when available
    --threads N            torch.set_num_threads
    --no-resume            start afresh in a folder that holds a run of another config
    --print-config         print the resolved config as JSON and exit
    --quiet                no progress bar

Bad values are argparse errors (usage + one line, exit status 2) raised before any work starts.
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Callable, Dict, Optional, Sequence

import torch

from .config import Config, Presets

__all__ = ["run_main", "positive_int", "nonneg_int", "positive_float", "add_config_args", "add_runtime_args", "add_run_args",
           "parse_sets", "config_from_args", "apply_runtime", "fields_epilog", "print_config", "run_errors", "fail",
           "new_parser", "add_command", "subparsers"]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return v


def nonneg_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0; got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0; got {text!r}")
    return v


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number; got {text!r}") from None
    if not (v > 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive finite number; got {text!r}")
    return v


def fields_epilog(cls: type, presets: Optional[Presets] = None) -> str:
    """The ``--help`` epilog: the presets and every config field with its type and default."""
    text = ""
    if presets is not None:
        text += f"presets:\n{presets.help()}\n\n"
    return text + f"config fields (--set KEY=VALUE):\n{cls.fields_help()}"


def add_config_args(p: argparse.ArgumentParser, presets: Presets, *, default: str) -> None:
    """``--preset`` (with choices) and ``--set KEY=VALUE ...``."""
    p.add_argument("--preset", default=default, choices=list(presets),
                   help=f"named recipe (default {default}); see the list below")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override config fields, e.g. --set iters=200 grad=bptt R=32 (fields listed below)")


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--threads``."""
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads(N)")


def add_run_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--run-dir``, ``--no-resume``, ``--print-config``, ``--quiet`` (and the runtime flags)."""
    from .run import RunDir
    p.add_argument("--run-dir", required=required, help=f"run folder: {RunDir.CHECKPOINT}, {RunDir.CONFIG}, "
                                                         f"{RunDir.LOG}, {RunDir.METRICS}")
    add_runtime_args(p)
    p.add_argument("--no-resume", action="store_true",
                   help="start afresh even if the run folder holds a run (of another config)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_sets(p: argparse.ArgumentParser, pairs: Sequence[str], cls: type) -> Dict[str, Any]:
    """``["iters=10", "grad=bptt"]`` -> ``{"iters": "10", "grad": "bptt"}``; unknown keys are argparse errors.

    Values stay strings: the config converts and validates them.
    """
    out: Dict[str, Any] = {}
    names = cls.field_names()
    for pair in pairs or []:
        if "=" not in pair:
            p.error(f"--set expects KEY=VALUE; got {pair!r}")
        k, v = pair.split("=", 1)
        k = k.strip()
        if k not in names:
            p.error(f"--set: unknown config field {k!r}; fields: {', '.join(names)}")
        out[k] = v
    return out


def config_from_args(p: argparse.ArgumentParser, args: argparse.Namespace, presets: Presets,
                     **fixed: Any) -> Config:
    """The preset with the ``--set`` overrides (and ``fixed`` ones) applied; invalid values are argparse errors."""
    kw = {**parse_sets(p, args.set, presets.cls), **fixed}
    try:
        return presets.make(args.preset, **kw)
    except ValueError as e:
        p.error(str(e))
        raise  # unreachable: p.error exits


def apply_runtime(p: argparse.ArgumentParser, args: argparse.Namespace) -> Optional[str]:
    """Apply ``--threads`` and check ``--device`` before any work; returns the device string (or None)."""
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    dev = getattr(args, "device", None)
    if dev is not None:
        try:
            d = torch.device(dev)
        except (RuntimeError, ValueError):
            p.error(f"--device must be cpu, cuda or cuda:N; got {dev!r}")
        if d.type not in ("cpu", "cuda"):
            p.error(f"--device must be cpu, cuda or cuda:N; got {dev!r}")
        if d.type == "cuda":
            if not torch.cuda.is_available():
                p.error(f"--device {dev}: CUDA is not available on this machine (torch {torch.__version__}, "
                        f"built {'with' if torch.version.cuda else 'without'} CUDA); use --device cpu")
            if d.index is not None and d.index >= torch.cuda.device_count():
                p.error(f"--device {dev}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def print_config(cfg: Config) -> None:
    """Print ``cfg`` as JSON (``--print-config``)."""
    print(json.dumps(cfg.to_dict(), indent=2))


def run_errors() -> tuple:
    """Exceptions a CLI turns into a one-line error with exit status 2 (no traceback)."""
    from .checkpoint import CheckpointError
    from .run import RunMismatchError
    # NotADirectoryError / FileExistsError / IsADirectoryError: a --run-dir or --out under a file, or a file.
    return (FileNotFoundError, PermissionError, NotADirectoryError, FileExistsError, IsADirectoryError,
            CheckpointError, RunMismatchError, ValueError)


def fail(p: argparse.ArgumentParser, e: BaseException) -> None:
    """Exit with ``prog: error: message`` (status 2), as argparse does for bad flags."""
    p.exit(2, f"{p.prog}: error: {e}\n")


def subparsers(p: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_command(sub: argparse._SubParsersAction, name: str, help: str, *, epilog: Optional[str] = None,
                description: Optional[str] = None) -> argparse.ArgumentParser:
    """A subcommand with help text (shown in the parent's list and in its own ``--help``)."""
    sp = sub.add_parser(name, help=help, description=description or help, epilog=epilog,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.set_defaults(_parser=sp)  # main() reports errors through the subcommand's own parser
    return sp


def run_main(ap: argparse.ArgumentParser, run: Callable[[argparse.ArgumentParser, argparse.Namespace,
                                                          Optional[str]], int], argv: Optional[Sequence[str]]) -> int:
    """The body of every application's ``main``: parse ``argv``, apply ``--device``/``--threads``, call
    ``run(subparser, args, device)``, and turn the expected errors into a one-line argparse error (exit 2)."""
    a = ap.parse_args(argv)
    sp = a._parser  # the subcommand's parser, for its error messages
    device = apply_runtime(sp, a)
    try:
        return run(sp, a, device)
    except run_errors() as e:
        fail(sp, e)
    except KeyboardInterrupt:  # Ctrl-C: the last checkpoint is intact; say how to continue instead of a traceback
        sp.exit(130, f"{sp.prog}: interrupted; run the same command again to resume from the last checkpoint\n")
    return 2
