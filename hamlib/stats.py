"""Small-sample statistics for the book's studies: mean, standard deviation and a t confidence interval.

Every comparison in the book is over a handful of seeds (3 to 5), so intervals use Student's t with n - 1
degrees of freedom, and differences between two configurations are *paired* by seed (same initialisation,
data order and augmentation), which removes the seed-to-seed variation they share.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Sequence

__all__ = ["t_interval", "paired_difference"]

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_interval(xs: Sequence[float]) -> Dict[str, object]:
    """Mean, sample standard deviation and the 95% t confidence interval of the mean of ``xs``.

    Args:
        xs: at least 2 finite numbers (e.g. one test mIoU per seed).

    Returns:
        ``{"mean", "std", "ci95": [low, high], "n"}``.
    """
    n = len(xs)
    if n < 2:
        raise ValueError(f"a confidence interval needs at least 2 values; got {n}")
    if not all(math.isfinite(float(x)) for x in xs):
        raise ValueError(f"xs must be finite numbers; got {list(xs)}")
    m = sum(xs) / n
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    h = (_T975[n - 2] if n - 1 <= len(_T975) else 1.96) * s / math.sqrt(n)
    return {"mean": m, "std": s, "ci95": [m - h, m + h], "n": n}


def paired_difference(a: Mapping[int, float], b: Mapping[int, float]) -> Dict[str, object]:
    """:func:`t_interval` of ``a[seed] - b[seed]`` over the seeds both have (at least 2).

    Args:
        a, b: ``{seed: value}`` for two configurations run with the same seeds.
    """
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        raise ValueError(f"a paired difference needs at least 2 common seeds; got {common}")
    out = t_interval([a[s] - b[s] for s in common])
    out["seeds"] = common
    return out
