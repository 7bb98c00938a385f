"""The fine-tuned check of the CamVid heads study: the encoder's last block trained together with the head.

:mod:`hamlib.experiments.camvid_heads` freezes the ImageNet EfficientNet-Lite0 encoder and trains only the decode
heads, so the features entering each context module were never trained to suit it. This study also trains the
encoder's last block(s) (by default its final MBConv block, 0.61 M of the encoder's 3.4 M parameters, which
produces the 320 stride-32 channels of the 472 the head reads), at a tenth of the head's learning rate, with
their BatchNorm statistics frozen as usual with small batches. Everything before ``start`` stays frozen, which
is what makes the study affordable on a CPU: the frozen blocks between the cached stride-16 output and
``start`` run once (``cache``), and training never runs the high-resolution layers. Head template, schedule,
data order and flips are those of the heads study, seeds are paired, and test mIoU is measured at CamVid's full
360 x 480. The commands::

    python -m hamlib.experiments.camvid_finetune cache --cache runs/camvid-lite0
    python -m hamlib.experiments.camvid_finetune train --cache runs/camvid-lite0 --records runs/camvid-ft.json --seeds 0 1 2
    python -m hamlib.experiments.camvid_finetune summary --records runs/camvid-ft.json --cache runs/camvid-lite0 \\
        --out book/results/camvid_finetune

The records file is rewritten atomically after every run and finished (head, seed) pairs are skipped, so a
killed study resumes where it stopped.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from ..train.provenance import provenance, read_json, write_json
from .camvid_heads import (GRAD_HEADS, HEADS, build_head, evaluate, fit, load_split, mirrored, param_groups, summarise,
                           write_summary)

__all__ = ["TailNet", "FIRST_TAIL_BLOCK", "LAST_BLOCK", "tail_inputs", "build_tail_cache", "load_tail", "tap_drift",
           "train_finetune",
           "evaluate_net",
           "main", "DEFAULT_HEADS", "S16_END"]

DEFAULT_HEADS = ("fcn", "attention", "ham-nmf")
S16_END = 40 + 112        # the cache's channels [0, 40) are the stride-8 tap, [40, 152) the stride-16 tap
FIRST_TAIL_BLOCK = 11     # Lite0's first block after the stride-16 tap (its stride-32 stage: blocks 11..15)
LAST_BLOCK = 15


def _check_start(start: int) -> None:
    if not isinstance(start, int) or not FIRST_TAIL_BLOCK <= start <= LAST_BLOCK:
        raise ValueError(f"start must be an encoder block index in [{FIRST_TAIL_BLOCK}, {LAST_BLOCK}] (the stride-32 "
                         f"stage, after the cached stride-16 tap); got {start!r}")


def _encoder_blocks(pretrained: bool = True) -> nn.ModuleList:
    from ..seg.efficientnet import efficientnet_lite0

    enc = efficientnet_lite0(pretrained=pretrained, output_stride=8)
    assert enc._taps[FIRST_TAIL_BLOCK - 1] == "s16" and enc._taps[LAST_BLOCK] == "s32"
    return enc._blocks


class TailNet(nn.Module):
    """Lite0's blocks ``start``..15 (ImageNet weights, dilated at OS8) -> the study head on all three taps.

    The recomputed stride-32 tap is rounded to float16 in the forward pass (the gradient passes unchanged), as
    the heads study's cache stores it: with the blocks unchanged, the head sees exactly the heads study's input.

    Shape: cached taps (B, 152, h, w) (stride 8 and 16) and the input of block ``start`` (B, C, h, w), C = 112 for
    ``start`` 11 and 192 otherwise -> logits (B, 11, h, w).
    """

    def __init__(self, head: str, start: int = LAST_BLOCK, d: int = 128, R: int = 16, *, pretrained: bool = True,
                 blocks: Optional[nn.ModuleList] = None) -> None:
        super().__init__()
        _check_start(start)
        self.start = start
        self.head = build_head(head, d, R)     # first: it draws from the global RNG as the heads study's head does
        if blocks is None:
            blocks = nn.ModuleList(_encoder_blocks(pretrained)[start:])
        elif len(blocks) != LAST_BLOCK + 1 - start:
            raise ValueError(f"blocks must hold the encoder's blocks {start}..{LAST_BLOCK} ({LAST_BLOCK + 1 - start}); "
                             f"got {len(blocks)}")
        self.blocks = blocks

    def forward(self, taps: Tensor, x: Tensor) -> Tensor:
        if taps.ndim != 4 or taps.shape[1] != S16_END:
            raise ValueError(f"taps must have shape (B, {S16_END}, h, w); got {tuple(taps.shape)}")
        if x.ndim != 4 or x.shape[0] != taps.shape[0] or x.shape[-2:] != taps.shape[-2:]:
            raise ValueError(f"x must have shape (B, C, h, w) matching taps {tuple(taps.shape)}; got {tuple(x.shape)}")
        for blk in self.blocks:
            x = blk(x)
        x = x + (x.half().float() - x).detach()    # the cache's float16 rounding, straight-through for the gradient
        return self.head(torch.cat([taps, x], 1))

    def train(self, mode: bool = True) -> "TailNet":
        """Train the head; keep the encoder blocks' BatchNorm statistics frozen (their weights still learn)."""
        super().train(mode)
        for m in self.blocks.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self


