"""Gradients: one-step = autograd through the final step only; BPTT = autograd through the unrolled loop."""
import pytest
import torch

import hamlib
from hamlib.md import make_algorithm

METHODS = ["nmf", "vq", "cd"]


def _setup(method, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 8, 4, 5, generator=g, dtype=torch.float64)
    if method == "nmf":
        x = x.relu() + 0.01
    ham = hamlib.build_ham(method, R=3, train_steps=5, inv_t=5.0) if method != "nmf" else hamlib.NMF2D(R=3, train_steps=5)
    bases = ham.init_bases(2, 8, device=torch.device("cpu"), dtype=torch.float64, generator=g)
    w = torch.randn(2, 8, 4, 5, generator=g, dtype=torch.float64)  # a random linear loss
    return ham, x, bases, w


def _manual(method, x, bases, K, unroll):
    alg = make_algorithm(method, inv_t=5.0)
    xm = x.reshape(2, 8, 20)
    ctx = torch.enable_grad() if unroll else torch.no_grad()
    with ctx:
        coef = alg.init_coef(xm, bases)
        for _ in range(K):
            bases, coef = alg.step(xm, bases, coef)
    if not unroll:
        bases, coef = bases.detach(), coef.detach()
    coef = alg.final(xm, bases, coef)
    return torch.bmm(bases, coef.transpose(1, 2)).reshape_as(x)


@pytest.mark.parametrize("method", METHODS)
def test_one_step_gradient_is_final_step_only(method):
    ham, x, bases, w = _setup(method)
    x1 = x.clone().requires_grad_()
    (ham(x1, bases) * w).sum().backward()
    x2 = x.clone().requires_grad_()
    (_manual(method, x2, bases, 5, unroll=False) * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_bptt_gradient_is_unrolled_autograd(method):
    ham, x, bases, w = _setup(method)
    ham.grad = "bptt"
    x1 = x.clone().requires_grad_()
    (ham(x1, bases) * w).sum().backward()
    x2 = x.clone().requires_grad_()
    (_manual(method, x2, bases, 5, unroll=True) * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-12, atol=1e-12)
    # and the two modes really differ (otherwise the tests above could not tell them apart)
    x3 = x.clone().requires_grad_()
    ham.grad = "one-step"
    (ham(x3, bases) * w).sum().backward()
    assert not torch.allclose(x1.grad, x3.grad, rtol=1e-3)


@pytest.mark.parametrize("method", METHODS)
def test_forward_values_do_not_depend_on_grad_mode(method):
    ham, x, bases, _ = _setup(method)
    a = ham(x, bases)
    ham.grad = "bptt"
    # one-step runs the fast form (C as R x N, in place), BPTT the step functions: equal to float64 rounding
    torch.testing.assert_close(ham(x, bases), a, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck_final_step(method):
    alg = make_algorithm(method, inv_t=5.0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 4, 6, generator=g, dtype=torch.float64) + 0.1
    bases = torch.nn.functional.normalize(torch.rand(1, 4, 3, generator=g, dtype=torch.float64), dim=1)
    coef = alg.init_coef(x, bases)
    if method == "vq":
        # VQ's final step treats the pixel norms ||x_n|| as constants (as the official solver does), so its
        # x-gradient is that of x -> softmax(inv_t * (x / (eps + n0))^T D_hat) with n0 frozen at x's norms.
        n0 = x.norm(dim=1, keepdim=True)
        d_hat = torch.nn.functional.normalize(bases, dim=1, eps=1e-6)
        frozen = lambda x_: torch.softmax(5.0 * torch.bmm((x_ / (1e-6 + n0)).transpose(1, 2), d_hat), -1)
        x1 = x.clone().requires_grad_()
        w = torch.randn(1, 6, 3, dtype=torch.float64)
        (alg.final(x1, bases, coef) * w).sum().backward()
        x2 = x.clone().requires_grad_()
        (frozen(x2) * w).sum().backward()
        torch.testing.assert_close(x1.grad, x2.grad)
        assert torch.autograd.gradcheck(frozen, (x.clone().requires_grad_(),))
    else:
        assert torch.autograd.gradcheck(lambda x_: alg.final(x_, bases, coef), (x.clone().requires_grad_(),))
    assert torch.autograd.gradcheck(lambda b_: alg.final(x.detach(), b_, coef), (bases.clone().requires_grad_(),))


def test_one_step_keeps_no_graph_of_the_iterations():
    """The memory claim behind the one-step gradient: the graph does not grow with K."""
    ham, x, bases, _ = _setup("nmf")
    x = x.requires_grad_()

    def n_nodes(K):
        ham.train_steps = K
        out = ham(x, bases)
        seen, stack = set(), [out.grad_fn]
        while stack:
            f = stack.pop()
            if f is None or f in seen:
                continue
            seen.add(f)
            stack.extend(n for n, _ in f.next_functions)
        return len(seen)

    assert n_nodes(2) == n_nodes(20)
    ham.grad = "bptt"
    assert n_nodes(20) > n_nodes(2)
