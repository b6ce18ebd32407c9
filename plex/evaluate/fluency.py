"""Fluency of perturbations: LIME-LLM's one-word rewrites against LIME's word deletions.

LIME-LLM's claim is that its perturbed texts read like real sentences while LIME's do not. Both
are scored by the same language model: the mean perplexity of LIME-LLM's perturbed texts (kept in
each explanation's meta), of LIME's masked texts for the same sentences (the exact texts the
``lime`` package sends to the classifier, recorded as it runs, as many per sentence as LIME-LLM
drew), and of the original sentences.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from plex.attribution import Attribution
from plex.classifiers.base import Classifier
from plex.classifiers.callable import CallableClassifier

logger = logging.getLogger(__name__)


def lime_masked_texts(classifier: Classifier, text: str, num_samples: int, seed: int = 0,
                      mask_string: str = "") -> list[str]:
    """The perturbed texts LIME draws for ``text`` (without the original), recorded from its calls."""
    from plex.teachers.lime import Lime

    seen: list[str] = []

    def record(texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        return classifier.predict_proba(texts)

    recorder = CallableClassifier(record, labels=classifier.labels, name="lime-recorder")
    Lime(num_samples=num_samples + 1, seed=seed, mask_string=mask_string).explain(recorder, [text])
    # The first call is the prediction plex makes before explaining; lime's first sample is the text.
    return seen[2:]


def fluency(attributions: Sequence[Attribution], scorer, classifier: Classifier, seed: int = 0) -> dict[str, float]:
    """LIME-LLM's run figures plus mean perplexities of its texts, LIME's masked texts and the originals.

    Args:
        attributions: LIME-LLM explanations (their meta holds the samples).
        scorer: the language model that judges fluency (:class:`plex.lm.LanguageModel`), the
            teacher's own scorer so both kinds of perturbation are read by the same model.
        classifier: the classifier LIME runs against (its answers do not change the texts).
    """
    from plex.teachers.lime_llm import summarise

    summary = summarise(attributions)
    with_samples = [a for a in attributions if a.meta.get("samples")]
    texts = [a.text for a in with_samples]
    llm_texts = [s["text"] for a in with_samples for s in a.meta["samples"] if s["kind"] != "deletion"]
    lime_texts = []
    for a in with_samples:
        lime_texts += lime_masked_texts(classifier, a.text, len(a.meta["samples"]), seed=seed)
    lime_texts = [t for t in lime_texts if t.strip()]
    logger.info("fluency: scoring %d LIME-LLM texts, %d LIME texts and %d originals",
                len(llm_texts), len(lime_texts), len(texts))
    mean = lambda xs: float(np.mean(scorer.perplexity(xs))) if xs else float("nan")  # noqa: E731
    summary.update(
        perplexity_original=mean(texts),
        perplexity_lime_llm=mean(llm_texts),
        perplexity_lime=mean(lime_texts),
        lime_texts=len(lime_texts),
    )
    return summary
