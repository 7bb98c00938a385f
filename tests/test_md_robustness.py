"""Inputs that used to give silent wrong answers (issue 15) and the cost of the input checks (issues 10, 14)."""
import warnings

import pytest
import torch

import hamlib
from hamlib.md import SAFE_MAX_HIGH, SAFE_MAX_LOW, make_algorithm, safe_scale, solve
from hamlib.md.implicit import ImplicitGradientError, ImplicitGradientWarning

HAMS = {"nmf": hamlib.NMF2D, "vq": hamlib.VQ2D, "cd": hamlib.CD2D}


# ---- grad="implicit" at the default K = 6 must not hand back a silent exploding gradient -----------------------

def _implicit_block(md, **kw):
    torch.manual_seed(0)
    return hamlib.Hamburger(64, 64, md=md, R=8, grad="implicit", **kw), torch.randn(2, 64, 8, 8)


@pytest.mark.parametrize("md", ["nmf", "vq", "cd"])
def test_implicit_default_k_reports_non_convergence_with_figures(md):
    """At K = 6 the state is no fixed point: NMF's series grows (eigenvalue ~1 of the scaling invariance), VQ/CD's
    explodes at inv_t = 100. Today's code returned gradients of 1e10-1e18 silently; now it warns with the figures
    (or raises once the gradient is non-finite)."""
    block, z = _implicit_block(md)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        try:
            block(z).square().mean().backward()
            msgs = [str(w.message) for w in rec if issubclass(w.category, ImplicitGradientWarning)]
        except ImplicitGradientError as e:
            msgs = [str(e)]
    assert msgs, "non-convergence was silent"
    for word in ("Neumann terms", "relative change", "grown to", "grad='one-step'", "train_steps"):
        assert word in msgs[0], (word, msgs[0])


def test_implicit_on_fail_raise():
    block, z = _implicit_block("nmf", implicit_on_fail="raise")
    with pytest.raises(ImplicitGradientError, match="Neumann terms"):
        block(z).square().mean().backward()
    with pytest.raises(ValueError, match="implicit_on_fail"):
        hamlib.NMF2D(implicit_on_fail="ignore")


def test_non_finite_implicit_gradient_always_raises():
    from hamlib.md.implicit import report_convergence
    g = torch.tensor([1.0, float("nan")])
    with pytest.raises(ImplicitGradientError, match="non-finite"):
        report_convergence(g, 200, float("nan"), float("inf"), tol=1e-6, on_fail="warn")


def test_implicit_converged_series_is_silent():
    x = torch.randn(1, 6, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64, requires_grad=True)
    bases = make_algorithm("cd").init_bases(1, 6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solve(x, bases, method="cd", steps=100, grad="implicit", inv_t=5.0).recon.sum().backward()
    assert torch.isfinite(x.grad).all()


# ---- hyper-parameters and bases that give NaN or wrong-signed output are rejected ------------------------------

@pytest.mark.parametrize("kwargs,words", [
    ({"inv_t": float("inf")}, ["inv_t", "finite", "inf"]),
    ({"inv_t": float("nan")}, ["inv_t", "finite", "nan"]),
    ({"beta": float("inf")}, ["beta", "finite", "inf"]),
    ({"beta": -1.0}, ["beta", ">= 0", "-1.0"]),
])
def test_non_finite_hyperparameters_rejected(kwargs, words):
    for ctor in (lambda: hamlib.CD2D(**kwargs), lambda: make_algorithm("cd", **kwargs)):
        with pytest.raises(ValueError) as e:
            ctor()
        for w in words:
            assert w in str(e.value), (w, str(e.value))


@pytest.mark.parametrize("md", ["nmf", "vq", "cd"])
def test_non_finite_bases_rejected(md):
    ham = HAMS[md](R=3).eval()
    x = torch.rand(1, 8, 4, 4)
    bases = ham.init_bases(1, 8, device=x.device, dtype=x.dtype)
    bases[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"bases must be finite; got 1 NaN/inf"):
        ham(x, bases)


def test_negative_nmf_bases_rejected():
    ham = hamlib.NMF2D(R=3).eval()
    bases = ham.init_bases(1, 8, device=torch.device("cpu"), dtype=torch.float32)
    bases[0, 1, 2] = -0.5
    with pytest.raises(ValueError, match=r"bases must be non-negative.*min value -0.5"):
        ham(torch.rand(1, 8, 4, 4), bases)
    hamlib.VQ2D(R=3).eval()(torch.rand(1, 8, 4, 4), bases)   # VQ/CD bases may have any sign


# ---- magnitudes: huge and tiny data are solved at a safe scale ------------------------------------------------

def _fit(x, out):
    return float((x - out).norm() / x.norm())


@pytest.mark.parametrize("md", ["nmf", "vq", "cd"])
@pytest.mark.parametrize("magnitude", [1e20, 1e30, 1e-10, 1e-20])
def test_extreme_magnitudes_give_the_rescaled_answer(md, magnitude):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 32, 8, 8, generator=g) if md == "nmf" else torch.randn(2, 32, 8, 8, generator=g)
    ham = HAMS[md](R=8).eval()
    bases = ham.init_bases(2, 32, device=x.device, dtype=x.dtype, generator=g)
    ref = ham(x, bases)
    out = ham(x * magnitude, bases)
    assert torch.isfinite(out).all() and out.abs().max() > 0, "NaN or collapsed to zero"
    # the quality of the low-rank fit does not depend on the scale of the data
    assert _fit(x, out / magnitude) == pytest.approx(_fit(x, ref), abs=0.05)
    if md != "nmf":  # VQ and CD are scale-equivariant (NMF's softmax start is not)
        torch.testing.assert_close(out / magnitude, ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max()))


