"""NMF: non-negativity, monotone objective, agreement with scikit-learn's multiplicative updates."""
import numpy as np
import torch
from sklearn.decomposition import NMF as SkNMF

import hamlib
from hamlib.md import nmf_init_bases, nmf_objective, nmf_step, solve


def _data(device, d=20, n=60, r=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    # a noisy non-negative rank-r matrix
    x = torch.rand(1, d, r, generator=g, dtype=dtype) @ torch.rand(1, r, n, generator=g, dtype=dtype)
    x = x + 0.05 * torch.rand(1, d, n, generator=g, dtype=dtype)
    bases = nmf_init_bases(1, d, r, dtype=dtype, generator=g)
    return x.to(device), bases.to(device)


def test_iterates_stay_nonnegative(device):
    x, bases = _data(device, dtype=torch.float32)
    sol = solve(x, bases, method="nmf", steps=30, return_trace=True)
    for b, c in zip(sol.trace.bases, sol.trace.coef):
        assert b.min() >= 0 and c.min() >= 0
    assert sol.coef.min() >= 0 and sol.recon.min() >= 0


def test_objective_never_increases(device):
    x, bases = _data(device)
    sol = solve(x, bases, method="nmf", steps=200, return_trace=True)
    obj = sol.trace.objective_curve()[:, 0]
    diffs = obj[1:] - obj[:-1]
    assert (diffs <= 1e-9 * obj[:-1]).all(), f"objective increased: max step {diffs.max().item():.3g}"
    assert obj[-1] < 0.5 * obj[0]  # and it actually decreases


def test_same_objective_as_sklearn_mu(device):
    """sklearn factorises X' ~= W H (samples x features). With X' = X^T, W = C^T and H = D^T, its
    update order (W, then H) is ours (C, then D). sklearn adds no eps, so agreement is to ~1e-6."""
    x, bases = _data(device, d=30, n=80, r=6, seed=3)
    coef0 = hamlib.md.nmf_init_coef(x, bases)
    K = 50
    sol = solve(x, bases, method="nmf", steps=K, return_trace=True)
    ours = sol.trace.objective[K][0].sqrt().item()
    sk = SkNMF(n_components=6, solver="mu", init="custom", max_iter=K, tol=0.0, beta_loss="frobenius")
    Xs = x[0].T.cpu().numpy()
    W = sk.fit_transform(Xs, W=coef0[0].cpu().numpy().copy(), H=bases[0].T.cpu().numpy().copy())
    theirs = np.linalg.norm(Xs - W @ sk.components_)
    assert sk.n_iter_ == K
    assert abs(ours - theirs) <= 1e-5 * theirs, (ours, theirs)
    np.testing.assert_allclose(sk.components_.T, sol.trace.bases[K][0].cpu().numpy(), rtol=1e-3, atol=1e-6)


def test_single_step_is_the_paper_rule():
    x, bases = _data("cpu")
    coef = hamlib.md.nmf_init_coef(x, bases)
    b1, c1 = nmf_step(x, bases, coef)
    X, D, Ct = x[0], bases[0], coef[0].T  # paper orientation: C is R x N
    C_new = Ct * (D.T @ X) / (D.T @ D @ Ct + 1e-6)
    D_new = D * (X @ C_new.T) / (D @ C_new @ C_new.T + 1e-6)
    torch.testing.assert_close(c1[0].T, C_new)
    torch.testing.assert_close(b1[0], D_new)
    assert nmf_objective(x, b1, c1) < nmf_objective(x, bases, coef)
