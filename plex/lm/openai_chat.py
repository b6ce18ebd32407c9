"""Any OpenAI-compatible ``/chat/completions`` server (vLLM, llama.cpp server, hosted APIs).

The API key is read from the environment at request time and never stored on the object, so it
cannot leak into ``identity()``, ``repr()``, logs or exception messages.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from typing import Any

from tqdm.auto import tqdm

from plex.lm.base import LanguageModel, LMError, Messages, cut_at_stop

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 300.0
PROGRESS_MIN_PROMPTS = 32


class _Retryable(Exception):
    """A failure worth another attempt, with the wait the server asked for (if any)."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _server_message(body: bytes) -> str:
    """The ``error.message`` of an OpenAI-style error body, else the body's start."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500] or "(empty body)"
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        return str(err.get("message") or err.get("detail") or err)[:500]
    return str(err)[:500]


class OpenAIChatLM(LanguageModel):
    """Chat completions from an OpenAI-compatible server; generation only (no token scores).

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8080/v1``; requests go to
            ``{base_url}/chat/completions``.
        model: the model name the server expects.
        api_key_env: environment variable holding the key; sent as ``Authorization: Bearer``
            only when set.
        timeout: seconds per request.
        max_retries: extra attempts after connection errors, timeouts, 429 and 5xx replies.
        max_concurrency: requests in flight at once.
        backoff: first wait between attempts in seconds, doubled each time; a ``Retry-After``
            header overrides it.
        cache_size: entries in the instance's result cache.
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", timeout: float = 30.0,
                 max_retries: int = 3, max_concurrency: int = 4, backoff: float = 0.5,
                 cache_size: int = 100_000) -> None:
        super().__init__(cache_size=cache_size)
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL such as http://127.0.0.1:8080/v1, got {base_url!r}")
        if parts.username or parts.password:
            raise ValueError(f"put credentials in the environment variable {api_key_env}, not in base_url")
        if not model:
            raise ValueError("model must name the model the server serves, e.g. 'llama3'")
        if max_concurrency < 1 or max_retries < 0 or timeout <= 0 or backoff < 0:
            raise ValueError("need max_concurrency >= 1, max_retries >= 0, timeout > 0 and backoff >= 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.max_concurrency = int(max_concurrency)
        self.backoff = float(backoff)

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def identity(self) -> dict[str, Any]:
        return {"kind": "openai-chat", "model": self.model, "base_url": self.base_url,
                "api_key_env": self.api_key_env}

    def __repr__(self) -> str:
        return f"OpenAIChatLM(base_url={self.base_url!r}, model={self.model!r})"

    def _generate(self, prompts: list[Messages], max_new_tokens: int, temperature: float,
                  stop: tuple[str, ...], seed: int | None) -> list[str]:
        payloads = []
        for messages in prompts:
            payload: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": temperature,
                                       "max_tokens": max_new_tokens}
            if stop:
                payload["stop"] = list(stop)
            if seed is not None:
                payload["seed"] = seed
            payloads.append(payload)
        out: list[str] = [""] * len(payloads)
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(payloads))) as pool:
            futures = {pool.submit(self._complete, p): i for i, p in enumerate(payloads)}
            try:
                for future in tqdm(as_completed(futures), total=len(futures), desc=f"{self.model} completions",
                                   leave=False, disable=len(futures) < PROGRESS_MIN_PROMPTS):
                    out[futures[future]] = cut_at_stop(future.result(), stop)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return out

    def _redact(self, text: str) -> str:
        key = os.environ.get(self.api_key_env)
        return text.replace(key, "***") if key else text

    def _complete(self, payload: dict[str, Any]) -> str:
        """One request with retries; the completion text."""
        body = json.dumps(payload).encode("utf-8")
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                return self._request(body)
            except _Retryable as err:
                reason = self._redact(str(err))
                if attempt + 1 == attempts:
                    raise LMError(
                        f"{self.url} failed {attempts} times, last: {reason}; check that the server is up and "
                        "serving, or raise timeout=/max_retries="
                    ) from None
                wait = err.wait if err.wait is not None else self.backoff * 2 ** attempt
                logger.warning("%s: %s; retry %d/%d in %.2f s", self.url, reason, attempt + 1, self.max_retries, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")

    def _request(self, body: bytes) -> str:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            message = self._redact(_server_message(err.read() or b""))
            if err.code == 429 or 500 <= err.code < 600:
                raise _Retryable(f"HTTP {err.code}: {message}", _retry_after(err.headers.get("Retry-After"))) from None
            hint = " (check the key in $" + self.api_key_env + ")" if err.code in (401, 403) else ""
            raise LMError(f"{self.url} answered HTTP {err.code}: {message}{hint}") from None
        except (TimeoutError, urllib.error.URLError, ConnectionError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", None) or err
            if isinstance(reason, TimeoutError) or isinstance(err, TimeoutError):
                raise _Retryable(f"no answer within timeout={self.timeout:g} s") from None
            raise _Retryable(f"{type(err).__name__}: {reason}") from None
        return self._parse(raw)

    def _parse(self, raw: bytes) -> str:
        snippet = raw[:300].decode("utf-8", "replace")
        try:
            data = json.loads(raw)
        except ValueError:
            raise LMError(f"{self.url} replied with malformed JSON: {self._redact(snippet)!r}") from None
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise LMError(
                f"{self.url} replied without choices[0].message.content (is it a chat-completions endpoint?): "
                f"{self._redact(snippet)!r}"
            ) from None
        if content is None:
            return ""
        if not isinstance(content, str):
            raise LMError(f"{self.url} replied with non-text content: {self._redact(snippet)!r}")
        return content
