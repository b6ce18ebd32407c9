"""Small input edits for stability: swap one word for a close neighbour that keeps the prediction.

Neighbours come from the static input embeddings of the packaged MiniLM (whole-word vocabulary
entries only), so no extra download is needed. The edited text has the same words at the same
positions except one, so top-k sets can be compared position by position.
"""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass

import numpy as np

from plex.classifiers.base import Classifier
from plex.words import segment

logger = logging.getLogger(__name__)

_ALPHA = re.compile(r"^[a-z]{3,}$")


@dataclass
class Edit:
    text: str
    position: int
    old: str
    new: str


class NeighbourIndex:
    """Nearest whole-word neighbours by cosine of an encoder's input embeddings."""

    def __init__(self, encoder: str = "minilm") -> None:
        from plex.classifiers.hf import HFEncoder

        enc = HFEncoder.from_pretrained(encoder, device="cpu")
        vocab = enc.tokenizer.get_vocab()
        words = sorted((w for w in vocab if _ALPHA.match(w)), key=vocab.get)
        matrix = enc.model.get_input_embeddings().weight.detach().cpu().numpy()[[vocab[w] for w in words]]
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}
        self.vectors = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)

    def neighbours(self, word: str, k: int = 5) -> list[str]:
        i = self.index.get(word.lower())
        if i is None:
            return []
        sims = self.vectors @ self.vectors[i]
        order = np.argsort(-sims)
        return [self.words[j] for j in order[1 : k + 1] if self.words[j] != word.lower()]


def one_word_edits(classifier: Classifier, texts: list[str], index: NeighbourIndex, seed: int = 0,
                   candidates: int = 5) -> list[Edit | None]:
    """For each text, one word swapped for a neighbour such that the predicted class stays the same.

    Positions are tried in a per-text seeded random order; ``None`` where no edit keeps the label.
    """
    predicted = classifier.predict(texts)
    options: list[list[Edit]] = []
    for text in texts:
        seg = segment(text)
        rng = np.random.default_rng([seed, zlib.crc32(text.encode())])
        found = []
        for pos in rng.permutation(len(seg)):
            word = seg.words[pos]
            if not _ALPHA.match(word.lower()):
                continue
            for new in index.neighbours(word, candidates):
                s, e = seg.spans[pos]
                new_word = new.capitalize() if word[0].isupper() else new
                found.append(Edit(text[:s] + new_word + text[e:], int(pos), word, new_word))
            if len(found) >= 3 * candidates:
                break
        options.append(found)
    flat = [edit.text for found in options for edit in found]
    keeps = classifier.predict(flat) if flat else np.zeros(0, dtype=int)
    result, cursor = [], 0
    for found, label in zip(options, predicted):
        chosen = None
        for j, edit in enumerate(found):
            if keeps[cursor + j] == label:
                chosen = edit
                break
        cursor += len(found)
        result.append(chosen)
    logger.info("one-word edits keeping the prediction: %d of %d texts", sum(e is not None for e in result), len(texts))
    return result
