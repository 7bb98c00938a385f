"""hamlib.gradients: Jacobian of the solver map, gradient comparison, backward cost, the majority task."""
import pytest
import torch

from hamlib.gradients import (GlobalContextNet, backward_cost, cosine, fixed_point, init_gradient_norm,
                              input_gradients, jacobian_spectrum, majority_task, miou, norm_ratio, saved_tensor_bytes,
                              state_jacobian)
from hamlib.md import make_algorithm, solve


def _problem(method="cd", seed=0, D=5, N=8, R=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, D, N, generator=g, dtype=torch.float64)
    if method == "nmf":
        x = x.relu() + 0.1
    bases = make_algorithm(method).init_bases(1, D, R, dtype=torch.float64, generator=g)
    return x, bases, torch.randn(1, D, N, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("method", ["nmf", "vq", "cd"])
def test_state_jacobian_matches_directional_finite_difference(method):
    x, bases, _ = _problem(method)
    alg = make_algorithm(method, inv_t=5.0)
    coef = alg.init_coef(x, bases)
    J = state_jacobian(x, bases, coef, method, inv_t=5.0)
    P = bases.numel() + coef.numel()
    assert J.shape == (P, P)
    v = torch.randn(P, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    nb, eps = bases.numel(), 1e-6

    def F(h):
        b, c = alg.step(x, h[:nb].view_as(bases), h[nb:].view_as(coef))
        return torch.cat([b.reshape(-1), c.reshape(-1)])

    h = torch.cat([bases.reshape(-1), coef.reshape(-1)])
    fd = (F(h + eps * v) - F(h - eps * v)) / (2 * eps)
    torch.testing.assert_close(J @ v, fd, rtol=1e-5, atol=1e-7)


def test_jacobian_spectrum_of_known_matrix():
    J = torch.tensor([[0.5, 1.0], [0.0, -0.25]], dtype=torch.float64)
    s = jacobian_spectrum(J)
    assert s["spectral_radius"] == pytest.approx(0.5)
    assert s["norm2"] == pytest.approx(float(torch.linalg.svdvals(J)[0]))
    assert s["norm2"] > s["spectral_radius"]  # non-normal: the norm can exceed the radius
    with pytest.raises(ValueError, match="square"):
        jacobian_spectrum(torch.zeros(2, 3))


def test_fixed_point_converges_and_spectrum_is_contractive_for_cd():
    x, bases, _ = _problem("cd")
    b, c, change = fixed_point(x, bases, "cd", steps=200, inv_t=5.0)
    assert change < 1e-10
    assert jacobian_spectrum(state_jacobian(x, b, c, "cd", inv_t=5.0))["spectral_radius"] < 1


def test_input_gradients_modes_differ_and_validate():
    x, bases, w = _problem("cd")
    g = input_gradients(x, bases, "cd", 4, w, inv_t=5.0)
    assert set(g) == {"one-step", "bptt", "implicit"}
    assert all(v.shape == x.shape for v in g.values())
    assert cosine(g["one-step"], g["bptt"]) < 0.999
    assert cosine(g["bptt"], g["bptt"]) == pytest.approx(1.0)
    assert norm_ratio(2 * g["bptt"], g["bptt"]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="modes"):
        input_gradients(x, bases, "cd", 4, w, modes=("full",))


def test_gradient_to_initial_bases_vanishes_with_K():
    x, bases, w = _problem("cd")
    norms = [init_gradient_norm(x, bases, "cd", K, w, inv_t=5.0) for K in (1, 10, 40)]
    assert norms[0] > 1e-3 and norms[2] < 1e-3 * norms[0]


def test_saved_bytes_grow_with_K_for_bptt_only():
    x, bases, _ = _problem("nmf", D=16, N=64, R=4)
    x = x.float().requires_grad_(True)
    b = bases.float()

    def saved(K, grad):
        with saved_tensor_bytes() as st:
            solve(x, b, method="nmf", steps=K, grad=grad).recon.sum()
        return st["bytes"]

    assert saved(2, "one-step") == saved(8, "one-step") > 0
    assert saved(8, "bptt") > 2 * saved(2, "bptt") > 0
    cost = backward_cost(x.detach(), b, "nmf", 3, "bptt", repeats=2)
    assert cost["saved_bytes"] == saved(3, "bptt") and cost["backward_ms"] > 0 and cost["cuda_peak_bytes"] is None
    with pytest.raises(ValueError, match="grad"):
        backward_cost(x.detach(), b, "nmf", 3, "unrolled")


def test_majority_task_labels_are_the_majority_colour():
    x, y = majority_task(20, size=8, classes=3, markers=(3, 2), noise=0.0, generator=torch.Generator().manual_seed(0))
    assert x.shape == (20, 3, 8, 8) and y.shape == (20, 8, 8)
    counts = (x > 0.5).sum(dim=(2, 3))  # markers per colour
    assert torch.equal(counts.argmax(1), y[:, 0, 0]) and (counts.sum(1) == 5).all()
    assert (y == y[:, :1, :1]).all()
    with pytest.raises(ValueError, match="markers"):
        majority_task(2, markers=(2, 2))


def test_miou_and_net_shapes():
    t = torch.tensor([0, 0, 1, 1])
    assert miou(t, t, 2) == 1.0
    assert miou(torch.tensor([0, 0, 0, 1]), t, 2) == pytest.approx((2 / 3 + 1 / 2) / 2)
    for md in ("none", "nmf"):
        out = GlobalContextNet(md=md)(torch.randn(2, 3, 8, 8))
        assert out.shape == (2, 3, 8, 8)
