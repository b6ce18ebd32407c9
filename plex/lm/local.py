"""A local ``transformers`` causal LM: batched generation, next-token lists and text scores."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from plex.classifiers.hf import ModelHolder, logits_at, pad_rows
from plex.lm.base import LanguageModel, Messages, cut_at_stop

logger = logging.getLogger(__name__)

PROGRESS_MIN_BATCHES = 32  # a bar only for long calls; LIME-LLM makes many short ones



def _first(token_id) -> int | None:
    if isinstance(token_id, (list, tuple)):
        return int(token_id[0]) if token_id else None
    return None if token_id is None else int(token_id)


class _StopStrings:
    """Stopping criterion: a row is done once its new text holds a stop string."""

    def __init__(self, tokenizer, stop: Sequence[str], prompt_len: int) -> None:
        self.tokenizer, self.stop, self.prompt_len = tokenizer, tuple(stop), prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop) for t in texts], dtype=torch.bool,
                            device=input_ids.device)


class LocalLM(ModelHolder, LanguageModel):
    """A ``transformers`` causal LM on this machine (GPU when present).

    Texts are tokenized once, sorted by length and run in batches under ``inference_mode``:
    right-padded with an attention mask for scoring, left-padded for generation. ``generate``
    applies the tokenizer's chat template when it has one (``add_generation_prompt=True``) and
    plain ``system\\n\\nuser`` text otherwise; ``next_tokens`` and ``log_likelihood`` read raw text.

    Args:
        model: a ``PreTrainedModel`` with a causal LM head.
        tokenizer: its tokenizer.
        source: where the model came from (folder, hub name or GGUF file), recorded by ``identity``.
        device: ``"cpu"``, ``"cuda"``, ...; default: GPU when present.
        batch_size: texts per forward pass (prompts per ``generate`` batch).
        max_length: token limit; defaults to the smaller of the tokenizer's and the model's limit.
            Longer inputs are truncated with a warning: scored texts lose their tail, prefixes and
            prompts their head.
        seed: default seed for sampling (``temperature > 0``).
        bos_token_id: token that scoring and plain prompts are conditioned on; ``"auto"`` takes the
            tokenizer's BOS, ``None`` uses none (the first token of a text is then context only).
        cache_size: entries in the instance's result cache.
    """

    def __init__(self, model, tokenizer, source: str | None = None, device: str | torch.device | None = None,
                 batch_size: int = 16, max_length: int | None = None, *, seed: int = 0,
                 bos_token_id: int | None | Literal["auto"] = "auto", cache_size: int = 100_000) -> None:
        super().__init__(cache_size=cache_size)
        self._hold(model, tokenizer, source, batch_size, device)
        limits = [getattr(model.config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
        self.max_length = max_length or min(int(x) for x in limits + [1 << 20] if x and x < 1_000_000)
        self.default_seed = seed
        gen = getattr(model, "generation_config", None)
        self.bos_token_id = _first(tokenizer.bos_token_id) if bos_token_id == "auto" else bos_token_id
        eos = getattr(gen, "eos_token_id", None)
        self.eos_token_ids = ([int(e) for e in eos] if isinstance(eos, (list, tuple)) else
                              [int(eos)] if eos is not None else
                              [int(tokenizer.eos_token_id)] if tokenizer.eos_token_id is not None else [])
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad) if pad is not None else (self.eos_token_ids or [0])[0]

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, gguf_file: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                        batch_size: int = 16, revision: str | None = None, trust_remote_code: bool = False,
                        **kwargs) -> LocalLM:
        """Load from an embedded name (``smollm2``), a folder, a ``.gguf`` file or a hub name.

        ``gguf_file`` names a GGUF file inside the folder (GGUF weights are dequantized to
        float32). ``dtype`` (``"bfloat16"``, ``torch.float16``...) defaults to the checkpoint's.
        Other keyword arguments (``max_length``, ``seed``, ``bos_token_id``, ``cache_size``) go to
        the constructor.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from plex.assets import resolve_model

        path = resolve_model(name_or_path)
        if gguf_file is None and str(path).endswith(".gguf") and Path(path).is_file():
            path, gguf_file = str(Path(path).parent), Path(path).name
        load = {"revision": revision, "trust_remote_code": trust_remote_code}
        if gguf_file is not None:
            load["gguf_file"] = gguf_file
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, **load)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or "auto", **load)
        except (OSError, ValueError) as err:
            raise OSError(
                f"could not load a causal language model from {str(name_or_path)!r}: give an embedded "
                "name (smollm2), a folder written by save_pretrained, a .gguf file (or folder plus "
                f"gguf_file=), or a hub name reachable from this machine ({err})"
            ) from err
        local = Path(path).expanduser()
        source = str(local.resolve()) if local.is_dir() else str(name_or_path)
        if gguf_file is not None:
            source = str(Path(source) / gguf_file)
        return cls(model, tokenizer, source=source, device=device, batch_size=batch_size, **kwargs)

    def identity(self) -> dict[str, Any]:
        return {"kind": "local", "path": self.source, "weights_sha256": self.weights_sha256,
                "bos_token_id": self.bos_token_id}

    def __repr__(self) -> str:
        return f"LocalLM({self.source!r}, device={str(self.device)!r})"

    def format_prompt(self, messages: Messages) -> str:
        """The text ``generate`` feeds the model: the chat template, or plain joined contents."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages)

    def encode(self, texts: list[str], keep: str = "head", limit: int | None = None) -> list[list[int]]:
        """Token ids of raw texts, BOS first when the tokenizer has one, cut to ``limit`` tokens.

        ``keep="head"`` keeps the first tokens (scoring), ``"tail"`` the last ones (prefixes,
        prompts: what comes next depends on the end).
        """
        limit = limit or self.max_length
        bos = [self.bos_token_id] if self.bos_token_id is not None else []
        ids = self.tokenize(texts, add_special_tokens=False)["input_ids"] if texts else []
        out, cut = [], 0
        for row in ids:
            row = bos + list(row)
            if len(row) > limit:
                cut += 1
                row = row[:limit] if keep == "head" else bos + row[len(row) - limit + len(bos):]
            out.append(row)
        if cut:
            logger.warning("%d of %d texts are longer than %d tokens and were truncated (kept their %s); "
                           "pass max_length= to change the limit", cut, len(texts), limit, keep)
        return out

    def _batches(self, ids: list[list[int]], desc: str, batch_size: int | None = None) -> Iterator[list[int]]:
        """Indices of ``ids`` in length-sorted batches (longest first)."""
        step = batch_size or self.batch_size
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        starts = range(0, len(order), step)
        for start in tqdm(starts, desc=desc, leave=False, disable=len(starts) < PROGRESS_MIN_BATCHES):
            yield order[start:start + step]

    def _pad(self, rows: list[list[int]], side: str) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_rows(rows, self.pad_token_id, side, self.device)

    def _logits(self, rows: list[list[int]], positions: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of right-padded rows; with ``positions``, only there: ``[batch, len(positions), vocab]``."""
        ids, mask = self._pad(rows, "right")
        if positions is None:
            return self.model(input_ids=ids, attention_mask=mask).logits, ids
        return logits_at(self.model, ids, mask, positions)[1], ids

    def _log_likelihood(self, texts: list[str]) -> list[tuple[float, int]]:
        ids = self.encode(texts, keep="head")
        out: list[tuple[float, int]] = [(0.0, 0)] * len(texts)
        scorable = [i for i in range(len(ids)) if len(ids[i]) >= 2]
        with torch.inference_mode():
            for batch in self._batches([ids[i] for i in scorable], "log-likelihood"):
                rows = [ids[scorable[b]] for b in batch]
                logits, tokens = self._logits(rows)
                logits = logits[:, :-1].float()
                target = tokens[:, 1:]
                token_lp = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
                lengths = torch.tensor([len(r) - 1 for r in rows], device=token_lp.device)
                valid = torch.arange(token_lp.shape[1], device=token_lp.device)[None, :] < lengths[:, None]
                sums = (token_lp * valid).sum(dim=1).double().cpu().tolist()
                for b, s, n in zip(batch, sums, lengths.tolist()):
                    out[scorable[b]] = (float(s), int(n))
        return out

    def _next_tokens(self, prefixes: list[str], k: int) -> list[list[tuple[str, float]]]:
        ids = self.encode(prefixes, keep="tail")
        empty = [i for i, row in enumerate(ids) if not row]
        if empty:
            raise ValueError(f"prefix {empty[0]} is empty and the tokenizer has no BOS token to condition on; "
                             "pass a non-empty prefix")
        out: list[list[tuple[str, float]]] = [[] for _ in prefixes]
        k = min(k, int(self.model.config.vocab_size))
        with torch.inference_mode():
            for batch in self._batches(ids, "next tokens"):
                rows = [ids[i] for i in batch]
                positions = sorted({len(r) - 1 for r in rows})  # few: batches are length-sorted
                logits, _ = self._logits(rows, positions)
                last = torch.tensor([positions.index(len(r) - 1) for r in rows], device=logits.device)
                final = logits[torch.arange(len(rows), device=logits.device), last].float()
                top = torch.log_softmax(final, dim=-1).topk(k, dim=-1)
                for i, values, indices in zip(batch, top.values.cpu().tolist(), top.indices.cpu().tolist()):
                    out[i] = [(self.tokenizer.decode([t]), float(v)) for t, v in zip(indices, values)]
        return out

    def _generate(self, prompts: list[Messages], max_new_tokens: int, temperature: float,
                  stop: tuple[str, ...], seed: int | None) -> list[str]:
        from transformers import GenerationConfig, StoppingCriteriaList

        texts = [self.format_prompt(m) for m in prompts]
        templated = bool(getattr(self.tokenizer, "chat_template", None))
        limit = max(1, self.max_length - max_new_tokens)
        if templated:  # the template writes its own special tokens
            ids = self.tokenize(texts, add_special_tokens=False)["input_ids"]
            cut = sum(len(r) > limit for r in ids)
            if cut:
                logger.warning("%d of %d prompts are longer than %d tokens and lost their head; "
                               "pass max_length= to change the limit", cut, len(texts), limit)
            ids = [list(r)[-limit:] for r in ids]
        else:
            ids = self.encode(texts, keep="tail", limit=limit)
        sampling = temperature > 0
        config = GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=sampling, pad_token_id=self.pad_token_id,
            eos_token_id=self.eos_token_ids or None, bos_token_id=self.bos_token_id,
            **({"temperature": temperature, "top_k": 0, "top_p": 1.0} if sampling else {}),
        )
        out = [""] * len(texts)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.inference_mode(), torch.random.fork_rng(devices=devices):
            if sampling:
                torch.manual_seed(seed if seed is not None else 0)
            for batch in self._batches(ids, "generate"):
                input_ids, mask = self._pad([ids[i] for i in batch], "left")
                stopper = [_StopStrings(self.tokenizer, stop, input_ids.shape[1])] if stop else []
                criteria = StoppingCriteriaList(stopper)
                new = self.model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config,
                                          stopping_criteria=criteria)[:, input_ids.shape[1]:]
                for i, text in zip(batch, self.tokenizer.batch_decode(new, skip_special_tokens=True)):
                    out[i] = cut_at_stop(text, stop)
        return out
