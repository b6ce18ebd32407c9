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
from typing import Any

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


def fluency(attributions: Sequence[Attribution], scorer, classifier: Classifier, seed: int = 0) -> dict[str, Any]:
    """LIME-LLM's perturbations judged for fluency, each figure with its bootstrap interval over texts.

    Args:
        attributions: LIME-LLM explanations (their meta holds the samples).
        scorer: the language model that judges fluency (:class:`plex.lm.LanguageModel`), the
            teacher's own scorer so both kinds of perturbation are read by the same model.
        classifier: the classifier LIME runs against (its answers do not change the texts).

    Returns:
        ``perplexity_original``, ``perplexity_lime_llm`` and ``perplexity_lime`` (the mean over texts
        of each text's mean perplexity: of the text itself, of its LIME-LLM rewrites, of as many LIME
        masked texts), ``neutral_kept`` and ``boundary_flipped`` (pooled shares of the samples of
        that kind), ``synonyms_rejected_per_text``, each ``{"mean", "low", "high", "n"}``; and the
        counts ``texts``, ``samples`` (LIME-LLM's) and ``lime_texts``.
    """
    from plex.evaluate.stats import mean_ci, statistic_ci

    with_samples = [a for a in attributions if a.meta.get("samples")]
    per_text = []
    for a in with_samples:
        llm = [s["text"] for s in a.meta["samples"] if s["kind"] != "deletion"]
        lime = [t for t in lime_masked_texts(classifier, a.text, len(a.meta["samples"]), seed=seed) if t.strip()]
        per_text.append((a.text, llm, lime))
    everything = [t for text, llm, lime in per_text for t in (text, *llm, *lime)]
    logger.info("fluency: scoring %d texts (originals, LIME-LLM and LIME perturbations)", len(everything))
    ppl = iter(np.asarray(scorer.perplexity(everything), dtype=np.float64) if everything else [])
    rows = []
    for (text, llm, lime), a in zip(per_text, with_samples):
        own = next(ppl)
        llm_ppl = [next(ppl) for _ in llm]
        lime_ppl = [next(ppl) for _ in lime]
        rows.append({"perplexity_original": own,
                     "perplexity_lime_llm": float(np.mean(llm_ppl)) if llm_ppl else float("nan"),
                     "perplexity_lime": float(np.mean(lime_ppl)) if lime_ppl else float("nan"),
                     "synonyms_rejected_per_text": float(a.meta.get("synonyms_rejected", 0))})
    out: dict[str, Any] = {k: mean_ci([r[k] for r in rows], seed=seed).to_dict()
                           for k in ("perplexity_original", "perplexity_lime_llm", "perplexity_lime",
                                     "synonyms_rejected_per_text")}
    for key, achieved, total in (("neutral_kept", "neutral_kept", "neutral_samples"),
                                 ("boundary_flipped", "boundary_flipped", "boundary_samples")):
        columns = {"hit": [int(a.meta.get(achieved, 0)) for a in with_samples],
                   "total": [int(a.meta.get(total, 0)) for a in with_samples]}
        out[key] = statistic_ci(columns, _share, seed=seed).to_dict()
    out["texts"] = len(with_samples)
    out["samples"] = sum(len(a.meta["samples"]) for a in with_samples)
    out["lime_texts"] = sum(len(lime) for _, _, lime in per_text)
    return out


def _share(hit, total):
    hit, total = np.asarray(hit, dtype=np.float64), np.asarray(total, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hit / np.where(total > 0, total, 1), np.nan)
