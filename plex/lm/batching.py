"""A language model shared by concurrent explanations: its calls coalesced by a :class:`~plex.batching.Batcher`.

LIME-LLM asks its language models, for every text, for a few infill answers, next-token lists and
fluency scores; explained one text at a time these are small batches. :class:`BatchingLM` is the
model that several explanations running at once share: a ``generate`` (``next_tokens``,
``log_likelihood``) call waits for the others' calls with the same settings, and one round sends the
union of their prompts, each distinct prompt once, to the wrapped model, in its length-sorted batches.
The same batcher also serves the classifier (:class:`~plex.classifiers.batching.BatchingClassifier`),
so one round runs every model the explanations wait for.

Results are the wrapped model's for each prompt: greedy answers and scores do not depend on which
other prompts share a batch, up to the last float bits that padding to another length changes (a
greedy answer could only change where two tokens tie to those bits). A sampled answer
(``temperature > 0``) is drawn from a stream seeded per call, so calls with different seeds never
share a round, and each is the answer it would be alone only if its call was alone: the seeded
stream is shared by the prompts of one forward batch.
"""

from __future__ import annotations

from typing import Any

from plex.batching import Batcher
from plex.lm.base import LanguageModel, Messages, message_key


class BatchingLM(LanguageModel):
    """``inner`` with its calls coalesced across threads by ``batcher``.

    ``identity()``, the default seed and every other attribute are the wrapped model's; results are
    cached by the wrapped model (this wrapper keeps no cache of its own).
    """

    def __init__(self, inner: LanguageModel, batcher: Batcher) -> None:
        super().__init__(cache_size=0)
        self.inner, self.batcher = inner, batcher
        self.default_seed = inner.default_seed
        self._name = f"lm {type(inner).__name__}"
        self._batch_size = getattr(inner, "batch_size", None)

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()

    def __repr__(self) -> str:
        return f"BatchingLM({self.inner!r})"

    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "batcher") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _call(self, method: str, settings: tuple, items: list, keys: list, compute) -> list:
        return list(self.batcher.call((id(self.inner), method, settings), compute, items, keys,
                                      name=f"{self._name}.{method}", batch_size=self._batch_size))

    def _generate(self, prompts: list[Messages], max_new_tokens: int, temperature: float,
                  stop: tuple[str, ...], seed: int | None) -> list[str]:
        def compute(todo: list[Messages]) -> list[str]:
            return self.inner.generate(todo, max_new_tokens=max_new_tokens, temperature=temperature,
                                       stop=list(stop) or None, seed=seed)

        return self._call("generate", (max_new_tokens, temperature, stop, seed), prompts,
                          [message_key(m) for m in prompts], compute)

    def _next_tokens(self, prefixes: list[str], k: int) -> list[list[tuple[str, float]]]:
        return self._call("next_tokens", (k,), prefixes, prefixes, lambda todo: self.inner.next_tokens(todo, k=k))

    def _log_likelihood(self, texts: list[str]) -> list[tuple[float, int]]:
        return self._call("log_likelihood", (), texts, texts, self.inner.log_likelihood)
