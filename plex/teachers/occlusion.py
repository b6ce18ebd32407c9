"""Occlusion as a teacher: how much the target's probability drops when one word is left out.

Leave-one-out needs one classifier evaluation per word and no surrogate, so it works on any
classifier (a black box included) and is cheap enough to serve as the prior of other teachers
(:func:`occlusion_scores`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from plex.classifiers.base import Classifier
from plex.teachers.base import Teacher
from plex.words import Segmentation, join_kept

logger = logging.getLogger(__name__)


def occlusion_variants(seg: Segmentation, mask_token: str = "") -> list[str]:
    """The text with each word left out in turn (replaced by ``mask_token``), one per word."""
    n_words = len(seg)
    keep = ~np.eye(n_words, dtype=bool)
    return [join_kept(seg.text, seg.spans, keep[i], mask_token) for i in range(n_words)]


def occlusion_probs(
    classifier: Classifier, seg: Segmentation, mask_token: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of the text ``[n_labels]`` and of its leave-one-out variants ``[W, n_labels]``.

    The text and its ``W`` variants go to the classifier in one ``predict_proba`` call, which
    batches them.
    """
    probs = classifier.predict_proba([seg.text, *occlusion_variants(seg, mask_token)])
    return probs[0], probs[1:]


def occlusion_scores(
    classifier: Classifier, seg: Segmentation, targets: list[int], mask_token: str = ""
) -> np.ndarray:
    """Leave-one-out scores ``[len(targets), W]``: ``p_t(text) - p_t(text without word i)``.

    A word whose removal lowers the target's probability scores positive. One ``predict_proba``
    call of ``W + 1`` texts.
    """
    base, variants = occlusion_probs(classifier, seg, mask_token)
    return _drops(base, variants, targets)


def _drops(base: np.ndarray, variants: np.ndarray, targets: list[int]) -> np.ndarray:
    """``base[t] - variants[i, t]`` as ``[len(targets), W]`` float64."""
    targets = list(targets)
    return (base[targets][:, None] - variants[:, targets].T).astype(np.float64)


@dataclass
class Occlusion(Teacher):
    """Leave-one-out occlusion over plex words.

    Attributes:
        mask_token: what replaces the removed word. ``""`` deletes it (the surrounding whitespace
            is collapsed, as in :func:`plex.words.join_kept`).

    Deterministic: the same text always gets the same scores, so it has no seed.
    """

    name = "occlusion"
    deterministic = True
    surrogate = False
    keeps_samples = False

    mask_token: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.mask_token, str):
            raise ValueError(
                f"mask_token must be a string (\"\" deletes the word), got {self.mask_token!r}"
            )

    def attribute(
        self, classifier: Classifier, seg: Segmentation, targets: list[int]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Scores ``[len(targets), n_words]`` and meta with ``base_probability`` per target.

        ``base_probability`` is the target's probability of the text itself, scored in the same
        call as the variants.
        """
        logger.debug("occlusion: %d words, targets %s", len(seg), targets)
        base, variants = occlusion_probs(classifier, seg, self.mask_token)
        scores = _drops(base, variants, targets)
        return scores, {"base_probability": [float(base[t]) for t in targets]}
