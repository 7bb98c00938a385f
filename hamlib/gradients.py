"""Gradient analysis of the matrix-decomposition solvers: one-step vs BPTT vs implicit.

Tools for the book chapter on the one-step gradient of Geng et al., "Is Attention
Better Than Matrix Decomposition?" (ICLR 2021, arXiv 2109.04553): the Jacobian
dF/dh of the solver map at its fixed point and its spectrum, the gradient of a
loss with respect to the data X under each gradient mode, cosine/norm-ratio
helpers, the gradient that reaches the initial bases, and the cost (time and
autograd memory) of a backward pass as a function of the number of steps K.

Shapes: x (B*S, D, N), bases (B*S, D, R), coef = C^T (B*S, N, R).
"""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import Iterator, Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .md.solver import GRAD_MODES, make_algorithm, solve

__all__ = ["fixed_point", "state_jacobian", "jacobian_spectrum", "input_gradients", "init_gradient_norm",
           "cosine", "norm_ratio", "saved_tensor_bytes", "backward_cost", "majority_task", "GlobalContextNet",
           "train_global_context", "miou"]


def fixed_point(x: Tensor, bases: Tensor, method: str, *, steps: int = 300, inv_t: float = 100.0,
                beta: float = 0.1) -> tuple[Tensor, Tensor, float]:
    """Run ``steps`` iterations without autograd and return the last state and its last change.

    Args:
        x: data (B*S, D, N).
        bases: initial bases (B*S, D, R).
        method: ``"nmf"``, ``"vq"`` or ``"cd"``.
        steps: iterations K.
        inv_t: inverse temperature (VQ, CD).
        beta: ridge strength (CD).

    Returns:
        ``(bases, coef, change)``: the state after K steps, shapes (B*S, D, R) and (B*S, N, R), and
        ||D_K - D_{K-1}|| / ||D_K|| (small when the iteration has converged).
    """
    alg = make_algorithm(method, inv_t=inv_t, beta=beta)
    with torch.no_grad():
        coef = alg.init_coef(x, bases)
        prev = bases
        for _ in range(steps):
            prev = bases
            bases, coef = alg.step(x, bases, coef)
        change = float((bases - prev).norm() / bases.norm().clamp_min(1e-30))
    return bases, coef, change


def state_jacobian(x: Tensor, bases: Tensor, coef: Tensor, method: str, *, inv_t: float = 100.0,
                   beta: float = 0.1) -> Tensor:
    """Dense Jacobian dF/dh of one solver step at the state h = (D, C^T), flattened.

    Meant for small problems (P = B*S*(D*R + N*R) state entries; the result is P x P).

    Args:
        x: data (B*S, D, N).
        bases: state bases D, (B*S, D, R).
        coef: state coefficients C^T, (B*S, N, R).
        method: ``"nmf"``, ``"vq"`` or ``"cd"``.
        inv_t: inverse temperature (VQ, CD).
        beta: ridge strength (CD).

    Returns:
        J of shape (P, P): row i = output entry i of F(h), column j = state entry j.
    """
    alg = make_algorithm(method, inv_t=inv_t, beta=beta)
    nb = bases.numel()
    x = x.detach()

    def flat_step(h: Tensor) -> Tensor:
        b, c = h[:nb].view_as(bases), h[nb:].view_as(coef)
        b2, c2 = alg.step(x, b, c)
        return torch.cat([b2.reshape(-1), c2.reshape(-1)])

    h = torch.cat([bases.detach().reshape(-1), coef.detach().reshape(-1)])
    return torch.autograd.functional.jacobian(flat_step, h)


def jacobian_spectrum(J: Tensor) -> dict:
    """Eigenvalues, spectral radius and spectral norm (largest singular value) of a square Jacobian.

    Returns:
        ``{"eigvals": complex tensor (P,), "spectral_radius": float, "norm2": float}``.
    """
    if J.ndim != 2 or J.shape[0] != J.shape[1]:
        raise ValueError(f"J must be a square matrix; got shape {tuple(J.shape)}")
    eig = torch.linalg.eigvals(J)
    return {"eigvals": eig, "spectral_radius": float(eig.abs().max()),
            "norm2": float(torch.linalg.matrix_norm(J, ord=2))}


