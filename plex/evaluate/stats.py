"""Uncertainty of the evaluation's figures: seeded bootstrap confidence intervals over texts.

Every figure ``plex evaluate`` reports is a statistic of per-text values (a mean, or ERASER's micro
IOU-F1 built from per-text counts). Its interval comes from the percentile bootstrap: resample the
texts with replacement ``n_resamples`` times, recompute the statistic on each resample, and take the
2.5th and 97.5th percentiles (for 95 %). Differences between two explainers are paired: the
statistic is the mean of per-text differences, so the texts' own difficulty cancels.

Texts whose value is undefined (NaN: a one-word text has no rank correlation) are left out of that
figure, and ``n`` says how many texts it rests on. Resamples are drawn from
``numpy.random.default_rng(seed)``, so the same values and seed give the same interval.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    """A statistic over texts with its bootstrap interval.

    Attributes:
        mean: the statistic on all texts (a mean, or a ratio of sums for micro figures).
        low: lower end of the confidence interval (NaN with fewer than two texts).
        high: upper end of the confidence interval (NaN with fewer than two texts).
        n: texts the statistic rests on (those with a defined value).
    """

    mean: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}

    def excludes(self, value: float = 0.0) -> bool:
        """True when the whole interval lies on one side of ``value``."""
        return bool(np.isfinite(self.low) and (self.low > value or self.high < value))


def _resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _interval(resampled: np.ndarray, confidence: float) -> tuple[float, float]:
    resampled = resampled[np.isfinite(resampled)]
    if resampled.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return float(low), float(high)


def _check(confidence: float, n_resamples: int) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples}")


def mean_ci(values: Iterable[float | None], confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
            seed: int = 0) -> Estimate:
    """The mean of the defined values and its percentile-bootstrap interval over texts.

    ``None`` and NaN values are left out (``n`` counts the rest). With no defined value the mean is
    NaN; with one, the interval is NaN (one text says nothing about the spread).
    """
    _check(confidence, n_resamples)
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    n = int(arr.size)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    if n == 1:
        return Estimate(float(arr[0]), float("nan"), float("nan"), 1)
    resampled = arr[_resample_indices(n, n_resamples, seed)].mean(axis=1)
    return Estimate(float(arr.mean()), *_interval(resampled, confidence), n)


def paired_difference(a: Sequence[float | None], b: Sequence[float | None], confidence: float = CONFIDENCE,
                      n_resamples: int = N_RESAMPLES, seed: int = 0) -> Estimate:
    """Mean of the per-text differences ``a[i] - b[i]`` with its paired bootstrap interval.

    Only texts where both values are defined count. The interval excluding 0 is the evidence that
    one explainer differs from the other on texts like these.
    """
    if len(a) != len(b):
        raise ValueError(f"paired values need one value per text on each side, got {len(a)} and {len(b)}")
    fa = np.asarray([np.nan if v is None else v for v in a], dtype=np.float64)
    fb = np.asarray([np.nan if v is None else v for v in b], dtype=np.float64)
    return mean_ci(fa - fb, confidence, n_resamples, seed)


def statistic_ci(columns: Mapping[str, Sequence[float]], statistic: Callable[..., np.ndarray],
                 confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0) -> Estimate:
    """A statistic of several per-text columns (e.g. ERASER's micro F1 from per-text counts), with its interval.

    ``statistic(**sums)`` receives, for each column name, the column's sum over the texts (a float
    for the full data, an array with one entry per resample in the bootstrap) and returns the
    figure, elementwise. Every text is resampled with all its columns together.
    """
    _check(confidence, n_resamples)
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}
    lengths = {len(v) for v in arrays.values()}
    if len(lengths) != 1:
        raise ValueError(f"columns must have one value per text each, got lengths {sorted(lengths)}")
    n = lengths.pop()
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    value = float(statistic(**{k: v.sum() for k, v in arrays.items()}))
    if n == 1:
        return Estimate(value, float("nan"), float("nan"), 1)
    idx = _resample_indices(n, n_resamples, seed)
    resampled = np.asarray(statistic(**{k: v[idx].sum(axis=1) for k, v in arrays.items()}), dtype=np.float64)
    return Estimate(value, *_interval(resampled, confidence), n)


def summarise(rows: Sequence[Mapping[str, float | None]], keys: Sequence[str], confidence: float = CONFIDENCE,
              n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict[str, dict[str, float | int]]:
    """Per-text rows as ``{key: {"mean", "low", "high", "n"}}``, one bootstrap interval per key."""
    return {k: mean_ci([r.get(k) for r in rows], confidence, n_resamples, seed).to_dict() for k in keys}


def sqrt_reliability(r: float) -> float:
    """√r: the expected agreement of a perfect learner of a teacher's expectation with one of its runs.

    If two runs of a teacher are its expectation plus independent noise, the correlation of two runs
    is r = var(E) / (var(E) + var(noise)), and the correlation of the expectation with one run is
    √(var(E) / (var(E) + var(noise))) = √r. NaN for r < 0 (runs that disagree more than chance).
    """
    return float(np.sqrt(r)) if np.isfinite(r) and r >= 0 else float("nan")


def paired_differences(per_text: Mapping[str, Sequence[Mapping[str, float | None]]], first: str,
                       others: Sequence[str], keys: Sequence[str], confidence: float = CONFIDENCE,
                       n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict[str, dict[str, dict]]:
    """``first`` minus each of ``others``, key by key, over the same texts, with paired intervals.

    Args:
        per_text: ``{explainer: [{key: value} per text]}``, every list aligned with the same texts
            (a missing key or ``None``/NaN leaves that text out of that key's difference).
        first: the explainer the differences are taken from (the student).
        others: the explainers it is compared with (its teachers).
        keys: the per-text values to compare; keys that no text of ``first`` has are skipped.

    Returns:
        ``{other: {key: {"mean", "low", "high", "n"}}}``.
    """
    mine = per_text[first]
    present = [k for k in keys if any(r.get(k) is not None for r in mine)]
    return {other: {k: paired_difference([r.get(k) for r in mine], [r.get(k) for r in per_text[other]],
                                         confidence, n_resamples, seed).to_dict()
                    for k in present}
            for other in others if other in per_text}
