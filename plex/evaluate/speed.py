"""Seconds per text of each explainer, against one forward pass of the classifier, in one run."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm

from plex.classifiers.base import Classifier
from plex.teachers.base import Teacher

logger = logging.getLogger(__name__)


@dataclass
class SpeedResult:
    method: str
    settings: str
    texts: int
    seconds_per_text: float
    forward_ms_per_text: float

    @property
    def ratio_to_forward(self) -> float:
        """How many classifier forward passes (per text) one explanation costs."""
        return 1000 * self.seconds_per_text / self.forward_ms_per_text


def forward_ms_per_text(classifier: Classifier, texts: Sequence[str], repeats: int = 3) -> float:
    """Best of ``repeats`` timings of one batched ``predict_proba`` over ``texts``, per text."""
    classifier.predict_proba(list(texts[:2]))  # warm-up
    best = min(_timed(classifier.predict_proba, list(texts)) for _ in range(repeats))
    return 1000 * best / len(texts)


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def bench_teachers(classifier: Classifier, texts: Sequence[str], teachers: Sequence[Teacher]) -> list[SpeedResult]:
    """Time each teacher explaining ``texts`` (predicted label), one text at a time."""
    forward = forward_ms_per_text(classifier, texts)
    results = []
    for teacher in teachers:
        settings = ", ".join(f"{k}={v}" for k, v in teacher.config().items() if k != "name")
        start = time.perf_counter()
        for text in tqdm(texts, desc=f"{teacher.name} ({settings})", unit="text", leave=False):
            teacher.explain(classifier, [text])
        per_text = (time.perf_counter() - start) / len(texts)
        results.append(SpeedResult(teacher.name, settings, len(texts), per_text, forward))
        logger.info("%s (%s): %.3f s/text", teacher.name, settings, per_text)
    return results


def format_speed_table(results: Sequence[SpeedResult]) -> str:
    header = f"{'method':<8} {'settings':<40} {'texts':>5} {'s/text':>9} {'forward passes':>15}"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.method:<8} {r.settings:<40} {r.texts:>5} {r.seconds_per_text:>9.3f} "
                     f"{r.ratio_to_forward:>15.0f}")
    if results:
        lines.append(f"one classifier forward pass: {results[0].forward_ms_per_text:.2f} ms/text (batched)")
    return "\n".join(lines)
