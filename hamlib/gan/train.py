"""The HamGAN training loop (Geng et al., ICLR 2021, arXiv 2109.04553): hinge loss, Adam(beta1=0) with two
time-scale learning rates, EMA of G, exact resume, sample grids, classifier-FID, metrics with provenance.

Everything around the loop (config, run folder, resume rule, log, checkpoints) is :mod:`hamlib.train`'s; the
measurements are :mod:`hamlib.measure`'s. Evaluation runs inside a forked RNG state on every device used,
so training draws the same latents and NMF bases whether or not (and how often) it evaluates.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..measure import count_params, max_rss_bytes, saved_tensor_bytes
from ..train import RunDir, Timer, provenance, seed_everything
from .classifier import load_classifier
from .config import GANConfig
from .data import load_cifar10, load_mnist, sample_batch, synthetic_shapes, to_tensor
from .fid import OFFLINE_LABEL, feature_stats, frechet_distance, inception_fid
from .losses import d_hinge_loss, g_hinge_loss
from .models import EMA, from_config

__all__ = ["load_data", "save_grid", "train", "eval_rng"]


def load_data(cfg: GANConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Training images (N, 3, 32, 32) in [-1, 1] and labels (N,) for ``cfg.data``.

    ``cfg.data_root`` is the data folder for both data sets (CIFAR-10 in it, MNIST in its ``mnist/``); None
    means :func:`hamlib.train.download.data_root`.

    Raises:
        FileNotFoundError: the configured data set is missing (never silently replaced by synthetic data);
            the message says how to get it (``download=True``, ``HAMLIB_DATA`` or ``data_root``).
    """
    if cfg.data == "cifar10":
        x, y = load_cifar10(cfg.data_root, "train", download=cfg.download)
    elif cfg.data == "mnist":
        x, y = load_mnist(Path(cfg.data_root) / "mnist" if cfg.data_root else None, "test", download=cfg.download)
    else:
        x, y = synthetic_shapes(cfg.n_train or 2_000, seed=cfg.seed)
    if cfg.n_train and cfg.data != "shapes":
        keep = np.random.default_rng(0).permutation(len(x))[:cfg.n_train]  # a fixed random subset, all classes
        x, y = x[keep], y[keep]
    return to_tensor(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))


