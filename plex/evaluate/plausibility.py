"""Plausibility: do the highest-scored words match what humans marked as evidence?

Human rationales come as character spans of the text (ERASER's evidence annotations, DeYoung et al.
2020). A word is a rationale word when its span overlaps a rationale span. The metrics follow ERASER
§4.1: token-level F1 and IOU F1 for the top-k words as a hard rationale, and AUPRC for the scores as
a soft one; ROC AUC is added as a threshold-free ranking measure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from plex.attribution import Attribution
from plex.evaluate.agreement import as_scores, top_k

IOU_THRESHOLD = 0.5


def rationale_mask(spans: Sequence[tuple[int, int]], rationale_spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Boolean mask over words: true where the word's ``[start, end)`` span overlaps a rationale span."""
    mask = np.zeros(len(spans), dtype=bool)
    for i, (start, end) in enumerate(spans):
        mask[i] = any(max(start, r_start) < min(end, r_end) for r_start, r_end in rationale_spans)
    return mask


def _scores_and_mask(scores: Sequence[float] | np.ndarray, mask: Sequence[bool] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = as_scores(scores)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != scores.shape:
        raise ValueError(
            f"the rationale mask covers {mask.size} words but there are {scores.size} scores; build "
            "it with rationale_mask(attribution.spans, rationale_spans)"
        )
    return scores, mask


def _predicted(scores: np.ndarray, mask: np.ndarray, k: int | None) -> np.ndarray | None:
    """Mask of the top-k words (k defaults to the number of rationale words); None without rationale."""
    n_gold = int(mask.sum())
    if n_gold == 0:
        return None
    k = n_gold if k is None else k
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}")
    predicted = np.zeros(len(scores), dtype=bool)
    predicted[top_k(scores, k)] = True
    return predicted


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def token_f1(scores: Sequence[float] | np.ndarray, mask: Sequence[bool] | np.ndarray, k: int | None = None) -> float:
    """Token-level F1 of the top-k words against the rationale words (ERASER's token F1).

    Precision = rationale words among the top k / k, recall = rationale words among the top k /
    rationale words. ``k`` defaults to the number of rationale words (so precision equals recall).
    NaN when the text has no rationale word.
    """
    scores, mask = _scores_and_mask(scores, mask)
    predicted = _predicted(scores, mask, k)
    if predicted is None:
        return float("nan")
    hits = int((predicted & mask).sum())
    n_predicted = int(predicted.sum())
    precision = hits / n_predicted if n_predicted else 0.0
    return _f1(precision, hits / int(mask.sum()))


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of consecutive true positions, as ``[start, end)`` word ranges."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2])]


def _iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    intersection = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - intersection
    return intersection / union if union else 0.0


def iou_f1(
    scores: Sequence[float] | np.ndarray,
    mask: Sequence[bool] | np.ndarray,
    k: int | None = None,
    threshold: float = IOU_THRESHOLD,
) -> float:
    """ERASER's IOU F1 (DeYoung et al. 2020, §4.1) of the top-k words as a hard rationale.

    The maximal runs of consecutive top-k words are the predicted spans, the runs of rationale words
    the gold spans. A predicted span matches when its intersection-over-union (over word positions)
    with some gold span is at least ``threshold``. As in ERASER, precision = matches / predicted
    spans and recall = matches / gold spans. ``k`` defaults to the number of rationale words; NaN
    when there is no rationale word, 0 when no word is predicted.
    """
    scores, mask = _scores_and_mask(scores, mask)
    predicted = _predicted(scores, mask, k)
    if predicted is None:
        return float("nan")
    pred_spans, gold_spans = runs(predicted), runs(mask)
    if not pred_spans:
        return 0.0
    matches = sum(max(_iou(p, g) for g in gold_spans) >= threshold for p in pred_spans)
    return _f1(matches / len(pred_spans), matches / len(gold_spans))


def _both_classes(mask: np.ndarray) -> bool:
    return bool(mask.any() and not mask.all())


def auprc(scores: Sequence[float] | np.ndarray, mask: Sequence[bool] | np.ndarray) -> float:
    """Area under the precision-recall curve of the scores ranking rationale words first.

    Average precision (scikit-learn's ``average_precision_score``): the mean, over rationale words,
    of the precision at the rank of each. NaN unless there are both rationale and other words.
    """
    scores, mask = _scores_and_mask(scores, mask)
    if not _both_classes(mask):
        return float("nan")
    return float(average_precision_score(mask, scores))


def roc_auc(scores: Sequence[float] | np.ndarray, mask: Sequence[bool] | np.ndarray) -> float:
    """Area under the ROC curve: P(a rationale word outscores another word), ties counting half.

    NaN unless there are both rationale and other words.
    """
    scores, mask = _scores_and_mask(scores, mask)
    if not _both_classes(mask):
        return float("nan")
    return float(roc_auc_score(mask, scores))


def plausibility(
    attribution: Attribution, rationale_spans: Sequence[tuple[int, int]], k: int | None = None
) -> dict[str, float]:
    """All plausibility metrics of one attribution against human rationale character spans.

    Returns:
        ``{"token_f1", "iou_f1", "auprc", "roc_auc"}``, floats that are NaN where undefined.
    """
    mask = rationale_mask(attribution.spans, rationale_spans)
    scores = attribution.scores
    return {
        "token_f1": token_f1(scores, mask, k),
        "iou_f1": iou_f1(scores, mask, k),
        "auprc": auprc(scores, mask),
        "roc_auc": roc_auc(scores, mask),
    }
