"""The language-model interface the LLM-based teachers talk to, with its per-instance cache."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

Messages = list[dict[str, str]]
Prompt = str | Messages

SCORING_UNSUPPORTED = (
    "{name} gives no next-token probabilities or log-likelihoods; pass a local model as the "
    "scorer (for example load_lm('smollm2') or a folder written by save_pretrained)"
)


class LMError(RuntimeError):
    """A language model (usually a remote server) failed to answer."""


def as_list(items: str | Sequence, what: str) -> list:
    """One item or a sequence of them, as a list; a lone ``str`` is one item."""
    if isinstance(items, str):
        return [items]
    if isinstance(items, np.ndarray):
        items = items.tolist()
    if isinstance(items, dict):
        raise TypeError(f"{what} is a dict; pass a list of {what}s")
    return list(items)


def as_texts(texts: str | Sequence[str], what: str = "text") -> list[str]:
    texts = as_list(texts, what)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{what} {i} is a {type(t).__name__}, not a str; pass a list of strings")
    return texts


def as_messages(prompt: Prompt, system: str | None, index: int = 0) -> Messages:
    """A prompt as chat messages: a ``str`` is one user message; ``system`` goes first."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, dict):
        raise TypeError(
            f"prompt {index} is a single message dict; wrap each conversation in a list: "
            "generate([[{'role': 'user', 'content': ...}]])"
        )
    elif isinstance(prompt, Sequence):
        messages = []
        for m in prompt:
            if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                raise TypeError(
                    f"prompt {index} has a message that is not {{'role': str, 'content': str}}: {m!r}"
                )
            messages.append({"role": m["role"], "content": m["content"]})
        if not messages:
            raise ValueError(f"prompt {index} is an empty list of messages")
    else:
        raise TypeError(f"prompt {index} is a {type(prompt).__name__}; pass a str or a list of message dicts")
    if system is not None:
        if messages[0]["role"] == "system":
            raise ValueError(f"prompt {index} already starts with a system message; "
                             "pass system= or the message, not both")
        messages = [{"role": "system", "content": system}, *messages]
    return messages


def message_key(messages: Messages) -> tuple:
    """A chat as a hashable key (its roles and contents)."""
    return tuple((m["role"], m["content"]) for m in messages)


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """``text`` up to the earliest stop string (which is dropped)."""
    cuts = [i for s in stop or () if s and (i := text.find(s)) >= 0]
    return text[: min(cuts)] if cuts else text


class LanguageModel(ABC):
    """A language model: chat generation, and for local models next-token and text scores.

    Every method caches its results per (method, prompt or text, settings) in a bounded LRU owned
    by the instance, so a repeated prompt costs nothing; a batched call computes only the misses
    (each distinct one once).

    Args:
        cache_size: entries kept across all methods (``0`` turns caching off).
    """

    def __init__(self, cache_size: int = 100_000) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.cache_size = cache_size
        self._cache: OrderedDict[Hashable, Any] = OrderedDict()
        self._stats: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What identifies this model in labels and configs (kind, source); never a secret."""

    @abstractmethod
    def _generate(self, prompts: list[Messages], max_new_tokens: int, temperature: float,
                  stop: tuple[str, ...], seed: int | None) -> list[str]:
        """Completions of distinct prompts, in order."""

    def _next_tokens(self, prefixes: list[str], k: int) -> list[list[tuple[str, float]]]:
        raise NotImplementedError(SCORING_UNSUPPORTED.format(name=type(self).__name__))

    def _log_likelihood(self, texts: list[str]) -> list[tuple[float, int]]:
        raise NotImplementedError(SCORING_UNSUPPORTED.format(name=type(self).__name__))

    default_seed: int | None = None

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int = 16, temperature: float = 0.0,
                 stop: Sequence[str] | None = None, system: str | None = None,
                 seed: int | None = None) -> list[str]:
        """Complete each prompt; returns the completion text only, cut before any stop string.

        A ``str`` prompt is one user message; a list of ``{"role", "content"}`` dicts is a chat.
        ``temperature`` 0 is greedy; above 0 samples, seeded by ``seed`` (default: the model's),
        so a cached sample comes back for the same prompt and seed.
        """
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if isinstance(prompts, (str, dict)):
            prompts = [prompts]
        messages = [as_messages(p, system, i) for i, p in enumerate(prompts)]
        stop = tuple(as_texts(stop, "stop string")) if stop else ()
        seed = (self.default_seed if seed is None else seed) if temperature > 0 else None
        settings = (int(max_new_tokens), float(temperature), stop, seed)
        keys = [message_key(msgs) for msgs in messages]
        return self._cached("generate", keys, messages, settings,
                            lambda todo: self._generate(todo, int(max_new_tokens), float(temperature), stop, seed))

    def next_tokens(self, prefixes: Sequence[str], k: int = 20) -> list[list[tuple[str, float]]]:
        """Top-``k`` next tokens after each raw-text prefix (no chat template), best first.

        Tokens are decoded to strings (a leading space kept), paired with log-probabilities.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        prefixes = as_texts(prefixes, "prefix")
        out = self._cached("next_tokens", prefixes, prefixes, (int(k),), lambda todo: self._next_tokens(todo, int(k)))
        return [list(x) for x in out]

    def log_likelihood(self, texts: Sequence[str]) -> list[tuple[float, int]]:
        """Per raw text (no chat template): ``(sum of log p(token_t | tokens_<t), tokens scored)``.

        Scoring conditions on the tokenizer's BOS token when it has one, so every text token is
        scored; without one the first token is context only.
        """
        texts = as_texts(texts)
        return self._cached("log_likelihood", texts, texts, (), self._log_likelihood)

    def perplexity(self, texts: Sequence[str]) -> np.ndarray:
        """``exp(-sum / n)`` from :meth:`log_likelihood`; NaN for a text with no scored token."""
        scores = self.log_likelihood(texts)
        return np.array([np.exp(-s / n) if n else np.nan for s, n in scores], dtype=np.float64)

    def cache_info(self) -> dict[str, Any]:
        """Hits and misses per method, and the cache's size and bound."""
        with self._lock:
            info: dict[str, Any] = {m: dict(s) for m, s in self._stats.items()}
            info.update(size=len(self._cache), maxsize=self.cache_size)
        return info

    def cache_clear(self) -> None:
        with self._lock:
            self._cache.clear()
            self._stats.clear()

    def _cached(self, method: str, keys: list[Hashable], items: list, settings: tuple,
                compute: Callable[[list], list]) -> list:
        """Look up each item; compute the distinct misses in one call; remember them (LRU)."""
        results: list = [None] * len(items)
        todo: dict[Hashable, list[int]] = {}
        with self._lock:
            stats = self._stats.setdefault(method, {"hits": 0, "misses": 0})
            for i, key in enumerate(keys):
                full = (method, key, settings)
                if full in self._cache:
                    self._cache.move_to_end(full)
                    results[i] = self._cache[full]
                    stats["hits"] += 1
                elif key in todo:
                    todo[key].append(i)
                    stats["hits"] += 1
                else:
                    todo[key] = [i]
                    stats["misses"] += 1
        if not todo:
            return results
        firsts = [idx[0] for idx in todo.values()]
        computed = compute([items[i] for i in firsts])
        if len(computed) != len(firsts):
            raise LMError(f"{type(self).__name__}.{method} returned {len(computed)} results for {len(firsts)} inputs")
        with self._lock:
            for (key, idx), value in zip(todo.items(), computed):
                for i in idx:
                    results[i] = value
                if self.cache_size:
                    self._cache[(method, key, settings)] = value
                    self._cache.move_to_end((method, key, settings))
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return results