def tail_inputs(s16: Tensor, start: int, *, batch: int = 8, progress: bool = False,
                blocks: Optional[nn.ModuleList] = None) -> Tensor:
    """The input of block ``start``: the frozen blocks 11..start-1 applied to the cached stride-16 tap.

    ``s16`` (N, 112, h, w) -> (N, C, h, w) float16 (C = 112 when ``start`` is 11, else 192).
    """
    _check_start(start)
    if s16.ndim != 4 or s16.shape[1] != 112:
        raise ValueError(f"s16 must have shape (N, 112, h, w); got {tuple(s16.shape)}")
    if start == FIRST_TAIL_BLOCK:
        return s16.to(torch.float16)
    import copy

    blocks = _encoder_blocks() if blocks is None else blocks
    frozen = copy.deepcopy(nn.Sequential(*blocks[FIRST_TAIL_BLOCK:start])).eval()   # the caller's modules stay as they are
    out = []
    rng = range(0, len(s16), batch)
    if progress:
        from tqdm.auto import tqdm
        rng = tqdm(rng, desc=f"blocks {FIRST_TAIL_BLOCK}..{start - 1}", leave=False)
    with torch.no_grad():
        for i in rng:
            out.append(frozen(s16[i:i + batch].float()).to(torch.float16))
    return torch.cat(out)


def _tail_path(cache: os.PathLike, split: str, start: int) -> Path:
    return Path(cache) / f"tail{start}_{split}.pt"


def build_tail_cache(cache: os.PathLike, start: int = LAST_BLOCK, *, progress: bool = True) -> List[Path]:
    """Write ``tail{start}_{train,test}.pt`` next to the heads study's cache (atomically; skipped if present)."""
    written = []
    blocks = None
    for split in ("train", "test"):
        path = _tail_path(cache, split, start)
        if path.is_file():
            written.append(path)
            continue
        data = load_split(cache, split)
        blocks = _encoder_blocks() if blocks is None else blocks
        blob = {"x": tail_inputs(data["feats"][:, 40:S16_END], start, progress=progress, blocks=blocks), "start": start}
        if "feats_flip" in data:
            blob["x_flip"] = tail_inputs(data["feats_flip"][:, 40:S16_END], start, progress=progress, blocks=blocks)
        tmp = path.with_name(path.name + ".part")
        torch.save(blob, tmp)
        os.replace(tmp, path)
        written.append(path)
    return written


def load_tail(cache: os.PathLike, split: str, start: int = LAST_BLOCK) -> Dict[str, Tensor]:
    """The heads study's split joined with its tail inputs (``x``, and ``x_flip`` for train)."""
    path = _tail_path(cache, split, start)
    if not path.is_file():
        raise FileNotFoundError(f"no tail cache {path}; run: python -m hamlib.experiments.camvid_finetune cache "
                                f"--cache {cache} --start {start}")
    data = load_split(cache, split)
    tail = torch.load(path, map_location="cpu", weights_only=True)
    if tail["start"] != start or len(tail["x"]) != len(data["feats"]):
        raise ValueError(f"{path} does not match the cache (start {tail['start']}, {len(tail['x'])} images; "
                         f"expected start {start}, {len(data['feats'])} images)")
    if ("feats_flip" in data) != ("x_flip" in tail):
        raise ValueError(f"{path} and the cache disagree on mirrored features (cache: {'feats_flip' in data}, "
                         f"tail: {'x_flip' in tail}); delete {path} and run the cache command again")
    data.update({k: v for k, v in tail.items() if k != "start"})
    return data


