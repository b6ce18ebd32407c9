"""The headline of ``plex evaluate``: how close each explainer is to the teacher's expectation.

A perturbation teacher at its labelling budget is a noisy estimate of what it would say with
unlimited samples. The evaluation therefore compares every explainer with a *reference*, a
high-budget run (LIME at 5,000 samples by default) or the mean of several teacher runs, and puts
three figures side by side:

* the student against the reference;
* the teacher at its labelling budget against the same reference;
* the teacher's test-retest reliability ``r`` (seed s against seed s + 1 at its budget) and ``√r``,
  the agreement a perfect learner of the teacher's *expectation* would reach with one noisy run
  (:func:`plex.evaluate.stats.sqrt_reliability`). ``r`` is not a ceiling: a student can exceed it.

The student *denoises* when its paired advantage over the teacher at its budget, in agreement with
the reference, has a bootstrap interval above zero; it does not when the interval is below zero;
otherwise the data cannot tell.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from plex.attribution import Attribution
from plex.evaluate.agreement import agreement_rows
from plex.evaluate.metrics import AGREEMENT_KEYS
from plex.evaluate.stats import CONFIDENCE, Estimate, mean_ci, paired_difference, sqrt_reliability

REFERENCE_SEED_OFFSET = 1000
"""The reference runs with seeds from ``seed + 1000``, so it shares no random stream with the
teachers it judges (seed s) or their retest (seed s + 1, ...)."""


def mean_attributions(runs: Sequence[Sequence[Attribution]], method: str) -> list[Attribution]:
    """Word-wise mean of several runs' attributions of the same texts: a reference from ``--reference-runs``."""
    if not runs:
        raise ValueError("a mean reference needs at least one run")
    out = []
    for per_text in zip(*runs):
        first = per_text[0]
        for other in per_text[1:]:
            if other.text != first.text or other.target != first.target or list(other.words) != list(first.words):
                raise ValueError("the runs of a mean reference must explain the same words for the same class")
        scores = np.mean([np.asarray(a.scores, dtype=np.float64) for a in per_text], axis=0)
        out.append(dataclasses.replace(first, scores=scores, method=method,
                                       meta={"probs": first.meta.get("probs"), "runs": len(per_text)}))
    return out


def reliability(first: Sequence[Attribution] | None, second: Sequence[Attribution] | None, deterministic: bool,
                seed: int = 0) -> dict[str, Any]:
    """A teacher's test-retest reliability at its budget, or ``{"deterministic": True}``.

    Args:
        first: the teacher's attributions with seed s.
        second: the same teacher with seed s + 1 on the same texts (ignored when deterministic).
        deterministic: the teacher declares that a text always gets the same scores.

    Returns:
        ``{"deterministic": False, "retest_r": {...}, "sqrt_r": {...}, "agreement": {...}}``: ``retest_r``
        is the mean per-text Spearman of the two runs with its bootstrap interval, ``sqrt_r`` is √r
        (with the interval's ends square-rooted: a monotone map keeps the percentile interval),
        ``agreement`` every agreement metric of the two runs.
    """
    if deterministic:
        return {"deterministic": True}
    if first is None or second is None:
        raise ValueError("the reliability of a random teacher needs two runs with different seeds")
    rows = agreement_rows(first, second)
    r = mean_ci([row["spearman"] for row in rows], seed=seed)
    root = Estimate(sqrt_reliability(r.mean), sqrt_reliability(r.low), sqrt_reliability(r.high), r.n)
    return {"deterministic": False, "retest_r": r.to_dict(), "sqrt_r": root.to_dict(),
            "agreement": {k: mean_ci([row[k] for row in rows], seed=seed).to_dict() for k in AGREEMENT_KEYS}}


def denoising(student_rows: Sequence[dict], teacher_rows: Sequence[dict], student: str, teacher: str,
              metric: str = "spearman", seed: int = 0) -> dict[str, Any]:
    """Is the student closer to the reference than its own teacher at its labelling budget?

    Args:
        student_rows: the student's per-text agreement with the reference.
        teacher_rows: the teacher's per-text agreement with the same reference, on the same texts.
        metric: the agreement metric the verdict is stated in.

    Returns:
        the student's and the teacher's estimates, the paired difference (student - teacher) with
        its interval, the ``verdict`` (``"denoises"``, ``"does not denoise"`` or ``"inconclusive"``)
        and ``summary``, the one line the report prints.
    """
    s = mean_ci([r[metric] for r in student_rows], seed=seed)
    t = mean_ci([r[metric] for r in teacher_rows], seed=seed)
    diff = paired_difference([r[metric] for r in student_rows], [r[metric] for r in teacher_rows], seed=seed)
    if diff.excludes(0.0) and diff.mean > 0:
        verdict, how = "denoises", "closer to the reference than its teacher"
    elif diff.excludes(0.0):
        verdict, how = "does not denoise", "further from the reference than its teacher"
    else:
        verdict, how = "inconclusive", "not distinguishable from its teacher in closeness to the reference"
    summary = (f"The student is {how} at its labelling budget ({verdict}): {metric} with the reference "
               f"{s.mean:.3f} vs {teacher} {t.mean:.3f}, paired difference {diff.mean:+.3f} "
               f"[{diff.low:+.3f}, {diff.high:+.3f}] ({100 * CONFIDENCE:.0f}% bootstrap interval, {diff.n} texts).")
    return {"student": student, "teacher": teacher, "metric": metric, "student_agreement": s.to_dict(),
            "teacher_agreement": t.to_dict(), "difference": diff.to_dict(), "verdict": verdict, "summary": summary}
