"""Command line for HamGAN (Geng et al., ICLR 2021, arXiv 2109.04553).

Examples::

    python -m hamlib.gan classifier --run-dir runs/hamgan/classifier      # the offline classifier-FID network
    python -m hamlib.gan train --preset tiny --run-dir runs/hamgan/tiny-ham
    python -m hamlib.gan train --preset tiny --run-dir runs/hamgan/tiny-bptt --set grad=bptt R=4
    python -m hamlib.gan train --preset cifar10 --run-dir runs/hamgan/sa --set context=attention \\
        classifier=runs/hamgan/classifier
    python -m hamlib.gan report runs/hamgan/sa runs/hamgan/ham --out book/results/hamgan \\
        --classifier runs/hamgan/classifier
    python -m hamlib.gan study runs/hamgan-mnist/{ham,attention,none}-{0,1,2} --out book/results/hamgan \\
        --classifier runs/hamgan-mnist/classifier             # several seeds per context, with intervals

A run folder resumes when the same command is run again; another config there is refused (--no-resume).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

from ..train import cli
from .config import CLASSIFIER_PRESETS, PRESETS, ClassifierConfig, GANConfig

__all__ = ["main", "parser"]


def parser():
    """The argument parser of ``python -m hamlib.gan``."""
    ap = cli.new_parser("python -m hamlib.gan", __doc__)
    sub = cli.subparsers(ap)
    t = cli.add_command(sub, "train", "train (or resume) a HamGAN run in a run folder",
                        epilog=cli.fields_epilog(GANConfig, PRESETS))
    cli.add_config_args(t, PRESETS, default="tiny")
    cli.add_run_args(t)
    c = cli.add_command(sub, "classifier", "train the feature classifier of the offline classifier-FID (CIFAR-10 or MNIST)",
                        epilog=cli.fields_epilog(ClassifierConfig, CLASSIFIER_PRESETS))
    cli.add_config_args(c, CLASSIFIER_PRESETS, default="default")
    cli.add_run_args(c)
    r = cli.add_command(sub, "report", "collect run folders into book artefacts (summary.json, curves.png)")
    r.add_argument("runs", nargs="+", help="run folders, one per context")
    r.add_argument("--out", required=True, help="artefact folder, e.g. book/results/hamgan")
    r.add_argument("--classifier", default=None, help="the classifier's run folder (adds the real-vs-real floor)")
    r.add_argument("--label", default="CPU, reduced scale", help="what the numbers are")
    r.add_argument("--data-root", default=None, help="CIFAR-10 folder for the real-vs-real floor")
    r.add_argument("--at-step", type=cli.positive_int, default=None, help="compare all runs at this evaluation step")
    cli.add_runtime_args(r)
    st = cli.add_command(sub, "study", "summarise runs over seeds: classifier-FID intervals, paired differences, "
                                        "curves (summary.json, curves.png, samples_*.png)")
    st.add_argument("runs", nargs="+", help="run folders that differ only in context and seed")
    st.add_argument("--out", required=True, help="artefact folder, e.g. book/results/hamgan")
    st.add_argument("--classifier", default=None, help="the classifier's run folder (adds the real-vs-real floor)")
    st.add_argument("--label", default="CPU, reduced scale", help="what the numbers are")
    cli.add_runtime_args(st)
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    return cli.run_main(parser(), _run, argv)


def _run(sp, a, device: Optional[str]) -> int:
    if a.cmd == "report":
        from ..viz.reports import gan_curves
        from .report import collect_runs, make_report
        s = make_report([Path(d) for d in a.runs], Path(a.out), classifier=a.classifier, data_root=a.data_root,
                        label=a.label, at_step=a.at_step)
        gan_curves(collect_runs([Path(d) for d in a.runs], a.at_step), Path(a.out) / "curves.png", title=a.label)
        for row in s["rows"]:
            print(row)
        return 0
    if a.cmd == "study":
        from ..viz.reports import gan_seed_curves
        from .study import make_study
        s = make_study([Path(d) for d in a.runs], Path(a.out), classifier=a.classifier, label=a.label)
        gan_seed_curves(s, Path(a.out) / "curves.png")
        for c, r in s["contexts"].items():
            f = r["final_fid"]
            print(f"{c:10s} final classifier-FID {f['mean']:.3f} ± {f.get('std', float('nan')):.3f} (n={f['n']})")
        for k, d in s["diffs"].items():
            print(f"{k:15s} {d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
        return 0
    presets = PRESETS if a.cmd == "train" else CLASSIFIER_PRESETS
    cfg = cli.config_from_args(sp, a, presets)
    if a.print_config:
        cli.print_config(cfg)
        return 0
    if a.cmd == "classifier":
        from .classifier import train_classifier
        _, m = train_classifier(cfg, a.run_dir, resume=not a.no_resume, device=device, progress=not a.quiet)
        print(f"classifier test accuracy {m['test_accuracy']:.4f} ({m['n_test']} held-out {cfg.data} images)")
        return 0
    from .train import train
    res = train(cfg, a.run_dir, resume=not a.no_resume, device=device, preset=a.preset, progress=not a.quiet)
    print({k: res[k] for k in ("context", "iters", "final_classifier_fid", "sec_per_iter") if k in res})
    return 0


if __name__ == "__main__":
    sys.exit(main())
