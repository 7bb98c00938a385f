import pytest
import torch

import hamlib
from hamlib.attention import attention_explicit


@pytest.mark.parametrize("kc,vc", [(None, None), (2, 4)])
def test_explicit_and_fused_paths_agree(kc, vc, device):
    m = hamlib.SelfAttention2d(16, kc, vc).to(device)
    x = torch.randn(2, 16, 5, 7, device=device)
    torch.testing.assert_close(m(x, fused=True), m(x, fused=False), rtol=1e-5, atol=1e-5)


def test_attention_rows_are_distributions_and_output_is_convex_combination():
    q, k, v = torch.randn(1, 6, 3), torch.randn(1, 6, 3), torch.randn(1, 6, 2)
    out = attention_explicit(q, k, v, 1.0)
    assert (out.max(1).values <= v.max(1).values + 1e-6).all() and (out.min(1).values >= v.min(1).values - 1e-6).all()


def test_global_receptive_field():
    """Changing one pixel changes the output everywhere (unlike a 1x1 or 3x3 conv)."""
    m = hamlib.SelfAttention2d(4).eval()
    x = torch.randn(1, 4, 6, 6)
    x2 = x.clone(); x2[0, :, 0, 0] += 5
    diff = (m(x) - m(x2)).abs().sum(1)[0]
    assert (diff[3:, 3:] > 0).all()


def test_gate_and_bad_input():
    m = hamlib.SelfAttention2d(8, gate=True)
    x = torch.randn(1, 8, 3, 3)
    torch.testing.assert_close(m(x), x, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 8, H, W\); got \(1, 3, 3\)"):
        m(torch.randn(1, 3, 3))