def save_grid(images: torch.Tensor, path: Path, nrow: int = 10) -> Path:
    """Save images (B, 3, H, W) in [-1, 1] as one PNG grid with ``nrow`` images per row (1-pixel gaps)."""
    from PIL import Image

    x = ((images.detach().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    b, h, w, _ = x.shape
    rows = -(-b // nrow)
    grid = np.full((rows * (h + 1) + 1, nrow * (w + 1) + 1, 3), 255, np.uint8)
    for i in range(b):
        r, c = divmod(i, nrow)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = x[i]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    path.chmod(0o644)
    return path


def eval_rng(device: torch.device, seed: int):
    """A context in which every RNG of ``device`` (CPU and all CUDA devices) is forked and re-seeded with
    ``seed``; on exit training's RNG states are restored, so evaluation never shifts training's draws."""
    devices = list(range(torch.cuda.device_count())) if device.type == "cuda" else []

    class _Ctx:
        def __enter__(self):
            self._fork = torch.random.fork_rng(devices=devices)
            self._fork.__enter__()
            torch.manual_seed(seed)  # CPU and every CUDA device
            return self

        def __exit__(self, *exc):
            return self._fork.__exit__(*exc)

    return _Ctx()


def _gate(module) -> Optional[float]:
    g = getattr(getattr(module, "context", None), "gate", None)
    return None if g is None else float(g.detach())


def train(cfg: GANConfig, run_dir, *, resume: bool = True, stop_after: Optional[int] = None,
          device: Optional[str] = None, preset: Optional[str] = None, progress: bool = True,
          data: Optional[tuple] = None) -> dict:
    """Train (or resume) one HamGAN run in ``run_dir``; returns the record also written to ``metrics.json``.

    Args:
        cfg: the run's configuration, context module included (see :mod:`hamlib.gan.config`).
        run_dir: the run folder (:class:`hamlib.train.RunDir`; samples go to ``samples/``).
        resume: continue the run in ``run_dir``; a run of another config there is refused. False starts afresh.
        stop_after: stop after this many iterations in this call without saving (simulates a crash).
        device: torch device (default: CUDA when available). preset: name recorded in the provenance.
        data: optional (x (N, 3, 32, 32), y (N,)) overriding ``cfg.data``.
    """
    from tqdm.auto import tqdm

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    run = RunDir(run_dir)
    has_ckpt = run.start(cfg, resume=resume)
    clf = load_classifier(cfg.classifier, device=device) if cfg.classifier else None  # checked before training
    seed_everything(cfg.seed)
    x, y = data if data is not None else load_data(cfg)
    x, y = x.to(device), y.to(device)
    G, D = (m.to(device) for m in from_config(cfg, int(y.max()) + 1))
    ema = EMA(G, cfg.ema_decay)
    opt_g = torch.optim.Adam(G.parameters(), cfg.lr_g, betas=cfg.betas)
    opt_d = torch.optim.Adam(D.parameters(), cfg.lr_d, betas=cfg.betas)
    models, optimizers = {"G": G, "D": D, "ema": ema}, {"G": opt_g, "D": opt_d}
    step, timer, memory = 0, Timer(), {}
    if has_ckpt:
        ck = run.load(models=models, optimizers=optimizers, map_location=device)
        step, timer, memory = ck["step"], Timer(ck["extra"]["train_wall_s"]), ck["extra"]["memory"]
    real_stats = None
    if clf is not None:  # stats of n_eval real training images (a fixed subset)
        idx = torch.from_numpy(np.random.default_rng(0).permutation(len(x))[:min(cfg.n_eval, len(x))]).to(device)
        real_stats = feature_stats(clf.features, lambda i, b: x[idx[i:i + b]], len(idx))
    z_eval = torch.randn(max(cfg.n_eval, 100), cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 1))
    y_eval = torch.arange(len(z_eval)) % G.num_classes

    def evaluate(step: int) -> None:
        with eval_rng(device, cfg.seed + 2), torch.no_grad():
            gen = lambda i, b: ema.model(z_eval[i:i + b].to(device), y_eval[i:i + b].to(device))
            rec = {"step": step, "gate_G": _gate(ema.model), "gate_D": _gate(D)}
            if clf is not None:
                rec["classifier_fid"] = frechet_distance(*feature_stats(clf.features, gen, cfg.n_eval), *real_stats)
            order = torch.arange(100).view(10, 10).t().reshape(-1)  # one class per column
            save_grid(gen(0, 100)[order], run.samples / f"samples_{step:06d}.png")
        run.log(rec)

    done = start = step
    bar = tqdm(range(step, cfg.iters), desc=f"HamGAN[{cfg.context}]", disable=not progress, initial=step,
               total=cfg.iters)
    for step in bar:
        G.train(), D.train()
        xr, yr = sample_batch(x, y, cfg.batch_size, step, cfg.seed)
        z, yf = torch.randn(cfg.batch_size, cfg.z_dim, device=device), torch.randint(G.num_classes, (cfg.batch_size,), device=device)
        with saved_tensor_bytes() as sd:
            with torch.no_grad():
                fake = G(z, yf)
            d_real, d_fake = D(xr, yr), D(fake, yf)
            d_loss = d_hinge_loss(d_real, d_fake)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        z, yf = torch.randn(cfg.batch_size, cfg.z_dim, device=device), torch.randint(G.num_classes, (cfg.batch_size,), device=device)
        with saved_tensor_bytes() as sg:
            g_loss = g_hinge_loss(D(G(z, yf), yf))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        ema.update(G)
        memory = {"saved_tensor_bytes_D_step": sd.bytes, "saved_tensor_bytes_G_step": sg.bytes}
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.iters:
            run.log({"step": done, "d_loss": d_loss.item(), "g_loss": g_loss.item(), "d_real": d_real.mean().item(),
                     "d_fake": d_fake.mean().item(), "gate_G": _gate(G), "gate_D": _gate(D)})
            bar.set_postfix(d=f"{d_loss.item():.3f}", g=f"{g_loss.item():.3f}")
        if done % cfg.eval_every == 0 or done == cfg.iters:
            evaluate(done)
        if stop_after is not None and done - start >= stop_after:
            bar.close()
            return {"stopped_at": done}
        if done % cfg.ckpt_every == 0 or done == cfg.iters:
            run.save(done, models=models, optimizers=optimizers,
                     extra={"train_wall_s": timer.elapsed, "memory": memory})
    return _finish(cfg, run, done, timer.elapsed, memory, device, preset, G, D, ema)


def _finish(cfg: GANConfig, run: RunDir, steps: int, wall: float, memory: dict, device: torch.device,
            preset: Optional[str], G, D, ema) -> dict:
    log = run.history()
    history = [r for r in log if "d_loss" in r]
    evals = [r for r in log if "d_loss" not in r]
    fids = [e["classifier_fid"] for e in evals if "classifier_fid" in e]
    res = {"context": cfg.context, "iters": steps, "config": cfg.to_dict(),
           "final_classifier_fid": fids[-1] if fids else None, "fid_label": OFFLINE_LABEL,
           "sec_per_iter": wall / max(1, steps), "train_wall_s": wall,
           "params_G": count_params(G), "params_D": count_params(D),
           "memory": {**memory, "peak_rss_bytes_process": max_rss_bytes()}, "history": history, "evals": evals}
    if not cfg.classifier:
        res["skipped"] = {"classifier_fid": "no classifier given (--set classifier=RUN_DIR); train one with "
                                            "python -m hamlib.gan classifier"}
    if device.type == "cuda":
        res["memory"]["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
    if cfg.inception:
        with eval_rng(device, cfg.seed + 3):
            inc = inception_fid(lambda b: ema.model(*G.sample(b)), 10_000)
        if "skipped" in inc:
            warnings.warn(f"Inception FID skipped: {inc['skipped']}", RuntimeWarning, stacklevel=2)
            res.setdefault("skipped", {})["inception_fid"] = inc["skipped"]
        else:
            res["inception"] = inc
    res["provenance"] = provenance(device=device, preset=preset, wall_time_s=wall)
    run.write_metrics(res)
    run.export_weights({"G": G, "ema": ema.model}, cfg=cfg)
    return res
