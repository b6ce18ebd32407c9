"""Wasserstein-P distances between sets of vectors, and a bootstrap test of a distance.

gSMILE (Dehghani et al., 2025) measures how far a generated output moves when the prompt is
perturbed as the Wasserstein distance between the two outputs' sets of token embeddings, and keeps
only shifts that a bootstrap test calls significant. Both pieces live here.

Each set is an empirical distribution with equal mass on every point. The optimal transport plan is
found exactly: an assignment when the sets have the same size (the plan is then a permutation), a
transport linear programme otherwise.
"""

from __future__ import annotations

import numpy as np


def _as_points(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or len(arr) == 0:
        raise ValueError(f"{name} must be a non-empty set of points: shape [n] or [n, dim], got {np.shape(x)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has NaN or infinite values")
    return arr


def wasserstein(x, y, p: float = 2.0) -> float:
    """Wasserstein-``p`` distance between the point sets ``x`` ``[n, d]`` and ``y`` ``[m, d]``.

    Ground cost is the Euclidean distance raised to ``p``; the result is the ``p``-th root of the
    minimal mean transport cost. 1-D inputs (shape ``[n]``) are points on a line.
    """
    from scipy.optimize import linear_sum_assignment, linprog
    from scipy.spatial.distance import cdist

    if not np.isscalar(p) or not p >= 1:
        raise ValueError(f"p must be a number >= 1, got {p!r}")
    a, b = _as_points(x, "x"), _as_points(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y live in different spaces: dimension {a.shape[1]} vs {b.shape[1]}")
    cost = cdist(a, b) ** p
    n, m = cost.shape
    if n == m:
        rows, cols = linear_sum_assignment(cost)
        total = cost[rows, cols].mean()
    else:
        # plan[i, j] >= 0, each row sums to 1/n, each column to 1/m
        a_eq = np.zeros((n + m, n * m))
        for i in range(n):
            a_eq[i, i * m:(i + 1) * m] = 1.0
        for j in range(m):
            a_eq[n + j, j::m] = 1.0
        b_eq = np.concatenate([np.full(n, 1.0 / n), np.full(m, 1.0 / m)])
        result = linprog(cost.ravel(), A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        if not result.success:
            raise RuntimeError(f"the transport problem did not solve: {result.message}")
        total = float(result.fun)
    return float(max(total, 0.0) ** (1.0 / p))


def bootstrap_pvalue(x, y, p: float = 2.0, n_boot: int = 200,
                     rng: np.random.Generator | int | None = None) -> tuple[float, float]:
    """The distance between ``x`` and ``y`` and its bootstrap p-value.

    Under the null hypothesis both sets come from one distribution, so the two sets are pooled,
    two sets of the original sizes are drawn from the pool with replacement ``n_boot`` times, and
    the p-value is the share of those draws whose distance is at least the observed one (with the
    usual +1 in numerator and denominator, so it is never 0).

    Returns:
        ``(distance, p_value)``.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    a, b = _as_points(x, "x"), _as_points(y, "y")
    rng = np.random.default_rng(rng)
    observed = wasserstein(a, b, p)
    pool = np.concatenate([a, b])
    exceed = 0
    for _ in range(int(n_boot)):
        draw_a = pool[rng.integers(0, len(pool), len(a))]
        draw_b = pool[rng.integers(0, len(pool), len(b))]
        exceed += wasserstein(draw_a, draw_b, p) >= observed
    return observed, (exceed + 1) / (n_boot + 1)
