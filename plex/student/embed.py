"""Contextual word vectors for the student: from the classifier itself, or from a separate encoder.

White box (a classifier with ``white_box = True``: an :class:`~plex.classifiers.hf.HFClassifier`, a
:class:`~plex.classifiers.prompt.PromptClassifier`): the hidden states of a chosen layer come from
the same forward pass that gives the prediction. Black box (any other classifier): a separate
encoder gives the states and the classifier gives the probabilities. Subword vectors are
mean-pooled per plex word through the tokenizer's offsets; the sentence vector is the first
(``[CLS]``) token's state, the mean over the text's tokens, or the last token's state (a causal
LM's prompt, whose last token predicts the label).

For training, the vectors of a labels dataset are computed once and cached beside the labels
(``<labels>/embeddings/<key>.safetensors``), keyed by encoder, weights, layer, pooling and rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plex.classifiers.base import Classifier, as_text_list
from plex.classifiers.hf import HFEncoder, TokenStates
from plex.words import segment

logger = logging.getLogger(__name__)

POOLINGS = ("auto", "cls", "mean", "last")


@dataclass
class WordVectors:
    """Vectors of one text: ``words [n_words, d]``, ``visible [n_words]`` (read by the model,
    not cut by truncation) and ``sentence [d]``."""

    words: np.ndarray
    visible: np.ndarray
    sentence: np.ndarray


def pool_words(states: TokenStates, n_words: int, pooling: str = "cls") -> WordVectors:
    """Mean-pool token states per word; words with no token (truncated tail) get zeros.

    The sentence vector is the first token's state (``cls``), the mean over word tokens (``mean``)
    or the last token's state (``last``).
    """
    hidden = states.hidden.astype(np.float32, copy=False)
    ids = states.word_ids
    in_word = ids >= 0
    membership = (ids[None, :] == np.arange(n_words)[:, None]).astype(np.float32)  # [n_words, n_tokens]
    counts = membership.sum(axis=1)
    words = (membership @ hidden) / np.maximum(counts, 1.0)[:, None]
    if pooling == "last":
        sentence = hidden[-1]
    elif pooling == "cls" or not in_word.any():
        sentence = hidden[0]
    else:
        sentence = hidden[in_word].mean(axis=0)
    return WordVectors(words=words, visible=counts > 0, sentence=sentence.copy())


class Embedder:
    """Probabilities and word vectors in one call.

    Args:
        classifier: the classifier being explained.
        encoder: a separate encoder (an :class:`HFEncoder`, or a name/path to load one) for a
            classifier that is only a function; ``None`` uses the classifier itself (white box).
        layer: which hidden layer (``-1``: the last).
        pooling: sentence vector: ``cls`` (first token), ``mean`` (mean of word tokens), ``last``
            (last token) or ``auto`` (the source's ``sentence_pooling`` when it declares one, else
            ``cls`` when the tokenizer has a CLS token, else ``mean``).
    """

    def __init__(self, classifier: Classifier, encoder: HFEncoder | str | None = None, layer: int = -1,
                 pooling: str = "auto") -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if isinstance(encoder, (str, os.PathLike)):
            encoder = HFEncoder.from_pretrained(encoder)
        if encoder is None and not getattr(classifier, "white_box", False):
            raise ValueError(
                f"{type(classifier).__name__} gives no hidden states; pass a separate encoder "
                "(e.g. encoder='minilm') to embed its texts"
            )
        self.classifier = classifier
        self.source = encoder if encoder is not None else classifier  # model, tokenizer, forward, hidden_size
        self.white_box = encoder is None
        num_layers = getattr(self.source.model.config, "num_hidden_layers", None)
        if num_layers is not None and not -(num_layers + 1) <= layer <= num_layers:
            raise ValueError(f"layer {layer} does not exist: {self.source.source} has layers 0..{num_layers} "
                             f"(or -1..-{num_layers + 1} from the end)")
        self.layer = layer
        if pooling == "auto":
            pooling = (getattr(self.source, "sentence_pooling", None)
                       or ("cls" if getattr(self.source.tokenizer, "cls_token", None) else "mean"))
        self.pooling = pooling

    @property
    def dim(self) -> int:
        return self.source.hidden_size

    def identity(self) -> dict[str, Any]:
        """What determines the vectors: encoder path and weights, layer, pooling."""
        return {"encoder": self.source.source, "weights_sha256": self.source.weights_sha256,
                "white_box": self.white_box, "layer": self.layer, "pooling": self.pooling}

    def __call__(self, texts: str | Sequence[str], batch_size: int | None = None) -> tuple[np.ndarray, list[WordVectors]]:
        """Probabilities ``[n, n_labels]`` and one :class:`WordVectors` per text.

        White box: one forward pass of the classifier gives both.
        """
        texts = as_text_list(texts)
        probs, states = self.tokens(texts, batch_size=batch_size)
        return probs, [pool_words(st, len(segment(text)), self.pooling) for text, st in zip(texts, states)]

    def tokens(self, texts: str | Sequence[str], batch_size: int | None = None) -> tuple[np.ndarray, list[TokenStates]]:
        """Probabilities and the unpooled token states of :attr:`layer` (a branch student's input),
        from the same single forward pass in the white-box case."""
        texts = as_text_list(texts)
        out = self.source.forward(texts, layers=(self.layer,), batch_size=batch_size)
        probs = out.probs if self.white_box else self.classifier.predict_proba(texts)
        return probs, out.states[self.layer]


@dataclass
class EmbeddingTable:
    """Word vectors of a whole labels dataset, flat: text ``i`` owns rows ``offsets[i]:offsets[i+1]``."""

    words: np.ndarray
    visible: np.ndarray
    sentences: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.sentences)

    def text(self, i: int) -> WordVectors:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return WordVectors(self.words[a:b], self.visible[a:b], self.sentences[i])


@dataclass
class TokenTable:
    """Token states of a whole labels dataset, flat: text ``i`` owns token rows
    ``offsets[i]:offsets[i+1]`` and has ``n_words[i]`` plex words (``word_ids`` -1: no word)."""

    hidden: np.ndarray
    word_ids: np.ndarray
    offsets: np.ndarray
    n_words: np.ndarray

    def __len__(self) -> int:
        return len(self.n_words)

    def text(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.hidden[a:b], self.word_ids[a:b], int(self.n_words[i])


def texts_fingerprint(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(len(t.encode()).to_bytes(8, "little"))
        h.update(t.encode())
    return h.hexdigest()


def _cache_path(labels_dir: str | os.PathLike, texts: Sequence[str], embedder: Embedder, what: str | None = None
                ) -> tuple[Path, dict]:
    from plex.classifiers.portable import without_locations

    # The weights hash names the encoder wherever it lies now, so a moved labels folder keeps its cache;
    # a white-box classifier's identity adds what else shapes its states (a prompt classifier's prompt).
    identity = {k: v for k, v in embedder.identity().items() if k != "encoder"}
    if embedder.white_box:
        identity["classifier"] = without_locations(embedder.classifier.identity())
    identity.update(texts_sha256=texts_fingerprint(texts), rows=len(texts))
    if what is not None:
        identity["what"] = what
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return Path(labels_dir) / "embeddings" / f"{key}.safetensors", identity


def _save_atomic(path: Path, arrays: dict[str, np.ndarray], identity: dict) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    save_file(arrays, tmp, metadata={"identity": json.dumps(identity)})
    os.replace(tmp, path)


def cached_token_states(labels_dir: str | os.PathLike, texts: Sequence[str], embedder: Embedder,
                        chunk: int = 512, progress: bool = True) -> TokenTable:
    """The token states of ``texts`` at the embedder's layer (a branch student's input), cached like
    :func:`cached_embeddings` (stored in float16: about 0.8 kB per token for a 384-wide encoder)."""
    from safetensors.numpy import load_file
    from tqdm.auto import tqdm

    path, identity = _cache_path(labels_dir, texts, embedder, what="tokens")
    if path.is_file():
        logger.info("reusing cached token states %s", path)
        a = load_file(path)
        return TokenTable(a["hidden"], a["word_ids"], a["offsets"], a["n_words"])
    hidden, word_ids, n_words = [], [], []
    bar = tqdm(total=len(texts), desc="token states", unit="text", disable=not progress)
    for start in range(0, len(texts), chunk):
        part = list(texts[start : start + chunk])
        _, states = embedder.tokens(part)
        for text, st in zip(part, states):
            hidden.append(st.hidden.astype(np.float16))
            word_ids.append(st.word_ids.astype(np.int32))
            n_words.append(len(segment(text)))
        bar.update(len(part))
    bar.close()
    counts = np.array([len(h) for h in hidden], dtype=np.int64)
    table = TokenTable(
        hidden=np.concatenate(hidden) if hidden else np.zeros((0, embedder.dim), np.float16),
        word_ids=np.concatenate(word_ids) if word_ids else np.zeros(0, np.int32),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        n_words=np.array(n_words, dtype=np.int64),
    )
    _save_atomic(path, {"hidden": table.hidden, "word_ids": table.word_ids, "offsets": table.offsets,
                        "n_words": table.n_words}, identity)
    logger.info("cached token states of %d texts (%d tokens, dim %d) in %s", len(texts), len(table.hidden),
                embedder.dim, path)
    return table


def cached_embeddings(labels_dir: str | os.PathLike, texts: Sequence[str], embedder: Embedder,
                      chunk: int = 512, progress: bool = True) -> EmbeddingTable:
    """The word vectors of ``texts`` (the rows of a labels dataset), computed once and cached."""
    from safetensors.numpy import load_file
    from tqdm.auto import tqdm

    path, identity = _cache_path(labels_dir, texts, embedder)
    if path.is_file():
        logger.info("reusing cached embeddings %s", path)
        arrays = load_file(path)
        return EmbeddingTable(arrays["words"], arrays["visible"].astype(bool), arrays["sentences"], arrays["offsets"])
    words, visible, sentences = [], [], []
    bar = tqdm(total=len(texts), desc="embedding", unit="text", disable=not progress)
    for start in range(0, len(texts), chunk):
        _, vectors = embedder(list(texts[start : start + chunk]))
        for v in vectors:
            words.append(v.words)
            visible.append(v.visible)
            sentences.append(v.sentence)
        bar.update(len(vectors))
    bar.close()
    counts = np.array([len(w) for w in words], dtype=np.int64)
    table = EmbeddingTable(
        words=np.concatenate(words).astype(np.float32) if words else np.zeros((0, embedder.dim), np.float32),
        visible=np.concatenate(visible) if visible else np.zeros(0, bool),
        sentences=np.stack(sentences).astype(np.float32) if sentences else np.zeros((0, embedder.dim), np.float32),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
    )
    _save_atomic(path, {"words": table.words, "visible": table.visible.astype(np.uint8), "sentences": table.sentences,
                        "offsets": table.offsets}, identity)
    logger.info("cached embeddings of %d texts (%d words, dim %d) in %s", len(texts), len(table.words),
                embedder.dim, path)
    return table
