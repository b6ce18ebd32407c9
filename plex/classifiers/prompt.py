"""A causal language model used as a zero- or few-shot text classifier, white box.

The prompt is the few-shot examples, then the template with the text in place of ``{text}``
(optionally wrapped in the tokenizer's chat template). The model's log-likelihood of each label
word after the prompt, softmaxed over the labels, gives the probabilities. The hidden states of the
prompt's tokens come from the same forward pass, with character offsets relative to the text, so
explainers and the student see the text's words; the last prompt token (the one that predicts the
label) is the sentence vector.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import softmax

from plex.classifiers.base import Classifier, as_text_list
from plex.classifiers.hf import (
    ForwardOutput,
    ModelHolder,
    TokenStates,
    _max_length,
    _require_fast,
    logits_at,
    pad_rows,
)
from plex.config import PromptClassifierConfig
from plex.words import align_tokens, segment

TEXT = "{text}"
SPEC_PREFIX = "prompt:"
_SLOT = "\ue000plex-text\ue000"  # private-use characters: stands for the text while the frame is rendered
_SETTINGS = ("labels", "label_words", "template", "examples", "chat")


def is_prompt_spec(spec) -> bool:
    """Whether :func:`plex.classifiers.load_classifier` should build a :class:`PromptClassifier`:
    ``prompt:<model>`` or a YAML file."""
    if not isinstance(spec, (str, os.PathLike)):
        return False
    spec = os.fspath(spec)
    return spec.startswith(SPEC_PREFIX) or spec.lower().endswith((".yaml", ".yml"))


@dataclass
class _Prompt:
    """One text's prompt: token ids (BOS included) and their character offsets relative to the text."""

    ids: list[int]
    offsets: np.ndarray


