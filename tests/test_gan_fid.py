"""Fréchet distance of hamlib.gan.fid on Gaussians with known distances; Inception path skips cleanly."""
import sys

import numpy as np
import pytest
import scipy.linalg

from hamlib.gan.fid import OFFLINE_LABEL, frechet_distance, gaussian_stats, inception_fid


def test_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_non_commuting_matches_scipy_sqrtm():
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = A @ A.T + 0.1 * np.eye(6), B @ B.T + 0.1 * np.eye(6)
    assert not np.allclose(s1 @ s2, s2 @ s1)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)


def test_one_dimensional_and_symmetry_and_zero():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)
    rng = np.random.default_rng(2)
    A = rng.normal(size=(4, 4))
    s = A @ A.T
    assert frechet_distance(np.zeros(4), s, np.zeros(4), s) == pytest.approx(0.0, abs=1e-9)
    B = rng.normal(size=(4, 4))
    t = B @ B.T
    assert frechet_distance(np.ones(4), s, np.zeros(4), t) == pytest.approx(
        frechet_distance(np.zeros(4), t, np.ones(4), s), rel=1e-9)


def test_stats_of_samples_converge():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20000, 3)) * [1.0, 2.0, 0.5] + [1.0, 0.0, -1.0]
    mu, cov = gaussian_stats(x)
    assert frechet_distance(mu, cov, np.array([1.0, 0.0, -1.0]), np.diag([1.0, 4.0, 0.25])) < 0.01


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="sigma2"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))
    with pytest.raises(ValueError, match="features"):
        gaussian_stats(np.zeros((1, 3)))


def test_inception_skipped_cleanly_without_torch_fidelity(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import raises ImportError
    out = inception_fid(lambda b: None, 10)
    assert set(out) == {"skipped"} and "torch-fidelity is not installed" in out["skipped"]  # the reason, recorded
    assert "not comparable" in OFFLINE_LABEL
