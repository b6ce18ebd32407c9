"""Sample weights for the perturbation teachers' surrogates: how close a perturbed text is to the original.

LIME weighs a sample by an exponential kernel on the cosine distance of its binary mask (inside the
``lime`` package). LIME-LLM replaces words instead of deleting them, so the mask says little about
how far the text moved; its hybrid kernel mixes a bag-of-words cosine (which words changed) with a
sentence-embedding cosine (how far the meaning moved).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


def bow_cosine(original: Sequence[str], perturbed: Sequence[Sequence[str]]) -> np.ndarray:
    """Cosine similarity of word-count vectors (lower-cased words) of ``original`` and each text."""
    base = Counter(w.lower() for w in original)
    base_norm = np.sqrt(sum(c * c for c in base.values()))
    out = np.zeros(len(perturbed))
    for i, words in enumerate(perturbed):
        counts = Counter(w.lower() for w in words)
        norm = np.sqrt(sum(c * c for c in counts.values()))
        if norm and base_norm:
            out[i] = sum(c * base.get(w, 0) for w, c in counts.items()) / (norm * base_norm)
    return out


class SentenceEncoder:
    """Sentence vectors as all-MiniLM-L6-v2 makes them: mean of the last layer's token states, L2-normalised.

    Args:
        model: an embedded name (``minilm``), a folder or hub name of a ``transformers`` encoder.
        device: where it runs (default: GPU when present).
    """

    def __init__(self, model: str = "minilm", device=None, batch_size: int = 64) -> None:
        from plex.classifiers.hf import HFEncoder

        self.name = model
        self.encoder = HFEncoder.from_pretrained(model, device=device, batch_size=batch_size)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``[n, hidden]`` unit vectors; an empty text gets the zero vector."""
        states = self.encoder.embed(list(texts), layer=-1)
        out = np.zeros((len(states), self.encoder.hidden_size), dtype=np.float64)
        for i, s in enumerate(states):
            if len(s.hidden):
                v = s.hidden.mean(axis=0)
                norm = np.linalg.norm(v)
                out[i] = v / norm if norm else v
        return out


def hybrid_kernel(original_words: Sequence[str], perturbed_words: Sequence[Sequence[str]],
                  original_vector: np.ndarray, perturbed_vectors: np.ndarray,
                  bow_weight: float = 0.5) -> np.ndarray:
    """LIME-LLM's weight: ``bow_weight * BoW cosine + (1 - bow_weight) * sentence cosine``, clipped at 0."""
    if not 0.0 <= bow_weight <= 1.0:
        raise ValueError(f"bow_weight must be in [0, 1], got {bow_weight!r}")
    bow = bow_cosine(original_words, perturbed_words)
    sentence = np.asarray(perturbed_vectors) @ np.asarray(original_vector)
    return np.clip(bow_weight * bow + (1.0 - bow_weight) * sentence, 0.0, None)
