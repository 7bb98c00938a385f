"""Independent float64 numpy transcriptions of the paper's update rules, in the paper's orientation.

Written from the published algorithms (Geng et al. 2021, Algorithms 1-2, and the solver description
in shared/reference/hamburger-facts.md sections 4-5), *not* from hamlib: C is R x N here (hamlib
stores C^T), so a transposition slip in hamlib would show up as a mismatch.
"""
import numpy as np

EPS = 1e-6


def _softmax_rows_over_r(logits_rn):  # softmax over the R axis of an (R, N) array
    z = logits_rn - logits_rn.max(axis=0, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=0, keepdims=True)


def _unit_cols(a, eps=1e-12):
    return a / np.maximum(np.linalg.norm(a, axis=0, keepdims=True), eps)


def nmf(X, D, K):
    """X (d, n) >= 0, D (d, r) >= 0 -> (D_K, C_final) with C (r, n)."""
    C = _softmax_rows_over_r(D.T @ X)
    for _ in range(K):
        C = C * (D.T @ X) / (D.T @ D @ C + EPS)
        D = D * (X @ C.T) / (D @ C @ C.T + EPS)
    C = C * (D.T @ X) / (D.T @ D @ C + EPS)
    return D, C


def vq(X, D, K, inv_t):
    Xh = _unit_cols(X)
    for _ in range(K):
        C = _softmax_rows_over_r(inv_t * (_unit_cols(D, 1e-6).T @ Xh))
        C = C / (EPS + C.sum(axis=1, keepdims=True))      # diag(C 1_n)^-1 C
        D = X @ C.T
    Xf = X / (EPS + np.linalg.norm(X, axis=0, keepdims=True))
    C = _softmax_rows_over_r(inv_t * (_unit_cols(D, 1e-6).T @ Xf))
    return D, C


def cd(X, D, K, inv_t, beta):
    Xh = _unit_cols(X)
    for _ in range(K):
        C = _softmax_rows_over_r(inv_t * (D.T @ Xh))
        C = C / (EPS + C.sum(axis=1, keepdims=True))
        D = _unit_cols(X @ C.T, 1e-6)
    C = np.linalg.inv(D.T @ D + beta * np.eye(D.shape[1])) @ D.T @ X
    return D, C
