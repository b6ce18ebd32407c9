"""Dynamic batching: the model calls of many concurrent explanations gathered into large rounds.

A perturbation teacher explains one text by asking models about many perturbed copies of it, a few
at a time: the classifier (LIME once with all its samples, SHAP in several small rounds), and for
LIME-LLM and gSMILE also a language model and a sentence encoder. Run alone, each text's requests
reach the hardware as small batches and it waits between them. A :class:`Batcher` is shared by several
explanations running at once (one thread each, see :func:`explain_concurrently`): every model call
they make waits while the others make theirs, then one *round* runs, for each model (and each set of
call settings), the union of the waiting requests' inputs, each distinct input once, and every caller
gets its own results back. The teachers' algorithms are untouched: they call ``predict_proba``,
``generate`` or ``encode`` as they always do, on the wrappers that route the calls here
(:class:`~plex.classifiers.batching.BatchingClassifier`, :class:`~plex.lm.batching.BatchingLM`,
:class:`BatchedCalls`).

A round starts when every explanation in flight waits for a model, when the pending inputs reach
``max_pending``, or ``max_wait`` seconds after the first request of the round if one model's pending
inputs fill a forward batch of it (an explanation busy with its own work does not stall the others for
longer). Fewer than a batch wait on for the others, up to ``max_hold`` seconds: a round of a few inputs
would leave the hardware mostly idle, and threads that are still starting, or building their first
perturbations, join it a moment later. One thread at a time runs the rounds, so the models are never
called from two threads at once (Hugging Face tokenizers and nltk's WordNet reader are not safe to
share between threads): the batcher's worker thread, or, under :func:`explain_concurrently`, the thread
that waits for the results (usually the one that loaded the models; see :meth:`Batcher.lead`).

The explanations take turns at their own work (``turns=1``): one thread at a time builds perturbations
or fits a surrogate, and it hands the turn on when it waits for a round. The teachers' own work is
Python that holds the GIL, so threads running it side by side gain nothing and lose much: on 2 cores,
32 threads labelling LIME-5000 from answers already known switched context about a million times for
40 texts and ran at 2.6 texts/s, taking turns at 8–11 (``docs/benchmarks.md``). That work is what
limits one process once the forward pass is fast (a GPU).

:func:`run_unique` is the round itself: requests in, each distinct input computed once, results
scattered back. Code that already holds all its requests (the faithfulness curves of
``plex evaluate``) calls it directly.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

import numpy as np

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
_END = object()


@dataclass
class BatchStats:
    """What one model did through a batcher: requests, inputs asked for, distinct inputs run, rounds,
    forward batches (of the model's ``batch_size``), seconds spent in the model, and inputs answered from
    the results of earlier rounds (``remembered``, counted in ``texts`` but not run).

    ``forward_batches`` counts what each round fills at ``batch_size``, the batches a GPU runs; a
    classifier on a CPU may cut a round into more, smaller batches where full ones would pad much
    (:func:`plex.classifiers.hf.cut_batches`)."""

    requests: int = 0
    texts: int = 0
    unique: int = 0
    rounds: int = 0
    forward_batches: int = 0
    busy_seconds: float = 0.0
    remembered: int = 0

    @property
    def unique_fraction(self) -> float:
        return self.unique / self.texts if self.texts else float("nan")

    @property
    def mean_forward_batch(self) -> float:
        return self.unique / self.forward_batches if self.forward_batches else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unique_fraction": self.unique_fraction, "mean_forward_batch": self.mean_forward_batch}

    def add(self, other: BatchStats) -> None:
        """Add ``other``'s counts to these."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @classmethod
    def total(cls, parts: Iterable[BatchStats]) -> BatchStats:
        """The counts of several models or processes together."""
        out = cls()
        for part in parts:
            out.add(part)
        return out


def run_unique(compute: Callable[[list], Any], requests: Sequence[Sequence], keys: Sequence[Sequence[Hashable]] | None = None,
               batch_size: int | None = None, stats: BatchStats | None = None) -> list:
    """Run ``compute`` once on the distinct inputs of several requests and give each request its results.

    Args:
        compute: takes a list of inputs, returns one result per input (a list, or an array whose
            first axis is the inputs).
        requests: each a sequence of inputs.
        keys: what makes two inputs the same, parallel to ``requests`` (default: the inputs
            themselves, which must then be hashable).
        batch_size: the model's batch size, to count forward batches in ``stats``.
        stats: counts to add this round to.

    Returns:
        Per request, its results in its order: rows of an array when ``compute`` returns one, else a list.
    """
    keys = requests if keys is None else keys
    index: dict[Hashable, int] = {}
    unique: list = []
    for request, request_keys in zip(requests, keys):
        for item, key in zip(request, request_keys):
            if key not in index:
                index[key] = len(unique)
                unique.append(item)
    start = time.perf_counter()
    out = compute(unique) if unique else []
    if len(out) != len(unique):
        raise RuntimeError(f"{getattr(compute, '__qualname__', compute)} returned {len(out)} results for "
                           f"{len(unique)} inputs")
    if stats is not None:
        stats.busy_seconds += time.perf_counter() - start
        stats.requests += len(requests)
        stats.texts += sum(len(r) for r in requests)
        stats.unique += len(unique)
        stats.rounds += 1
        stats.forward_batches += math.ceil(len(unique) / batch_size) if batch_size else int(bool(unique))
    rows = [[index[k] for k in request_keys] for request_keys in keys]
    if isinstance(out, np.ndarray):
        return [out[np.asarray(r, dtype=np.int64)] for r in rows]
    return [[out[i] for i in r] for r in rows]


class _Request:
    __slots__ = ("group", "items", "keys", "compute", "name", "batch_size", "done", "result", "error")

    def __init__(self, group: Hashable, items: list, keys: list, compute: Callable[[list], Any], name: str,
                 batch_size: int | None) -> None:
        self.group, self.items, self.keys, self.compute = group, items, keys, compute
        self.name, self.batch_size = name, batch_size
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class Batcher:
    """The round engine shared by concurrent explanations; see the module's docstring.

    Args:
        max_pending: start a round once this many inputs wait (all models together).
        max_wait: longest wait, in seconds, for the other explanations to make their calls, once the
            inputs waiting for one model fill a forward batch of it.
        max_hold: longest wait, in seconds, while they do not.
        turns: explanations that may run their own code at once under :func:`explain_concurrently`
            (see :meth:`turn`); ``None``: no limit.

    Use it as a context manager (or call :meth:`close`) to stop its worker thread. ``stats`` holds one
    :class:`BatchStats` per model name.
    """

    def __init__(self, max_pending: int = 1024, max_wait: float = 0.05, max_hold: float = 1.0,
                 turns: int | None = 1) -> None:
        self.max_pending = int(max_pending)
        self.max_wait = float(max_wait)
        if self.max_pending < 1 or not self.max_wait >= 0 or not float(max_hold) >= 0:
            raise ValueError(f"max_pending must be >= 1, max_wait and max_hold >= 0, got {max_pending!r}, "
                             f"{max_wait!r}, {max_hold!r}")
        self.max_hold = max(float(max_hold), self.max_wait)  # a round short of a batch waits at least max_wait
        if turns is not None and (isinstance(turns, bool) or not isinstance(turns, int) or turns < 1):
            raise ValueError(f"turns must be a positive integer or None, got {turns!r}")
        self._turns = threading.Semaphore(turns) if turns is not None else None
        self._local = threading.local()
        self.stats: dict[str, BatchStats] = {}
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._clients = 0
        self._closed = False
        self._opened = 0.0  # when the waiting requests began to wait: the first one came, or the last round ended
        self._round_thread: threading.Thread | None = None  # the thread running a round now (worker or leader)
        self._leader: threading.Thread | None = None  # the thread running the rounds instead of the worker
        self._worker = threading.Thread(target=self._serve, name="plex-batching", daemon=True)
        self._worker.start()

    def call(self, group: Hashable, compute: Callable[[list], Any], items: Sequence, keys: Sequence[Hashable] | None = None,
             name: str = "model", batch_size: int | None = None) -> Any:
        """``compute(items)`` as part of the next round: requests of the same ``group`` (one model with one
        set of settings) are run together, each distinct key once. Returns this request's results (rows of
        an array, or a list); a model's error reaches every caller of its group in that round."""
        items = list(items)
        keys = items if keys is None else list(keys)
        if len(keys) != len(items):
            raise ValueError(f"got {len(keys)} keys for {len(items)} inputs")
        if threading.current_thread() is self._round_thread:  # a model calling another from inside a round
            return run_unique(compute, [items], [keys], batch_size)[0]
        request = _Request(group, items, keys, compute, name, batch_size)
        with self._cond:
            if self._closed:
                raise RuntimeError("this batcher is closed")
            self._stats(name)
            if not self._pending:
                self._opened = time.monotonic()
            self._pending.append(request)
            self._cond.notify_all()
        if threading.current_thread() is self._leader:  # the leader runs the round it waits for
            self.serve_until(request.done.is_set)
        else:
            holding = self._holding()
            if holding:  # another explanation works while this one waits for the round
                self._turns.release()
            try:
                request.done.wait()
            finally:
                if holding:
                    self._turns.acquire()
        if request.error is not None:
            raise request.error
        return request.result

    def _stats(self, name: str) -> BatchStats:
        return self.stats.setdefault(name, BatchStats())

    def count_remembered(self, name: str, count: int) -> None:
        """Count ``count`` inputs of model ``name`` answered without a round (from a model's own memory)."""
        with self._cond:
            self._stats(name).add(BatchStats(texts=count, remembered=count))

    # -- concurrency -----------------------------------------------------------------------------
    @contextmanager
    def client(self):
        """Mark the calling thread as one explanation in flight while the block runs: a round starts
        as soon as every such explanation waits for a model."""
        self.join()
        try:
            yield self
        finally:
            self.leave()

    @contextmanager
    def turn(self):
        """Run the block as one of at most ``turns`` explanations doing their own work at a time; the
        turn passes to another explanation whenever this one waits for a round."""
        if self._turns is None or self._holding():
            yield self
            return
        self._turns.acquire()
        self._local.holding = True
        try:
            yield self
        finally:
            self._local.holding = False
            self._turns.release()

    def _holding(self) -> bool:
        return self._turns is not None and getattr(self._local, "holding", False)

    def join(self, count: int = 1) -> None:
        """Count ``count`` more explanations in flight (they may not have started yet: rounds wait for them)."""
        with self._cond:
            self._clients += count

    def leave(self) -> None:
        """Count one explanation fewer in flight."""
        with self._cond:
            self._clients -= 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() not in (self._worker, self._leader):
            self._worker.join()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Batcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _wait_left(self, first: float) -> float:
        """Seconds the round that began waiting at ``first`` may still wait (0: start it now)."""
        if self._closed or len(self._pending) >= max(1, self._clients):
            return 0.0
        if sum(len(r.items) for r in self._pending) >= self.max_pending:
            return 0.0
        waited = time.monotonic() - first
        if waited < self.max_wait:
            return self.max_wait - waited
        return 0.0 if self._fills_a_batch() else max(0.0, self.max_hold - waited)

    def _fills_a_batch(self) -> bool:
        """Whether the inputs waiting for some model make at least one forward batch of it."""
        waiting: dict[Hashable, int] = {}
        for r in self._pending:
            waiting[r.group] = waiting.get(r.group, 0) + len(r.items)
            if waiting[r.group] >= (r.batch_size or 1):
                return True
        return False

    # -- running the rounds ------------------------------------------------------------------------
    @contextmanager
    def lead(self):
        """Run the rounds on the calling thread, in :meth:`serve_until`, while the block runs; the worker
        thread waits (it finishes a round it has begun first) and takes over again after the block.

        This is for the thread that loaded the models. On a CPU, PyTorch's OpenMP runtime gives every thread
        that runs an operator a team of its own, and once two such teams exist (the loading thread's and
        the worker's) each team's threads, finding more threads than cores, sleep at once between
        operators instead of spinning for a moment: on 2 cores the forward passes left a core idle about a
        tenth of the time, and ``plex label`` ran 3-37 % slower than with its rounds on the loading thread
        (``docs/benchmarks.md``).

        A call the leader makes itself (through :meth:`call`) runs its round on the leader too. If another
        thread leads already, the block runs as it would without this (its waits wait for that leader's
        rounds)."""
        me = threading.current_thread()
        with self._cond:
            took = self._leader is None and me is not self._worker
            if took:
                self._leader = me
        try:
            yield self
        finally:
            if took:
                with self._cond:
                    self._leader = None
                    self._cond.notify_all()

    def serve_until(self, done: Callable[[], bool]) -> None:
        """Wait until ``done()`` is true (it is asked under the batcher's lock, whenever the batcher is woken:
        by a request, the end of a round, or :meth:`wake`); the leader (see :meth:`lead`) runs the rounds
        that become due meanwhile."""
        leading = threading.current_thread() is self._leader
        while True:
            with self._cond:
                while True:
                    if done():
                        return
                    batch, left = self._next_round() if leading else (None, None)
                    if batch is not None:
                        break
                    self._cond.wait(timeout=left)
            self._run_round(batch)

    def wake(self) -> None:
        """Have :meth:`serve_until` ask its ``done()`` again."""
        with self._cond:
            self._cond.notify_all()

    def _next_round(self) -> tuple[list[_Request] | None, float | None]:
        """Under the lock: the waiting requests, taken, if their round is due; else (None, seconds to wait,
        or None for until woken)."""
        if self._round_thread is not None or not self._pending:
            return None, None
        left = self._wait_left(self._opened)
        if left > 0:
            return None, left
        batch, self._pending = self._pending, []
        self._round_thread = threading.current_thread()
        return batch, None

    def _run_round(self, batch: list[_Request]) -> None:
        try:
            groups: dict[Hashable, list[_Request]] = {}
            for request in batch:
                groups.setdefault(request.group, []).append(request)
            for requests in groups.values():
                self._run(requests)
        finally:
            with self._cond:
                self._round_thread = None
                self._opened = time.monotonic()  # requests that came during the round wait from its end
                self._cond.notify_all()

    def _serve(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._leader is None:
                        if self._closed and not self._pending:
                            return
                        batch, left = self._next_round()
                        if batch is not None:
                            break
                    else:
                        left = None
                    self._cond.wait(timeout=left)
            self._run_round(batch)

    def _run(self, requests: list[_Request]) -> None:
        first = requests[0]
        try:
            counts = BatchStats()
            results = run_unique(first.compute, [r.items for r in requests], [r.keys for r in requests],
                                 first.batch_size, counts)
            with self._cond:
                self._stats(first.name).add(counts)
        except BaseException as err:  # every caller of the group gets the model's error
            for request in requests:
                request.error = err
                request.done.set()
            return
        for request, result in zip(requests, results):
            request.result = result
            request.done.set()


class BatchedCalls:
    """``obj`` with some methods routed through a :class:`Batcher`: each named method takes a list of
    texts and returns one result per text (a list or an array's rows), and concurrent calls of it become
    one call per round. Every other attribute is ``obj``'s.

    ``methods`` may include ``"__call__"`` for a callable object.
    """

    def __init__(self, obj: Any, batcher: Batcher, methods: Sequence[str], name: str | None = None,
                 batch_size: int | None = None) -> None:
        self._obj, self._batcher, self._methods = obj, batcher, tuple(methods)
        self._name = name or type(obj).__name__
        self._batch_size = batch_size or getattr(obj, "batch_size", None)

    def _routed(self, method: str) -> Callable[..., Any]:
        compute = getattr(self._obj, method)

        def call(texts: Sequence[str], **kwargs: Any) -> Any:
            texts = [texts] if isinstance(texts, str) else list(texts)
            settings = tuple(sorted(kwargs.items()))
            return self._batcher.call((id(self._obj), method, settings), lambda todo: compute(todo, **kwargs), texts,
                                      name=self._name, batch_size=self._batch_size)

        return call

    def __call__(self, texts: Sequence[str], **kwargs: Any) -> Any:
        if "__call__" not in self._methods:
            raise TypeError(f"{type(self._obj).__name__} calls are not routed through the batcher")
        return self._routed("__call__")(texts, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._methods:
            return self._routed(name)
        return getattr(self._obj, name)


def unwrap(obj: Any) -> Any:
    """``obj`` itself when it is a batcher's wrapper (:class:`BatchedCalls`, or a wrapper holding the model as
    ``inner`` and a :class:`Batcher` as ``batcher``: a batching language model or classifier)."""
    if isinstance(obj, BatchedCalls):
        return obj._obj
    if isinstance(getattr(obj, "batcher", None), Batcher) and getattr(obj, "inner", None) is not None:
        return obj.inner
    return obj


def explain_concurrently(batcher, fn: Callable[[T], R], items: Iterable[T], concurrency: int) -> Iterator[R]:
    """``fn(item)`` for every item, ``concurrency`` at a time, each a client of ``batcher`` (a
    :class:`Batcher`, or a wrapper holding one as ``.batcher``); results in the items' order, yielded as
    soon as they and all before them are done. The rounds run on the calling thread while it waits for
    the results (:meth:`Batcher.lead`), not on the batcher's worker thread.

    An explanation counts as in flight from the moment it is handed to a thread, before the thread
    runs it: a round does not start while explanations that are about to make their first call have
    not made it yet (threads start one after another), so the first rounds are as large as the later ones.

    Each explanation runs in its batcher's :meth:`~Batcher.turn`: at most ``turns`` of them execute
    their own code at a time, and one waiting for a round lets another run.

    While the explanations run, numpy's and scipy's BLAS use one thread each (``threadpoolctl``): the
    explanations are the parallelism, and a BLAS pool's threads, which spin for a while after every
    call of a surrogate fit, would take the cores from the model's forward pass running beside them.
    """
    engine = getattr(batcher, "batcher", batcher)
    if concurrency <= 1:
        with engine.lead():  # each call's round runs on this thread, at once
            for item in items:
                with engine.client():
                    yield fn(item)
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield from _explain_threads(engine, fn, items, concurrency)


def _explain_threads(engine: Batcher, fn: Callable[[T], R], items: Iterable[T], concurrency: int) -> Iterator[R]:
    slots = threading.Semaphore(concurrency)
    submitted: queue.Queue = queue.Queue()
    stop = threading.Event()

    def run(item: T) -> R:
        try:
            with engine.turn():
                return fn(item)
        finally:
            engine.leave()
            slots.release()

    def feed(pool: ThreadPoolExecutor) -> None:
        try:
            source, item = iter(items), None
            while item is not _END and not stop.is_set():
                slots.acquire()  # one free slot, then every other free one: their items are handed over together
                held, batch = 1, []
                while held > len(batch):
                    item = next(source, _END)
                    if item is _END:
                        break
                    batch.append(item)
                    held += slots.acquire(blocking=False)
                for _ in range(held - len(batch)):
                    slots.release()
                if batch and not stop.is_set():
                    engine.join(len(batch))
                    for one in batch:
                        future = pool.submit(run, one)
                        future.add_done_callback(lambda _: engine.wake())
                        submitted.put(future)
                        engine.wake()
        except BaseException as err:  # the items' own iterator failed: the consumer raises it
            submitted.put(err)
        finally:
            submitted.put(None)
            engine.wake()

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="plex-explain") as pool:
        feeder = threading.Thread(target=feed, args=(pool,), name="plex-explain-feed", daemon=True)
        try:
            with engine.lead():  # the rounds run here, on the caller's thread, while it waits for the results
                feeder.start()
                while True:
                    engine.serve_until(lambda: not submitted.empty())
                    future = submitted.get_nowait()
                    if future is None:
                        break
                    if isinstance(future, BaseException):
                        raise future
                    engine.serve_until(future.done)
                    yield future.result()
        finally:  # the worker serves again (lead's block is left first), so the threads still running finish
            stop.set()
            slots.release()  # a feeder waiting for a slot sees the stop
            feeder.join()
