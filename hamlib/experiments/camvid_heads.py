"""Is attention better than matrix decomposition? Decode heads on a frozen ImageNet encoder, CamVid, many seeds.

A protocol that fits a 2-core CPU and still asks the paper's question (Geng et al., ICLR 2021, arXiv 2109.04553)
on real data: the ImageNet-trained EfficientNet-Lite0 encoder (:mod:`hamlib.seg.efficientnet`) is frozen at output
stride 8, its features are computed once for every CamVid image (and its mirror image) and cached, and only the
decode heads are trained. Every head has the same template, so the context module is the only difference:

    features (472 = 40 + 112 + 320 channels at H/8 x W/8) -> 1x1 squeeze to d -> CONTEXT -> 3x3 align -> 1x1 classes

with CONTEXT one of: nothing (``fcn``), softmax self-attention (``attention``), linear attention (``linear``, when
:mod:`hamlib.attention` has it), a Hamburger with NMF / VQ / CD (``ham-nmf``, ``ham-vq``, ``ham-cd``), or the
SegNeXt-style light Hamburger with GroupNorm everywhere (``lightham``). A seed fixes the head's initialisation,
the data order and the flips, and is shared by every head, so differences are paired.

    python -m hamlib.experiments.camvid_heads cache --out runs/camvid-lite0
    python -m hamlib.experiments.camvid_heads train --cache runs/camvid-lite0 --seeds 0 1 2 3 4
    python -m hamlib.experiments.camvid_heads summary --cache runs/camvid-lite0 --out book/results/camvid_heads

The records file is rewritten atomically after every run, and finished (head, seed) pairs are skipped, so a
killed study resumes where it stopped.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..hamburger import Hamburger
from ..layers import conv_norm_act
from ..md.implicit import ImplicitGradientWarning, record_backward, summarise_backward
from ..stats import paired_difference, t_interval
from ..train.provenance import provenance, read_json, write_json

__all__ = ["HEADS", "GRAD_HEADS", "StudyHead", "build_head", "cache_features", "train_head", "fit", "evaluate",
           "evaluate_head", "param_groups", "mirrored", "write_summary", "summarise", "t_interval", "main"]

NUM_CLASSES = 11
IGNORE = 255
LEVELS = ("s8", "s16", "s32")
IN_CHANNELS = 40 + 112 + 320
HEADS = ("fcn", "attention", "linear", "ham-nmf", "ham-vq", "ham-cd", "lightham")
#: The paper's Table 1 in this head: the same Hamburgers trained with back-propagation through all K steps
#: (``-bptt``) or with the implicit gradient (``-implicit``) instead of the one-step gradient.
GRAD_HEADS = tuple(f"ham-{m}-{g}" for g in ("bptt", "implicit") for m in ("nmf", "vq", "cd"))
CLASSES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian",
           "Bicyclist")


# ----------------------------------------------------------------------------------------------- the heads
class StudyHead(nn.Module):
    """1x1 squeeze -> context -> align -> dropout -> 1x1 classifier.

    Args:
        context (nn.Module, optional): (B, d, h, w) -> (B, d, h, w); None is the FCN baseline.
        d (int): width after the squeeze. norm (str): ``"bn"`` (HamNet) or ``"gn"`` (light head).
        align_kernel (int): 3 (HamNet) or 1 (light head).

    Shape: (B, 472, h, w) -> (B, 11, h, w).
    """

    def __init__(self, context: Optional[nn.Module], d: int = 128, *, norm: str = "bn", align_kernel: int = 3,
                 in_channels: int = IN_CHANNELS, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.squeeze = conv_norm_act(in_channels, d, 1, norm)
        self.context = context if context is not None else nn.Identity()
        self.align = conv_norm_act(d, d, align_kernel, norm)
        self.dropout = nn.Dropout2d(0.1)
        self.cls = nn.Conv2d(d, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.cls(self.dropout(self.align(self.context(self.squeeze(x)))))


def build_head(name: str, d: int = 128, R: int = 16) -> StudyHead:
    """The study head ``name`` (one of :data:`HEADS`) at width ``d`` and rank ``R`` (Hamburgers)."""
    ham = dict(R=R, train_steps=6, eval_steps=7, eval_seed=0)
    if name in GRAD_HEADS:
        name, grad = name.rsplit("-", 1)
        ham["grad"] = grad
    if name == "fcn":
        return StudyHead(None, d)
    if name == "attention":
        from ..attention import SelfAttention2d
        return StudyHead(SelfAttention2d(d, norm="bn"), d)
    if name == "linear":
        from .. import attention
        if not hasattr(attention, "LinearAttention2d"):
            raise ValueError("head 'linear' needs hamlib.attention.LinearAttention2d, which this version lacks")
        return StudyHead(attention.LinearAttention2d(d, norm="bn"), d)
    if name.startswith("ham-") and name[4:] in ("nmf", "vq", "cd"):
        return StudyHead(Hamburger(d, d, name[4:], version="v2", norm="none", form="code", **ham), d)
    if name == "lightham":
        return StudyHead(Hamburger(d, d, "nmf", version="v1", norm="gn", form="code", **ham), d, norm="gn",
                         align_kernel=1)
    raise ValueError(f"head must be one of {HEADS + GRAD_HEADS}; got {name!r}")


# --------------------------------------------------------------------------------------- the feature cache
def cache_features(data_root: Optional[os.PathLike], out: os.PathLike, *, output_stride: int = 8,
                   limit: Optional[int] = None, progress: bool = True) -> Path:
    """Run the frozen Lite0 encoder once over CamVid train/val/test (train also mirrored); save one file per split.

    Each ``SPLIT.pt`` holds ``feats`` (N, 472, H/8, W/8) float16 (``feats_flip`` for train), ``labels`` (N, H, W)
    uint8 with 255 = ignore, and ``meta``; it loads with ``torch.load(weights_only=True)``.
    """
    from tqdm.auto import tqdm

    from ..seg.data import CamVid
    from ..seg.efficientnet import LITE0_MEAN, LITE0_STD, efficientnet_lite0

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    enc = efficientnet_lite0(output_stride=output_stride).eval()
    mean, std = torch.tensor(LITE0_MEAN).view(1, 3, 1, 1), torch.tensor(LITE0_STD).view(1, 3, 1, 1)

    def encode(img: Tensor) -> Tensor:
        f = enc((img[None] - mean) / std)
        return torch.cat([f[k] for k in LEVELS], 1)[0].half()

    for split in ("train", "val", "test"):
        path = out / f"{split}.pt"
        if path.is_file():
            continue
        ds = CamVid(data_root, split, limit=limit)
        feats, flips, labels = [], [], []
        with torch.no_grad():
            for i in tqdm(range(len(ds)), desc=f"encode {split}", disable=not progress):
                img, lab = ds[i]
                feats.append(encode(img))
                if split == "train":
                    flips.append(encode(img.flip(-1)))
                labels.append(lab.clamp(max=255).to(torch.uint8))
        blob = {"feats": torch.stack(feats), "labels": torch.stack(labels),
                "meta": {"encoder": "efficientnet-lite0 (ImageNet, frozen)", "output_stride": output_stride,
                         "levels": list(LEVELS), "split": split, "n": len(ds)}}
        if flips:
            blob["feats_flip"] = torch.stack(flips)
        tmp = path.with_name(path.name + ".part")
        torch.save(blob, tmp)
        os.replace(tmp, path)
    return out


def load_split(cache: os.PathLike, split: str) -> Dict[str, Tensor]:
    path = Path(cache) / f"{split}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no feature cache {path}; run: python -m hamlib.experiments.camvid_heads cache "
                                f"--out {cache}")
    return torch.load(path, map_location="cpu", weights_only=True)


# ------------------------------------------------------------------------------------------- train / eval
def _loss_labels(labels: Tensor, size) -> Tensor:
    lab = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
    return lab


def evaluate(net: nn.Module, forward: Callable[[slice], Tensor], data: Dict[str, Tensor], *,
             batch: int = 8) -> Dict[str, object]:
    """Test mIoU and per-class IoU at the labels' full resolution; ``forward(rows)`` gives (b, 11, h, w) logits."""
    from ..seg.metrics import ConfusionMatrix

    net.eval()
    cm = ConfusionMatrix(NUM_CLASSES, IGNORE)
    with torch.no_grad():
        for i in range(0, len(data["labels"]), batch):
            rows = slice(i, i + batch)
            lab = data["labels"][rows].long()
            logits = F.interpolate(forward(rows), size=lab.shape[-2:], mode="bilinear", align_corners=False)
            cm.update(logits.argmax(1), lab)
    return cm.scores(CLASSES)


