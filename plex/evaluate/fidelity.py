"""Fidelity of a linear surrogate (LIME's local model, a student's fit) to the classifier."""

from __future__ import annotations


def adjusted_r2(r2: float, n_samples: int, n_features: int) -> float:
    """Adjusted coefficient of determination, ``1 - (1 - R²)(n - 1) / (n - p - 1)``.

    Penalises R² for the ``p = n_features`` fitted coefficients on ``n = n_samples`` samples, so that
    surrogates over texts of different lengths compare fairly. NaN when ``n - p - 1 <= 0`` (as many
    features as samples: the fit is not constrained).
    """
    dof = n_samples - n_features - 1
    if dof <= 0:
        return float("nan")
    return 1.0 - (1.0 - r2) * (n_samples - 1) / dof
