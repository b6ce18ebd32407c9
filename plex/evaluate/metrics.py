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
            ``"stability"``, ``"fidelity"``, ``"fluency"``, ``"reliability"`` or ``"speed"``).
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
    Metric("token_f1_oracle_k", True, "plausibility",
           "Token F1 of the top-k words against the rationale words, k = the number of rationale words "
           "of the text (an oracle k: precision equals recall)."),
    Metric("token_f1_at_k", True, "plausibility",
           "Token F1 of the top-k words against the rationale words at a fixed k (--top-k), the same "
           "for every text."),
    Metric("iou_f1", True, "plausibility",
           "ERASER IOU F1, micro-averaged over the corpus: maximal runs of top-k words (oracle k) are "
           "predicted spans, annotated spans are gold spans; a predicted span matches when its "
           "intersection-over-union with a gold span is >= 0.5; precision = matches / predicted spans "
           "and recall = matches / gold spans, summed over texts."),
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
    # Fidelity of the local weighted linear surrogate of LIME, LIME-LLM and gSMILE (one definition).
    Metric("r2", True, "fidelity",
           "Plain (unweighted) R² of the surrogate's predictions of the outputs it was fitted on."),
    Metric("weighted_r2", True, "fidelity",
           "R² weighted by the perturbation kernel (what lime reports as the explanation's score)."),
    Metric("adjusted_r2", True, "fidelity",
           "Weighted R² adjusted for p words on n fitted samples: 1 - (1 - R²_w)(n - 1) / (n - p - 1)."),
    Metric("exact_fit", False, "fidelity",
           "Share of texts whose surrogate was exactly determined (n <= p + 1 samples for p words): "
           "its R² says nothing and is left out of the R² means."),
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
    # Reliability of a teacher and the student against its teacher.
    Metric("retest_r", True, "reliability",
           "Test-retest reliability r: mean Spearman of the teacher at its budget with seed s and with "
           "seed s + 1 on the same texts."),
    Metric("sqrt_r", True, "reliability",
           "√r: the expected Spearman of a perfect learner of the teacher's expectation with one run of "
           "the teacher (a student can exceed r; it cannot be expected to exceed √r against one run)."),
    # Cost.
    Metric("ms_per_text", False, "speed",
           "Milliseconds to explain one text, warm (models and resources loaded before the clock)."),
    Metric("texts_per_second", True, "speed", "Texts explained per second, warm."),
    Metric("relative_to_student", False, "speed",
           "Time per text over the student's time per text: how many times slower than the student."),
    Metric("cold_start_seconds", False, "speed",
           "Seconds of the first call on one text, loading models and resources included."),
)

METRICS: dict[str, Metric] = {m.name: m for m in _ALL}

STUDENT = "plex"
"""Name of the student's row in every table."""
REFERENCE = "reference"
"""Name of the high-budget reference explainer (LIME at --reference-samples, or the mean of
--reference-runs runs of the student's teacher)."""

AGREEMENT_KEYS = ["spearman", "kendall", "top1", "top3", "top5", "sign_agreement"]
FAITH_KEYS = ["comprehensiveness", "sufficiency", "deletion_auc", "insertion_auc", "deletion_auc_random",
              "insertion_auc_random"]
PLAUS_KEYS = ["token_f1_oracle_k", "token_f1_at_k", "auprc", "roc_auc"]
"""Per-text plausibility means; ``iou_f1`` is a corpus-level (micro) figure beside them."""
STABILITY_KEYS = ["jaccard_seed", "jaccard_edit", "consistency_spread"]
FIDELITY_KEYS = ["r2", "weighted_r2", "adjusted_r2", "exact_fit"]
FLUENCY_KEYS = ["perplexity_original", "perplexity_lime_llm", "perplexity_lime", "neutral_kept", "boundary_flipped",
                "synonyms_rejected_per_text"]
PAIRED_KEYS = ["spearman", "comprehensiveness", "sufficiency", "deletion_auc", "insertion_auc", "token_f1_oracle_k",
               "auprc", "roc_auc", "jaccard_edit"]
"""Per-text figures on which the student is compared with each teacher by a paired bootstrap
(``spearman`` is the agreement with the reference)."""
SPEED_KEYS = ["ms_per_text", "texts_per_second", "relative_to_student", "cold_start_seconds"]


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
