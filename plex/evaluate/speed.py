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
        # the settings that fit a table cell (LIME-LLM's prompts do not)
        settings = ", ".join(f"{k}={v}" for k, v in teacher.config().items() if k != "name" and len(str(v)) <= 24)
        start = time.perf_counter()
        for text in tqdm(texts, desc=f"{teacher.name} ({settings})", unit="text", leave=False):
            teacher.explain(classifier, [text])
        per_text = (time.perf_counter() - start) / len(texts)
        results.append(SpeedResult(teacher.name, settings, len(texts), per_text, forward))
        logger.info("%s (%s): %.3f s/text", teacher.name, settings, per_text)
    return results


def format_speed_table(results: Sequence[SpeedResult]) -> str:
    header = f"{'method':<9} {'settings':<40} {'texts':>5} {'s/text':>9} {'forward passes':>15}"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.method:<9} {r.settings:<40} {r.texts:>5} {r.seconds_per_text:>9.3f} "
                     f"{r.ratio_to_forward:>15.0f}")
    if results:
        lines.append(f"one classifier forward pass: {results[0].forward_ms_per_text:.2f} ms/text (batched)")
    return "\n".join(lines)


class PeakMemory:
    """Peak memory above the starting level while the block runs, in MiB.

    On a GPU: ``torch.cuda.max_memory_allocated``. On the CPU: the process's resident set size,
    sampled every few milliseconds by a background thread (Linux ``/proc``).
    """

    def __init__(self, device=None, interval: float = 0.005) -> None:
        import torch

        self.cuda = device is not None and torch.device(device).type == "cuda"
        self.interval = interval
        self.peak_mib = float("nan")

    @staticmethod
    def _rss() -> int:
        import os

        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> "PeakMemory":
        import threading

        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        try:
            self._base = self._peak = self._rss()
        except OSError:
            self._base = None
            return self
        self._stop = threading.Event()

        def sample():
            while not self._stop.is_set():
                self._peak = max(self._peak, self._rss())
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.peak_mib = (torch.cuda.max_memory_allocated() - self._base) / 2**20
        elif self._base is not None:
            self._stop.set()
            self._thread.join()
            self.peak_mib = (max(self._peak, self._rss()) - self._base) / 2**20


@dataclass
class StudentSpeed:
    batch_size: int
    texts: int
    forward_ms_per_text: float
    student_ms_per_text: float
    forward_peak_mib: float
    student_peak_mib: float

    @property
    def ratio(self) -> float:
        return self.student_ms_per_text / self.forward_ms_per_text


def bench_student(student, texts: Sequence[str], batch_sizes: Sequence[int], repeats: int = 3) -> list[StudentSpeed]:
    """Student explanations against one classifier forward pass, per batch size (best of ``repeats``)."""
    classifier = student.classifier
    device = getattr(classifier, "device", None)
    texts = list(texts)
    student.explain(texts[:2])  # warm-up
    rows = []
    for bs in batch_sizes:
        with PeakMemory(device) as fwd_mem:
            fwd = min(_timed(lambda: classifier.forward(texts, batch_size=bs)) for _ in range(repeats))
        with PeakMemory(device) as st_mem:
            st = min(_timed(lambda: student.explain(texts, batch_size=bs)) for _ in range(repeats))
        rows.append(StudentSpeed(bs, len(texts), 1000 * fwd / len(texts), 1000 * st / len(texts),
                                 fwd_mem.peak_mib, st_mem.peak_mib))
        logger.info("batch %d: forward %.2f ms/text, student %.2f ms/text", bs, rows[-1].forward_ms_per_text,
                    rows[-1].student_ms_per_text)
    return rows


def format_student_table(rows: Sequence[StudentSpeed]) -> str:
    header = (f"{'batch':>5} {'forward ms/text':>16} {'student ms/text':>16} {'student/forward':>16} "
              f"{'student texts/s':>16} {'peak MiB fwd':>13} {'peak MiB student':>17}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.batch_size:>5} {r.forward_ms_per_text:>16.2f} {r.student_ms_per_text:>16.2f} "
                     f"{r.ratio:>16.2f} {1000 / r.student_ms_per_text:>16.0f} {r.forward_peak_mib:>13.0f} "
                     f"{r.student_peak_mib:>17.0f}")
    return "\n".join(lines)
