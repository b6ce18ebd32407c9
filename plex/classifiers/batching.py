"""Classifiers that are another one but for ``predict_proba``; the one shared by concurrent explanations.

:class:`BatchingClassifier` routes ``predict_proba`` through a :class:`~plex.batching.Batcher`: while
several explanations run at once (one thread each, :func:`~plex.batching.explain_concurrently`), each
call waits for the others' and one round sends the union of their texts, each distinct text once, to
the wrapped classifier (which sorts them by token count and cuts batches of at most its ``batch_size``); every caller
gets its own rows back. ``lime`` and ``shap`` call ``predict_proba`` as they always do. The
probabilities of earlier rounds are remembered (a bounded LRU): a text asked for again, in another
round, runs once. Under ``plex label`` (``Teacher.explain`` with ``all_classes=True``) an explanation
asks for its text's own probabilities after its perturbations, which include the text (lime's first
sample, shap's unmasked input, occlusion's base), so they come from memory instead of a round of their own.

Scores do not depend on the batching: each text's probabilities are the classifier's for that text.
With a Hugging Face model they can differ in the last float32 bits from those of another batch
composition (padding to another length changes the kernels' summation order, about 1e-7 on a CPU),
as they already do between ``--batch-size`` values.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from plex.batching import Batcher, BatchStats, explain_concurrently
from plex.classifiers.base import Classifier, as_text_list

__all__ = ["BatchingClassifier", "BatchStats", "WrappedClassifier", "explain_concurrently"]

logger = logging.getLogger(__name__)


class WrappedClassifier(Classifier):
    """A classifier that is another one but for :meth:`predict_proba`: labels, identity, visible words and
    every other attribute (hidden states, device, batch size, ...) are the wrapped classifier's."""

    def __init__(self, inner: Classifier) -> None:
        self.inner = inner

    @property
    def labels(self) -> list[str]:
        return self.inner.labels

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()

    def visible_words(self, spans: list[tuple[int, int]], text: str) -> int:
        return self.inner.visible_words(spans, text)

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


class BatchingClassifier(WrappedClassifier):
    """A classifier shared by concurrent explanations; see the module's docstring.

    Args:
        classifier: the classifier to run (its own ``batch_size`` cuts the forward batches).
        max_pending: start a round once this many texts wait (default: 16 forward batches).
        max_wait: longest wait, in seconds, for the other explanations to make their calls once a
            forward batch of texts waits.
        max_hold: longest wait, in seconds, while fewer texts than a batch wait.
        batcher: a :class:`~plex.batching.Batcher` shared with other models (a teacher's language
            model, say), so that one round serves them all; by default the classifier has its own.
        remember: texts whose probabilities are kept for later calls (least recently used first out;
            0 keeps none).

    Use it as a context manager (or call :meth:`close`) to stop a batcher of its own.
    """

    def __init__(self, classifier: Classifier, max_pending: int | None = None, max_wait: float = 0.05,
                 batcher: Batcher | None = None, remember: int = 100_000, max_hold: float = 1.0) -> None:
        super().__init__(classifier)
        self.batch_size = int(getattr(classifier, "batch_size", None) or 64)
        self.remember = int(remember)
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memory_lock = threading.Lock()
        self._owns = batcher is None
        self.batcher = batcher or Batcher(max_pending=int(max_pending or 16 * self.batch_size), max_wait=max_wait,
                                         max_hold=max_hold)

    @property
    def stats(self) -> BatchStats:
        return self.batcher.stats.setdefault("classifier", BatchStats())

    def predict_proba(self, texts: str | Sequence[str]) -> np.ndarray:
        texts = as_text_list(texts)
        if not texts:
            return np.zeros((0, self.num_labels), dtype=np.float64)
        if self.batcher.closed:
            raise RuntimeError("this BatchingClassifier is closed")
        known: dict[str, np.ndarray] = {}
        if self.remember:
            with self._memory_lock:
                for text in texts:
                    row = self._memory.get(text)
                    if row is not None:
                        self._memory.move_to_end(text)
                        known[text] = row
        missing = [t for t in texts if t not in known]
        if known:
            self.batcher.count_remembered("classifier", len(texts) - len(missing))
        if not missing:
            return np.stack([known[t] for t in texts])
        probs = self.batcher.call(("classifier", id(self.inner)), self._compute, missing, name="classifier",
                                  batch_size=self.batch_size)
        if not known:
            return probs
        new = iter(probs)
        return np.stack([known[t] if t in known else next(new) for t in texts])

    def _compute(self, texts: list[str]) -> np.ndarray:
        probs = np.asarray(self.inner.predict_proba(texts))
        if self.remember:
            with self._memory_lock:
                self._memory.update(zip(texts, probs))
                while len(self._memory) > self.remember:
                    self._memory.popitem(last=False)
        return probs

    def client(self):
        """Mark the calling thread as one explanation in flight (see :meth:`plex.batching.Batcher.client`)."""
        return self.batcher.client()

    def close(self) -> None:
        if self._owns:
            self.batcher.close()

    def __enter__(self) -> BatchingClassifier:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