class PromptClassifier(ModelHolder, Classifier):
    """A causal LM as a classifier: probabilities from the label words' likelihood after a prompt.

    Each label word is scored as the sum of its tokens' log-probabilities given the prompt (and its
    previous tokens); the softmax over labels gives the probabilities. When every label word is a
    single token, one forward pass per text reads them all at the last position; otherwise each
    text runs once per label. Batches are sorted by length, right-padded and run under
    ``torch.inference_mode``. Prompts longer than ``max_length`` tokens are an error, never
    truncated.

    White box: :meth:`forward` gives the hidden states of the whole prompt from the same pass; the
    offsets of tokens inside the text are relative to the text and every other token has
    ``(0, 0)`` (word id ``-1``).

    Args:
        model: a ``PreTrainedModel`` with a causal LM head.
        tokenizer: its fast tokenizer (needed for character offsets).
        labels: class names, in the order of the probability columns.
        label_words: what the model writes for each label; default: a space then the label
            (``" positive"``, as after ``Answer:``), or the label alone with ``chat=True``.
        template: the prompt, with one ``{text}`` placeholder; everything else is literal.
        examples: few-shot ``(text, label)`` pairs, each written as the template followed by its
            label word, before the text's prompt (separated by blank lines); with ``chat=True``,
            each is a user turn (the template) answered by an assistant turn (the label word).
        chat: wrap the prompt as a user message in the tokenizer's chat template, with the
            assistant turn opened (``add_generation_prompt=True``).
        source: where the model came from, recorded by :meth:`identity`.
        device: ``"cpu"``, ``"cuda"``...; default: GPU when present.
        batch_size: texts per forward pass.
        max_length: token limit of a prompt (with the label word); defaults to the smaller of the
            model's and the tokenizer's limit.
        spec: what reloads this classifier through :func:`~plex.classifiers.load_classifier`
            (``prompt:<model>`` or a YAML file); recorded as ``identity()["path"]``.
    """

    DEFAULT_TEMPLATE = PromptClassifierConfig.template
    white_box = True
    sentence_pooling = "last"

    def __init__(self, model, tokenizer, labels: Sequence[str] = ("negative", "positive"),
                 label_words: Sequence[str] | None = None, template: str = DEFAULT_TEMPLATE,
                 examples: Sequence = (), chat: bool = False, source: str | None = None,
                 device: str | torch.device | None = None, batch_size: int = 16, max_length: int | None = None,
                 spec: str | None = None) -> None:
        _require_fast(tokenizer)
        self._labels = _check_labels(labels)
        self.template = _check_template(template)
        self.chat = bool(chat)
        if self.chat and not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"chat=True needs a chat template, but the tokenizer of {source or 'this model'} has "
                             "none; use chat=False (raw prompt) or set tokenizer.chat_template")
        if label_words is None:
            label_words = [lab if self.chat else " " + lab for lab in self._labels]
        self.label_words = [str(w) for w in label_words]
        if len(self.label_words) != len(self._labels):
            raise ValueError(f"got {len(self.label_words)} label_words for {len(self._labels)} labels "
                             f"{self._labels}; give one word per label")
        self.examples = _check_examples(examples, self._labels)
        self._hold(model, tokenizer, source, batch_size, device)
        self.max_length = max_length or _max_length(model, tokenizer)
        self.spec = spec
        self.label_ids = self._label_token_ids()
        self._before, self._after = self._frame()
        self._bos = None if self.chat else _bos_to_prepend(tokenizer)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._pad_id = int(pad) if pad is not None else 0

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = "smollm2", *, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None, batch_size: int = 16, revision: str | None = None,
                        trust_remote_code: bool = False, **kwargs) -> PromptClassifier:
        """Load a causal LM (``smollm2``, a folder, a .gguf file or a hub name) as a classifier.

        Other keyword arguments (``labels``, ``label_words``, ``template``, ``examples``, ``chat``,
        ``max_length``, ``spec``) go to the constructor. With the default prompt and dtype the
        classifier reloads from ``prompt:<model>``; write a YAML file and use :meth:`from_config`
        to make a custom prompt reloadable from a student checkpoint.
        """
        from plex.lm.local import LocalLM

        lm = LocalLM.from_pretrained(name_or_path, device=device, dtype=dtype, batch_size=batch_size,
                                     revision=revision, trust_remote_code=trust_remote_code)
        local = Path(name_or_path).expanduser()
        source = str(local.resolve()) if local.exists() else str(name_or_path)
        spec = kwargs.pop("spec", None)
        out = cls(lm.model, lm.tokenizer, source=source, device=lm.device, batch_size=batch_size, **kwargs)
        if spec is None and dtype is None and revision is None and out._settings() == _default_settings():
            spec = SPEC_PREFIX + source
        out.spec = spec
        return out

    @classmethod
    def from_config(cls, path_or_spec: str | os.PathLike, **kwargs) -> PromptClassifier:
        """Build from a YAML file (:class:`~plex.config.PromptClassifierConfig`) or ``prompt:<model>``.

        Keyword arguments are loading options (``device``, ``batch_size``, ``max_length``,
        ``revision``, ``trust_remote_code``); the prompt itself lives in the file.
        """
        from plex.config import config_fields, load_config

        misplaced = sorted(set(kwargs) & set(config_fields(PromptClassifierConfig)))
        if misplaced:
            raise ValueError(f"{', '.join(misplaced)} belong in the YAML file, not in from_config's arguments; "
                             "write them there or call PromptClassifier.from_pretrained(model, ...)")
        spec = os.fspath(path_or_spec)
        if spec.startswith(SPEC_PREFIX):
            model = spec[len(SPEC_PREFIX):].strip()
            if not model:
                raise ValueError(f"{spec!r} names no model: write prompt:smollm2, prompt:<folder> or "
                                 "prompt:<hub name>")
            local = Path(model).expanduser()
            if local.exists():
                model = str(local.resolve())
            cfg, spec = PromptClassifierConfig(model=model), SPEC_PREFIX + model
        else:
            path = Path(spec).expanduser().resolve()
            cfg, spec = load_config(PromptClassifierConfig, path), str(path)
        return cls.from_pretrained(cfg.model, dtype=cfg.dtype, labels=cfg.labels, label_words=cfg.label_words,
                                   template=cfg.template, examples=cfg.examples, chat=cfg.chat, spec=spec, **kwargs)

    # ------------------------------------------------------------------ the classifier protocol

    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    def identity(self) -> dict[str, Any]:
        return {"kind": "prompt", "path": self.spec, "model": self.source, "weights_sha256": self.weights_sha256,
                "labels": self.labels, "label_words": list(self.label_words), "template": self.template,
                "examples": [list(e) for e in self.examples], "chat": self.chat}

    def __repr__(self) -> str:
        return f"PromptClassifier({self.source!r}, labels={self.labels}, chat={self.chat})"

    def predict_proba(self, texts: str | Sequence[str]) -> np.ndarray:
        return softmax(self.label_log_likelihoods(texts), axis=1)

    def label_log_likelihoods(self, texts: str | Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """``[n, n_labels]``: summed log-probability of each label word's tokens after each text's prompt."""
        return self._run(texts, (), batch_size)[0]

    def forward(self, texts: str | Sequence[str], layers: Sequence[int] = (),
                batch_size: int | None = None) -> ForwardOutput:
        """Probabilities and the prompt's token states at ``layers`` (``0``: embeddings, ``-1``: last)."""
        ll, states = self._run(texts, layers, batch_size)
        return ForwardOutput(probs=softmax(ll, axis=1), states=states)

    def embed(self, texts: str | Sequence[str], layer: int = -1) -> list[TokenStates]:
        """Per-token hidden states of ``layer`` over the whole prompt, offsets relative to the text."""
        return self.forward(texts, layers=(layer,)).states[layer]

    def visible_words(self, spans: list[tuple[int, int]], text: str) -> int:
        """Every word: prompts are never truncated (a too-long one is an error)."""
        return len(spans)

    def prompt(self, text: str) -> str:
        """The string the model reads for ``text`` (before tokenization; BOS not shown)."""
        return self._before + text + self._after

    # ------------------------------------------------------------------ internals

    def _settings(self) -> tuple:
        return tuple(getattr(self, k) if k != "labels" else self.labels for k in _SETTINGS)

    def _label_token_ids(self) -> list[list[int]]:
        ids = [list(r) for r in self.tokenize(self.label_words, add_special_tokens=False)["input_ids"]]
        for lab, word, row in zip(self._labels, self.label_words, ids):
            if not row:
                raise ValueError(f"the label word {word!r} of label {lab!r} gives no tokens; pass a non-empty "
                                 "label_words= entry")
        seen: dict[tuple[int, ...], int] = {}
        for k, row in enumerate(ids):
            j = seen.setdefault(tuple(row), k)
            if j != k:
                raise ValueError(f"the label words {self.label_words[j]!r} ({self._labels[j]}) and "
                                 f"{self.label_words[k]!r} ({self._labels[k]}) tokenize to the same ids {row}; "
                                 "pass distinct label_words=")
        return ids

    def _frame(self) -> tuple[str, str]:
        """The prompt before and after the text (few-shot examples and chat template included)."""
        shots = [(self.template.replace(TEXT, text), self.label_words[self._labels.index(label)])
                 for text, label in self.examples]
        question = self.template.replace(TEXT, _SLOT)
        if self.chat:
            turns = [{"role": role, "content": content} for shot in shots
                     for role, content in zip(("user", "assistant"), shot)]
            body = self.tokenizer.apply_chat_template(turns + [{"role": "user", "content": question}],
                                                      tokenize=False, add_generation_prompt=True)
        else:
            body = "".join(prompt + word + "\n\n" for prompt, word in shots) + question
        if body.count(_SLOT) != 1:
            raise ValueError("the tokenizer's chat template does not keep the user message as written; "
                             "use chat=False and write the chat markup into the template")
        before, after = body.split(_SLOT)
        return before, after

    def _encode(self, texts: list[str]) -> list[_Prompt]:
        strings = [self.prompt(t) for t in texts]
        enc = self.tokenize(strings, add_special_tokens=False, return_offsets_mapping=True) if texts else None
        longest_label = max(len(r) for r in self.label_ids)
        start = len(self._before)
        out = []
        for i, text in enumerate(texts):
            ids = list(enc["input_ids"][i])
            offsets = np.asarray(enc["offset_mapping"][i], dtype=np.int64).reshape(-1, 2)
            if self._bos is not None:
                ids = [self._bos] + ids
                offsets = np.concatenate([np.zeros((1, 2), np.int64), offsets])
            n = len(ids) + longest_label - 1
            if n > self.max_length:
                raise ValueError(f"text {i}: its prompt is {n} tokens (label word included), more than "
                                 f"max_length={self.max_length}; shorten the text, the template or the examples, "
                                 "or pass max_length= (up to the model's context length)")
            end = start + len(text)
            lo, hi = np.maximum(offsets[:, 0], start), np.minimum(offsets[:, 1], end)
            inside = (hi > lo) & (offsets[:, 1] > offsets[:, 0])
            rel = np.where(inside[:, None], np.stack([lo - start, hi - start], axis=1), 0)
            out.append(_Prompt(ids=ids, offsets=rel))
        return out

    def _run(self, texts, layers: Sequence[int], batch_size: int | None):
        """Label log-likelihoods ``[n, K]`` and token states of ``layers``, in input order."""
        texts = as_text_list(texts)
        prompts = self._encode(texts)
        n, K = len(texts), len(self._labels)
        ll = np.zeros((n, K), dtype=np.float64)
        states: dict[int, list[TokenStates | None]] = {layer: [None] * n for layer in layers}
        spans = [segment(t).spans for t in texts] if layers else []
        single = all(len(r) == 1 for r in self.label_ids)
        step = batch_size or self.batch_size
        order = sorted(range(n), key=lambda i: len(prompts[i].ids), reverse=True)
        with torch.inference_mode():
            for first in range(0, n, step):
                idx = order[first:first + step]
                # each row: (text, token ids, [(position, target id, label)]); position p predicts token p + 1
                rows = []
                for i in idx:
                    ids, p = prompts[i].ids, len(prompts[i].ids)
                    if single:
                        rows.append((i, ids, [(p - 1, lab[0], k) for k, lab in enumerate(self.label_ids)]))
                    else:
                        rows.extend((i, ids + lab[:-1], [(p - 1 + j, t, k) for j, t in enumerate(lab)])
                                    for k, lab in enumerate(self.label_ids))
                logprobs, hidden, positions = self._pass([r[1] for r in rows], [r[2] for r in rows], layers)
                where = {p: c for c, p in enumerate(positions)}
                r_idx, c_idx, t_idx, slots = [], [], [], []
                for r, (i, _, targets) in enumerate(rows):
                    for p, t, k in targets:
                        r_idx.append(r)
                        c_idx.append(where[p])
                        t_idx.append(t)
                        slots.append((i, k))
                values = logprobs[r_idx, c_idx, t_idx].double().cpu().numpy()
                np.add.at(ll, tuple(np.array(slots).T), values)
                first_row = {}
                for r, (i, _, _) in enumerate(rows):
                    first_row.setdefault(i, r)
                for layer in layers:
                    for i, r in first_row.items():
                        p = len(prompts[i].ids)
                        states[layer][i] = TokenStates(
                            hidden=hidden[layer][r, :p].float().cpu().numpy(), offsets=prompts[i].offsets,
                            word_ids=align_tokens(prompts[i].offsets, spans[i]),
                        )
        return ll, states

    def _pass(self, rows: list[list[int]], targets, layers):
        """One forward pass over right-padded rows: log-softmax at the asked positions only."""
        ids, mask = pad_rows(rows, self._pad_id, "right", self.device)
        positions = sorted({p for row in targets for p, _, _ in row})  # few: rows are length-sorted
        out, logits = logits_at(self.model, ids, mask, positions, output_hidden_states=bool(layers))
        return torch.log_softmax(logits.float(), dim=-1), out.hidden_states, positions


def _check_labels(labels) -> list[str]:
    if isinstance(labels, str):
        raise TypeError(f"labels must be a list of class names, got the string {labels!r}")
    labels = [str(lab) for lab in labels]
    if len(labels) < 2:
        raise ValueError(f"a classifier needs at least two labels, got {labels}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct, got {labels}")
    return labels


def _check_template(template: str) -> str:
    if not isinstance(template, str):
        raise TypeError(f"template must be a string, got {type(template).__name__}")
    count = template.count(TEXT)
    if count != 1:
        problem = "has no {text} placeholder" if count == 0 else f"has {count} {{text}} placeholders"
        raise ValueError(f"the template {template!r} {problem}; write {{text}} once where the text goes, "
                         "e.g. 'Review: {text}\\nSentiment:'")
    return template


def _check_examples(examples, labels: list[str]) -> list[tuple[str, str]]:
    out = []
    for n, ex in enumerate(examples or ()):
        if isinstance(ex, dict) and set(ex) == {"text", "label"}:
            ex = (ex["text"], ex["label"])
        if isinstance(ex, str) or not isinstance(ex, (list, tuple)) or len(ex) != 2:
            raise ValueError(f"few-shot example {n} is {ex!r}; give (text, label) pairs or "
                             "{text: ..., label: ...} mappings")
        text, label = ex
        if not isinstance(text, str) or str(label) not in labels:
            raise ValueError(f"few-shot example {n} ({text!r}, {label!r}) needs a string text and a label "
                             f"among {labels}")
        out.append((text, str(label)))
    return out


def _default_settings() -> tuple:
    """What ``prompt:<model>`` builds: the default labels, label words and template, no examples, no chat."""
    labels = PromptClassifierConfig().labels
    return labels, [" " + lab for lab in labels], PromptClassifierConfig.template, [], False


def _bos_to_prepend(tokenizer) -> int | None:
    """The BOS id when the tokenizer puts one first on its own (``add_special_tokens=True``), else ``None``."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return None
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    return int(bos) if with_special and with_special[0] == bos and (not plain or plain[0] != bos) else None
