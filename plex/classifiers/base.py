"""The small classifier protocol every explainer talks to."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np


def as_text_list(texts: str | Sequence[str]) -> list[str]:
    """Accept one text or a sequence of texts; reject anything else with a clear message."""
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, np.ndarray):
        texts = texts.tolist()
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        i = bad[0]
        raise TypeError(
            f"text {i} is a {type(texts[i]).__name__}, not a str; pass a list of strings "
            "(convert missing values with str() or drop them first)"
        )
    return texts


class Classifier(ABC):
    """A text classifier: texts in, class probabilities out.

    Subclasses implement :meth:`predict_proba`, :attr:`labels` and :meth:`identity`. White-box
    classifiers (see :class:`plex.classifiers.hf.HFClassifier`) also give hidden states.
    """

    @property
    @abstractmethod
    def labels(self) -> list[str]:
        """Class names, in the order of the probability columns."""

    @abstractmethod
    def predict_proba(self, texts: str | Sequence[str]) -> np.ndarray:
        """Probabilities, shape ``[n_texts, n_labels]``, rows summing to one."""

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What identifies this classifier in a labels folder or checkpoint (path, weights hash)."""

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def predict(self, texts: str | Sequence[str]) -> np.ndarray:
        """Index of the most probable class for each text."""
        return self.predict_proba(texts).argmax(axis=1)

    def visible_words(self, spans: list[tuple[int, int]], text: str) -> int:
        """How many leading words of a text the classifier actually reads (all, unless truncated)."""
        return len(spans)

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        return self.predict_proba(texts)
