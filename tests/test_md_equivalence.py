"""hamlib's solvers against the independent float64 transcription in reference_solvers.py."""
import numpy as np
import pytest
import torch

import hamlib
from reference_solvers import cd, nmf, vq

B, S, C, H, W, R = 2, 2, 16, 5, 7, 4


def _inputs(method, device, dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    if method == "nmf":
        x = x.relu()
        bases = torch.nn.functional.normalize(torch.rand(B * S, C // S, R, generator=g, dtype=torch.float64), dim=1)
    else:
        bases = torch.nn.functional.normalize(torch.randn(B * S, C // S, R, generator=g, dtype=torch.float64), dim=1)
    return x.to(device, dtype), bases.to(device, dtype)


def _reference(method, x, bases, K, inv_t=100.0, beta=0.1):
    X = x.detach().cpu().double().numpy().reshape(B * S, C // S, H * W)
    D0 = bases.detach().cpu().double().numpy()
    out = []
    for i in range(B * S):
        if method == "nmf":
            D, Cm = nmf(X[i], D0[i], K)
        elif method == "vq":
            D, Cm = vq(X[i], D0[i], K, inv_t)
        else:
            D, Cm = cd(X[i], D0[i], K, inv_t, beta)
        out.append(D @ Cm)
    return torch.from_numpy(np.stack(out).reshape(B, C, H, W))


@pytest.mark.parametrize("method", ["nmf", "vq", "cd"])
@pytest.mark.parametrize("training", [True, False])
def test_matches_reference_float64(method, training, device):
    ham = hamlib.build_ham(method, S=S, R=R, train_steps=6, eval_steps=7, inv_t=10.0) if method != "nmf" \
        else hamlib.NMF2D(S=S, R=R)
    ham.train(training)
    x, bases = _inputs(method, device, torch.float64)
    out = ham(x, bases)
    ref = _reference(method, x, bases, 6 if training else 7, inv_t=10.0)
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("method", ["nmf", "vq", "cd"])
def test_matches_reference_float32(method, device):
    """In float32 the match is to single-precision rounding (the paper's default inv_t=100 for VQ/CD)."""
    ham = hamlib.build_ham(method, S=S, R=R).eval()
    x, bases = _inputs(method, device, torch.float32)
    out = ham(x, bases)
    ref = _reference(method, x, bases, 7)
    scale = ref.abs().max().item()
    torch.testing.assert_close(out.cpu().double(), ref, rtol=1e-4, atol=1e-5 * scale)


def test_reference_detects_a_transposition_slip():
    """Sanity check of the check itself: a wrong update order (D before C) is caught."""
    x, bases = _inputs("nmf", "cpu", torch.float64)
    Xm = x.numpy().reshape(B * S, C // S, H * W)[0]
    D0 = bases.numpy()[0]
    D, Cm = nmf(Xm, D0, 3)
    Cw = np.exp(D0.T @ Xm); Cw /= Cw.sum(0)
    Dw = D0.copy()
    for _ in range(3):  # wrong order
        Dw = Dw * (Xm @ Cw.T) / (Dw @ Cw @ Cw.T + 1e-6)
        Cw = Cw * (Dw.T @ Xm) / (Dw.T @ Dw @ Cw + 1e-6)
    assert not np.allclose(D @ Cm, Dw @ Cw, rtol=1e-6)
