"""Hugging Face sequence classifiers as white-box plex classifiers."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
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
    """Probabilities (``None`` for a plain encoder) and per-text token states of each asked layer."""

    probs: np.ndarray | None
    states: dict[int, list[TokenStates]]


def run_batches(owner, texts, layers: Sequence[int], with_probs: bool, batch_size: int | None = None) -> ForwardOutput:
    """Batches of texts of equal token counts as far as they go, dynamically padded, under
    ``inference_mode``; results in input order.

    The texts are tokenized once, sorted by their number of tokens and cut into batches of at most
    ``batch_size`` (:func:`cut_batches`): every batch pads to its longest text, and texts of one token
    count sit together. Sorting by characters instead left about a third more padded tokens than real
    ones on LIME's and SHAP's perturbed texts (a word dropped or masked changes the characters and the
    tokens unevenly), and a CPU's forward pass costs in proportion to the padded tokens.

    ``owner`` has ``model``, ``tokenizer``, ``device``, ``batch_size`` and ``max_length``, and may have
    ``batch_cost_tokens`` (see :func:`cut_batches`; ``None`` or absent: batches of ``batch_size``).
    """
    step = batch_size or owner.batch_size
    texts = as_text_list(texts)
    n = len(texts)
    num_labels = owner.model.config.num_labels if with_probs else 0
    probs = np.zeros((n, num_labels), dtype=np.float64) if with_probs else None
    states: dict[int, list[TokenStates | None]] = {layer: [None] * n for layer in layers}
    if not n:
        return ForwardOutput(probs=probs, states=states)
    spans = [segment(t).spans for t in texts] if layers else []
    encoded = owner.tokenize(texts, truncation=True, max_length=owner.max_length, return_offsets_mapping=True)
    columns = {key: list(value) for key, value in encoded.items()}
    lengths = [len(ids) for ids in columns["input_ids"]]
    order = sorted(range(n), key=lengths.__getitem__, reverse=True)
    cuts = cut_batches([lengths[i] for i in order], step, getattr(owner, "batch_cost_tokens", None))
    with torch.inference_mode():
        for start, end in cuts:
            idx = order[start:end]
            enc = pad_encoding(owner.tokenizer, {key: [column[i] for i in idx] for key, column in columns.items()})
            offsets = enc.pop("offset_mapping").numpy()
            mask = enc["attention_mask"].numpy().astype(bool)
            out = owner.model(**{k: v.to(owner.device) for k, v in enc.items()},
                              output_hidden_states=bool(layers))
            if with_probs:
                probs[idx] = torch.softmax(out.logits.float(), dim=-1).cpu().numpy()
            for layer in layers:
                hidden = out.hidden_states[layer].float().cpu().numpy()
                for row, i in enumerate(idx):
                    keep = mask[row]
                    states[layer][i] = TokenStates(
                        hidden=hidden[row][keep], offsets=offsets[row][keep],
                        word_ids=align_tokens(offsets[row][keep], spans[i]),
                    )
    return ForwardOutput(probs=probs, states=states)


#: What one more forward pass costs on a CPU, in padded tokens: a batch is cut short when the padding it
#: saves is worth more. Measured on 2 cores with a 6-layer, 384-wide BERT on SHAP-500's rounds of 20 texts,
#: whose batches mix texts of several lengths: 1.12-1.33 times the texts per second of full batches
#: (5 paired runs, docs/benchmarks.md).
CPU_BATCH_COST_TOKENS = 256


def cut_batches(lengths: Sequence[int], batch_size: int, cost_tokens: float | None = None) -> list[tuple[int, int]]:
    """``(start, end)`` of consecutive batches over ``lengths`` (token counts, longest first).

    ``cost_tokens=None``: batches of ``batch_size`` (the last one shorter), which a GPU wants. Otherwise the
    cuts of least total cost, where a batch costs ``cost_tokens`` plus its rows times its longest row (its
    padded tokens): a CPU, whose forward pass costs in proportion to the padded tokens, runs a few more,
    smaller batches where a full one would pad much.
    """
    n = len(lengths)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if cost_tokens is None:
        return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    longest = np.asarray(lengths, dtype=np.float64)
    if n > 1 and (np.diff(longest) > 0).any():
        raise ValueError("cut_batches takes lengths sorted longest first")
    best = np.zeros(n + 1)  # best[i]: least cost of the rows from i on
    end_of = np.zeros(n + 1, dtype=np.int64)
    for i in range(n - 1, -1, -1):
        ends = np.arange(min(n, i + batch_size), i, -1)  # the fullest batch first: it wins a tie
        cost = cost_tokens + (ends - i) * longest[i] + best[ends]
        k = int(np.argmin(cost))
        best[i], end_of[i] = cost[k], ends[k]
    cuts, start = [], 0
    while start < n:
        cuts.append((start, int(end_of[start])))
        start = int(end_of[start])
    return cuts


_PAD_VALUES = {"attention_mask": 0, "offset_mapping": (0, 0), "special_tokens_mask": 1}


def pad_encoding(tokenizer, columns: dict[str, list[list]]) -> dict[str, torch.Tensor]:
    """Tokenized rows (the columns a tokenizer returns without padding) padded to the longest row on the
    tokenizer's ``padding_side``, as tensors: what ``tokenizer(texts, padding=True, return_tensors="pt")``
    gives for those texts."""
    rows = columns["input_ids"]
    if tokenizer.pad_token_id is None and any(len(r) != len(rows[0]) for r in rows):
        raise ValueError(f"{type(tokenizer).__name__} has no padding token, and texts of different lengths are "
                         "batched; set tokenizer.pad_token (for example to its eos_token) or use batch_size=1")
    pads = {"input_ids": tokenizer.pad_token_id or 0, "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0),
            **_PAD_VALUES}
    return _pad(columns, pads, left=getattr(tokenizer, "padding_side", "right") == "left")


def pad_rows(rows: list[list[int]], pad_id: int, side: str = "right", device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id rows padded to one width on ``side``: ``(input_ids, attention_mask)`` on ``device``."""
    out = _pad({"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]}, {"input_ids": int(pad_id)},
               left=side != "right")
    return out["input_ids"].to(device), out["attention_mask"].to(device)


def _pad(columns: dict[str, list[list]], pads: dict[str, Any], left: bool) -> dict[str, torch.Tensor]:
    """Every column's rows padded to the longest ``input_ids`` row with the column's value in ``pads``
    (default 0), on the left or the right, as int64 tensors."""
    width = max(len(r) for r in columns["input_ids"])
    out = {}
    for key, column in columns.items():
        pad = pads.get(key, 0)
        array = np.empty((len(column), width) + np.shape(pad), dtype=np.int64)
        array[...] = pad
        for row, values in enumerate(column):
            if len(values):
                array[row, slice(width - len(values), width) if left else slice(0, len(values))] = values
        out[key] = torch.from_numpy(array)
    return out


def logits_at(model, ids: torch.Tensor, mask: torch.Tensor, positions: Sequence[int], **kwargs):
    """A causal LM's forward pass and its logits at ``positions`` only, ``[batch, len(positions), vocab]``.

    The LM head runs on those positions alone when the model takes ``logits_to_keep``; other
    keyword arguments (``output_hidden_states``) go to the model. Returns ``(output, logits)``.
    """
    import inspect

    keep = torch.tensor(list(positions), device=ids.device)
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        out = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, **kwargs)
        return out, out.logits
    out = model(input_ids=ids, attention_mask=mask, **kwargs)
    return out, out.logits[:, keep]