def tap_drift(cache: os.PathLike, split: str = "test", start: int = LAST_BLOCK, *, batch: int = 8) -> Dict[str, float]:
    """How far the tail's recomputed stride-32 tap (ImageNet weights, float16-rounded) is from the cached one.

    The cache was computed in float32 from the images; the tail starts from the float16-rounded stride-16 tap.
    Returns the fraction of values that differ and the relative Frobenius norm of the difference.
    """
    data = load_tail(cache, split, start)
    tail = nn.Sequential(*_encoder_blocks()[start:]).eval()
    differ, total, num, den = 0, 0, 0.0, 0.0
    with torch.no_grad():
        for i in range(0, len(data["x"]), batch):
            h = tail(data["x"][i:i + batch].float())
            d = h.half().float() - data["feats"][i:i + batch, S16_END:].float()
            differ += int((d != 0).sum())
            total += d.numel()
            num += float(d.pow(2).sum())
            den += float(data["feats"][i:i + batch, S16_END:].float().pow(2).sum())
    return {"fraction_differing": differ / total, "relative_norm": (num / den) ** 0.5, "split": split}


def evaluate_net(net: nn.Module, data: Dict[str, Tensor], *, batch: int = 8) -> Dict[str, object]:
    """Test mIoU and per-class IoU at the labels' full resolution (logits upsampled bilinearly)."""
    return evaluate(net, lambda rows: net(data["feats"][rows, :S16_END].float(), data["x"][rows].float()), data,
                    batch=batch)


def train_finetune(name: str, seed: int, train: Dict[str, Tensor], *, start: int = LAST_BLOCK, iters: int = 300,
                   batch: int = 8, lr: float = 0.02, encoder_lr_mult: float = 0.1, weight_decay: float = 1e-4,
                   d: int = 128, R: int = 16, loss_size=(180, 240), progress: bool = False,
                   pretrained: bool = True) -> TailNet:
    """SGD (momentum 0.9, poly 0.9) of the encoder's blocks ``start``.. and the head, as ``camvid_heads.train_head``.

    ``seed`` fixes the head's initialisation, the data order and the flips (the same draws as the heads study:
    the head is built first after ``torch.manual_seed(seed)``, the encoder blocks are loaded, not drawn).
    """
    if encoder_lr_mult < 0:
        raise ValueError(f"encoder_lr_mult must be >= 0; got {encoder_lr_mult!r}")
    _check_start(start)
    blocks = nn.ModuleList(_encoder_blocks(pretrained)[start:])   # built before seeding: building draws random
    torch.manual_seed(seed)                                      # numbers, and the head must draw as in the heads study
    net = TailNet(name, start, d, R, blocks=blocks)
    groups = param_groups(net.head, lr, weight_decay) + param_groups(net.blocks, lr * encoder_lr_mult, weight_decay)
    return fit(net, name, seed, train,
               lambda idx, fl: net(mirrored(train, "feats", idx, fl)[:, :S16_END], mirrored(train, "x", idx, fl)),
               groups, iters=iters, batch=batch, lr=lr, loss_size=loss_size, progress=progress)


STUDY = "camvid_finetune"


