"""hamlib.seg.heads and hamlib.seg.model: every head on the same backbone, shapes, determinism at eval."""
import pytest
import torch

from hamlib import Hamburger, SelfAttention2d
from hamlib.seg.heads import HEADS
from hamlib.seg.model import build_model, from_config
from hamlib.train import HamOptions


@pytest.mark.parametrize("head", HEADS)
def test_heads_output_shape_and_backward(head, gen):
    m = build_model(5, backbone="tiny", head=head, channels=32, aux=True, ham=HamOptions(R=8))
    x = torch.randn(2, 3, 48, 64, generator=gen)
    out, aux = m(x, return_aux=True)
    assert out.shape == (2, 5, 48, 64) and aux.shape == (2, 5, 48, 64)
    (out.mean() + aux.mean()).backward()
    assert m.backbone.conv1.weight.grad is not None


def test_context_modules_are_the_library_blocks():
    assert isinstance(build_model(3, backbone="tiny", head="ham", channels=32).head.context, Hamburger)
    assert isinstance(build_model(3, backbone="tiny", head="attention", channels=32).head.context,
                      SelfAttention2d)
    fcn = build_model(3, backbone="tiny", head="fcn", channels=32)
    assert isinstance(fcn.head.context, torch.nn.Identity)


@pytest.mark.parametrize("md", ["nmf", "vq", "cd"])
def test_ham_head_deterministic_in_eval_with_seed(md, gen):
    m = build_model(3, backbone="tiny", head="ham", channels=32, ham=HamOptions(md=md, R=8, eval_seed=0)).eval()
    x = torch.randn(1, 3, 40, 40, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(m(x), m(x), rtol=0, atol=0)


def test_ham_head_random_in_train_mode(gen):
    m = build_model(3, backbone="tiny", head="ham", channels=32, ham=HamOptions(R=8))
    m.train()
    for mod in m.modules():  # freeze BN/dropout randomness so only the bases differ
        if isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.Dropout2d)):
            mod.eval()
    x = torch.randn(1, 3, 40, 40, generator=gen)
    with torch.no_grad():
        assert not torch.allclose(m(x), m(x))


def test_bad_head_name():
    with pytest.raises(ValueError, match="head must be one of"):
        build_model(3, backbone="tiny", head="transformer")


@pytest.mark.parametrize("head", ["ham", "lightham"])
def test_from_config_passes_every_ham_option(head):
    from hamlib.seg import get_preset
    cfg = get_preset("tiny", head=head, md="cd", R=5, S=1, train_steps=2, eval_steps=4, grad="bptt", inv_t=50.0,
                     beta=0.2, eval_seed=3)
    ham = (from_config(cfg).head.context if head == "ham" else from_config(cfg).head.ham).ham
    assert (ham.method, ham.R, ham.train_steps, ham.eval_steps, ham.grad) == ("cd", 5, 2, 4, "bptt")
    assert ham.inv_t == 50.0 and ham.beta == 0.2 and ham.eval_seed == 3
