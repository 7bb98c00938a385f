"""Command line for HamGAN (Geng et al., ICLR 2021, arXiv 2109.04553).

    python -m hamlib.gan classifier --out runs/hamgan            # the offline classifier-FID network
    python -m hamlib.gan train --preset tiny --context hamburger --out runs/hamgan/tiny-ham
    python -m hamlib.gan train --preset cifar10 --context attention --out runs/hamgan/sa --classifier runs/hamgan/classifier.pt
    python -m hamlib.gan report runs/hamgan/sa runs/hamgan/ham --out book/results/hamgan --classifier runs/hamgan/classifier.pt

Training resumes from ``OUT/last.pt`` when it exists.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hamlib.gan", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("classifier", help="train the CIFAR-10 feature classifier for the offline classifier-FID")
    c.add_argument("--out", default="runs/hamgan")
    c.add_argument("--data-root", default=None)
    c.add_argument("--steps", type=int, default=1500)
    c.add_argument("--width", type=int, default=16)
    c.add_argument("--batch-size", type=int, default=128)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    t = sub.add_parser("train", help="train a HamGAN variant")
    t.add_argument("--preset", default="tiny")
    t.add_argument("--context", default="hamburger", choices=["none", "attention", "hamburger"])
    t.add_argument("--out", required=True)
    t.add_argument("--classifier", default=None, help="classifier.pt for the classifier-FID (optional)")
    t.add_argument("--steps", type=int, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--data-root", default=None)
    t.add_argument("--data", default=None, choices=["cifar10", "mnist", "shapes"])
    t.add_argument("--device", default=None)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--inception", action="store_true", help="also compute Inception FID/IS (needs torch-fidelity)")
    r = sub.add_parser("report", help="collect finished runs into book artefacts (summary.json, curves.png)")
    r.add_argument("runs", nargs="+")
    r.add_argument("--out", required=True)
    r.add_argument("--classifier", default=None)
    r.add_argument("--label", default="CPU, reduced scale")
    r.add_argument("--data-root", default=None)
    r.add_argument("--at-step", type=int, default=None, help="compare all runs at this evaluation step")
    a = p.parse_args(argv)

    import torch

    if getattr(a, "threads", None):
        torch.set_num_threads(a.threads)
    from .data import load_cifar10, to_tensor

    if a.cmd == "report":
        from .report import make_report

        s = make_report([Path(d) for d in a.runs], Path(a.out), classifier=a.classifier, data_root=a.data_root,
                        label=a.label, at_step=a.at_step)
        for row in s["rows"]:
            print(row)
        return 0
    if a.cmd == "classifier":
        from .classifier import train_classifier

        x, y = load_cifar10(a.data_root, "train")
        xt, yt = load_cifar10(a.data_root, "test")
        _, m = train_classifier(to_tensor(x), torch.from_numpy(y), to_tensor(xt), torch.from_numpy(yt),
                                steps=a.steps, width=a.width, batch_size=a.batch_size, seed=a.seed, out=Path(a.out))
        print(f"classifier test accuracy {m['test_accuracy']:.4f} ({m['n_test']} CIFAR-10 test images)")
        return 0
    from .presets import get_preset
    from .train import train_gan

    over = {k: v for k, v in (("steps", a.steps), ("seed", a.seed), ("data_root", a.data_root),
                                                   ("data", a.data)) if v is not None}
    cfg = get_preset(a.preset, **over)
    res = train_gan(cfg, a.context, Path(a.out), classifier=a.classifier, device=a.device, preset=a.preset,
                    inception=a.inception)
    print({k: res[k] for k in ("context", "steps", "final_classifier_fid", "sec_per_step") if k in res})
    return 0


if __name__ == "__main__":
    sys.exit(main())