def input_gradients(x: Tensor, bases: Tensor, method: str, steps: int, weight: Tensor, *,
                    modes: tuple[str, ...] = GRAD_MODES, inv_t: float = 100.0, beta: float = 0.1) -> dict[str, Tensor]:
    """Gradient of the linear loss L = <weight, X_bar> with respect to x, under each gradient mode.

    Args:
        x: data (B*S, D, N) (non-negative for NMF).
        bases: initial bases (B*S, D, R), the same for every mode.
        method: ``"nmf"``, ``"vq"`` or ``"cd"``.
        steps: iterations K.
        weight: the loss weights, shape (B*S, D, N).
        modes: gradient modes to evaluate (subset of ``("one-step", "bptt", "implicit")``).
        inv_t: inverse temperature (VQ, CD).
        beta: ridge strength (CD).

    Returns:
        ``{mode: dL/dx}``, each of shape (B*S, D, N).
    """
    out = {}
    for mode in modes:
        if mode not in GRAD_MODES:
            raise ValueError(f"modes must be drawn from {GRAD_MODES}; got {mode!r}")
        xr = x.detach().clone().requires_grad_(True)
        recon = solve(xr, bases.detach(), method=method, steps=steps, grad=mode, inv_t=inv_t, beta=beta).recon
        (g,) = torch.autograd.grad((recon * weight).sum(), xr)
        out[mode] = g
    return out


def init_gradient_norm(x: Tensor, bases: Tensor, method: str, steps: int, weight: Tensor, *, inv_t: float = 100.0,
                       beta: float = 0.1) -> float:
    """||dL/dD_0||: how much the BPTT gradient of L = <weight, X_bar> reaches the initial bases D_0."""
    b0 = bases.detach().clone().requires_grad_(True)
    recon = solve(x.detach(), b0, method=method, steps=steps, grad="bptt", inv_t=inv_t, beta=beta).recon
    (g,) = torch.autograd.grad((recon * weight).sum(), b0)
    return float(g.norm())


def cosine(a: Tensor, b: Tensor) -> float:
    """Cosine similarity of two tensors seen as flat vectors."""
    a, b = a.reshape(-1), b.reshape(-1)
    return float(torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-30))


def norm_ratio(a: Tensor, b: Tensor) -> float:
    """||a|| / ||b||."""
    return float(a.norm() / b.norm().clamp_min(1e-30))


@contextlib.contextmanager
def saved_tensor_bytes() -> Iterator[dict]:
    """Count the bytes autograd saves for backward inside the block (each storage counted once).

    Deterministic on any device, unlike allocator statistics. Yields a dict whose ``"bytes"`` entry is
    filled in as the graph is built.
    """
    stats = {"bytes": 0}
    seen: set = set()

    def pack(t: Tensor) -> Tensor:
        key = (t.untyped_storage().data_ptr(), t.device)
        if key not in seen:
            seen.add(key)
            stats["bytes"] += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield stats


