"""The HamGAN training loop (Geng et al., ICLR 2021, arXiv 2109.04553): hinge loss, Adam(beta1=0) with two
time-scale learning rates, EMA of G, exact resume, sample grids, classifier-FID, metrics JSON with provenance.
"""
from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..train import load_checkpoint, provenance, read_json, save_checkpoint, seed_everything, write_json
from .classifier import load_classifier
from .data import REPO_ROOT, load_cifar10, load_mnist, sample_batch, synthetic_shapes, to_tensor
from .fid import OFFLINE_LABEL, feature_stats, frechet_distance, inception_fid
from .losses import d_hinge_loss, g_hinge_loss
from .models import EMA, Discriminator, Generator
from .presets import GANConfig

__all__ = ["load_data", "build_models", "save_grid", "saved_tensor_bytes", "train_gan"]


def load_data(cfg: GANConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Training images (N, 3, 32, 32) in [-1, 1] and labels (N,) for ``cfg.data``."""
    if cfg.data == "cifar10":
        x, y = load_cifar10(cfg.data_root, "train")
    elif cfg.data == "mnist":
        x, y = load_mnist(cfg.data_root or REPO_ROOT.parent / "shared" / "data" / "mnist", "test")
    elif cfg.data == "shapes":
        x, y = synthetic_shapes(cfg.n_train or 2_000, seed=cfg.seed)
    else:
        raise ValueError(f"data must be 'cifar10', 'mnist' or 'shapes'; got {cfg.data!r}")
    if cfg.n_train:
        x, y = x[:cfg.n_train] if cfg.data == "shapes" else x[_spread(len(x), cfg.n_train)], \
            y[:cfg.n_train] if cfg.data == "shapes" else y[_spread(len(y), cfg.n_train)]
    return to_tensor(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))


def _spread(n: int, k: int) -> np.ndarray:
    return np.random.default_rng(0).permutation(n)[:k]  # a fixed random subset, all classes


def build_models(cfg: GANConfig, context: str, num_classes: int = 10) -> tuple[Generator, Discriminator]:
    """G and D of a preset with the given context module (``"none"``, ``"attention"``, ``"hamburger"``)."""
    return (Generator(cfg.z_dim, cfg.g_ch, num_classes, context, cfg.ham_steps),
            Discriminator(cfg.d_ch, num_classes, context, cfg.ham_steps))


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
    return path


class saved_tensor_bytes(torch.autograd.graph.saved_tensors_hooks):
    """Count the bytes autograd saves for backward (distinct storages) inside the ``with`` block: ``.bytes``."""

    def __init__(self) -> None:
        self.bytes, self._seen = 0, set()

        def pack(t):
            s = t.untyped_storage()
            if s.data_ptr() not in self._seen:
                self._seen.add(s.data_ptr())
                self.bytes += s.nbytes()
            return t

        super().__init__(pack, lambda t: t)

    def __enter__(self) -> "saved_tensor_bytes":
        super().__enter__()
        return self


def _gate(module) -> Optional[float]:
    g = getattr(getattr(module, "context", None), "gate", None)
    return None if g is None else float(g.detach())


def train_gan(cfg: GANConfig, context: str, out: Path, *, classifier: Optional[Path] = None,
              device: Optional[str] = None, preset: Optional[str] = None, inception: bool = False,
              progress: bool = True, data: Optional[tuple] = None) -> dict:
    """Train (or resume from ``out/last.pt``) one HamGAN variant; returns and writes ``out/metrics.json``.

    Args:
        cfg: the run's configuration (see :mod:`hamlib.gan.presets`).
        context: ``"none"``, ``"attention"`` or ``"hamburger"``.
        out: run folder (checkpoint ``last.pt``, ``samples_STEP.png``, ``metrics.json``).
        classifier: ``classifier.pt`` for the classifier-FID; None skips the FID.
        device: torch device (default: CUDA when available).
        data: optional (x (N, 3, 32, 32), y (N,)) overriding ``cfg.data``.
    """
    from tqdm.auto import tqdm

    out, device = Path(out), torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    seed_everything(cfg.seed)
    x, y = data if data is not None else load_data(cfg)
    x, y = x.to(device), y.to(device)
    G, D = (m.to(device) for m in build_models(cfg, context, int(y.max()) + 1))
    ema = EMA(G, cfg.ema_decay)
    opt_g = torch.optim.Adam(G.parameters(), cfg.lr_g, betas=cfg.betas)
    opt_d = torch.optim.Adam(D.parameters(), cfg.lr_d, betas=cfg.betas)
    state = {"step": 0, "history": [], "evals": [], "train_time_s": 0.0, "config": cfg.to_dict()}
    if (out / "last.pt").is_file():
        extra = torch.load(out / "last.pt", map_location="cpu", weights_only=False).get("extra", {})
        if extra.get("config") != cfg.to_dict() or extra.get("context") != context:
            raise ValueError(f"{out / 'last.pt'} was written with another config/context "
                             f"({extra.get('context')!r}); use a new --out")
        ck = load_checkpoint(out / "last.pt", model=G, optimizer=opt_g, D=D, ema=ema, map_location=device)
        opt_d.load_state_dict(ck["extra"]["opt_d"])
        state = ck["extra"]["state"]
    clf = load_classifier(classifier).to(device) if classifier else None
    real_stats = None
    if clf is not None:  # stats of n_eval real training images (a fixed subset)
        idx = torch.from_numpy(_spread(len(x), min(cfg.n_eval, len(x)))).to(device)
        real_stats = feature_stats(clf.features, lambda i, b: x[idx[i:i + b]], len(idx))
    z_eval = torch.randn(max(cfg.n_eval, 100), cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 1))
    y_eval = torch.arange(len(z_eval)) % G.num_classes

    def evaluate(step: int) -> None:
        with torch.random.fork_rng(devices=[]), torch.no_grad():  # evaluation never perturbs training's RNG
            torch.manual_seed(cfg.seed + 2)
            gen = lambda i, b: ema.model(z_eval[i:i + b].to(device), y_eval[i:i + b].to(device))
            rec = {"step": step, "gate_G": _gate(ema.model), "gate_D": _gate(D)}
            if clf is not None:
                rec["classifier_fid"] = frechet_distance(*feature_stats(clf.features, gen, cfg.n_eval), *real_stats)
            order = torch.arange(100).view(10, 10).t().reshape(-1)  # one class per column
            save_grid(gen(0, 100)[order], out / f"samples_{step:06d}.png")
        state["evals"].append(rec)

    bar = tqdm(range(state["step"], cfg.steps), desc=f"HamGAN[{context}]", disable=not progress,
               initial=state["step"], total=cfg.steps)
    for step in bar:
        G.train(), D.train()
        t0 = time.time()
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
        state["train_time_s"] += time.time() - t0
        state["memory"] = {"saved_tensor_bytes_D_step": sd.bytes, "saved_tensor_bytes_G_step": sg.bytes,
                           "peak_rss_bytes_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            state["history"].append({"step": done, "d_loss": d_loss.item(), "g_loss": g_loss.item(),
                                     "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item(),
                                     "gate_G": _gate(G), "gate_D": _gate(D)})
            bar.set_postfix(d=f"{d_loss.item():.3f}", g=f"{g_loss.item():.3f}")
        if done % cfg.eval_every == 0 or done == cfg.steps:
            evaluate(done)
        state["step"] = done
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            save_checkpoint(out / "last.pt", model=G, optimizer=opt_g, step=done, D=D, ema=ema,
                            extra={"config": cfg.to_dict(), "context": context, "opt_d": opt_d.state_dict(),
                                   "state": state})
    return _finish(cfg, context, out, state, device, preset, G, D, ema, inception)


def _finish(cfg, context, out, state, device, preset, G, D, ema, inception) -> dict:
    fids = [e["classifier_fid"] for e in state["evals"] if "classifier_fid" in e]
    n_params = lambda m: sum(p.numel() for p in m.parameters())
    res = {"context": context, "steps": state["step"], "config": state["config"],
           "final_classifier_fid": fids[-1] if fids else None, "fid_label": OFFLINE_LABEL,
           "sec_per_step": state["train_time_s"] / max(1, state["step"]), "train_time_s": state["train_time_s"],
           "params_G": n_params(G), "params_D": n_params(D), "memory": dict(state.get("memory", {})),
           "history": state["history"], "evals": state["evals"]}
    if device.type == "cuda":
        res["memory"]["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
    if inception:
        with torch.no_grad():
            res["inception"] = inception_fid(lambda b: ema.model(*G.sample(b)), 10_000)
    res["provenance"] = provenance(device=device, preset=preset, wall_time_s=state["train_time_s"])
    write_json(out / "metrics.json", res)
    return res
