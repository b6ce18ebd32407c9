"""Plausibility: do the highest-scored words match what humans marked as evidence?

Human rationales come as character spans of the text (ERASER's evidence annotations, DeYoung et al.
2020, §4.1). The definitions used here:

- Rationale words: a word is a rationale word when its character span overlaps an annotated span.
- Gold spans: each annotated span, as annotated, becomes one word range ``[first, last + 1)`` over
  the words it overlaps. Adjacent or overlapping annotated spans stay separate gold spans (they are
  not merged into runs of rationale words); an annotated span that overlaps no word is dropped, and
  two annotated spans that cover the same words count once.
- Token F1 at oracle k (``token_f1_oracle_k``): F1 of the top-k words against the rationale words,
  with k = the number of rationale words of the text (so precision equals recall). Token F1 at fixed
  k (``token_f1_at_k``): the same for the top ``fixed_k`` words (3 by default), precision over the
  ``min(fixed_k, n_words)`` words predicted.
- IOU F1: the maximal runs of consecutive top-k words (k = oracle k) are the predicted spans. A
  predicted span matches when its intersection-over-union, over word positions, with some gold span
  is at least 0.5. As in ERASER, the F1 is micro over spans of a corpus: precision = total matches /
  total predicted spans, recall = total matches / total gold spans. :func:`plausibility` returns
  the three counts per text and :func:`iou_f1_micro` (or :func:`iou_f1_micro_from_sums` on sums,
  e.g. of bootstrap resamples) combines them; there is no per-text IOU F1.
- AUPRC (ERASER's soft-rationale measure) and ROC AUC rank the rationale words by score.

A text without rationale words has NaN for every per-text score and zero counts, so it enters
neither the means (:func:`numpy.nanmean`) nor the micro sums.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from plex.attribution import Attribution
from plex.evaluate.agreement import as_scores, top_k

IOU_THRESHOLD = 0.5
FIXED_K = 3


def rationale_mask(spans: Sequence[tuple[int, int]], rationale_spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Boolean mask over words: true where the word's ``[start, end)`` span overlaps a rationale span."""
    mask = np.zeros(len(spans), dtype=bool)
    for i, (start, end) in enumerate(spans):
        mask[i] = any(max(start, r_start) < min(end, r_end) for r_start, r_end in rationale_spans)
    return mask