def state_sha256(model) -> str:
    """SHA-256 over a model's parameters and buffers (names, shapes, dtypes and values)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# A fast tokenizer keeps its padding and truncation settings in its Rust state and resets them on every
# call: two threads tokenizing at once (a batcher's worker padding a forward batch while an explanation
# asks how many words a text keeps) can each get the other's settings. Every call goes through this lock.
_TOKENIZING = threading.Lock()


class ModelHolder:
    """What every plex wrapper of a ``transformers`` model keeps: the model in eval mode on its
    device, its tokenizer, where it came from and the batch size; its width and weight hash."""

    def tokenize(self, *args: Any, **kwargs: Any) -> Any:
        """``self.tokenizer(*args, **kwargs)``, safe to call from several threads at once."""
        with _TOKENIZING:
            return self.tokenizer(*args, **kwargs)

    def _hold(self, model, tokenizer, source: str | None, batch_size: int, device) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.source = source or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.batch_size = batch_size

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @cached_property
    def weights_sha256(self) -> str:
        """SHA-256 over the model's parameters and buffers (names, shapes, dtypes and values)."""
        return state_sha256(self.model)


def _max_length(model, tokenizer) -> int:
    limits = [getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length]
    return min(int(x) for x in limits if x and x < 1_000_000)


def _require_fast(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"{type(tokenizer).__name__} is a slow tokenizer; plex needs a fast tokenizer for "
            "character offsets: load it with AutoTokenizer.from_pretrained(..., use_fast=True)"
        )


def _load_pretrained(auto_cls, name_or_path, revision, trust_remote_code, what: str):
    from transformers import AutoTokenizer

    path = resolve_model(name_or_path)
    kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, **kwargs)
        model = auto_cls.from_pretrained(path, **kwargs)
    except OSError as err:
        raise OSError(
            f"could not load {what} from {str(name_or_path)!r}: give a folder written by "
            "save_pretrained, an embedded name (minilm), or a hub name reachable from this "
            f"machine ({err})"
        ) from err
    return model, tokenizer


