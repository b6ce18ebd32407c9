"""Agreement between two attributions of the same words: rank correlation, top-k overlap, signs.

Both inputs are 1-D score arrays over the same word positions (an explainer's scores and a
reference: a teacher, or the known weights of a model). Undefined values are NaN rather than
errors, so that per-text results average with :func:`numpy.nanmean`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

ZERO_TOLERANCE = 1e-12


def as_scores(scores: Sequence[float] | np.ndarray, name: str = "scores") -> np.ndarray:
    """``scores`` as a 1-D float array; a ``ValueError`` for any other shape."""
    out = np.asarray(scores, dtype=np.float64)
    if out.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of word scores, got shape {out.shape}")
    return out


def paired(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both score arrays as 1-D floats; a ``ValueError`` unless they cover the same number of words."""
    a, b = as_scores(a, "a"), as_scores(b, "b")
    if len(a) != len(b):
        raise ValueError(
            f"the two attributions cover different numbers of words ({len(a)} and {len(b)}); "
            "compare attributions of the same text, segmented with plex.words.segment"
        )
    return a, b


def top_k(scores: Sequence[float] | np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores, best first; equal scores keep their text order."""
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}")
    return np.argsort(-as_scores(scores), kind="stable")[:k]


def _constant(x: np.ndarray) -> bool:
    return bool(np.all(x == x[0]))


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation (Pearson correlation of average ranks).

    NaN when there are fewer than two words or either side is constant (no ranking to compare).
    """
    a, b = paired(a, b)
    if len(a) < 2 or _constant(a) or _constant(b):
        return float("nan")
    return float(stats.spearmanr(a, b)[0])


def kendall(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Kendall's tau-b, which corrects for ties on either side.

    NaN when there are fewer than two words or either side is constant.
    """
    a, b = paired(a, b)
    if len(a) < 2 or _constant(a) or _constant(b):
        return float("nan")
    return float(stats.kendalltau(a, b)[0])


def top_k_overlap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, k: int) -> float:
    """``|top-k(a) ∩ top-k(b)| / min(k, n)``, the share of top-k words both attributions agree on.

    Ties are broken by position (the earlier word ranks first), so the result is deterministic.
    NaN for a text with no words.
    """
    a, b = paired(a, b)
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    n = len(a)
    if n == 0:
        return float("nan")
    shared = np.intersect1d(top_k(a, k), top_k(b, k))
    return len(shared) / min(k, n)


def signs(scores: np.ndarray, tol: float = ZERO_TOLERANCE) -> np.ndarray:
    """-1, 0 or +1 per score, counting ``|score| < tol`` as zero."""
    return np.where(np.abs(scores) < tol, 0.0, np.sign(scores))


def sign_agreement(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Fraction of words whose scores have the same sign (zero agrees only with zero).

    Scores with ``|x| < 1e-12`` count as zero. NaN for a text with no words.
    """
    a, b = paired(a, b)
    if len(a) == 0:
        return float("nan")
    return float(np.mean(signs(a) == signs(b)))


def agreement(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, ks: Sequence[int] = (1, 3, 5)
) -> dict[str, float]:
    """All agreement metrics of two attributions of one text.

    Returns:
        ``{"spearman", "kendall", "top1", "top3", "top5", "sign_agreement"}`` (one ``top{k}`` key
        per entry of ``ks``), each a float that may be NaN where undefined.
    """
    a, b = paired(a, b)
    out = {"spearman": spearman(a, b), "kendall": kendall(a, b)}
    for k in ks:
        out[f"top{k}"] = top_k_overlap(a, b, k)
    out["sign_agreement"] = sign_agreement(a, b)
    return out


def agreement_rows(attributions: Sequence, reference: Sequence) -> list[dict[str, float]]:
    """Per-text :func:`agreement` of two explainers' attributions of the same texts, in order.

    Both lists hold one :class:`plex.Attribution` per text; a ``ValueError`` when they do not cover
    the same texts, words and target (their scores would not be comparable).
    """
    if len(attributions) != len(reference):
        raise ValueError(f"got {len(attributions)} attributions and {len(reference)} reference attributions; "
                         "compare explanations of the same texts")
    rows = []
    for a, r in zip(attributions, reference):
        if a.text != r.text or list(a.words) != list(r.words) or a.target != r.target:
            raise ValueError(f"the attributions of {a.text[:40]!r} and {r.text[:40]!r} do not explain the same "
                             "words for the same class")
        rows.append(agreement(a.scores, r.scores))
    return rows


def agreement_family(attributions: Mapping[str, Sequence], reference: Sequence) -> dict[str, list[dict[str, float]]]:
    """Per-text agreement of every explainer in ``{name: [Attribution]}`` with ``reference``."""
    return {name: agreement_rows(attrs, reference) for name, attrs in attributions.items()}
