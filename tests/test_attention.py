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


def _largest_saved_numel(fn):
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, max(sizes)


def test_fused_path_saves_no_n_by_n_tensor_and_matches_explicit():
    """With contiguous q/k/v SDPA takes a fused kernel on the CPU too: autograd keeps no B x N x N matrix."""
    torch.manual_seed(0)
    B, C, H, W = 2, 8, 12, 12
    n = H * W
    m = hamlib.SelfAttention2d(C)
    x = torch.randn(B, C, H, W, requires_grad=True)
    fused, big_fused = _largest_saved_numel(lambda: m(x, fused=True))
    explicit, big_explicit = _largest_saved_numel(lambda: m(x, fused=False))
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)
    assert big_explicit >= B * n * n          # the explicit path stores A (the check can fail)
    assert big_fused < B * n * n, f"fused path saved a tensor of {big_fused} elements (B*n*n = {B * n * n})"
    g_f, = torch.autograd.grad(fused.square().sum(), x)
    g_e, = torch.autograd.grad(explicit.square().sum(), x)
    torch.testing.assert_close(g_f, g_e, rtol=1e-4, atol=1e-5)


def test_linear_attention_matches_its_quadratic_form():
    from hamlib.attention import attention_linear, elu_feature_map
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 30, d, generator=g, dtype=torch.float64) for d in (4, 4, 3))
    A = elu_feature_map(q) @ elu_feature_map(k).transpose(1, 2)          # (B, N, N), positive
    ref = (A / A.sum(-1, keepdim=True)) @ v
    torch.testing.assert_close(attention_linear(q, k, v, eps=0.0), ref)


def test_linear_attention_block_shapes_gate_memory_and_global_field():
    m = hamlib.attention.LinearAttention2d(8, 4, 6, norm="bn")
    x = torch.randn(2, 8, 10, 10, requires_grad=True)
    y, biggest = _largest_saved_numel(lambda: m(x))
    assert y.shape == x.shape and biggest < 2 * 100 * 100
    y.square().mean().backward()
    assert x.grad is not None and m.query.weight.grad.abs().sum() > 0
    gated = hamlib.attention.LinearAttention2d(8, gate=True)
    torch.testing.assert_close(gated(x), x, rtol=0, atol=0)
    m.eval()
    x0 = torch.randn(1, 8, 6, 6)
    x1 = x0.clone(); x1[0, :, 0, 0] += 5
    assert ((m(x0) - m(x1)).abs().sum(1)[0][3:, 3:] > 0).all()
    with pytest.raises(ValueError, match=r"x must have shape \(B, 8, H, W\); got \(1, 3, 3\)"):
        m(torch.randn(1, 3, 3))
    with pytest.raises(ValueError, match="eps"):
        hamlib.attention.LinearAttention2d(8, eps=0.0)
