"""Hugging Face sequence classifiers as white-box plex classifiers."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from plex.assets import resolve_model
from plex.classifiers.base import Classifier, as_text_list
from plex.words import align_tokens, segment

logger = logging.getLogger(__name__)


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class TokenStates:
    """Hidden states of one text at one layer, without padding.

    Attributes:
        hidden: ``[n_tokens, hidden_size]`` float32, special tokens included.
        offsets: ``[n_tokens, 2]`` character offsets of each token (``(0, 0)`` for special tokens).
        word_ids: ``[n_tokens]`` index of the plex word each token belongs to, ``-1`` if none.
    """

    hidden: np.ndarray
    offsets: np.ndarray
    word_ids: np.ndarray


@dataclass
class ForwardOutput:
    """Probabilities and, when layers were asked for, per-text token states (input order)."""

    probs: np.ndarray
    states: dict[int, list[TokenStates]]


class HFClassifier(Classifier):
    """A ``transformers`` sequence classifier behind the plex protocol.

    Texts are sorted by length, batched with dynamic padding and run under
    ``torch.inference_mode`` on the chosen device. Texts longer than ``max_length`` tokens are
    truncated: their tail is not read by the model, so words in it get no evidence (explainers
    report how many words were visible in ``Attribution.meta["visible_words"]``).

    Args:
        model: a ``PreTrainedModel`` with a sequence-classification head.
        tokenizer: its fast tokenizer (needed for character offsets).
        source: where the model came from (hub name or folder), recorded in labels and checkpoints.
        batch_size: texts per forward pass.
        max_length: token limit; defaults to the smaller of the tokenizer's and the model's limit.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default: GPU when present.
    """

    def __init__(
        self,
        model,
        tokenizer,
        source: str | None = None,
        batch_size: int = 64,
        max_length: int | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                f"{type(tokenizer).__name__} is a slow tokenizer; plex needs a fast tokenizer for "
                "character offsets: load it with AutoTokenizer.from_pretrained(..., use_fast=True)"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.source = source or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.batch_size = batch_size
        limits = [getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length]
        self.max_length = max_length or min(int(x) for x in limits if x and x < 1_000_000)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        max_length: int | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
    ) -> HFClassifier:
        """Load a classifier from a hub name, a local folder or an embedded name (``minilm``)."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = resolve_model(name_or_path)
        kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, **kwargs)
            model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
        except OSError as err:
            raise OSError(
                f"could not load a classifier from {name_or_path!r}: give a folder written by "
                "save_pretrained, an embedded name (minilm), or a hub name reachable from this "
                f"machine ({err})"
            ) from err
        return cls(model, tokenizer, source=str(name_or_path), batch_size=batch_size,
                   max_length=max_length, device=device)

    @property
    def labels(self) -> list[str]:
        id2label = self.model.config.id2label
        return [str(id2label[i]) for i in range(self.model.config.num_labels)]

    @cached_property
    def weights_sha256(self) -> str:
        """SHA-256 over the model's parameters and buffers (names, shapes, dtypes and values)."""
        h = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            t = tensor.detach().to("cpu").contiguous()
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()

    def identity(self) -> dict[str, Any]:
        return {"kind": "huggingface", "path": self.source, "weights_sha256": self.weights_sha256,
                "labels": self.labels}

    def _tokenize(self, texts: list[str]):
        return self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length,
            return_offsets_mapping=True, return_tensors="pt",
        )

    def forward(self, texts: str | Sequence[str], layers: Sequence[int] = ()) -> ForwardOutput:
        """One pass over ``texts``: probabilities and the token states of ``layers``.

        Layer ``0`` is the embedding output, ``1..L`` the transformer blocks, negative indices
        count from the last block.
        """
        texts = as_text_list(texts)
        n = len(texts)
        probs = np.zeros((n, self.num_labels), dtype=np.float64)
        states: dict[int, list[TokenStates | None]] = {layer: [None] * n for layer in layers}
        order = sorted(range(n), key=lambda i: len(texts[i]), reverse=True)
        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = self._tokenize([texts[i] for i in idx])
                offsets = enc.pop("offset_mapping").numpy()
                mask = enc["attention_mask"].numpy().astype(bool)
                out = self.model(**{k: v.to(self.device) for k, v in enc.items()},
                                 output_hidden_states=bool(layers))
                probs[idx] = torch.softmax(out.logits.float(), dim=-1).cpu().numpy()
                for layer in layers:
                    hidden = out.hidden_states[layer].float().cpu().numpy()
                    for row, i in enumerate(idx):
                        keep = mask[row]
                        spans = segment(texts[i]).spans
                        states[layer][i] = TokenStates(
                            hidden=hidden[row][keep], offsets=offsets[row][keep],
                            word_ids=align_tokens(offsets[row][keep], spans),
                        )
        return ForwardOutput(probs=probs, states=states)

    def predict_proba(self, texts: str | Sequence[str]) -> np.ndarray:
        return self.forward(texts).probs

    def embed(self, texts: str | Sequence[str], layer: int = -1) -> list[TokenStates]:
        """Per-token hidden states of ``layer`` with offsets and word alignment, one per text."""
        return self.forward(texts, layers=(layer,)).states[layer]

    def visible_words(self, spans: list[tuple[int, int]], text: str) -> int:
        if not spans:
            return 0
        enc = self.tokenizer(text, truncation=True, max_length=self.max_length,
                             return_offsets_mapping=True)
        last_char = max((e for _, e in enc["offset_mapping"]), default=0)
        return sum(1 for s, _ in spans if s < last_char)


def load_classifier(name_or_path, **kwargs) -> HFClassifier:
    """Load a Hugging Face sequence classifier (hub name, folder, or embedded name).

    Keyword arguments go to :meth:`HFClassifier.from_pretrained` (``device``, ``batch_size``,
    ``max_length``, ``revision``, ``trust_remote_code``).
    """
    return HFClassifier.from_pretrained(name_or_path, **kwargs)
