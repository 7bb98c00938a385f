"""hamlib.analysis: Jacobian of the solver map, its spectrum, gradient comparison, backward cost."""
import pytest
import torch

from hamlib.analysis import (backward_cost, cosine, fixed_point, init_gradient_norm, input_gradients,
                             jacobian_spectrum, norm_ratio, state_jacobian)
from hamlib.md import make_algorithm, solve
from hamlib.measure import saved_tensor_bytes


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


def test_fixed_point_refuses_zero_steps_instead_of_claiming_convergence():
    x, bases, _ = _problem("cd")
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        fixed_point(x, bases, "cd", steps=0)


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


def test_cosine_and_norm_ratio_reject_mismatched_sizes():
    with pytest.raises(ValueError, match="same number of entries"):
        cosine(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="same number of entries"):
        norm_ratio(torch.ones(3), torch.ones(2, 3))
    assert cosine(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])) == 0.0


def test_gradient_to_initial_bases_vanishes_with_K():
    x, bases, w = _problem("cd")
    norms = [init_gradient_norm(x, bases, "cd", K, w, inv_t=5.0) for K in (1, 10, 40)]
    assert norms[0] > 1e-3 and norms[2] < 1e-3 * norms[0]


def test_backward_cost_uses_the_shared_saved_bytes_counter():
    x, bases, _ = _problem("nmf", D=16, N=64, R=4)
    x, b = x.float(), bases.float()

    def saved(K, grad):
        xr = x.clone().requires_grad_(True)
        with saved_tensor_bytes() as st:
            solve(xr, b, method="nmf", steps=K, grad=grad).recon.sum()
        return st.bytes

    cost = backward_cost(x, b, "nmf", 3, "bptt", repeats=2)
    assert cost["saved_bytes"] == saved(3, "bptt") > saved(3, "one-step") > 0
    assert cost["backward_ms"] > 0 and cost["cuda_peak_bytes"] is None
    lo, hi = cost["backward_ms_spread"]
    assert lo <= cost["backward_ms"] <= hi
    with pytest.raises(ValueError, match="grad"):
        backward_cost(x, b, "nmf", 3, "unrolled")
    with pytest.raises(ValueError, match="repeats"):
        backward_cost(x, b, "nmf", 3, "bptt", repeats=0)


def test_gradients_module_is_gone():
    with pytest.raises(ImportError):
        import hamlib.gradients  # noqa: F401  (split into hamlib.analysis and hamlib.experiments.onestep)
