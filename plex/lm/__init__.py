"""Language models for the LLM-based teachers (LIME-LLM rewrites and fluency, gSMILE outputs).

- :class:`LocalLM`: a ``transformers`` causal LM here (default: SmolLM2-135M-Instruct, ``smollm2``);
  generation, next-token lists and log-likelihoods.
- :class:`OpenAIChatLM`: any OpenAI-compatible chat-completions server; generation only.

Both cache their results per instance. :func:`load_lm` builds either from a string spec.
"""

from __future__ import annotations

import re
from pathlib import Path

from plex.lm.base import LanguageModel, LMError
from plex.lm.local import LocalLM
from plex.lm.openai_chat import OpenAIChatLM

__all__ = ["LMError", "LanguageModel", "LocalLM", "OpenAIChatLM", "load_lm"]

SPEC_FORMS = (
    "a local model ('smollm2', a folder written by save_pretrained, a .gguf file, or a hub name "
    "like 'HuggingFaceTB/SmolLM2-135M-Instruct') or 'openai:<model>@<base_url>' "
    "(e.g. 'openai:llama3@http://127.0.0.1:8080/v1')"
)
_OPENAI = re.compile(r"openai:(?P<model>[^@\s]+(?:@[^@\s]+)*?)@(?P<url>https?://\S+)")
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def load_lm(spec: str, **kwargs) -> LanguageModel:
    """A language model from a spec string; keyword arguments go to its constructor.

    ``"openai:<model>@<base_url>"`` gives an :class:`OpenAIChatLM` (``api_key_env``, ``timeout``,
    ``max_retries``, ``max_concurrency``...); anything else is a local model for
    :meth:`LocalLM.from_pretrained` (``device``, ``dtype``, ``batch_size``, ``gguf_file``...).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty language-model spec; give {SPEC_FORMS}")
    spec = spec.strip()
    if spec.startswith("openai:"):
        match = _OPENAI.fullmatch(spec)
        if not match:
            raise ValueError(f"malformed spec {spec!r}: give {SPEC_FORMS}")
        return OpenAIChatLM(match["url"], match["model"], **kwargs)
    from plex.assets import MODELS

    local = Path(spec).expanduser()
    if spec in MODELS or local.is_dir() or (local.is_file() and local.suffix == ".gguf"):
        return LocalLM.from_pretrained(spec, **kwargs)
    if local.exists():
        raise ValueError(f"{spec!r} is a file but not a .gguf model; give {SPEC_FORMS}")
    if ":" in spec or not _HUB_NAME.fullmatch(spec):
        raise ValueError(f"unknown language-model spec {spec!r} (no such folder, not a hub name); give {SPEC_FORMS}")
    return LocalLM.from_pretrained(spec, **kwargs)