def _read_records(path: Path) -> List[dict]:
    """The records of this study in ``path``; another study's records file is refused, not mixed in."""
    records = read_json(path)["records"]
    foreign = [i for i, r in enumerate(records) if r.get("study") != STUDY]
    if foreign:
        raise ValueError(f"{path} holds records of another study (entry {foreign[0]} has no \"study\": \"{STUDY}\"); "
                         f"give this study its own records file")
    return records


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hamlib.experiments.camvid_finetune", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="run the frozen blocks before --start once (train with flips, and test)")
    t = sub.add_parser("train", help="fine-tune blocks --start.. and the head for heads x seeds (resumable)")
    for p in (c, t):
        p.add_argument("--cache", required=True, help="the heads study's feature cache (camvid_heads cache --out)")
        p.add_argument("--start", type=int, default=LAST_BLOCK,
                       help=f"first trained encoder block, {FIRST_TAIL_BLOCK}..{LAST_BLOCK} (default: the last one)")
    t.add_argument("--heads", nargs="+", default=list(DEFAULT_HEADS), choices=HEADS + GRAD_HEADS)
    t.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    t.add_argument("--iters", type=int, default=300)
    t.add_argument("--encoder-lr-mult", type=float, default=0.1,
                   help="the encoder blocks' learning rate over the head's (0: a control that trains only the head)")
    t.add_argument("--records", required=True, help="records JSON (created or extended)")
    s = sub.add_parser("summary", help="statistics from the records")
    s.add_argument("--records", nargs="+", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--cache", help="also measure the recomputed stride-32 tap against the cached one (test split)")
    for p in (c, t, s):
        p.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.cmd in ("cache", "train"):
        try:
            _check_start(a.start)
        except ValueError as e:
            ap.error(f"--start: {e}")
    if a.cmd == "cache":
        for p in build_tail_cache(a.cache, a.start):
            print(f"tail cache: {p}")
        return 0
    if a.cmd == "train":
        if a.encoder_lr_mult < 0:
            ap.error(f"--encoder-lr-mult must be >= 0; got {a.encoder_lr_mult}")
        path = Path(a.records)
        records = _read_records(path) if path.is_file() else []
        train, test = load_tail(a.cache, "train", a.start), load_tail(a.cache, "test", a.start)
        for seed in a.seeds:
            for h in a.heads:
                if any(r["head"] == h and r["seed"] == seed and r["iters"] == a.iters and r["start"] == a.start
                       and r["encoder_lr_mult"] == a.encoder_lr_mult for r in records):
                    continue
                t0 = time.time()
                net = train_finetune(h, seed, train, start=a.start, iters=a.iters, encoder_lr_mult=a.encoder_lr_mult,
                                     progress=True)
                wall = time.time() - t0
                rec = {"study": STUDY, "head": h, "seed": seed, "iters": a.iters, "start": a.start,
                       "encoder_lr_mult": a.encoder_lr_mult, "lr": 0.02, "batch": 8,
                       "setting": f"encoder blocks {a.start}..{LAST_BLOCK} fine-tuned",
                       "trained_encoder_params": sum(p.numel() for p in net.blocks.parameters()),
                       "test": evaluate_net(net, test), "train_wall_s": round(wall, 1),
                       "provenance": provenance(wall_time_s=wall)}
                records.append(rec)
                path.parent.mkdir(parents=True, exist_ok=True)
                write_json(path, {"records": records})
                print(f"{h:10s} seed {seed}  test mIoU {rec['test']['miou']:.4f}  ({wall:.0f} s)", flush=True)
        return 0
    try:
        records = [r for p in a.records for r in _read_records(Path(p))]
    except ValueError as e:
        ap.error(f"--records: {e}")
    for key in ("start", "iters", "encoder_lr_mult"):
        values = sorted({r[key] for r in records})
        if len(values) != 1:
            ap.error(f"--records: the records hold several values of {key} ({values}); summarise one setting at a time")
    summ = summarise(records)
    r0 = records[0]
    summ["protocol"] = {"setting": f"the encoder's blocks {r0['start']}..{LAST_BLOCK} fine-tuned with the head (lr "
                                   f"x{r0['encoder_lr_mult']:g}, BatchNorm statistics frozen); everything before them "
                                   "frozen",
                        "trained_encoder_params": r0["trained_encoder_params"],
                        "encoder_lr_mult": r0["encoder_lr_mult"], "iters": r0["iters"], "lr": r0["lr"],
                        "batch": r0["batch"],
                        "feature_map": [45, 60], "encoder": "efficientnet-lite0 ImageNet, OS8",
                        "records": [str(p) for p in a.records]}
    if a.cache:
        summ["protocol"]["s32_drift"] = tap_drift(a.cache, "test", r0["start"])
    write_summary(Path(a.out), summ, records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
