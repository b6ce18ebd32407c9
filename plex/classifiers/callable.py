"""Wrap any function of texts to probabilities as a plex classifier."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from plex.classifiers.base import Classifier, as_text_list


class CallableClassifier(Classifier):
    """A black-box classifier given as a function.

    Args:
        fn: ``list[str] -> array [n, n_labels]`` of probabilities (an API call, a scikit-learn
            pipeline's ``predict_proba``, ...).
        labels: class names, one per output column.
        batch_size: when set, ``fn`` is called on chunks of at most this many texts.
        name: how the classifier is recorded in labels and checkpoints (defaults to the function's
            qualified name). Give a stable, unique name when labelling with a callable.
    """

    def __init__(
        self,
        fn: Callable[[list[str]], Any],
        labels: Sequence[str],
        batch_size: int | None = None,
        name: str | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError("fn must be a function of a list of texts returning probabilities")
        if len(labels) < 2:
            raise ValueError("a classifier needs at least two labels")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        self.fn = fn
        self._labels = [str(label) for label in labels]
        self.batch_size = batch_size
        self.name = name or getattr(fn, "__qualname__", type(fn).__name__)

    @property
    def labels(self) -> list[str]:
        return self._labels

    def identity(self) -> dict[str, Any]:
        return {"kind": "callable", "path": self.name, "labels": self.labels}

    def predict_proba(self, texts: str | Sequence[str]) -> np.ndarray:
        texts = as_text_list(texts)
        if not texts:
            return np.zeros((0, self.num_labels))
        step = self.batch_size or len(texts)
        chunks = [self._call(texts[i : i + step]) for i in range(0, len(texts), step)]
        return np.concatenate(chunks, axis=0)

    def _call(self, texts: list[str]) -> np.ndarray:
        out = np.asarray(self.fn(texts), dtype=np.float64)
        if out.shape != (len(texts), self.num_labels):
            raise ValueError(
                f"the classifier function returned shape {out.shape} for {len(texts)} texts; "
                f"expected ({len(texts)}, {self.num_labels}) — one probability per label {self.labels}"
            )
        if not np.all(np.isfinite(out)):
            raise ValueError("the classifier function returned NaN or infinite values")
        if np.any(out < -1e-6) or not np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
            raise ValueError(
                "the classifier function must return probabilities (non-negative, rows summing to 1); "
                "if it returns logits, wrap it with a softmax"
            )
        return out
