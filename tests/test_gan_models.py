"""HamGAN G/D of hamlib.gan: shapes, spectral norm, zero-initialised gates, projection, EMA, hinge loss."""
import pytest
import torch

from hamlib.gan import CONTEXTS, EMA, CondBatchNorm2d, Discriminator, Generator, context_block, d_hinge_loss, \
    g_hinge_loss
from hamlib.gan.classifier import FeatureClassifier


@pytest.mark.parametrize("context", CONTEXTS)
def test_shapes_and_range(context):
    torch.manual_seed(0)
    G, D = Generator(16, 16, 10, context), Discriminator(16, 10, context)
    z, y = G.sample(4)
    x = G(z, y)
    assert x.shape == (4, 3, 32, 32) and x.abs().max() <= 1
    assert D(x, y).shape == (4,)


@pytest.mark.parametrize("context", ["attention", "ham"])
def test_gate_starts_at_zero_so_context_is_identity(context):
    torch.manual_seed(0)
    for role in "GD":
        block = context_block(context, 16, role=role)
        assert block.gate.item() == 0.0
        h = torch.randn(2, 16, 16, 16).relu()
        torch.testing.assert_close(block(h), h)
        with torch.no_grad():
            block.gate.fill_(1.0)
        assert not torch.allclose(block(h), h)


def test_ham_options_reach_both_networks():
    from hamlib.gan import from_config, get_preset
    G, D = from_config(get_preset("tiny", md="vq", grad="bptt", R=3, train_steps=2, eval_steps=3))
    for block, role in ((G.context, "G"), (D.context, "D")):
        assert block.md == "vq" and block.ham.R == 3 and block.ham.grad == "bptt", role
        assert block.ham.train_steps == 2 and block.ham.eval_steps == 3 and block.ham.eval_seed == 0
    G, D = from_config(get_preset("tiny", context="attention"))
    assert type(G.context).__name__ == "SelfAttention2d"


def test_hamburger_sizes_follow_paper_ratio():
    block = context_block("ham", 64, role="D")
    assert block.ham_channels == 64 and block.ham.R == 8  # d = C, r = C/8 (paper: 256/32 in G, 128/16 in D)
    assert isinstance(context_block("ham", 64, role="G").upper_bread[1], torch.nn.BatchNorm2d)
    assert isinstance(block.upper_bread[1], torch.nn.Identity)


def test_every_weight_is_spectrally_normalised():
    for m in (Generator(16, 16, 10, "ham"), Discriminator(16, 10, "attention")):
        layers = [l for l in m.modules() if isinstance(l, (torch.nn.Conv2d, torch.nn.Linear))]
        assert layers and all(hasattr(l, "parametrizations") for l in layers)


def test_projection_discriminator_uses_labels():
    torch.manual_seed(0)
    D = Discriminator(16, 10).eval()
    x = torch.randn(3, 3, 32, 32)
    assert not torch.allclose(D(x, torch.tensor([0, 0, 0])), D(x, torch.tensor([1, 1, 1])))


def test_conditional_bn_per_class():
    bn = CondBatchNorm2d(4, 3)
    with torch.no_grad():
        bn.gamma.weight[1].fill_(2.0)
        bn.beta.weight[2].fill_(5.0)
    x = torch.randn(6, 4, 5, 5)
    out = bn(x, torch.tensor([0, 1, 2, 0, 1, 2]))
    ref = torch.nn.functional.batch_norm(x, None, None, training=True)
    torch.testing.assert_close(out[1], 2 * ref[1])
    torch.testing.assert_close(out[2], ref[2] + 5)


def test_ema_update_and_sn_vectors_copied():
    torch.manual_seed(0)
    G = Generator(8, 8, 10)
    ema = EMA(G, decay=0.5)
    w0 = ema.model.linear.parametrizations.weight.original.clone()
    with torch.no_grad():
        G.linear.parametrizations.weight.original.add_(1.0)
        G.linear.parametrizations.weight[0]._u.mul_(-1)
    ema.update(G)
    torch.testing.assert_close(ema.model.linear.parametrizations.weight.original, w0 + 0.5)
    torch.testing.assert_close(ema.model.linear.parametrizations.weight[0]._u, G.linear.parametrizations.weight[0]._u)
    with pytest.raises(ValueError, match="decay"):
        EMA(G, 1.0)


def test_bad_inputs():
    G, D = Generator(8, 8, 10), Discriminator(8, 10)
    with pytest.raises(ValueError, match="z must"):
        G(torch.randn(2, 7), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="x must"):
        D(torch.randn(2, 3, 28, 28), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="context"):
        context_block("cd", 8, role="G")


def test_hinge_losses():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert d_hinge_loss(real, fake).item() == pytest.approx((0 + 0.5) / 2 + (0 + 1) / 2)
    assert g_hinge_loss(fake).item() == pytest.approx(1.0)


def test_classifier_features():
    m = FeatureClassifier(8, 10)
    x = torch.randn(2, 3, 32, 32)
    assert m.features(x).shape == (2, 32) and m(x).shape == (2, 10)
