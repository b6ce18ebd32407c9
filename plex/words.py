"""One segmenter for every method: words and punctuation with character spans.

Words are the unit of attribution for every explainer, teacher or student, so that methods compare
position by position. A repeated word is two positions. Subword tokens map to words through the fast
tokenizer's offset mapping (:func:`align_tokens`), never by string matching.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# A word is a run of letters/digits, optionally joined by an apostrophe or hyphen to the next run
# ("don't", "cheap-looking", "21st"); every other non-space character (punctuation, symbols, emoji)
# is a position of its own. ``\w`` is Unicode-aware, so accented letters stay inside words.
WORD_PATTERN = re.compile(r"\w+(?:['\u2019\-]\w+)*|[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class Segmentation:
    text: str
    words: list[str]
    spans: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.words)


def segment(text: str) -> Segmentation:
    """Split ``text`` into words and punctuation with ``[start, end)`` character spans.

    Empty and whitespace-only texts give zero words.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}; convert your inputs with str()")
    words, spans = [], []
    for m in WORD_PATTERN.finditer(text):
        words.append(m.group())
        spans.append((m.start(), m.end()))
    return Segmentation(text, words, spans)


def join_kept(text: str, spans: list[tuple[int, int]], keep: np.ndarray, mask_token: str = "") -> str:
    """Rebuild ``text`` keeping only the words where ``keep`` is true.

    The whitespace and any characters between words are preserved, so the result reads like the
    original with words removed (or replaced by ``mask_token``). Runs of spaces left behind by a
    removal are collapsed.
    """
    pieces, cursor = [], 0
    for (start, end), k in zip(spans, keep):
        pieces.append(text[cursor:start])
        pieces.append(text[start:end] if k else mask_token)
        cursor = end
    pieces.append(text[cursor:])
    return re.sub(r"[ \t]{2,}", " ", "".join(pieces)).strip()


def align_tokens(offsets: list[tuple[int, int]] | np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """Map each subword token to the word it belongs to.

    Args:
        offsets: ``(start, end)`` character offsets of each token, as returned by a fast tokenizer
            with ``return_offsets_mapping=True``. Special and padding tokens have ``(0, 0)``.
        spans: the word spans from :func:`segment`.

    Returns:
        ``int64`` array with one entry per token: the index of the word the token overlaps most,
        or ``-1`` for special tokens and tokens outside every word (whitespace).
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    if not spans or not len(offsets):
        return np.full(len(offsets), -1, dtype=np.int64)
    bounds = np.asarray(spans, dtype=np.int64)
    # overlap[t, w]: characters token t shares with word w (one matrix, no Python loop over tokens)
    overlap = (np.minimum(bounds[None, :, 1], offsets[:, None, 1])
               - np.maximum(bounds[None, :, 0], offsets[:, None, 0]))
    best = overlap.argmax(axis=1)
    has_word = (overlap[np.arange(len(offsets)), best] > 0) & (offsets[:, 1] > offsets[:, 0])
    return np.where(has_word, best, -1).astype(np.int64)
