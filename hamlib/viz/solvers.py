"""Step through the three hams (VQ, CD, NMF) of Geng et al. (ICLR 2021, arXiv 2109.04553) iteration by iteration.

:class:`SolverStepper` runs one :func:`hamlib.md.solve` with ``return_trace=True``
on a data matrix X (D x N) -- 2-D toy points or the pixels of a photo -- and
draws, for iteration k, the bases, the assignments/coefficients and the
objective so far. :func:`solver_widget` wraps it in ipywidgets (live in
Jupyter/Colab); :func:`solver_animation` is the kernel-free counterpart, a
matplotlib ``FuncAnimation`` to render with ``to_jshtml()`` on a static page.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..md import make_algorithm, solve
from .style import COLORS

__all__ = ["SolverStepper", "solver_widget", "solver_animation"]

_CYCLE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
          "#1f78b4", "#b2df8a", "#fb9a99", "#fdbf6f", "#cab2d6", "#ffff99", "#8dd3c7", "#bc80bd"]


class SolverStepper:
    """All iterates of one solve on a single matrix X, ready to draw.

    Args:
        x: data X, shape (D, N) (non-negative for NMF).
        method: ``"vq"``, ``"cd"`` or ``"nmf"``.
        rank: R, number of bases.
        steps: K, number of iterations recorded (iterate k = 0..K).
        inv_t: inverse temperature 1/T (VQ, CD; NMF ignores it).
        seed: seed of the random initial bases.
        beta: ridge strength of CD's final fit.
        image_shape: (H, W) when the N columns are the pixels of an image (then D must be 3, RGB).
    """

    def __init__(self, x: Tensor, method: str = "vq", rank: int = 4, steps: int = 12, *, inv_t: float = 20.0,
                 seed: int = 0, beta: float = 0.1, image_shape: Optional[Sequence[int]] = None) -> None:
        if not isinstance(x, Tensor) or x.dim() != 2:
            raise ValueError(f"x must be a tensor of shape (D, N); got {getattr(x, 'shape', type(x).__name__)}")
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be a positive int; got {rank!r}")
        if not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be a non-negative int; got {steps!r}")
        if image_shape is not None and (x.shape[0] != 3 or x.shape[1] != int(image_shape[0]) * int(image_shape[1])):
            raise ValueError(f"image_shape {tuple(image_shape)} needs x of shape (3, H*W); got {tuple(x.shape)}")
        self.x, self.method, self.rank, self.steps = x, method, rank, steps
        self.inv_t, self.seed, self.beta = inv_t, seed, beta
        self.image_shape = None if image_shape is None else (int(image_shape[0]), int(image_shape[1]))
        self.alg = make_algorithm(method, inv_t=inv_t, beta=beta)
        g = torch.Generator(device=x.device).manual_seed(seed)
        xb = x[None]                                                     # (B*S=1, D, N)
        bases0 = self.alg.init_bases(1, x.shape[0], rank, device=x.device, dtype=x.dtype, generator=g)
        sol = solve(xb, bases0, method=self.alg, steps=steps, return_trace=True)
        self.trace = sol.trace
        #: objective after k iterations, k = 0..K (exactly ``trace.objective_curve()[:, 0]``).
        self.objective = self.trace.objective_curve()[:, 0].cpu().numpy()

    @property
    def n_iterates(self) -> int:
        """K + 1, the number of iterates (k = 0..K)."""
        return len(self.trace.bases)

    def state(self, k: int) -> tuple[Tensor, Tensor, Tensor]:
        """Bases D_k (D, R), coefficients C_k^T (N, R) and reconstruction X_bar_k (D, N) at iterate ``k``.

        For VQ/CD the coefficients are those the final step would give from D_k (as in the objective);
        for NMF they are the current multiplicative-update iterate.
        """
        if not 0 <= k < self.n_iterates:
            raise ValueError(f"k must be in [0, {self.n_iterates - 1}]; got {k!r}")
        xb, bases, coef = self.x[None], self.trace.bases[k], self.trace.coef[k]
        if self.method != "nmf":
            coef = self.alg.final(xb, bases, coef)
        recon = torch.bmm(bases, coef.transpose(1, 2))                  # (1, D, R) @ (1, R, N) -> (1, D, N)
        return bases[0], coef[0], recon[0]

    def draw(self, k: int, axes=None):
        """Draw iterate ``k`` on three axes (data & bases | coefficients | objective); returns the figure."""
        import matplotlib.pyplot as plt

        if axes is None:
            fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.0), gridspec_kw={"width_ratios": [1, 1, 1]})
        fig = axes[0].figure
        for ax in axes:
            ax.clear()
        bases, coef, recon = (t.detach().cpu() for t in self.state(k))
        assign = coef.argmax(dim=1).numpy()
        colours = np.array([_CYCLE[r % len(_CYCLE)] for r in range(self.rank)])
        if self.image_shape is None:
            self._draw_points(axes[0], bases, assign, colours)
            order = np.argsort(assign, kind="stable")
            axes[1].imshow(coef.numpy()[order].T, aspect="auto", cmap="viridis", interpolation="nearest")
            axes[1].set(xlabel="point n (sorted by assignment)", ylabel="basis r", title="coefficients $C_k$")
            axes[1].grid(False)
        else:
            H, W = self.image_shape
            axes[0].imshow(recon.T.reshape(H, W, 3).clamp(0, 1).numpy())
            axes[0].set(title=f"reconstruction $D_k C_k$, k={k}", xticks=[], yticks=[])
            axes[0].grid(False)
            swatch = (bases.abs() / bases.abs().amax(0, keepdim=True).clamp_min(1e-8)).T.numpy()  # (R, 3): basis hue
            axes[1].imshow(swatch[assign].reshape(H, W, 3))
            axes[1].set(title="argmax assignment (basis colour)", xticks=[], yticks=[])
            axes[1].grid(False)
        ax = axes[2]
        ks = np.arange(self.n_iterates)
        ax.plot(ks, self.objective, color="#bbbbbb", lw=1, label="all iterations")
        ax.plot(ks[:k + 1], self.objective[:k + 1], "o-", color=COLORS.get(self.method, "k"), ms=3,
                label=f"{self.method.upper()} so far")
        ax.set(xlabel="iteration k", ylabel=r"$\|X - D_k C_k\|_F^2$", yscale="log", title="objective")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def _draw_points(self, ax, bases: Tensor, assign: np.ndarray, colours: np.ndarray) -> None:
        x = self.x.detach().cpu().numpy()
        ax.scatter(x[0], x[1], c=colours[assign], s=8, alpha=0.7, linewidths=0)
        b = bases.numpy()
        if self.method == "cd":  # unit concept vectors: draw as directions
            for r in range(self.rank):
                ax.annotate("", xy=(b[0, r], b[1, r]), xytext=(0, 0),
                            arrowprops=dict(arrowstyle="->", color=colours[r], lw=2))
        ax.scatter(b[0], b[1], marker="*", s=180, c=colours, edgecolors="black", linewidths=0.8, zorder=3)
        ax.set(xlabel="$x_1$", ylabel="$x_2$", title=f"{self.method.upper()} bases $D_k$ (stars)",
               xlim=(-0.1, 1.4), ylim=(-0.1, 1.4), aspect="equal")


def solver_animation(x: Tensor, method: str = "vq", rank: int = 4, steps: int = 12, *, inv_t: float = 20.0,
                     seed: int = 0, beta: float = 0.1, image_shape: Optional[Sequence[int]] = None,
                     interval: int = 500, dpi: int = 72):
    """A matplotlib ``FuncAnimation`` with one frame per iterate k = 0..``steps`` (keep steps <= 24).

    Show it on a static page with ``IPython.display.HTML(anim.to_jshtml())``. Arguments as in
    :class:`SolverStepper`; ``interval`` is the delay between frames in ms.
    """
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation

    if steps > 24:
        raise ValueError(f"steps must be <= 24 to keep the animation light; got {steps!r}")
    stepper = SolverStepper(x, method, rank, steps, inv_t=inv_t, seed=seed, beta=beta, image_shape=image_shape)
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.0), dpi=dpi)
    stepper.draw(0, axes)
    anim = FuncAnimation(fig, lambda k: stepper.draw(k, axes) and [], frames=stepper.n_iterates,
                         interval=interval, blit=False)
    plt.close(fig)  # shown through to_jshtml(), not as a static figure
    anim.stepper = stepper
    return anim


def solver_widget(points: Tensor, image: Optional[Tensor] = None, image_shape: Optional[Sequence[int]] = None, *,
                  method: str = "vq", rank: int = 4, steps: int = 12, inv_t: float = 20.0, seed: int = 0):
    """An ipywidgets stepper: data (points/image), solver dropdown, iteration k, rank R, 1/T and seed.

    The default state is drawn as soon as the widget is built, so it also renders when a notebook
    is executed headless (no interaction needed).

    Args:
        points: 2-D toy data X, shape (2, N), non-negative.
        image: optional photo as X of shape (3, H*W) with ``image_shape`` = (H, W).
        method, rank, steps, inv_t, seed: initial control values.

    Returns:
        An ``ipywidgets.VBox`` (controls above the figure); ``.stepper`` is the default state's stepper.
    """
    import base64
    import io

    import ipywidgets as w
    import matplotlib.pyplot as plt

    data = {"2-D points": (points, None)}
    if image is not None:
        data["image pixels"] = (image, image_shape)
    ctl = dict(
        data=w.Dropdown(options=list(data), value="2-D points", description="data"),
        method=w.Dropdown(options=[("VQ", "vq"), ("CD", "cd"), ("NMF", "nmf")], value=method, description="solver"),
        k=w.IntSlider(value=steps, min=0, max=steps, description="iteration k"),
        rank=w.IntSlider(value=rank, min=1, max=12, description="rank R"),
        inv_t=w.FloatLogSlider(value=inv_t, base=10, min=0, max=2.5, description="1/T"),
        seed=w.IntSlider(value=seed, min=0, max=20, description="seed"),
    )
    cache: dict = {}
    out = w.Output()

    def redraw(data, method, k, rank, inv_t, seed):
        key = (data, method, rank, round(inv_t, 6), seed)
        if key not in cache:
            x, shape = data_map[data]
            cache.clear()
            cache[key] = SolverStepper(x, method, rank, steps, inv_t=inv_t, seed=seed, image_shape=shape)
        box.stepper = cache[key]
        fig = cache[key].draw(k)
        # Replace the Output widget's content by assignment, not by capturing display() inside ``with out:``:
        # executed headless (nbclient, as the book build does), the captured form made the client miss the next
        # cell's reply about 1 run in 7 and wait out the whole cell timeout (measured in a minimal notebook: 4
        # stalls in 30 runs captured, 0 in 25 assigned).
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")      # what the inline backend shows
        plt.close(fig)
        png = base64.b64encode(buf.getvalue()).decode("ascii")
        out.outputs = ({"output_type": "display_data", "metadata": {},
                        "data": {"image/png": png, "text/plain": f"<solver state: {method}, k = {k}>"}},)

    data_map = data
    box = w.VBox([w.HBox([ctl["data"], ctl["method"], ctl["k"]]), w.HBox([ctl["rank"], ctl["inv_t"], ctl["seed"]]),
                  out])
    w.interactive_output(redraw, ctl)
    return box
