"""Wasserstein-P distances between sets of vectors, and a bootstrap test of a distance.

gSMILE (Dehghani et al., 2025) measures how far a generated output moves when the prompt is
perturbed as the Wasserstein distance between the two outputs' sets of token embeddings, and keeps
only shifts that a bootstrap test calls significant. Both pieces live here.

Each set is an empirical distribution with equal mass on every point. The optimal transport plan is
found exactly by POT's network simplex (``ot.emd2``), which handles sets of different sizes.
Distances between class distributions (gSMILE on a classifier) use the discrete ground metric.
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


def _transport(cost: np.ndarray) -> float:
    """Minimal mean cost of moving uniform mass on the rows onto uniform mass on the columns."""
    import ot

    n, m = cost.shape
    return float(ot.emd2(np.full(n, 1.0 / n), np.full(m, 1.0 / m), np.ascontiguousarray(cost)))


def _check_p(p) -> float:
    if isinstance(p, bool) or not np.isscalar(p) or not p >= 1:
        raise ValueError(f"p must be a number >= 1, got {p!r}")
    return float(p)


def wasserstein(x, y, p: float = 2.0) -> float:
    """Wasserstein-``p`` distance between the point sets ``x`` ``[n, d]`` and ``y`` ``[m, d]``.

    Ground cost is the Euclidean distance raised to ``p``; the result is the ``p``-th root of the
    minimal mean transport cost. 1-D inputs (shape ``[n]``) are points on a line.
    """
    from scipy.spatial.distance import cdist

    p = _check_p(p)
    a, b = _as_points(x, "x"), _as_points(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y live in different spaces: dimension {a.shape[1]} vs {b.shape[1]}")
    return float(max(_transport(cdist(a, b) ** p), 0.0) ** (1.0 / p))


def class_wasserstein(probs, reference, p: float = 2.0) -> np.ndarray:
    """Wasserstein-``p`` distance between class distributions under the discrete metric.

    Moving mass between two different classes costs 1, so the optimal cost is the total variation
    distance and the distance is its ``p``-th root. ``probs`` is ``[n, K]`` (or ``[K]``),
    ``reference`` is ``[K]``; returns ``[n]`` (or a scalar array).
    """
    p = _check_p(p)
    probs, reference = np.asarray(probs, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if probs.shape[-1] != reference.shape[-1]:
        raise ValueError(f"class distributions of different sizes: {probs.shape[-1]} vs {reference.shape[-1]}")
    total_variation = 0.5 * np.abs(probs - reference).sum(axis=-1)
    return np.maximum(total_variation, 0.0) ** (1.0 / p)


def bootstrap_pvalue(x, y, p: float = 2.0, n_boot: int = 200,
                     rng: np.random.Generator | int | None = None) -> tuple[float, float]:
    """The distance between ``x`` and ``y`` and its bootstrap p-value.

    Under the null hypothesis both sets come from one distribution, so the two sets are pooled,
    two sets of the original sizes are drawn from the pool with replacement ``n_boot`` times, and
    the p-value is the share of those draws whose distance is at least the observed one (with the
    usual +1 in numerator and denominator, so it is never 0). A distance of exactly 0 has p = 1
    without resampling.

    Returns:
        ``(distance, p_value)``.
    """
    from scipy.spatial.distance import cdist

    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    p = _check_p(p)
    a, b = _as_points(x, "x"), _as_points(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y live in different spaces: dimension {a.shape[1]} vs {b.shape[1]}")
    rng = np.random.default_rng(rng)
    pool = np.concatenate([a, b])
    cost = cdist(pool, pool) ** p  # every draw's cost matrix is a block of this one
    n = len(a)
    observed = max(_transport(cost[:n, n:]), 0.0) ** (1.0 / p)
    if observed == 0.0:
        return 0.0, 1.0
    exceed = 0
    for _ in range(int(n_boot)):
        ia = rng.integers(0, len(pool), len(a))
        ib = rng.integers(0, len(pool), len(b))
        exceed += max(_transport(cost[np.ix_(ia, ib)]), 0.0) ** (1.0 / p) >= observed
    return observed, (exceed + 1) / (n_boot + 1)
