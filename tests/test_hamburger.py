import pytest
import torch

import hamlib


def test_parameter_count_matches_paper_table():
    """The paper's cost table: 0.50 M parameters (units of 2**20) for Ham vs 1.00 M for self-attention."""
    ham = sum(p.numel() for p in hamlib.Hamburger(512, 512, md="nmf").parameters()) / 2 ** 20
    sa = sum(p.numel() for p in hamlib.SelfAttention2d(512).parameters()) / 2 ** 20
    assert round(ham, 2) == 0.50 and round(sa, 2) == 1.00, (ham, sa)


@pytest.mark.parametrize("md", ["nmf", "vq", "cd"])
@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("norm", ["bn", "gn", "none"])
def test_shapes_and_backward(md, version, norm, device):
    block = hamlib.Hamburger(24, 32, md=md, version=version, norm=norm, R=4, S=2).to(device)
    x = torch.randn(2, 24, 6, 5, device=device, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert block.lower_bread[0].weight.grad is not None and block.lower_bread[0].weight.grad.abs().sum() > 0
    assert x.grad is not None


def test_relu_before_nmf_only():
    assert isinstance(hamlib.Hamburger(8, 8, md="nmf").lower_bread[1], torch.nn.ReLU)
    assert isinstance(hamlib.Hamburger(8, 8, md="vq").lower_bread[1], torch.nn.Identity)


def test_gate_starts_as_identity_and_learns():
    block = hamlib.Hamburger(8, 16, gate=True, R=2)
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)
    block(x).square().sum().backward()
    assert block.gate.grad is not None and block.gate.grad != 0


def test_code_form_has_relu_after_sum_paper_form_does_not():
    x = torch.randn(2, 8, 4, 4)
    g = torch.Generator().manual_seed(0)
    code = hamlib.Hamburger(8, 8, form="code", R=2)
    assert code(x, generator=g).min() >= 0
    paper = hamlib.Hamburger(8, 8, form="paper", R=2)
    assert paper(x).min() < 0


def test_given_bases_reach_the_ham():
    block = hamlib.Hamburger(8, 8, R=2, S=1).eval()
    x = torch.randn(1, 8, 3, 3)
    b = block.ham.init_bases(1, 8, device=x.device, dtype=x.dtype, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(block(x, bases=b), block(x, bases=b), rtol=0, atol=0)


def test_bad_input():
    with pytest.raises(ValueError, match=r"z must have shape \(B, 8, H, W\); got \(1, 4, 2, 2\)"):
        hamlib.Hamburger(8, 8)(torch.randn(1, 4, 2, 2))
    with pytest.raises(ValueError, match="md must be one of"):
        hamlib.Hamburger(8, 8, md="svd")
    with pytest.raises(ValueError, match="ham_channels=10 must be divisible by S=4"):
        hamlib.Hamburger(8, 10, S=4)
