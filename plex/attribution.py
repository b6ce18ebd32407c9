"""The one result type every explainer returns: word attributions for one text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Attribution:
    """Word-level attribution of one text for one target class.

    Attributes:
        text: the input text, unchanged.
        words: the words and punctuation marks of ``text`` (see :func:`plex.words.segment`).
        spans: ``(start, end)`` character offsets of each word into ``text``.
        scores: importance of each word for ``target``; shape ``[n_words]``. Positive values
            support the target class, negative values speak against it.
        target: index of the explained class.
        method: name of the explainer that produced the scores (``"lime"``, ``"shap"``, ...).
        meta: anything else the explainer reports (probabilities, all-class scores, settings).
    """

    text: str
    words: list[str]
    spans: list[tuple[int, int]]
    scores: np.ndarray
    target: int
    method: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        self.spans = [(int(s), int(e)) for s, e in self.spans]
        if not (len(self.words) == len(self.spans) == len(self.scores)):
            raise ValueError(
                f"words ({len(self.words)}), spans ({len(self.spans)}) and scores "
                f"({len(self.scores)}) must have one entry per word"
            )

    def __len__(self) -> int:
        return len(self.words)

    @property
    def label(self) -> str | None:
        """Name of the target class when the explainer knew the classifier's labels."""
        labels = self.meta.get("labels")
        return str(labels[self.target]) if labels is not None and 0 <= self.target < len(labels) else None

    def top(self, k: int = 3) -> list[tuple[int, str, float]]:
        """The ``k`` words with the highest score, as ``(position, word, score)``."""
        order = np.argsort(-self.scores, kind="stable")[:k]
        return [(int(i), self.words[i], float(self.scores[i])) for i in order]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (numpy arrays become lists)."""
        return {
            "text": self.text,
            "words": list(self.words),
            "spans": [list(s) for s in self.spans],
            "scores": self.scores.tolist(),
            "target": self.target,
            "method": self.method,
            "meta": _jsonable(self.meta),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attribution:
        return cls(
            text=d["text"],
            words=list(d["words"]),
            spans=[tuple(s) for s in d["spans"]],
            scores=np.asarray(d["scores"], dtype=np.float64),
            target=int(d["target"]),
            method=d["method"],
            meta=dict(d.get("meta", {})),
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
