"""The fast solver form (Algorithm.iterate / final_rn: C as R x N, in place, invariants hoisted) equals the
step functions it replaces, for every ham, K, dtype and with or without autograd."""
import pytest
import torch

from hamlib.md import make_algorithm, solve


def _problem(method, dtype, seed=0, BS=3, D=16, N=40, R=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BS, D, N, generator=g, dtype=dtype)
    x = x.relu() if method == "nmf" else x
    bases = make_algorithm(method).init_bases(BS, D, R, dtype=dtype, generator=g)
    return x, bases


@pytest.mark.parametrize("method", ["nmf", "vq", "cd"])
@pytest.mark.parametrize("steps", [0, 1, 6])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_fast_form_equals_step_functions(method, steps, dtype, tol):
    x, bases = _problem(method, dtype)
    fast = solve(x, bases, method=method, steps=steps, inv_t=10.0)                    # fast form
    slow = solve(x, bases, method=method, steps=steps, inv_t=10.0, return_trace=True)  # step functions
    scale = float(slow.recon.abs().max())
    torch.testing.assert_close(fast.recon, slow.recon, rtol=tol, atol=tol * scale)
    torch.testing.assert_close(fast.bases, slow.bases, rtol=tol, atol=tol * float(slow.bases.abs().max()))
    torch.testing.assert_close(fast.coef, slow.coef, rtol=tol, atol=tol * float(slow.coef.abs().max()))
    assert fast.coef.shape == slow.coef.shape == (3, 40, 5)


@pytest.mark.parametrize("method", ["nmf", "vq", "cd"])
def test_fast_form_gradient_equals_step_functions(method):
    x, bases = _problem(method, torch.float64, seed=1)
    w = torch.randn_like(x)
    grads = []
    for trace in (False, True):
        xr = x.clone().requires_grad_(True)
        (solve(xr, bases, method=method, steps=4, inv_t=10.0, return_trace=trace).recon * w).sum().backward()
        grads.append(xr.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_fast_form_does_not_modify_its_inputs():
    x, bases = _problem("nmf", torch.float32)
    x0, b0 = x.clone(), bases.clone()
    with torch.no_grad():
        solve(x, bases, method="nmf", steps=3)
    assert torch.equal(x, x0) and torch.equal(bases, b0)