class HFTextModel(ModelHolder):
    """What a ``transformers`` classifier and a plain encoder share: loading, batching, offsets.

    Texts are sorted by their token counts, batched with dynamic padding (:func:`run_batches`; on a CPU,
    batches that would pad much are cut short) and run under ``torch.inference_mode`` on the chosen
    device. Texts longer than ``max_length`` tokens are truncated: their tail is not read by the model
    (see :meth:`visible_words`).

    Args:
        model: a ``PreTrainedModel``.
        tokenizer: its fast tokenizer (needed for character offsets).
        source: where the model came from (hub name or folder), recorded in labels and checkpoints.
        batch_size: texts per forward pass.
        max_length: token limit; defaults to the smaller of the tokenizer's and the model's limit.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default: GPU when present.
    """

    auto_class = "AutoModel"
    what = "an encoder"
    gives_probs = False
    white_box = True

    def __init__(self, model, tokenizer, source: str | None = None, batch_size: int = 64,
                 max_length: int | None = None, device: str | torch.device | None = None) -> None:
        _require_fast(tokenizer)
        self._hold(model, tokenizer, source, batch_size, device)
        self.max_length = max_length or _max_length(model, tokenizer)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, device: str | torch.device | None = None,
                        batch_size: int = 64, max_length: int | None = None, revision: str | None = None,
                        trust_remote_code: bool = False):
        """Load from a hub name, a local folder or an embedded name (``minilm``)."""
        import transformers

        model, tokenizer = _load_pretrained(getattr(transformers, cls.auto_class), name_or_path, revision,
                                            trust_remote_code, cls.what)
        local = Path(name_or_path).expanduser()
        source = str(local.resolve()) if local.is_dir() else str(name_or_path)
        return cls(model, tokenizer, source=source, batch_size=batch_size, max_length=max_length, device=device)

    @property
    def batch_cost_tokens(self) -> int | None:
        """On a CPU, :data:`CPU_BATCH_COST_TOKENS`: batches are cut where they would pad much
        (:func:`cut_batches`); elsewhere ``None``: full batches of ``batch_size``."""
        return CPU_BATCH_COST_TOKENS if self.device.type == "cpu" else None

    def forward(self, texts: str | Sequence[str], layers: Sequence[int] = (),
                batch_size: int | None = None) -> ForwardOutput:
        """One pass over ``texts``: probabilities (classifiers) and the token states of ``layers``.

        Layer ``0`` is the embedding output, ``1..L`` the transformer blocks, negative indices
        count from the last block. ``batch_size`` overrides the instance's for this call.
        """
        return run_batches(self, texts, layers, with_probs=self.gives_probs, batch_size=batch_size)

    def embed(self, texts: str | Sequence[str], layer: int = -1) -> list[TokenStates]:
        """Per-token hidden states of ``layer`` with offsets and word alignment, one per text."""
        return self.forward(texts, layers=(layer,)).states[layer]

    def visible_words(self, spans: list[tuple[int, int]], text: str) -> int:
        """How many leading words the model reads before truncation cuts the text."""
        if not spans:
            return 0
        enc = self.tokenize(text, truncation=True, max_length=self.max_length,
                             return_offsets_mapping=True)
        last_char = max((e for _, e in enc["offset_mapping"]), default=0)
        return sum(1 for s, _ in spans if s < last_char)


class HFEncoder(HFTextModel):
    """A plain ``transformers`` encoder giving token states, for classifiers that are only functions."""

    def identity(self) -> dict[str, Any]:
        return {"kind": "encoder", "path": self.source, "weights_sha256": self.weights_sha256}


class HFClassifier(HFTextModel, Classifier):
    """A ``transformers`` sequence classifier behind the plex protocol (white box).

    Words in a truncated tail get no evidence; explainers report how many words were visible in
    ``Attribution.meta["visible_words"]``.
    """

    auto_class = "AutoModelForSequenceClassification"
    what = "a classifier"
    gives_probs = True

    @property
    def labels(self) -> list[str]:
        id2label = self.model.config.id2label
        return [str(id2label[i]) for i in range(self.model.config.num_labels)]

    def identity(self) -> dict[str, Any]:
        return {"kind": "huggingface", "path": self.source, "weights_sha256": self.weights_sha256,
                "labels": self.labels}

    def predict_proba(self, texts: str | Sequence[str]) -> np.ndarray:
        return self.forward(texts).probs


def load_classifier(name_or_path, **kwargs) -> Classifier:
    """Load a classifier: a Hugging Face sequence classifier (hub name, folder, or embedded name),
    or a causal LM prompted as one (``prompt:<model>`` or a YAML file, see
    :meth:`plex.classifiers.PromptClassifier.from_config`).

    Keyword arguments go to ``from_pretrained`` (``device``, ``batch_size``, ``max_length``,
    ``revision``, ``trust_remote_code``).
    """
    from plex.classifiers.prompt import PromptClassifier, is_prompt_spec

    if is_prompt_spec(name_or_path):
        return PromptClassifier.from_config(name_or_path, **kwargs)
    return HFClassifier.from_pretrained(name_or_path, **kwargs)
