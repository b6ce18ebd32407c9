"""Every metric used to compare explainers, declared once: its name, direction and meaning.

Tables, reports and plots look metrics up here instead of hard-coding which way is better. The keys
are exactly the keys returned by :mod:`plex.evaluate.agreement`, :mod:`plex.evaluate.faithfulness`,
:mod:`plex.evaluate.plausibility`, :mod:`plex.evaluate.stability`, :mod:`plex.evaluate.fidelity`
and the speed benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Metric:
    """One metric.

    Attributes:
        name: the key under which the metric is reported.
        higher_is_better: ``True`` when a larger value means a better explainer.
        group: the family it belongs to (``"agreement"``, ``"faithfulness"``, ``"plausibility"``,
            ``"stability"``, ``"fidelity"``, ``"fluency"`` or ``"speed"``).
        description: the definition, in one or two sentences.
    """

    name: str
    higher_is_better: bool
    group: str
    description: str

    @property
    def direction(self) -> Literal["higher", "lower"]:
        return "higher" if self.higher_is_better else "lower"


def _top_k(k: int) -> Metric:
    return Metric(
        f"top{k}", True, "agreement",
        f"|top-{k}(a) ∩ top-{k}(b)| / min({k}, n_words): share of the {k} highest-scored words of the "
        "reference attribution that the explainer also ranks in its top k (ties broken by position).",
    )


_ALL = (
    # Agreement with a reference attribution (a teacher, or the known weights of a model).
    Metric("spearman", True, "agreement",
           "Spearman rank correlation between the explainer's and the reference's word scores; "
           "NaN with fewer than two words or a constant side."),
    Metric("kendall", True, "agreement",
           "Kendall's tau-b between the explainer's and the reference's word scores; NaN with fewer "
           "than two words or a constant side."),
    _top_k(1),
    _top_k(3),
    _top_k(5),
    Metric("sign_agreement", True, "agreement",
           "Fraction of words whose score signs agree (|score| < 1e-12 counts as zero, and zero "
           "agrees only with zero)."),
    # Faithfulness to the classifier (DeYoung et al. 2020, ERASER; Petsiuk et al. 2018, RISE).
    Metric("comprehensiveness", True, "faithfulness",
           "ERASER AOPC comprehensiveness: mean over fractions (1, 5, 10, 20, 50 %) of "
           "p(target | text) - p(target | text without its top-k words)."),
    Metric("sufficiency", False, "faithfulness",
           "ERASER AOPC sufficiency: mean over fractions (1, 5, 10, 20, 50 %) of "
           "p(target | text) - p(target | only its top-k words); lower is better."),
    Metric("deletion_auc", False, "faithfulness",
           "Area under p(target) as words are removed in the attribution's order, over the "
           "fraction of words removed in [0, 1]; a faithful ranking makes it fall fast."),
    Metric("insertion_auc", True, "faithfulness",
           "Area under p(target) as words are inserted into the empty text in the attribution's "
           "order, over the fraction inserted in [0, 1]; a faithful ranking makes it rise fast."),
    Metric("deletion_auc_random", False, "faithfulness",
           "Baseline: deletion AUC of the mean curve over seeded random word orders."),
    Metric("insertion_auc_random", True, "faithfulness",
           "Baseline: insertion AUC of the mean curve over seeded random word orders."),
    # Plausibility against human rationales (ERASER).
    Metric("token_f1", True, "plausibility",
           "F1 of the top-k words (k = number of rationale words) against the human rationale words."),
    Metric("iou_f1", True, "plausibility",
           "ERASER IOU F1: contiguous runs of top-k words are predicted spans; one matches when its "
           "intersection-over-union with a rationale span is >= 0.5; F1 over spans."),
    Metric("auprc", True, "plausibility",
           "Area under the precision-recall curve (average precision) of the scores as a ranking "
           "of rationale words."),
    Metric("roc_auc", True, "plausibility",
           "Area under the ROC curve of the scores as a ranking of rationale words: the "
           "probability that a rationale word outscores a non-rationale word."),
    # Stability of the explanation.
    Metric("jaccard_seed", True, "stability",
           "Jaccard index of the top-k word positions of two runs of the explainer that differ "
           "only in their random seed."),
    Metric("jaccard_edit", True, "stability",
           "Jaccard index of the top-k words of a text and of a meaning-preserving edit of it."),
    Metric("consistency_spread", False, "stability",
           "Spread of the word scores across repeated runs with different seeds: mean per-word "
           "standard deviation over runs divided by the mean |score|; 0 when every run agrees."),
    # Fidelity of a linear surrogate (LIME's local model, a student's fit).
    Metric("r2", True, "fidelity",
           "Coefficient of determination of the surrogate's predictions of the classifier output."),
    Metric("weighted_r2", True, "fidelity",
           "R² weighted by the perturbation kernel (LIME's score)."),
    Metric("adjusted_r2", True, "fidelity",
           "1 - (1 - R²)(n - 1) / (n - p - 1) for n samples and p features; NaN when n - p - 1 <= 0."),
    Metric("weighted_mse", False, "fidelity",
           "Kernel-weighted mean squared error of the surrogate's predictions (gSMILE)."),
    Metric("mae", False, "fidelity",
           "Mean absolute error of the surrogate's predictions over its samples (gSMILE)."),
    # Fluency of LIME-LLM's perturbations (plex.evaluate.fluency).
    Metric("perplexity_original", False, "fluency",
           "Mean perplexity of the original texts under the teacher's scorer language model."),
    Metric("perplexity_lime_llm", False, "fluency",
           "Mean perplexity of LIME-LLM's one-word rewrites under the same language model."),
    Metric("perplexity_lime", False, "fluency",
           "Mean perplexity of LIME's masked texts (words deleted) for the same texts, as many per text."),
    Metric("neutral_kept", True, "fluency",
           "Share of LIME-LLM's neutral infills after which the classifier kept its label."),
    Metric("boundary_flipped", True, "fluency",
           "Share of LIME-LLM's boundary infills after which the classifier changed its label."),
    Metric("synonyms_rejected_per_text", False, "fluency",
           "Candidate replacements rejected as synonyms of the replaced word (WordNet or GloVe), per text."),
    # Cost.
    Metric("ms_per_text", False, "speed", "Milliseconds to explain one text."),
    Metric("texts_per_second", True, "speed", "Texts explained per second."),
    Metric("speedup", True, "speed",
           "How many times faster than the reference explainer (reference time / this time)."),
)

METRICS: dict[str, Metric] = {m.name: m for m in _ALL}


def get(name: str) -> Metric:
    """The :class:`Metric` called ``name``; a ``KeyError`` naming the known metrics otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}") from None


def direction(name: str) -> Literal["higher", "lower"]:
    """``"higher"`` when a larger value of metric ``name`` is better, ``"lower"`` otherwise."""
    return get(name).direction


def describe() -> list[dict[str, str | bool]]:
    """One row per metric (name, group, direction, higher_is_better, description), for docs."""
    return [
        {
            "name": m.name,
            "group": m.group,
            "direction": m.direction,
            "higher_is_better": m.higher_is_better,
            "description": m.description,
        }
        for m in METRICS.values()
    ]