def backward_cost(x: Tensor, bases: Tensor, method: str, steps: int, grad: str, *, repeats: int = 5,
                  inv_t: float = 100.0, beta: float = 0.1) -> dict:
    """Time and memory of the backward pass of L = sum(X_bar) for one gradient mode.

    Args:
        x: data (B*S, D, N).
        bases: initial bases (B*S, D, R).
        method: ``"nmf"``, ``"vq"`` or ``"cd"``.
        steps: iterations K.
        grad: ``"one-step"``, ``"bptt"`` or ``"implicit"``.
        repeats: timed repeats (after one warm-up); the median is reported.
        inv_t: inverse temperature (VQ, CD).
        beta: ridge strength (CD).

    Returns:
        dict: ``{"backward_ms": median, "backward_ms_spread": (min, max), "saved_bytes": int,
        "cuda_peak_bytes": int or None}`` (the CUDA peak covers forward + backward).
    """
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES}; got {grad!r}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats!r}")
    cuda = x.device.type == "cuda"
    times, saved, peak = [], 0, None
    for i in range(repeats + 1):
        xr = x.detach().clone().requires_grad_(True)
        if cuda:
            torch.cuda.synchronize(x.device)
            torch.cuda.reset_peak_memory_stats(x.device)
            base_mem = torch.cuda.memory_allocated(x.device)
        with saved_tensor_bytes() as st:
            loss = solve(xr, bases, method=method, steps=steps, grad=grad, inv_t=inv_t, beta=beta).recon.sum()
        if cuda:
            torch.cuda.synchronize(x.device)
        t0 = time.perf_counter()
        loss.backward()
        if cuda:
            torch.cuda.synchronize(x.device)
            peak = torch.cuda.max_memory_allocated(x.device) - base_mem
        if i > 0:  # the first pass is a warm-up
            times.append(1e3 * (time.perf_counter() - t0))
        saved = st["bytes"]
    return {"backward_ms": statistics.median(times), "backward_ms_spread": (min(times), max(times)),
            "saved_bytes": saved, "cuda_peak_bytes": peak}


# --- a global-context task: one-step vs BPTT in training ---------------------------------------------------------

