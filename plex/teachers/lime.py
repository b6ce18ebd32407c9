"""LIME as a teacher: a locally weighted linear surrogate fitted on texts with words removed.

The text is split with plex's segmenter (:func:`plex.words.segment`) and explained position by
position (``bow=False``), so a repeated word gets one score per occurrence. Scores are the
surrogate's coefficients on the probability of each target class.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from plex.classifiers.base import Classifier
from plex.teachers.base import Teacher, check_int, text_seed
from plex.teachers.surrogate import surrogate_meta
from plex.words import Segmentation

logger = logging.getLogger(__name__)

# lime's feature-selection methods (lime_base.LimeBase.feature_selection).
FEATURE_SELECTION = ("none", "auto", "forward_selection", "highest_weights", "lasso_path")


@functools.cache
def _recording_ridge() -> type:
    """lime's default local surrogate (``Ridge(alpha=1)``) that keeps the R^2 of every fit.

    lime fits one surrogate per label but stores only the last label's R^2 on the explanation;
    it calls ``score`` once per label, in label order, right after fitting. The class is built on
    first use so that importing plex's teachers does not import scikit-learn.
    """
    from sklearn.linear_model import Ridge

    class RecordingRidge(Ridge):
        def score(self, X, y, sample_weight=None):
            value = super().score(X, y, sample_weight=sample_weight)
            self.recorded_scores.append(float(value))
            self.recorded_unweighted.append(float(super().score(X, y)))
            return value

    return RecordingRidge


@dataclass
class Lime(Teacher):
    """LIME text explanations over plex words (``lime.lime_text.LimeTextExplainer``).

    Attributes:
        num_samples: perturbed texts per explained text (the first is the text itself), all
            scored by the classifier. lime's own default is 5000.
        seed: base seed; each text's random stream is derived from it and the text (see
            :func:`text_seed`), so the same seed gives the same scores whatever the order.
        kernel_width: width of lime's exponential kernel on the cosine distance (times 100)
            between a perturbation and the text; lime's default is 25.
        mask_string: what replaces a removed word. ``""`` deletes it (the surrounding whitespace
            stays). lime's own default for position-aware features is ``"UNKWORDZ"``.
        feature_selection: lime's feature selection. ``"none"`` keeps every word and is the
            fastest; ``"auto"``, ``"forward_selection"`` and ``"highest_weights"`` also keep every
            word (plex asks for as many features as there are words) at a higher cost;
            ``"lasso_path"`` may drop words, which then score 0.
    """

    name = "lime"
    deterministic = False  # seeded random perturbations: another seed, other scores
    surrogate = True
    keeps_samples = False

    num_samples: int = 1000
    seed: int = 0
    kernel_width: float = 25.0
    mask_string: str = ""
    feature_selection: str = "none"

    def __post_init__(self) -> None:
        self.num_samples = check_int(
            "num_samples", self.num_samples, 2,
            "the text itself plus at least one perturbation; LIME is usually run with 500-5000",
        )
        self.seed = check_int("seed", self.seed, 0)
        if isinstance(self.kernel_width, bool) or not isinstance(self.kernel_width, (int, float)) \
                or not math.isfinite(self.kernel_width) or self.kernel_width <= 0:
            raise ValueError(f"kernel_width must be a positive number, got {self.kernel_width!r}")
        self.kernel_width = float(self.kernel_width)
        if not isinstance(self.mask_string, str):
            raise ValueError(
                f"mask_string must be a string (\"\" deletes removed words), "
                f"got {self.mask_string!r}"
            )
        if self.feature_selection not in FEATURE_SELECTION:
            raise ValueError(
                f"feature_selection must be one of {', '.join(FEATURE_SELECTION)}, got "
                f"{self.feature_selection!r}; use \"none\" to score every word"
            )

    def attribute(
        self, classifier: Classifier, seg: Segmentation, targets: list[int]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Fit LIME's surrogate on ``num_samples`` perturbations of ``seg.text``.

        Returns:
            scores ``[len(targets), n_words]`` (surrogate coefficients; a word that no perturbation
            removed, or that feature selection dropped, scores 0) and meta with the surrogate's
            ``intercept``, ``score`` (weighted R^2, as lime reports it) and ``unweighted_score``
            (plain R^2) per target, ``num_samples``, and the standard ``surrogate`` entry (see
            :func:`~plex.teachers.surrogate.surrogate_meta`): lime's first sample is the text
            itself, so the fit has ``num_samples`` rows and one feature per word.
        """
        from lime.lime_text import LimeTextExplainer

        text, n_words = seg.text, len(seg)
        random_state = np.random.RandomState(text_seed(self.seed, text))
        explainer = LimeTextExplainer(
            kernel_width=self.kernel_width,
            class_names=classifier.labels,
            feature_selection=self.feature_selection,
            split_expression=_PlexWords(seg),
            bow=False,
            mask_string=self.mask_string,
            random_state=random_state,
        )
        surrogate = _recording_ridge()(alpha=1.0, fit_intercept=True, random_state=random_state)
        surrogate.recorded_scores, surrogate.recorded_unweighted = [], []
        logger.debug("lime: %d words, %d samples, targets %s", n_words, self.num_samples, targets)
        explanation = explainer.explain_instance(
            text,
            classifier.predict_proba,
            labels=targets,
            num_features=n_words,
            num_samples=self.num_samples,
            model_regressor=surrogate,
        )
        _check_features(explanation.domain_mapper.indexed_string, seg)

        scores = np.zeros((len(targets), n_words), dtype=np.float64)
        for row, label in enumerate(targets):
            for feature, weight in explanation.local_exp[label]:
                scores[row, int(feature)] = float(weight)
        meta = {
            "intercept": [float(explanation.intercept[label]) for label in targets],
            "score": list(surrogate.recorded_scores),
            "unweighted_score": list(surrogate.recorded_unweighted),
            "num_samples": self.num_samples,
            "surrogate": surrogate_meta(surrogate.recorded_scores, surrogate.recorded_unweighted,
                                        n_samples=self.num_samples, n_features=n_words, targets=targets),
        }
        return scores, meta


class _PlexWords:
    """lime's ``split_expression``: the words of the text being explained, from plex's segmenter.

    lime calls it once per explained text with that text; the segmentation is already known.
    """

    def __init__(self, seg: Segmentation) -> None:
        self.seg = seg

    def __call__(self, text: str) -> list[str]:
        if text != self.seg.text:
            raise RuntimeError("lime asked to split a different text than the one being explained")
        return list(self.seg.words)


def _check_features(indexed, seg: Segmentation) -> None:
    """Make sure lime's feature ``j`` is plex word ``j``.

    With a callable ``split_expression`` and ``bow=False``, lime's ``IndexedString`` cuts the
    text into the tokens and the strings between them (``as_list``), and numbers as features the
    pieces that are tokens, in text order: feature ``j`` is the piece ``positions[j]``, starting
    at character ``string_start[positions[j]]``. Both words and start offsets must match plex's.
    """
    words = [str(w) for w in indexed.inverse_vocab]
    starts = [int(indexed.string_start[p]) for p in indexed.positions]
    expected_starts = [s for s, _ in seg.spans]
    if words != list(seg.words) or starts != expected_starts:
        raise RuntimeError(
            "lime's features do not line up with plex's words "
            f"({len(words)} features {words[:8]}... at {starts[:8]}..., "
            f"{len(seg.words)} words {seg.words[:8]}... at {expected_starts[:8]}...); "
            "lime split the text differently from plex (a NUL character in the text, or a lime "
            "version that segments differently)"
        )
