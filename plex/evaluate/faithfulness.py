"""Faithfulness: does the classifier itself agree that the top-ranked words matter?

Two families of erasure metrics, both judged by the classifier's probability of the explained class:

* ERASER's AOPC comprehensiveness and sufficiency (DeYoung et al. 2020, "ERASER: A Benchmark to
  Evaluate Rationalized NLP Models", §4.2). For each fraction ``f`` in :data:`FRACTIONS` the top
  ``k = max(1, ceil(f * n_words))`` words are the rationale ``r``;

  - comprehensiveness = mean_f [ p(y | x) - p(y | x \\ r) ]   (higher is better),
  - sufficiency       = mean_f [ p(y | x) - p(y | r) ]         (lower is better).

* Deletion and insertion curves (Petsiuk et al. 2018, "RISE", §4.1): words are removed from the
  text (deletion), or inserted into the empty text (insertion), in the attribution's order, and
  p(y) is recorded after each step over ``x`` = fraction of words removed / inserted. The area under
  the curve (trapezoid rule over ``x`` in [0, 1]) is low for deletion and high for insertion when
  the ranking is faithful. The same curves for random orders, averaged, are the baseline; the
  orders are seeded by the text, so every explainer of a text meets the same baseline.

:func:`faithfulness` builds every perturbed text of every attribution first, then scores them the
way ``plex label`` scores concurrent explanations (:func:`plex.batching.run_unique`): each distinct
text once (several explainers of one text share most of theirs), in one ``classifier.predict_proba``
call.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from plex.attribution import Attribution
from plex.batching import BatchStats, run_unique
from plex.classifiers.base import Classifier
from plex.evaluate.agreement import top_k
from plex.words import join_kept

logger = logging.getLogger(__name__)

FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.10, 0.20, 0.50)
DEFAULT_STEPS = 50
CURVE_KEYS = ("x", "deletion", "insertion", "deletion_random", "insertion_random")
SCORE_KEYS = (
    "comprehensiveness", "sufficiency", "deletion_auc", "insertion_auc",
    "deletion_auc_random", "insertion_auc_random",
)


def rationale_sizes(n_words: int, fractions: Sequence[float] = FRACTIONS) -> list[int]:
    """``k = max(1, ceil(f * n_words))`` for each fraction ``f`` (ERASER's bins).

    ``f * n_words`` is rounded to 9 decimals before the ceiling, so that floating-point noise
    (``0.1 * 30 = 3.0000000000000004``) does not add a word.
    """
    _check_fractions(fractions)
    return [max(1, math.ceil(round(f * n_words, 9))) for f in fractions]


def curve_counts(n_words: int, steps: int | None = DEFAULT_STEPS) -> np.ndarray:
    """How many words are removed / inserted at each point of a curve: ``0`` to ``n_words``.

    Every word is one step when ``n_words <= steps`` (or ``steps`` is ``None``); longer texts take
    ``steps`` equal steps of ``floor(i * n_words / steps)`` words.
    """
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be a positive integer or None, got {steps}")
    n_steps = n_words if steps is None else min(n_words, steps)
    if n_steps == 0:
        return np.zeros(1, dtype=np.int64)
    return (np.arange(n_steps + 1, dtype=np.int64) * n_words) // n_steps


def auc(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoid-rule area under ``y(x)``; NaN for fewer than two points."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def _check_fractions(fractions: Sequence[float]) -> None:
    if len(fractions) == 0 or any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"fractions must be a non-empty sequence of values in (0, 1], got {fractions}")


def random_orders_rng(seed: int, text: str) -> np.random.Generator:
    """The generator of a text's random word orders: seeded by the text, not by its place in a list."""
    from plex.teachers.base import text_seed

    return np.random.default_rng(text_seed(seed, text))


def _ranking(attribution: Attribution) -> np.ndarray:
    """Word positions, highest score first; equal scores keep their text order."""
    return top_k(attribution.scores, len(attribution))


def _first(order: np.ndarray, count: int) -> np.ndarray:
    """Boolean mask over words that is true for the first ``count`` positions of ``order``."""
    mask = np.zeros(len(order), dtype=bool)
    mask[order[:count]] = True
    return mask


def score_texts(classifier: Classifier, requests: Sequence[Sequence[str]], stats: BatchStats | None = None
                ) -> list[np.ndarray]:
    """``predict_proba`` of several lists of texts, each distinct text run once: one array per list."""
    batch_size = getattr(classifier, "batch_size", None)
    return run_unique(lambda todo: np.asarray(classifier.predict_proba(todo), dtype=np.float64), requests,
                      batch_size=batch_size, stats=stats)


class _Batch:
    """The perturbed texts one attribution needs, each once, with their rows."""

    def __init__(self, mask_token: str) -> None:
        self.mask_token = mask_token
        self.texts: list[str] = []
        self._index: dict[str, int] = {}

    def add(self, attribution: Attribution, keep: np.ndarray) -> int:
        """Queue the text that keeps the words where ``keep`` is true; return its row."""
        if keep.all():
            text = attribution.text
        else:
            text = join_kept(attribution.text, attribution.spans, keep, self.mask_token)
        row = self._index.get(text)
        if row is None:
            row = self._index[text] = len(self.texts)
            self.texts.append(text)
        return row

    def curve(self, attribution: Attribution, order: np.ndarray, counts: np.ndarray, insertion: bool) -> np.ndarray:
        """Rows of the texts along a deletion (or insertion) curve following ``order``."""
        rows = []
        for count in counts:
            first = _first(order, int(count))
            rows.append(self.add(attribution, first if insertion else ~first))
        return np.asarray(rows, dtype=np.int64)

    def probabilities(self, classifier: Classifier) -> np.ndarray:
        if not self.texts:
            return np.zeros((0, classifier.num_labels))
        return score_texts(classifier, [self.texts])[0]


@dataclass
class _Plan:
    """Rows in the batch of every text one attribution needs."""

    full: int
    removed: np.ndarray
    kept: np.ndarray
    x: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_random: np.ndarray
    insertion_random: np.ndarray


def _plan(
    batch: _Batch,
    attribution: Attribution,
    fractions: Sequence[float],
    steps: int | None,
    n_random: int,
    rng: np.random.Generator,
) -> _Plan:
    n = len(attribution)
    order = _ranking(attribution)
    full = batch.add(attribution, np.ones(n, dtype=bool))
    sizes = rationale_sizes(n, fractions)
    removed = np.asarray([batch.add(attribution, ~_first(order, k)) for k in sizes], dtype=np.int64)
    kept = np.asarray([batch.add(attribution, _first(order, k)) for k in sizes], dtype=np.int64)
    counts = curve_counts(n, steps)
    random_orders = [rng.permutation(n) for _ in range(n_random)]

    def curves(orders: list[np.ndarray], insertion: bool) -> np.ndarray:
        rows = [batch.curve(attribution, o, counts, insertion) for o in orders]
        return np.stack(rows) if rows else np.zeros((0, len(counts)), dtype=np.int64)

    return _Plan(
        full=full,
        removed=removed,
        kept=kept,
        x=counts / n,
        deletion=batch.curve(attribution, order, counts, insertion=False),
        insertion=batch.curve(attribution, order, counts, insertion=True),
        deletion_random=curves(random_orders, insertion=False),
        insertion_random=curves(random_orders, insertion=True),
    )


def _target_column(probs: np.ndarray, attribution: Attribution) -> np.ndarray:
    if not 0 <= attribution.target < probs.shape[1]:
        raise ValueError(
            f"attribution target {attribution.target} is not a class of a classifier with "
            f"{probs.shape[1]} labels"
        )
    return probs[:, attribution.target]


def _empty_result() -> dict[str, float | np.ndarray]:
    out: dict[str, float | np.ndarray] = {key: float("nan") for key in SCORE_KEYS}
    out.update({key: np.zeros(0) for key in CURVE_KEYS})
    return out


def _result(plan: _Plan, p: np.ndarray) -> dict[str, float | np.ndarray]:
    base = p[plan.full]
    deletion, insertion = p[plan.deletion], p[plan.insertion]
    if len(plan.deletion_random):
        deletion_random = p[plan.deletion_random].mean(axis=0)
        insertion_random = p[plan.insertion_random].mean(axis=0)
    else:
        deletion_random = np.full(len(plan.x), np.nan)
        insertion_random = np.full(len(plan.x), np.nan)
    return {
        "comprehensiveness": float(np.mean(base - p[plan.removed])),
        "sufficiency": float(np.mean(base - p[plan.kept])),
        "deletion_auc": auc(plan.x, deletion),
        "insertion_auc": auc(plan.x, insertion),
        "deletion_auc_random": auc(plan.x, deletion_random),
        "insertion_auc_random": auc(plan.x, insertion_random),
        "x": plan.x,
        "deletion": deletion,
        "insertion": insertion,
        "deletion_random": deletion_random,
        "insertion_random": insertion_random,
    }


def faithfulness(
    classifier: Classifier,
    attributions: Sequence[Attribution],
    fractions: Sequence[float] = FRACTIONS,
    n_random: int = 5,
    seed: int = 0,
    mask_token: str = "",
    steps: int | None = DEFAULT_STEPS,
    stats: BatchStats | None = None,
) -> list[dict[str, float | np.ndarray]]:
    """All faithfulness metrics of many attributions, with one ``predict_proba`` call in total.

    Args:
        classifier: the classifier the attributions explain; it is the judge.
        attributions: one per text; each is judged on its own ``target`` class.
        fractions: ERASER's rationale sizes, as fractions of the words of each text.
        n_random: random word orders averaged into the baseline curves (0 leaves them NaN).
        seed: the random orders of a text come from ``numpy.random.default_rng(text_seed(seed, text))``:
            they depend on the text alone, so every explainer of the same text is compared with the
            same random baseline.
        mask_token: what replaces a removed word (``""`` deletes it).
        steps: at most this many steps per curve (``None``: one per word).
        stats: counts to add the call to (texts asked for, distinct texts, forward batches).

    Returns:
        One dict per attribution with the floats ``comprehensiveness``, ``sufficiency``,
        ``deletion_auc``, ``insertion_auc``, ``deletion_auc_random`` and ``insertion_auc_random``
        (see :data:`plex.evaluate.metrics.METRICS`), and the curves: ``x`` (fraction of words
        removed / inserted), ``deletion``, ``insertion``, ``deletion_random`` and
        ``insertion_random`` (p(target) at each ``x``). Texts with no words give NaN metrics and
        empty curves.
    """
    _check_fractions(fractions)
    if n_random < 0:
        raise ValueError(f"n_random must be non-negative, got {n_random}")
    batches = [_Batch(mask_token) for _ in attributions]
    plans = [
        _plan(batch, a, fractions, steps, n_random, random_orders_rng(seed, a.text)) if len(a) else None
        for batch, a in zip(batches, attributions)
    ]
    probs = score_texts(classifier, [b.texts for b in batches], stats)
    return [
        _result(plan, _target_column(p, a)) if plan is not None else _empty_result()
        for plan, p, a in zip(plans, probs, attributions)
    ]


def _aopc(
    classifier: Classifier, attribution: Attribution, fractions: Sequence[float], mask_token: str, keep_top: bool
) -> float:
    n = len(attribution)
    if n == 0:
        return float("nan")
    batch = _Batch(mask_token)
    order = _ranking(attribution)
    full = batch.add(attribution, np.ones(n, dtype=bool))
    masks = [_first(order, k) for k in rationale_sizes(n, fractions)]
    rows = [batch.add(attribution, m if keep_top else ~m) for m in masks]
    p = _target_column(batch.probabilities(classifier), attribution)
    return float(np.mean(p[full] - p[rows]))


def comprehensiveness(
    classifier: Classifier, attribution: Attribution, fractions: Sequence[float] = FRACTIONS, mask_token: str = ""
) -> float:
    """ERASER AOPC comprehensiveness: mean over ``fractions`` of p(y | x) - p(y | x without top-k).

    ``k = max(1, ceil(f * n_words))``; ``y`` is ``attribution.target``. Higher is better. NaN for
    a text with no words.
    """
    return _aopc(classifier, attribution, fractions, mask_token, keep_top=False)


def sufficiency(
    classifier: Classifier, attribution: Attribution, fractions: Sequence[float] = FRACTIONS, mask_token: str = ""
) -> float:
    """ERASER AOPC sufficiency: mean over ``fractions`` of p(y | x) - p(y | only the top-k words).

    ``k = max(1, ceil(f * n_words))``; ``y`` is ``attribution.target``. Lower is better. NaN for a
    text with no words.
    """
    return _aopc(classifier, attribution, fractions, mask_token, keep_top=True)


def _curve(
    classifier: Classifier,
    attribution: Attribution,
    steps: int | None,
    order: np.ndarray | None,
    mask_token: str,
    insertion: bool,
) -> tuple[np.ndarray, np.ndarray]:
    n = len(attribution)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    if order is None:
        order = _ranking(attribution)
    elif sorted(np.asarray(order).tolist()) != list(range(n)):
        raise ValueError(f"order must be a permutation of the {n} word positions")
    counts = curve_counts(n, steps)
    batch = _Batch(mask_token)
    rows = batch.curve(attribution, np.asarray(order), counts, insertion)
    return counts / n, _target_column(batch.probabilities(classifier), attribution)[rows]


def deletion_curve(
    classifier: Classifier,
    attribution: Attribution,
    steps: int | None = DEFAULT_STEPS,
    order: np.ndarray | None = None,
    mask_token: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """p(target) as words are removed, highest score first (or in ``order``).

    Returns:
        ``(x, p)``: ``x`` is the fraction of words removed, from 0 (the text) to 1 (no word left);
        ``p`` the probability of ``attribution.target`` there. Empty arrays for a text with no words.
        :func:`auc` of the two is the deletion AUC (lower is better).
    """
    return _curve(classifier, attribution, steps, order, mask_token, insertion=False)


def insertion_curve(
    classifier: Classifier,
    attribution: Attribution,
    steps: int | None = DEFAULT_STEPS,
    order: np.ndarray | None = None,
    mask_token: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """p(target) as words are inserted into the empty text, highest score first (or in ``order``).

    Returns:
        ``(x, p)``: ``x`` is the fraction of words inserted, from 0 (no word) to 1 (the text); ``p``
        the probability of ``attribution.target`` there. Empty arrays for a text with no words.
        :func:`auc` of the two is the insertion AUC (higher is better).
    """
    return _curve(classifier, attribution, steps, order, mask_token, insertion=True)


def faithfulness_family(
    classifier: Classifier,
    attributions: Mapping[str, Sequence[Attribution]],
    gold: Sequence[int] | None = None,
    seed: int = 0,
    per_text: dict[str, list[dict]] | None = None,
) -> tuple[dict[str, dict], dict[str, dict[str, list[float]]]]:
    """Faithfulness of every explainer in ``{name: [Attribution per text]}``, scored in one batch.

    Returns:
        ``({name: {"all", "by_gold", "by_predicted"}}, {name: mean curves})``: each group maps
        :data:`SCORE_KEYS` to ``{"mean", "low", "high", "n"}`` (bootstrap over texts), ``by_gold``
        and ``by_predicted`` split the texts by class name; the curves are interpolated on 21
        points of the fraction of words removed / inserted and averaged over texts. When
        ``per_text`` is given, it receives ``{name: [{score key: value} per text]}`` (for paired
        comparisons).
    """
    from plex.evaluate.stats import summarise

    names = list(attributions)
    flat = [a for name in names for a in attributions[name]]
    stats = BatchStats()
    rows = faithfulness(classifier, flat, seed=seed, stats=stats)
    logger.info("faithfulness: %d perturbed texts of %d explanations, %d distinct (%.2f) in %d forward batches",
                stats.texts, len(flat), stats.unique, stats.unique_fraction, stats.forward_batches)
    labels = classifier.labels
    out, curves, start = {}, {}, 0
    for name in names:
        attrs = attributions[name]
        mine, start = rows[start:start + len(attrs)], start + len(attrs)
        predicted = [a.target for a in attrs]
        groups = {"all": summarise(mine, SCORE_KEYS, seed=seed), "by_gold": {}, "by_predicted": {}}
        for group, classes in (("by_gold", gold), ("by_predicted", predicted)):
            if classes is None:
                continue
            for c in sorted({c for c in classes if c is not None and c >= 0}):
                groups[group][labels[c]] = summarise([r for r, k in zip(mine, classes) if k == c], SCORE_KEYS,
                                                     seed=seed)
        out[name] = groups
        curves[name] = mean_curves(mine)
        if per_text is not None:
            per_text[name] = [{k: r.get(k) for k in SCORE_KEYS} for r in mine]
    return out, curves


def mean_curves(rows: Sequence[dict], grid: int = 21) -> dict[str, list[float]]:
    """Deletion/insertion curves of every text, interpolated on one grid of ``x`` and averaged."""
    x = np.linspace(0, 1, grid)
    out: dict[str, list[float]] = {"x": x.tolist()}
    for key in ("deletion", "insertion", "deletion_random", "insertion_random"):
        curves = [np.interp(x, r["x"], r[key]) for r in rows if r.get("x") is not None and len(r["x"]) > 1]
        out[key] = np.mean(curves, axis=0).tolist() if curves else []
    return out