def majority_task(n: int, *, size: int = 16, classes: int = 3, markers: tuple[int, int] = (4, 3), noise: float = 0.1,
                  generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
    """Images whose every pixel must be labelled with the majority colour of a few scattered marker pixels.

    Each image has ``markers[0]`` pixels of its label class and ``markers[1]`` pixels of other classes
    (so the label is the unique majority), at random positions, on Gaussian noise. A CNN that sees only
    a small neighbourhood cannot count them; a global block can.

    Args:
        n: number of images.
        size: height = width of each image.
        classes: number of colours (channels) and of labels.
        markers: (majority markers, other markers); majority must exceed other.
        noise: standard deviation of the background noise.
        generator: CPU random generator.

    Returns:
        ``(x, y)``: x of shape (n, classes, size, size), y of shape (n, size, size) with values in [0, classes).
    """
    if classes < 2 or markers[0] <= markers[1] or sum(markers) > size * size:
        raise ValueError(f"need classes >= 2 and markers[0] > markers[1] fitting in {size}x{size}; "
                         f"got classes={classes}, markers={markers}")
    x = noise * torch.randn(n, classes, size, size, generator=generator)
    y = torch.randint(classes, (n,), generator=generator)
    pos = torch.stack([torch.randperm(size * size, generator=generator)[:sum(markers)] for _ in range(n)])
    other = (y[:, None] + torch.randint(1, classes, (n, markers[1]), generator=generator)) % classes
    cls = torch.cat([y[:, None].expand(n, markers[0]), other], dim=1)       # (n, m) colour of each marker
    x.view(n, classes, -1)[torch.arange(n)[:, None], cls, pos] += 1.0
    return x, y[:, None, None].expand(n, size, size).clone()


class GlobalContextNet(nn.Module):
    """Two 3x3 conv layers (a 5x5 receptive field), an optional Hamburger, a 1x1 classifier.

    Args:
        classes: input channels and output classes.
        channels: width C (= the ham's d).
        md: ``"nmf"``, ``"vq"``, ``"cd"`` or ``"none"`` (the local CNN alone).
        grad: the ham's gradient mode.
        steps: K in training and eval.
        R: rank.
    """

    def __init__(self, classes: int = 3, channels: int = 16, md: str = "nmf", grad: str = "one-step",
                 steps: int = 6, R: int = 4) -> None:
        super().__init__()
        from .hamburger import Hamburger

        def block(cin: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU()]

        self.stem = nn.Sequential(*block(classes), *block(channels))
        kw = {} if md == "nmf" else {"inv_t": 10.0}
        self.ham = nn.Identity() if md == "none" else Hamburger(channels, ham_channels=channels, md=md, R=R,
                                                                 train_steps=steps, eval_steps=steps, grad=grad, **kw)
        self.head = nn.Conv2d(channels, classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, classes, H, W) -> logits (B, classes, H, W)."""
        return self.head(self.ham(self.stem(x)))


def miou(pred: Tensor, target: Tensor, classes: int) -> float:
    """Mean intersection-over-union over ``classes`` (classes absent from both are skipped)."""
    cm = torch.bincount(target.reshape(-1) * classes + pred.reshape(-1), minlength=classes * classes)
    cm = cm.view(classes, classes).double()
    inter, union = cm.diag(), cm.sum(0) + cm.sum(1) - cm.diag()
    return float((inter[union > 0] / union[union > 0]).mean())


def train_global_context(md: str, grad: str, seed: int, *, iters: int = 300, batch: int = 32, lr: float = 3e-3,
                         steps: int = 6, test_size: int = 256, log_every: int = 10, progress: bool = False,
                         device: torch.device | str = "cpu") -> dict:
    """Train :class:`GlobalContextNet` on :func:`majority_task` with one gradient mode; evaluate on a fixed test set.

    Data are drawn on the CPU (seeded) and moved to ``device``.

    Returns:
        ``{"md", "grad", "seed", "iters", "loss": [(iteration, train loss)], "test_acc", "test_miou", "wall_s"}``.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(1000 + seed)
    x_te, y_te = majority_task(test_size, generator=torch.Generator().manual_seed(12345))
    x_te, y_te = x_te.to(device), y_te.to(device)
    net = GlobalContextNet(md=md, grad=grad, steps=steps).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    curve, t0 = [], time.perf_counter()
    it_range = range(iters)
    if progress:
        from tqdm.auto import tqdm
        it_range = tqdm(it_range, desc=f"{md}/{grad}/seed {seed}", leave=False)
    for it in it_range:
        x, y = majority_task(batch, generator=gen)
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it % log_every == 0 or it == iters - 1:
            curve.append((it, float(loss.detach())))
    net.eval()
    with torch.no_grad():
        pred = net(x_te).argmax(1)
    return {"md": md, "grad": grad, "seed": seed, "iters": iters, "loss": curve,
            "test_acc": float((pred == y_te).float().mean()), "test_miou": miou(pred.cpu(), y_te.cpu(), 3),
            "wall_s": time.perf_counter() - t0}


def main(argv: Optional[list[str]] = None) -> None:
    """``python -m hamlib.gradients --out FILE``: train every (ham, gradient mode) over several seeds, write JSON."""
    import argparse

    from .train import provenance, write_json

    p = argparse.ArgumentParser(description="One-step vs BPTT on the majority task (hamlib.gradients).")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--hams", default="nmf,vq,cd")
    p.add_argument("--modes", default="one-step,bptt")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    configs = [("none", "one-step")] + [(md, g) for md in args.hams.split(",") for g in args.modes.split(",")]
    t0, runs = time.perf_counter(), []
    from tqdm.auto import tqdm
    for md, g in tqdm(configs, desc="configs"):
        for seed in range(args.seeds):
            runs.append(train_global_context(md, g, seed, iters=args.iters))
    write_json(args.out, {"task": "majority_task(size=16, classes=3, markers=(4, 3)); GlobalContextNet(channels=16, "
                                  "R=4, steps=6); Adam lr 3e-3, batch 32",
                          "seeds": args.seeds, "iters": args.iters, "runs": runs,
                          "provenance": provenance(device="cpu", preset="cpu-reduced",
                                                   wall_time_s=time.perf_counter() - t0)})


if __name__ == "__main__":
    main()
