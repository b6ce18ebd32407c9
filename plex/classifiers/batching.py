"""Dynamic batching: many explanations' classifier calls gathered into large, deduplicated forward batches.

A perturbation teacher explains one text by asking the classifier about a few hundred perturbed
copies of it, a few at a time (LIME once with all its samples, SHAP in several small rounds). Run
alone, each text's requests reach the classifier as small batches and the hardware waits between
them. :class:`BatchingClassifier` is the classifier that several explanations running at once (one
thread each, see :func:`explain_concurrently`) share: each ``predict_proba`` call waits while the
other explanations make theirs, then one round sends the union of their texts, each distinct text
once, to the wrapped classifier (which sorts by length and cuts batches of its ``batch_size``), and
every caller gets its own rows back. The teachers' algorithms are untouched: ``lime`` and ``shap``
call ``predict_proba`` as they always do.

A round starts when every explanation in flight is waiting for the classifier, when the pending
texts reach ``max_pending``, or ``max_wait`` seconds after the first request of the round (an
explanation busy with its own work, a language model's rewrites say, does not stall the others).

Scores do not depend on the batching: each text's probabilities are the classifier's for that text.
With a Hugging Face model they can differ in the last float32 bits from those of another batch
composition (padding to another length changes the kernels' summation order, about 1e-7 on a CPU),
as they already do between ``--batch-size`` values.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

import numpy as np

from plex.classifiers.base import Classifier, as_text_list

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatchStats:
    """What the shared classifier did: requests, texts asked for, distinct texts run, rounds, forward
    batches (of the wrapped classifier's ``batch_size``) and seconds spent in the classifier."""

    requests: int = 0
    texts: int = 0
    unique: int = 0
    rounds: int = 0
    forward_batches: int = 0
    classifier_seconds: float = 0.0

    @property
    def unique_fraction(self) -> float:
        return self.unique / self.texts if self.texts else float("nan")

    @property
    def mean_forward_batch(self) -> float:
        return self.unique / self.forward_batches if self.forward_batches else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unique_fraction": self.unique_fraction, "mean_forward_batch": self.mean_forward_batch}

    @classmethod
    def total(cls, parts: Iterable[BatchStats]) -> BatchStats:
        """The counts of several classifiers (one per process) together."""
        out = cls()
        for part in parts:
            for f in fields(cls):
                setattr(out, f.name, getattr(out, f.name) + getattr(part, f.name))
        return out


class _Request:
    __slots__ = ("texts", "done", "result", "error")

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.done = threading.Event()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


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
        max_wait: longest wait, in seconds, for the other explanations to make their calls.

    Use it as a context manager (or call :meth:`close`) to stop its worker thread.
    """

    def __init__(self, classifier: Classifier, max_pending: int | None = None, max_wait: float = 0.05) -> None:
        super().__init__(classifier)
        self.batch_size = int(getattr(classifier, "batch_size", None) or 64)
        self.max_pending = int(max_pending or 16 * self.batch_size)
        self.max_wait = float(max_wait)
        self.stats = BatchStats()
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._clients = 0
        self._closed = False
        self._worker = threading.Thread(target=self._serve, name="plex-batching", daemon=True)
        self._worker.start()

    def predict_proba(self, texts: str | Sequence[str]) -> np.ndarray:
        texts = as_text_list(texts)
        if not texts:
            return np.zeros((0, self.num_labels), dtype=np.float64)
        request = _Request(texts)
        with self._cond:
            if self._closed:
                raise RuntimeError("this BatchingClassifier is closed")
            self._pending.append(request)
            self._cond.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    # -- concurrency -----------------------------------------------------------------------------
    @contextmanager
    def client(self):
        """Mark the calling thread as one explanation in flight while the block runs: a round starts
        as soon as every such explanation waits for the classifier."""
        with self._cond:
            self._clients += 1
        try:
            yield self
        finally:
            with self._cond:
                self._clients -= 1
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._worker.join()

    def __enter__(self) -> BatchingClassifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _ready(self, first: float) -> bool:
        waiting = len(self._pending)
        return (self._closed or waiting >= max(1, self._clients)
                or sum(len(r.texts) for r in self._pending) >= self.max_pending
                or time.monotonic() - first >= self.max_wait)

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending and self._closed:
                    return
                first = time.monotonic()
                while not self._ready(first):
                    self._cond.wait(timeout=max(1e-4, self.max_wait - (time.monotonic() - first)))
                batch, self._pending = self._pending, []
            self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        index: dict[str, int] = {}
        for request in batch:
            for text in request.texts:
                index.setdefault(text, len(index))
        unique = list(index)
        start = time.perf_counter()
        try:
            probs = np.asarray(self.inner.predict_proba(unique))
        except BaseException as err:  # every caller of the round gets the classifier's error
            for request in batch:
                request.error = err
                request.done.set()
            return
        stats = self.stats
        stats.classifier_seconds += time.perf_counter() - start
        stats.requests += len(batch)
        stats.texts += sum(len(r.texts) for r in batch)
        stats.unique += len(unique)
        stats.rounds += 1
        stats.forward_batches += -(-len(unique) // self.batch_size)
        for request in batch:
            request.result = probs[[index[t] for t in request.texts]]
            request.done.set()


def explain_concurrently(batcher: BatchingClassifier, fn: Callable[[T], R], items: Iterable[T], concurrency: int
                         ) -> Iterable[R]:
    """``fn(item)`` for every item, ``concurrency`` at a time, each a client of ``batcher``; results in
    the items' order, yielded as soon as they and all before them are done."""
    def run(item: T) -> R:
        with batcher.client():
            return fn(item)

    if concurrency <= 1:
        yield from map(run, items)
        return
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="plex-explain") as pool:
        yield from pool.map(run, items)
