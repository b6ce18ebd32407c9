"""Wasserstein-P distances and the bootstrap test, against hand-computed cases and SciPy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wasserstein_distance, wasserstein_distance_nd

from plex.teachers.wasserstein import bootstrap_pvalue, wasserstein


def test_hand_computed_cases():
    # 1-D, equal sizes: each point moves by 2
    assert wasserstein([0.0, 1.0], [2.0, 3.0], p=1) == pytest.approx(2.0)
    assert wasserstein([0.0, 1.0], [2.0, 3.0], p=2) == pytest.approx(2.0)
    # 2-D unit square: the bottom edge moves up by 1
    assert wasserstein([[0, 0], [1, 0]], [[0, 1], [1, 1]], p=2) == pytest.approx(1.0)
    # the optimal plan is not the given order: crossing would cost more
    assert wasserstein([[0, 0], [4, 0]], [[4, 1], [0, 1]], p=1) == pytest.approx(1.0)
    # unequal sizes: one point split over two, costs 1 and 3 with mass 1/2 each
    assert wasserstein([0.0], [1.0, 3.0], p=1) == pytest.approx(2.0)
    assert wasserstein([0.0], [1.0, 3.0], p=2) == pytest.approx(np.sqrt(5.0))
    assert wasserstein([[1.0, 2.0]], [[1.0, 2.0]]) == 0.0


def test_matches_scipy_where_it_applies():
    rng = np.random.default_rng(0)
    for n, m in ((5, 5), (4, 7), (9, 3)):
        x, y = rng.normal(size=n), rng.normal(1.0, 2.0, size=m)
        assert wasserstein(x, y, p=1) == pytest.approx(wasserstein_distance(x, y), rel=1e-6)
        X, Y = rng.normal(size=(n, 3)), rng.normal(0.5, 1.0, size=(m, 3))
        assert wasserstein(X, Y, p=1) == pytest.approx(wasserstein_distance_nd(X, Y), rel=1e-6)


def test_bootstrap_pvalue():
    rng = np.random.default_rng(1)
    same = rng.normal(size=(12, 4))
    distance, p_value = bootstrap_pvalue(same, same.copy(), n_boot=50, rng=0)
    assert distance == 0.0 and p_value == 1.0
    x, y = rng.normal(size=(15, 4)), rng.normal(size=(15, 4))  # one distribution
    assert bootstrap_pvalue(x, y, n_boot=100, rng=0)[1] > 0.05
    far = rng.normal(size=(15, 4)) + 6.0  # clearly separated
    distance, p_value = bootstrap_pvalue(x, far, n_boot=100, rng=0)
    assert distance > 5.0 and p_value == pytest.approx(1 / 101)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="dimension"):
        wasserstein(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="p must be"):
        wasserstein([0.0], [1.0], p=0.5)
    with pytest.raises(ValueError, match="non-empty"):
        wasserstein([], [1.0])
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_pvalue([0.0], [1.0], n_boot=0)