def evaluate_head(head: nn.Module, data: Dict[str, Tensor], *, batch: int = 8) -> Dict[str, object]:
    """Test-time mIoU at the labels' full resolution (logits upsampled bilinearly)."""
    return evaluate(head, lambda rows: head(data["feats"][rows].float()), data, batch=batch)


def param_groups(module: nn.Module, lr: float, weight_decay: float) -> List[dict]:
    """SGD groups of ``module`` at ``lr``: weight decay on weights (ndim > 1), none on biases and norms."""
    return [{"params": [p for p in module.parameters() if p.ndim > 1], "weight_decay": weight_decay, "lr": lr},
            {"params": [p for p in module.parameters() if p.ndim <= 1], "weight_decay": 0.0, "lr": lr}]


def fit(net: nn.Module, name: str, seed: int, train: Dict[str, Tensor],
        forward: Callable[[Tensor, Tensor], Tensor], groups: List[dict], *, iters: int, batch: int, lr: float,
        loss_size, progress: bool = False, stats: Optional[dict] = None) -> nn.Module:
    """SGD (momentum 0.9, poly 0.9) over the seed's data order and flips; the study's one training loop.

    ``forward(idx, flip)`` gives the logits (b, 11, h, w) of the images ``idx``, mirrored where ``flip``. The
    order and flips come from a generator seeded with ``seed``, so every study draws the same ones.

    If ``stats`` is a dict it is filled in place (training is unchanged): ``grad_norm``, the gradient norm of all
    trained parameters (median, max, and every 10th step), and ``implicit``, how the implicit gradient's Neumann
    series ended in each backward (:func:`hamlib.md.implicit.summarise_backward`; all zero for other heads). Its
    per-step :class:`~hamlib.md.implicit.ImplicitGradientWarning` is then counted there instead of printed.
    """
    opt = torch.optim.SGD(groups, lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (1 - s / iters) ** 0.9)
    g = torch.Generator().manual_seed(seed)
    n = len(train["labels"])
    order = torch.cat([torch.randperm(n, generator=g) for _ in range(iters * batch // n + 1)])
    flips = torch.rand(len(order), generator=g) < 0.5
    labels = _loss_labels(train["labels"], loss_size)
    steps = range(iters)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc=f"{name} seed {seed}", leave=False, mininterval=30)
    params = [p for grp in groups for p in grp["params"]]
    norms: List[float] = []
    net.train()
    with contextlib.ExitStack() as ctx:
        backward_log = None
        if stats is not None:
            backward_log = ctx.enter_context(record_backward())
            ctx.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore", ImplicitGradientWarning)
        for step in steps:
            idx, fl = order[step * batch:(step + 1) * batch], flips[step * batch:(step + 1) * batch]
            y = torch.where(fl.view(-1, 1, 1), labels[idx].flip(-1), labels[idx])
            logits = F.interpolate(forward(idx, fl), size=loss_size, mode="bilinear", align_corners=False)
            loss = F.cross_entropy(logits, y, ignore_index=IGNORE)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"head {name} seed {seed}: loss {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if stats is not None:
                norms.append(float(torch.sqrt(sum(p.grad.detach().double().pow(2).sum()
                                                  for p in params if p.grad is not None))))
            opt.step()
            sched.step()
    if stats is not None:
        srt = sorted(norms)
        stats["grad_norm"] = {"median": srt[len(srt) // 2], "max": srt[-1], "every": 10,
                              "curve": [float(f"{v:.4g}") for v in norms[::10]]}
        stats["implicit"] = summarise_backward(backward_log)
    return net


def mirrored(train: Dict[str, Tensor], key: str, idx: Tensor, flip: Tensor) -> Tensor:
    """``train[key]`` rows ``idx`` as float, taken from ``train[key + "_flip"]`` where ``flip``."""
    return torch.where(flip.view(-1, 1, 1, 1), train[key + "_flip"][idx], train[key][idx]).float()


def train_head(name: str, seed: int, train: Dict[str, Tensor], *, iters: int = 600, batch: int = 8,
               lr: float = 0.02, weight_decay: float = 1e-4, d: int = 128, R: int = 16,
               loss_size=(180, 240), progress: bool = False, stats: Optional[dict] = None) -> nn.Module:
    """SGD (momentum 0.9, poly 0.9) on cached features; seed fixes the init, the data order and the flips.

    ``stats``: see :func:`fit`.
    """
    torch.manual_seed(seed)
    head = build_head(name, d, R)
    return fit(head, name, seed, train, lambda idx, fl: head(mirrored(train, "feats", idx, fl)),
               param_groups(head, lr, weight_decay), iters=iters, batch=batch, lr=lr, loss_size=loss_size,
               progress=progress, stats=stats)


# ------------------------------------------------------------------------------------------- statistics
def summarise(records: List[dict], *, baselines: Sequence[str] = ("fcn", "attention")) -> Dict[str, object]:
    """Per head: test mIoU mean/std/CI, per-class IoU means, and paired (same seed) differences with a 95% CI.

    Differences are taken to each of ``baselines`` and, for the ``-bptt`` / ``-implicit`` heads, to the same
    Hamburger trained with the one-step gradient (``diff_vs_onestep``, the paper's Table 1).
    """
    by: Dict[str, Dict[int, float]] = {}
    ious: Dict[str, Dict[str, List[float]]] = {}
    for r in records:
        by.setdefault(r["head"], {})[r["seed"]] = r["test"]["miou"]
        for c, v in r["test"].get("iou", {}).items():
            if v is not None:
                ious.setdefault(r["head"], {}).setdefault(c, []).append(v)
    out: Dict[str, object] = {"heads": {}}
    for h, seeds in by.items():
        row: Dict[str, object] = {"test_miou": t_interval(list(seeds.values())) if len(seeds) > 1
                                  else {"mean": next(iter(seeds.values())), "n": 1},
                                  "class_iou_mean": {c: sum(v) / len(v) for c, v in ious.get(h, {}).items()}}
        pairs = [(b, b) for b in baselines]
        if h in GRAD_HEADS:
            pairs.append(("onestep", h.rsplit("-", 1)[0]))
        for label, b in pairs:
            common = set(seeds) & set(by.get(b, {}))
            if h != b and len(common) > 1:
                row[f"diff_vs_{label}"] = paired_difference(seeds, by[b])
        out["heads"][h] = row
    return out


# ------------------------------------------------------------------------------------------- the CLI
def _costs(names: Sequence[str], d: int, R: int, sizes: Sequence[tuple], rounds: int = 5) -> Dict[str, object]:
    """Parameters, counted FLOPs and inference latency of every head at each feature-map size.

    The heads of one size are timed interleaved in one process (:func:`hamlib.measure.compare`), so their
    latencies are comparable with each other, not with another machine's.
    """
    from .. import measure

    heads = {h: build_head(h, d, R).eval() for h in names}
    out: Dict[str, object] = {h: {"params": sum(p.numel() for p in m.parameters()), "per_size": []}
                              for h, m in heads.items()}
    for (h_, w_) in sizes:
        x = torch.randn(1, IN_CHANNELS, h_, w_)

        def call(m):
            def run():
                with torch.no_grad():
                    m(x)
            return run

        res = measure.compare({h: call(m) for h, m in heads.items()}, rounds=rounds)
        for h, m in heads.items():
            with torch.no_grad():
                flops = measure.count_flops(lambda: m(x))
            out[h]["per_size"].append({"size": [h_, w_], "gflops": flops / 1e9,
                                       "latency_ms": res["candidates"][h]["median_ms"],
                                       "other_cpu_cores": res["other_cpu_cores"]})
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hamlib.experiments.camvid_heads", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="encode CamVid once with the frozen Lite0 encoder")
    c.add_argument("--data-root", default=None, help="CamVid folder (default: $HAMLIB_DATA/camvid or ./data/camvid)")
    c.add_argument("--out", required=True)
    c.add_argument("--limit", type=int, default=None)
    t = sub.add_parser("train", help="train heads x seeds on the cache (resumable)")
    t.add_argument("--cache", required=True)
    t.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS + GRAD_HEADS)
    t.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    t.add_argument("--iters", type=int, default=600)
    t.add_argument("--records", default=None, help="default: CACHE/records.json")
    s = sub.add_parser("summary", help="statistics + cost table from the records")
    s.add_argument("--cache", required=True)
    s.add_argument("--records", nargs="+", default=None, help="records files to merge (default: CACHE/records.json)")
    s.add_argument("--out", required=True)
    s.add_argument("--cost-from", default=None,
                   help="copy the cost table from this earlier summary.json instead of timing the heads again (use it "
                        "when this machine is busy: latencies timed under load are not comparable)")
    for p in (c, t, s):
        p.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.cmd == "cache":
        root = a.data_root or (Path(os.environ["HAMLIB_DATA"]) / "camvid" if "HAMLIB_DATA" in os.environ
                               else Path("data") / "camvid")
        cache_features(root, a.out, limit=a.limit)
        return 0
    if a.cmd == "train":
        records_path = Path(a.records or Path(a.cache) / "records.json")
        records = read_json(records_path)["records"] if records_path.is_file() else []
        train, test = load_split(a.cache, "train"), load_split(a.cache, "test")
        for seed in a.seeds:
            for h in a.heads:
                if any(r["head"] == h and r["seed"] == seed and r["iters"] == a.iters for r in records):
                    continue
                t0 = time.time()
                stats: dict = {}
                head = train_head(h, seed, train, iters=a.iters, stats=stats)
                wall = time.time() - t0
                rec = {"head": h, "seed": seed, "iters": a.iters, "test": evaluate_head(head, test),
                       "train_wall_s": round(wall, 1), "train": stats, "provenance": provenance(wall_time_s=wall)}
                records.append(rec)
                write_json(records_path, {"records": records})
                print(f"{h:10s} seed {seed}  test mIoU {rec['test']['miou']:.4f}  ({wall:.0f} s)", flush=True)
        return 0
    paths = [Path(p) for p in (a.records or [Path(a.cache) / "records.json"])]
    records = [r for p in paths for r in read_json(p)["records"]]
    summ = summarise(records)
    feat = load_split(a.cache, "test")["feats"].shape[-2:]
    sizes = [tuple(feat), (round(feat[0] * 2 ** .5), round(feat[1] * 2 ** .5)), (feat[0] * 2, feat[1] * 2)]
    cost_note = None
    if a.cost_from:
        earlier = read_json(Path(a.cost_from))
        summ["cost"] = earlier["cost"]
        cost_note = earlier.get("protocol", {}).get("cost") or (     # a copy of a copy names the original
            f"copied from {a.cost_from} (measured at commit {earlier['provenance']['commit'][:10]} on "
            f"{earlier['provenance']['date'][:10]}); heads it lacks have no cost row")
    else:
        summ["cost"] = _costs(list(summ["heads"]), 128, 16, sizes)
    summ["protocol"] = {"feature_map": list(feat), "encoder": "efficientnet-lite0 ImageNet, frozen, OS8",
                        "records": [str(p) for p in paths], **({"cost": cost_note} if cost_note else {})}
    write_summary(Path(a.out), summ, records)
    return 0


def write_summary(out: Path, summ: Dict[str, object], records: List[dict]) -> None:
    """``out``/summary.json (with provenance) and records.json, and each head's mean ± std on stdout."""
    summ["provenance"] = provenance()
    write_json(out / "summary.json", summ)
    write_json(out / "records.json", {"records": records})
    for h, r in summ["heads"].items():
        m = r["test_miou"]
        print(f"{h:10s} {m['mean']:.4f} ± {m.get('std', float('nan')):.4f}")


if __name__ == "__main__":
    sys.exit(main())
