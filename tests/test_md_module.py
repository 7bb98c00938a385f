"""The ham modules: shapes, modes, determinism, dtypes and error messages."""
import pytest
import torch

import hamlib

HAMS = [hamlib.NMF2D, hamlib.VQ2D, hamlib.CD2D]


@pytest.mark.parametrize("cls", HAMS)
@pytest.mark.parametrize("shape,S", [((2, 16, 8, 8), 1), ((2, 16, 8, 8), 4), ((1, 12, 5, 9), 3), ((1, 8, 1, 1), 1)])
def test_shapes(cls, shape, S, device, gen):
    x = torch.rand(shape, device=device, generator=gen)
    out = cls(S=S, R=4)(x, generator=gen)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("cls", HAMS)
def test_train_and_eval_step_counts(cls):
    ham = cls(R=3, train_steps=2, eval_steps=5)
    x = torch.rand(1, 4, 3, 3)
    assert len(ham.solve(x, return_trace=True)[1].trace.bases) == 3
    ham.eval()
    assert len(ham.solve(x, return_trace=True)[1].trace.bases) == 6


@pytest.mark.parametrize("cls", HAMS)
def test_seeded_generator_is_reproducible_and_seeds_differ(cls, device):
    x = torch.rand(2, 8, 4, 4, device=device)
    ham = cls(R=4)
    out = [ham(x, generator=torch.Generator(device=device).manual_seed(s)) for s in (7, 7, 8)]
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=0)
    assert not torch.equal(out[0], out[2])


@pytest.mark.parametrize("cls", HAMS)
def test_eval_with_given_bases_and_eval_seed_are_deterministic(cls):
    x = torch.rand(2, 8, 4, 4)
    ham = cls(R=4).eval()
    bases = ham.init_bases(2, 8, device=x.device, dtype=x.dtype)
    torch.testing.assert_close(ham(x, bases), ham(x, bases), rtol=0, atol=0)
    assert not torch.equal(ham(x), ham(x))  # fresh random bases, as in the official code
    ham.eval_seed = 0
    torch.testing.assert_close(ham(x), ham(x), rtol=0, atol=0)


@pytest.mark.parametrize("cls", HAMS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_low_precision_in_same_dtype_out(cls, dtype):
    x = torch.rand(1, 8, 4, 4).to(dtype)
    out = cls(R=4)(x, generator=torch.Generator().manual_seed(0))
    assert out.dtype == dtype and torch.isfinite(out.float()).all()


def test_solver_runs_in_float32_under_autocast():
    x = torch.rand(1, 8, 4, 4)
    ham = hamlib.NMF2D(R=4)
    ref = ham(x, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ham(x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, ref)  # autocast would have changed the bmm precision otherwise


@pytest.mark.parametrize("kwargs,x,words", [
    ({}, torch.rand(8, 4, 4), ["x", "4-D", "(B, C, H, W)", "3-D"]),
    ({"S": 3}, torch.rand(1, 8, 4, 4), ["C=8", "S=3", "divisible"]),
    ({}, torch.rand(1, 8, 4, 4) - 0.5, ["x", "non-negative", "min value", "ReLU"]),
    ({}, torch.full((1, 8, 2, 2), float("nan")), ["x", "finite", "NaN"]),
    ({}, torch.tensor([1.0, float("inf")]).repeat(16).reshape(1, 8, 2, 2), ["x", "finite", "inf"]),
    ({}, torch.ones(1, 8, 2, 2, dtype=torch.int64), ["x", "floating-point", "int64"]),
])
def test_bad_input_names_argument_expected_and_received(kwargs, x, words):
    with pytest.raises(ValueError) as e:
        hamlib.NMF2D(R=2, **kwargs)(x)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


@pytest.mark.parametrize("cls", HAMS)
@pytest.mark.parametrize("kwargs,words", [({"R": 0}, ["R", ">= 1", "0"]), ({"S": -1}, ["S", "-1"]),
                                          ({"grad": "full"}, ["grad", "one-step", "'full'"]),
                                          ({"train_steps": 1.5}, ["train_steps", "1.5"])])
def test_bad_hyperparameters(cls, kwargs, words):
    with pytest.raises(ValueError) as e:
        cls(**kwargs)
    for w in words:
        assert w in str(e.value)


def test_bad_bases_shape():
    with pytest.raises(ValueError, match=r"bases must have shape \(B\*S, D, R\)=\(2, 4, 3\); got \(2, 4, 5\)"):
        hamlib.VQ2D(S=2, R=3)(torch.rand(1, 8, 2, 2), bases=torch.rand(2, 4, 5))


def test_vq_and_cd_accept_negative_input():
    x = torch.randn(1, 8, 4, 4)
    for cls in (hamlib.VQ2D, hamlib.CD2D):
        assert torch.isfinite(cls(R=3)(x)).all()


def test_no_print_on_construction(capsys):
    hamlib.NMF2D(); hamlib.VQ2D(); hamlib.CD2D(); hamlib.Hamburger(16, 16); hamlib.SelfAttention2d(16)
    assert capsys.readouterr().out == ""


def test_repr_mentions_hyperparameters():
    assert "R=64" in repr(hamlib.CD2D()) and "beta=0.1" in repr(hamlib.CD2D())
