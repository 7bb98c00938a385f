"""VQ against scikit-learn's KMeans, CD's final step against the closed-form ridge solution."""
import numpy as np
import torch
from sklearn.cluster import KMeans

from hamlib.md import cd_final, cd_step, solve, vq_assign, vq_step


def test_vq_at_high_inv_t_assigns_like_kmeans():
    """On unit-norm data from unit-norm centres, cosine = Euclidean ranking: one soft step at a high
    inverse temperature is one Lloyd step of KMeans."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 3)) * 3
    pts = np.concatenate([c + rng.normal(size=(50, 3)) for c in centres])
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    init = pts[rng.choice(len(pts), 4, replace=False)]
    km = KMeans(n_clusters=4, init=init, n_init=1, max_iter=1, algorithm="lloyd").fit(pts)
    x = torch.from_numpy(pts.T[None])            # (1, D, N)
    bases = torch.from_numpy(init.T[None].copy())  # (1, D, R)
    hard = vq_assign(x, bases, inv_t=1e4)[0].argmax(-1).numpy()
    expected = ((pts[:, None, :] - init[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(hard, expected)
    new_bases, _ = vq_step(x, bases, None, inv_t=1e4)
    np.testing.assert_allclose(new_bases[0].T.numpy(), km.cluster_centers_, atol=1e-6)


def test_vq_soft_assignment_rows_sum_to_one_and_low_temperature_is_smooth():
    x = torch.randn(2, 8, 30, dtype=torch.float64)
    b = torch.randn(2, 8, 5, dtype=torch.float64)
    for inv_t in (1.0, 100.0):
        a = vq_assign(x, b, inv_t)
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 30, dtype=torch.float64))
    assert vq_assign(x, b, 1.0).max() < vq_assign(x, b, 100.0).max()


def test_cd_final_is_the_ridge_solution():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 10, 40, generator=g, dtype=torch.float64)
    bases = torch.nn.functional.normalize(torch.randn(3, 10, 4, generator=g, dtype=torch.float64), dim=1)
    beta = 0.1
    coef = cd_final(x, bases, None, beta)
    for i in range(3):
        # argmin_C ||X - D C||^2 + beta ||C||^2 as an ordinary least-squares problem on [D; sqrt(beta) I]
        A = np.vstack([bases[i].numpy(), np.sqrt(beta) * np.eye(4)])
        Y = np.vstack([x[i].numpy(), np.zeros((4, 40))])
        C_ls = np.linalg.lstsq(A, Y, rcond=None)[0]
        np.testing.assert_allclose(coef[i].T.numpy(), C_ls, rtol=1e-9, atol=1e-12)


def test_cd_bases_stay_unit_norm_and_error_drops():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 6, 4, generator=g, dtype=torch.float64) @ torch.randn(1, 4, 200, generator=g, dtype=torch.float64)
    bases = torch.nn.functional.normalize(torch.randn(1, 6, 4, generator=g, dtype=torch.float64), dim=1)
    b, _ = cd_step(x, bases, None, inv_t=10.0)
    torch.testing.assert_close(b.norm(dim=1), torch.ones(1, 4, dtype=torch.float64))
    sol = solve(x, bases, method="cd", steps=10, inv_t=10.0, return_trace=True)
    obj = sol.trace.objective_curve()[:, 0]
    assert obj[-1] < obj[0]
