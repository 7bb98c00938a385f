"""grad="implicit": the implicit-function-theorem gradient at the solver's fixed point (hamlib.md.implicit)."""
import pytest
import torch

import hamlib
from hamlib.md import make_algorithm, solve
from hamlib.md.implicit import implicit_state, neumann_vjp

INV_T = 5.0


def _problem(method, seed=0, D=6, N=12, R=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, D, N, generator=g, dtype=torch.float64)
    if method == "nmf":
        x = x.relu() + 0.1
    bases = make_algorithm(method, inv_t=INV_T).init_bases(1, D, R, dtype=torch.float64, generator=g)
    w = torch.randn(1, D, N, generator=g, dtype=torch.float64)
    return x, bases, w


def _loss(x, bases, w, method, steps, grad):
    return (solve(x, bases, method=method, steps=steps, grad=grad, inv_t=INV_T).recon * w).sum()


def _grad(x, bases, w, method, steps, grad):
    xr = x.clone().requires_grad_(True)
    _loss(xr, bases, w, method, steps, grad).backward()
    return xr.grad


def _cos(a, b):
    return float((a * b).sum() / (a.norm() * b.norm()))


# NMF's Jacobian has spectral radius close to 1 (the scaling D diag(s), C diag(1/s) is a family of fixed points),
# so the Neumann series converges slowly and the default cap of 200 terms leaves a ~1e-4 relative error.
# ... and the backward reports that with an ImplicitGradientWarning (relative change ~2e-5 > tol 1e-6), expected here.
@pytest.mark.filterwarnings("ignore::hamlib.md.implicit.ImplicitGradientWarning")
@pytest.mark.parametrize("method,steps,rel", [("nmf", 1000, 1e-3), ("vq", 300, 1e-5), ("cd", 300, 1e-5)])
def test_implicit_matches_finite_differences_at_fixed_point(method, steps, rel):
    x, bases, w = _problem(method)
    g = _grad(x, bases, w, method, steps, "implicit")
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    if method == "vq":
        # VQ's final step treats the pixel norms ||x_n|| as constants (as the official code does), so
        # autograd is not the full derivative along norm changes; probe a direction that keeps them fixed.
        xh = x / x.norm(dim=1, keepdim=True)
        v = v - (v * xh).sum(dim=1, keepdim=True) * xh
    eps = 1e-5
    fd = (_loss(x + eps * v, bases, w, method, steps, "one-step")
          - _loss(x - eps * v, bases, w, method, steps, "one-step")) / (2 * eps)
    assert float((g * v).sum()) == pytest.approx(float(fd), rel=rel)
    # ... and the one-step gradient is a different vector, so the check above can tell them apart
    assert float((_grad(x, bases, w, method, steps, "one-step") * v).sum()) != pytest.approx(float(fd), rel=1e-2)


@pytest.mark.parametrize("method", ["vq", "cd"])
def test_bptt_approaches_implicit_as_K_grows(method):
    x, bases, w = _problem(method)
    g_star = _grad(x, bases, w, method, 300, "implicit")
    cos = [_cos(_grad(x, bases, w, method, K, "bptt"), g_star) for K in (1, 5, 50)]
    assert cos[0] < 0.9 and cos[-1] > 0.9999
    assert cos[-1] > cos[1] > cos[0]
    assert _cos(_grad(x, bases, w, method, 300, "one-step"), g_star) < 0.99


@pytest.mark.parametrize("method", ["nmf", "vq", "cd"])
def test_implicit_forward_equals_one_step_forward(method):
    x, bases, w = _problem(method)
    xr = x.clone().requires_grad_(True)
    a = solve(xr, bases, method=method, steps=4, grad="implicit", inv_t=INV_T).recon
    b = solve(x, bases, method=method, steps=4, grad="one-step", inv_t=INV_T).recon
    # one-step without a trace runs the fast form (C as R x N, in place): equal to float64 rounding
    torch.testing.assert_close(a.detach(), b, rtol=1e-12, atol=1e-14)


def test_implicit_without_grad_returns_detached_state():
    x, bases, _ = _problem("cd")
    coef = torch.zeros(1, 12, 2, dtype=torch.float64)
    b, c = implicit_state(make_algorithm("cd").step, x, bases, coef)
    assert not b.requires_grad and not c.requires_grad
    with torch.no_grad():
        out = solve(x.clone().requires_grad_(True), bases, method="cd", steps=3, grad="implicit").recon
    assert not out.requires_grad


def test_neumann_reports_non_convergence_and_rejects_bad_max_iter():
    x, bases, w = _problem("nmf")
    alg = make_algorithm("nmf")
    u = torch.randn_like(bases)
    coef = alg.init_coef(x, bases)
    _, it, rel = neumann_vjp(alg.step, x, bases, coef, u, torch.zeros_like(coef), max_iter=2, tol=1e-12)
    assert it == 2 and rel > 1e-12
    with pytest.raises(ValueError, match="max_iter"):
        neumann_vjp(alg.step, x, bases, coef, u, torch.zeros_like(coef), max_iter=-1)


def test_module_accepts_implicit_and_trains():
    """Where the solver reaches its fixed point and J contracts (CD, inv_t=5, K=60) the module trains silently."""
    import warnings
    torch.manual_seed(0)
    ham = hamlib.Hamburger(8, ham_channels=8, md="cd", R=3, grad="implicit", norm="none", inv_t=5.0,
                           train_steps=60, implicit_on_fail="raise")
    z = torch.randn(2, 8, 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ham(z).square().mean().backward()
    grads = [p.grad for p in ham.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    with pytest.raises(ValueError, match="grad"):
        hamlib.NMF2D(grad="implicit-ish")


def test_record_backward_logs_how_each_series_ended():
    """A contracting solve is logged as converged; the default NMF head at K=6 as not converged; nothing leaks out."""
    import warnings
    from hamlib.md.implicit import record_backward, summarise_backward
    torch.manual_seed(0)
    good = hamlib.Hamburger(8, ham_channels=8, md="cd", R=3, grad="implicit", norm="none", inv_t=5.0,
                            train_steps=60, implicit_on_fail="raise")
    bad = hamlib.Hamburger(8, ham_channels=8, md="nmf", R=3, grad="implicit", norm="none")
    z = torch.randn(2, 8, 4, 4)
    with record_backward() as outer:
        with record_backward() as inner:
            good(z).square().mean().backward()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bad(z.abs()).square().mean().backward()
    assert [e["status"] for e in inner] == ["converged"]
    assert len(outer) == 2 and outer[0] == inner[0] and outer[1]["status"] in ("unconverged", "diverged")
    s = summarise_backward(outer)
    assert s["backward_passes"] == 2 and s["converged"] == 1 and s["unconverged"] + s["diverged"] == 1
    assert s["terms_max"] >= s["terms_median"] >= 1
    good(z).sum().backward()                                      # outside the block: logged nowhere
    assert len(outer) == 2 and summarise_backward([])["terms_median"] is None
