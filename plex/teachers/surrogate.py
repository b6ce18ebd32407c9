"""The weighted linear surrogate that perturbation teachers fit on their samples.

LIME fits it inside the ``lime`` package; LIME-LLM (and gSMILE) fit it here, the same way: ridge
regression (``alpha=1`` as in LIME) of the model's output on binary features, one row per
perturbed text, weighted by a kernel. The coefficients are the word scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SurrogateFit:
    """Coefficients ``[n_outputs, n_features]``, intercepts and fit quality per output."""

    coef: np.ndarray
    intercept: np.ndarray
    weighted_r2: np.ndarray
    r2: np.ndarray


def fit_weighted_ridge(features: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                       alpha: float = 1.0) -> SurrogateFit:
    """Ridge regression of each column of ``targets`` on ``features`` with sample ``weights``.

    Args:
        features: ``[n_samples, n_features]`` (binary masks for the perturbation teachers).
        targets: ``[n_samples]`` or ``[n_samples, n_outputs]``.
        weights: ``[n_samples]`` non-negative kernel weights.
        alpha: L2 penalty on the coefficients (not on the intercept), as in scikit-learn's Ridge.
    """
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    X = np.asarray(features, dtype=np.float64)
    Y = np.asarray(targets, dtype=np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    w = np.asarray(weights, dtype=np.float64)
    if X.ndim != 2 or len(X) != len(Y) or len(w) != len(X):
        raise ValueError(
            f"surrogate inputs disagree: features {X.shape}, targets {Y.shape}, weights {w.shape}; "
            "give one row of features, one target row and one weight per sample"
        )
    if np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("kernel weights must be finite, non-negative and not all zero")
    model = Ridge(alpha=alpha, fit_intercept=True)
    model.fit(X, Y, sample_weight=w)
    coef = np.atleast_2d(model.coef_)
    intercept = np.atleast_1d(model.intercept_)
    pred = model.predict(X).reshape(Y.shape)
    weighted = np.array([r2_score(Y[:, j], pred[:, j], sample_weight=w) for j in range(Y.shape[1])])
    plain = np.array([r2_score(Y[:, j], pred[:, j]) for j in range(Y.shape[1])])
    return SurrogateFit(coef=coef, intercept=intercept, weighted_r2=weighted, r2=plain)


def surrogate_meta(weighted_r2, r2, n_samples: int, n_features: int, targets: list[int]) -> dict:
    """The ``meta["surrogate"]`` entry every surrogate teacher records.

    ``weighted_r2`` and ``r2`` hold one value per explained target, in the order of ``targets``;
    ``n_samples`` counts the rows of the fit (the unperturbed text's row included) and
    ``n_features`` the words. :meth:`plex.teachers.base.Teacher.fidelity` reads it.
    """
    weighted, plain = [float(v) for v in weighted_r2], [float(v) for v in r2]
    if not len(weighted) == len(plain) == len(targets):
        raise ValueError(f"one weighted R² and one R² per target expected: got {len(weighted)} and "
                         f"{len(plain)} for {len(targets)} targets")
    return {"weighted_r2": weighted, "r2": plain, "n_samples": int(n_samples), "n_features": int(n_features),
            "targets": [int(t) for t in targets]}
