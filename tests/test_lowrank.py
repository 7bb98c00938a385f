"""Tests for hamlib.lowrank: truncated SVD (Eckart-Young vs scikit-learn), corruption, completion, metrics."""
import math

import numpy as np
import pytest
import torch

from hamlib import lowrank as lr


def _low_rank(d=40, n=60, r=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(d, r, generator=g, dtype=torch.float64) @ torch.randn(r, n, generator=g, dtype=torch.float64)


def test_svd_reconstruct_matches_sklearn_truncated_svd():
    from sklearn.decomposition import TruncatedSVD

    x = torch.randn(50, 30, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for r in (1, 4, 10):
        svd = TruncatedSVD(n_components=r, algorithm="arpack", random_state=0).fit(x.numpy())
        ref = svd.inverse_transform(svd.transform(x.numpy()))
        torch.testing.assert_close(lr.svd_reconstruct(x, r), torch.from_numpy(ref), atol=1e-8, rtol=1e-8)


def test_eckart_young_error_is_tail_energy_and_beats_random_rank_r():
    x = torch.randn(30, 20, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    s = lr.singular_values(x)
    for r in (0, 3, 7, 20):
        err = (x - lr.svd_reconstruct(x, r)).pow(2).sum()
        torch.testing.assert_close(err, s[r:].pow(2).sum())
    # any other rank-3 matrix (a projection onto random directions) is worse
    q, _ = torch.linalg.qr(torch.randn(30, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    assert (x - q @ q.T @ x).pow(2).sum() > (x - lr.svd_reconstruct(x, 3)).pow(2).sum()


def test_cumulative_energy_monotone_and_reaches_one_at_true_rank():
    e = lr.cumulative_energy(_low_rank(r=5))
    assert torch.all(e[1:] >= e[:-1] - 1e-12)
    assert e[3] < 1 - 1e-6 and abs(float(e[4]) - 1.0) < 1e-10


def test_truncated_svd_shapes_and_numpy_input():
    u, s, v = lr.truncated_svd(np.ones((6, 4)), 2)
    assert u.shape == (6, 2) and s.shape == (2,) and v.shape == (4, 2)


def test_bad_rank_and_input_raise_value_error():
    with pytest.raises(ValueError, match="rank"):
        lr.svd_reconstruct(torch.ones(4, 3), 4)
    with pytest.raises(ValueError, match="x must"):
        lr.svd_reconstruct([1, 2, 3], 1)
    with pytest.raises(ValueError, match="sigma"):
        lr.add_noise(torch.ones(2, 2), -1.0)


def test_add_noise_is_seeded_and_has_requested_std():
    x = torch.zeros(200, 200)
    a = lr.add_noise(x, 0.5, generator=torch.Generator().manual_seed(0))
    b = lr.add_noise(x, 0.5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    assert abs(float(a.std()) - 0.5) < 0.01


def test_block_mask_hides_blocks_reproducibly():
    m = lr.block_mask((32, 40), n_blocks=3, block=8, generator=torch.Generator().manual_seed(0))
    m2 = lr.block_mask((32, 40), n_blocks=3, block=8, generator=torch.Generator().manual_seed(0))
    assert m.dtype == torch.bool and m.shape == (32, 40) and torch.equal(m, m2)
    missing = int((~m).sum())
    assert 64 <= missing <= 3 * 64
    with pytest.raises(ValueError, match="block"):
        lr.block_mask((4, 4), block=5)


def test_hard_impute_recovers_low_rank_matrix_better_than_mean_fill():
    x = _low_rank(d=40, n=60, r=3)
    mask = torch.rand(x.shape, generator=torch.Generator().manual_seed(5)) > 0.3
    rec = lr.hard_impute(x, mask, 3, iters=200, tol=1e-10)
    mean_fill = torch.where(mask, x, x[mask].mean())
    assert lr.relative_error(rec, x) < 1e-3 < lr.relative_error(mean_fill, x)
    with pytest.raises(ValueError, match="mask"):
        lr.hard_impute(x, mask.float(), 3)


def test_metrics():
    t = torch.ones(4, 4)
    assert lr.relative_error(t, t) == 0.0 and lr.psnr(t, t) == math.inf
    assert abs(lr.psnr(t + 0.1, t) - 20.0) < 1e-4   # MSE 0.01 -> 20 dB
    assert abs(lr.relative_error(2 * t, t) - 1.0) < 1e-6
    with pytest.raises(ValueError, match="same shape"):
        lr.psnr(t, torch.ones(3, 4))