def gold_word_spans(
    word_spans: Sequence[tuple[int, int]], rationale_spans: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Each annotated character span ``[start, end)`` as the word range ``[first, last + 1)`` it overlaps.

    Spans stay as annotated: adjacent annotated spans are separate gold spans. A span overlapping no
    word is dropped; annotated spans covering the same words count once. Sorted by position.
    """
    gold = set()
    for r_start, r_end in rationale_spans:
        hit = [i for i, (start, end) in enumerate(word_spans) if max(start, r_start) < min(end, r_end)]
        if hit:
            gold.add((hit[0], hit[-1] + 1))
    return sorted(gold)


def _scores_and_mask(scores: Sequence[float] | np.ndarray, mask: Sequence[bool] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = as_scores(scores)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != scores.shape:
        raise ValueError(
            f"the rationale mask covers {mask.size} words but there are {scores.size} scores; build "
            "it with rationale_mask(attribution.spans, rationale_spans)"
        )
    return scores, mask


def _top_mask(scores: np.ndarray, k: int) -> np.ndarray:
    predicted = np.zeros(len(scores), dtype=bool)
    predicted[top_k(scores, k)] = True
    return predicted


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def token_f1(scores: Sequence[float] | np.ndarray, mask: Sequence[bool] | np.ndarray, k: int | None = None) -> float:
    """Token-level F1 of the top-k words against the rationale words (ERASER's token F1).

    Precision = rationale words among the top k / ``min(k, n_words)``, recall = rationale words
    among the top k / rationale words. ``k`` defaults to the number of rationale words (oracle k, so
    precision equals recall). NaN when the text has no rationale word.
    """
    scores, mask = _scores_and_mask(scores, mask)
    n_gold = int(mask.sum())
    if n_gold == 0:
        return float("nan")
    predicted = _top_mask(scores, n_gold if k is None else k)
    hits = int((predicted & mask).sum())
    n_predicted = int(predicted.sum())
    precision = hits / n_predicted if n_predicted else 0.0
    return _f1(precision, hits / n_gold)


def runs(mask: Sequence[bool] | np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of consecutive true positions, as ``[start, end)`` word ranges."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2])]


def _iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    intersection = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - intersection
    return intersection / union if union else 0.0


class IouCounts(NamedTuple):
    """One text's contribution to the micro IOU F1."""

    matches: int
    """Predicted spans whose best IOU with a gold span is at least the threshold."""
    predicted: int
    """Predicted spans: maximal runs of consecutive top-k words."""
    gold: int
    """Gold spans."""


def iou_counts(
    scores: Sequence[float] | np.ndarray,
    gold_spans: Sequence[tuple[int, int]],
    k: int | None = None,
    threshold: float = IOU_THRESHOLD,
) -> IouCounts:
    """Matched, predicted and gold span counts of one text for ERASER's micro IOU F1.

    Args:
        scores: one score per word.
        gold_spans: gold word ranges ``[start, end)``, from :func:`gold_word_spans`.
        k: how many top words form the predicted spans; defaults to the number of words the gold
            spans cover (oracle k).
        threshold: the IOU, over word positions, from which a predicted span matches a gold span.

    Returns:
        ``(matches, predicted, gold)``; all zero when there is no gold span.
    """
    scores = as_scores(scores)
    gold = sorted(set((int(s), int(e)) for s, e in gold_spans))
    if any(not 0 <= s < e <= len(scores) for s, e in gold):
        raise ValueError(f"gold spans {gold} are not non-empty word ranges within the {len(scores)} words")
    if not gold:
        return IouCounts(0, 0, 0)
    if k is None:
        covered = np.zeros(len(scores), dtype=bool)
        for s, e in gold:
            covered[s:e] = True
        k = int(covered.sum())
    predicted = runs(_top_mask(scores, k))
    matches = sum(max(_iou(p, g) for g in gold) >= threshold for p in predicted)
    return IouCounts(int(matches), len(predicted), len(gold))


def iou_f1_micro_from_sums(matches, predicted, gold) -> np.ndarray | float:
    """Micro IOU F1 from summed counts, elementwise over numpy arrays (e.g. one value per resample).

    With precision = matches / predicted and recall = matches / gold, F1 = 2 matches / (predicted +
    gold): 0 when there is no match (so also when nothing is predicted), NaN where gold is 0.
    A float for scalar inputs, else an array of the broadcast shape.
    """
    matches, predicted, gold = (np.asarray(x, dtype=np.float64) for x in (matches, predicted, gold))
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(matches > 0, 2 * matches / (predicted + gold), 0.0)
    f1 = np.where(gold > 0, f1, np.nan)
    return float(f1) if f1.ndim == 0 else f1



def iou_f1_micro(rows: Sequence[Mapping]) -> float:
    """ERASER's IOU F1 over a corpus, micro over spans, from the per-text rows of :func:`plausibility`.

    Precision = sum of ``iou_matches`` / sum of ``predicted_spans``, recall = sum of ``iou_matches``
    / sum of ``gold_spans``. 0 when either is 0; NaN when there are no gold spans at all.
    """
    sums = [sum(int(r[key]) for r in rows) for key in ("iou_matches", "predicted_spans", "gold_spans")]
    return iou_f1_micro_from_sums(*sums)


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
    attribution: Attribution,
    rationale_spans: Sequence[tuple[int, int]],
    k: int | None = None,
    fixed_k: int = FIXED_K,
) -> dict[str, float | int]:
    """All plausibility metrics of one attribution against human rationale character spans.

    Args:
        attribution: the word scores to judge.
        rationale_spans: annotated character spans ``[start, end)`` of the text.
        k: overrides the oracle k (the number of rationale words) for ``token_f1_oracle_k`` and the
            predicted spans.
        fixed_k: the k of ``token_f1_at_k``.

    Returns:
        Floats ``token_f1_oracle_k``, ``token_f1_at_k``, ``auprc`` and ``roc_auc`` (NaN where
        undefined) and the integer counts ``iou_matches``, ``predicted_spans`` and ``gold_spans``
        for :func:`iou_f1_micro`. A text without rationale words gives NaN floats and zero counts.
    """
    mask = rationale_mask(attribution.spans, rationale_spans)
    scores = attribution.scores
    counts = iou_counts(scores, gold_word_spans(attribution.spans, rationale_spans), k=k)
    return {
        "token_f1_oracle_k": token_f1(scores, mask, k),
        "token_f1_at_k": token_f1(scores, mask, fixed_k),
        "auprc": auprc(scores, mask),
        "roc_auc": roc_auc(scores, mask),
        "iou_matches": counts.matches,
        "predicted_spans": counts.predicted,
        "gold_spans": counts.gold,
    }


def plausibility_family(
    attributions: Mapping[str, Sequence[Attribution]],
    rationales: Sequence[Sequence[tuple[int, int]]],
    gold: Sequence[int],
    fixed_k: int = 3,
    seed: int = 0,
    per_text: dict[str, list[dict]] | None = None,
) -> dict[str, dict]:
    """Plausibility of every explainer in ``{name: [Attribution per text]}`` against the rationales.

    Only texts whose explained (predicted) class is the gold label count: the rationale is the
    evidence for that label. Per explainer: the per-text means of ``token_f1_oracle_k``,
    ``token_f1_at_k``, ``auprc`` and ``roc_auc`` and the corpus-level micro ``iou_f1``, each
    ``{"mean", "low", "high", "n"}`` with a bootstrap interval over texts; ``texts`` and ``fixed_k``.
    When ``per_text`` is given, it receives ``{name: [row or {} per text]}`` (``{}`` for texts left
    out), aligned with the texts for paired comparisons.
    """
    from plex.evaluate.stats import statistic_ci, summarise

    out = {}
    for name, attrs in attributions.items():
        aligned = [plausibility(a, spans, fixed_k=fixed_k) if a.target == g else {}
                   for a, spans, g in zip(attrs, rationales, gold)]
        rows = [r for r in aligned if r]
        if per_text is not None:
            per_text[name] = aligned
        entry: dict = summarise(rows, ["token_f1_oracle_k", "token_f1_at_k", "auprc", "roc_auc"], seed=seed)
        columns = {"matches": [r["iou_matches"] for r in rows], "predicted": [r["predicted_spans"] for r in rows],
                   "gold": [r["gold_spans"] for r in rows]}
        entry["iou_f1"] = statistic_ci(columns, iou_f1_micro_from_sums, seed=seed).to_dict()
        entry["texts"] = len(rows)
        entry["fixed_k"] = fixed_k
        out[name] = entry
    return out