def test_safe_range_is_untouched_and_scale_is_a_power_of_two():
    lo = torch.tensor([0.0, 0.0, -3.0, 0.0, 0.0, float("nan")])
    hi = torch.tensor([1.0, SAFE_MAX_HIGH, 2.0, 1e20, 1e-10, 1.0])
    s = safe_scale(lo, hi).flatten()
    assert s[:3].tolist() == [1.0, 1.0, 1.0] and s[5] == 1.0
    for i in (3, 4):
        m = float(hi[i]) * float(s[i])
        assert 1.0 <= m < 2.0 and float(torch.log2(s[i])).is_integer()
    assert safe_scale(torch.zeros(1), torch.zeros(1)).item() == 1.0          # all-zero data stays as is
    assert SAFE_MAX_LOW < 1e-2 and SAFE_MAX_HIGH > 1e10


# ---- eval_seed: a sample's prediction does not depend on its neighbours ----------------------------------------

@pytest.mark.parametrize("md", ["nmf", "vq", "cd"])
def test_eval_seed_prediction_independent_of_batch(md):
    ham = HAMS[md](R=4, S=2, eval_seed=3).eval()
    x = torch.rand(4, 8, 5, 5)
    alone = ham(x[1:2])
    batched = ham(x)
    torch.testing.assert_close(batched[1:2], alone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ham(x[1:3])[0:1], alone, rtol=1e-5, atol=1e-6)


# ---- input checks: one pass, only where no training step pays a host sync ------------------------------------

def _count_checks(monkeypatch):
    import hamlib.md.base as base
    calls = []
    real = base.check_range
    monkeypatch.setattr(base, "check_range", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    return calls


def test_checks_run_in_eval_and_on_first_training_forward_only(monkeypatch):
    calls = _count_checks(monkeypatch)
    ham = hamlib.NMF2D(R=2)
    x = torch.rand(1, 8, 4, 4)
    for _ in range(3):
        ham(x)
    assert len(calls) == 1, "training forwards after the first must not read values back"
    ham.eval()
    for _ in range(2):
        ham(x)
    assert len(calls) == 3
    ham_always = hamlib.NMF2D(R=2, check_inputs="always")
    for _ in range(2):
        ham_always(x)
    assert len(calls) == 5
    hamlib.NMF2D(R=2, check_inputs=False).eval()(x)
    assert len(calls) == 5
    with pytest.raises(ValueError, match="check_inputs"):
        hamlib.NMF2D(check_inputs="sometimes")


def test_first_training_forward_still_catches_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        hamlib.NMF2D(R=2)(torch.rand(1, 8, 4, 4) - 0.5)


def test_hamburger_compiles_fullgraph_and_equals_eager():
    """No graph break in the whole block (checks are skipped while compiling). The eager backend checks the
    capture without inductor's minute-long C++ build on this CPU."""
    torch.manual_seed(0)
    block = hamlib.Hamburger(16, 16, md="nmf", R=4)
    x = torch.randn(2, 16, 6, 6)
    bases = block.ham.init_bases(2, 16, device=x.device, dtype=x.dtype, generator=torch.Generator().manual_seed(0))
    ref = block(x, bases=bases)
    out = torch.compile(block, fullgraph=True, backend="eager")(x, bases=bases)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("md", ["nmf", "vq", "cd"])
def test_compiled_iterations_equal_eager(md):
    x = torch.rand(2, 16, 5, 6)
    eager = HAMS[md](R=4)
    comp = HAMS[md](R=4, compile="aot_eager")
    bases = eager.init_bases(2, 16, device=x.device, dtype=x.dtype, generator=torch.Generator().manual_seed(0))
    xr = x.clone().requires_grad_(True)
    out = comp(xr, bases)
    torch.testing.assert_close(out, eager(x, bases), rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert xr.grad is not None and torch.isfinite(xr.grad).all()
    with pytest.raises(ValueError, match="compile"):
        HAMS[md](compile=True, grad="bptt")
