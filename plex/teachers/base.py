"""What every teacher shares: segmentation, targets, probabilities and the Attribution it returns.

A teacher implements :meth:`Teacher.attribute`, which scores the words of one segmented text for
a list of target classes. Everything else (segmentation, the classifier's prediction, choosing the
target, empty texts, truncation, timing) happens here once.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from plex.attribution import Attribution
from plex.batching import Batcher
from plex.classifiers.base import Classifier, as_text_list
from plex.words import Segmentation, segment

logger = logging.getLogger(__name__)

Target = int | Sequence[int] | None


@dataclasses.dataclass
class Teacher(ABC):
    """Base class of the perturbation and gradient explainers.

    Subclasses are dataclasses whose fields are their settings; :meth:`config` records them.

    Capabilities, declared on each class (class attributes, not settings):

    Attributes:
        deterministic: the scores are a function of the text and the settings alone, with no
            random stream: the same text gives the same scores twice and whatever the seed (a
            teacher may have none; SHAP's seed only breaks exact ties, see
            :class:`~plex.teachers.shap.Shap`). ``False`` for the seeded random samplers (LIME,
            LIME-LLM, gSMILE), whose scores change with their seed.
        surrogate: fits a local weighted linear surrogate and records its fit in
            ``meta["surrogate"]`` (see :meth:`fidelity`).
        keeps_samples: records the perturbed texts it scored in ``meta["samples"]``.
        batches_classifier_calls: reaches the classifier only through ``predict_proba``, so
            ``plex label`` may give it a shared :class:`~plex.classifiers.batching.BatchingClassifier`
            that runs each distinct perturbed text once (``False`` for gradients, which run the model themselves).
        concurrent_texts: several texts may be explained at once, one thread each, sharing that
            classifier and the models :meth:`with_batcher` routes through the same batcher (``False``
            for gradients, which hold the model themselves).
    """

    name = "teacher"
    deterministic: ClassVar[bool] = False
    surrogate: ClassVar[bool] = False
    keeps_samples: ClassVar[bool] = False
    batches_classifier_calls: ClassVar[bool] = True
    concurrent_texts: ClassVar[bool] = True

    def config(self) -> dict[str, Any]:
        """The settings that determine this teacher's output, recorded with every label."""
        return {"name": self.name, **dataclasses.asdict(self)}

    @abstractmethod
    def attribute(
        self, classifier: Classifier, seg: Segmentation, targets: list[int]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Scores ``[len(targets), n_words]`` for one non-empty text, and extra metadata."""

    def with_batcher(self, batcher: Batcher) -> Teacher:
        """This teacher with the models it holds itself (language models, encoders) routed through
        ``batcher``, ready to explain several texts at once (see :mod:`plex.batching`).

        The models are loaded here, before any thread starts; the copy shares them with this teacher
        but calls them through the batcher, and its settings (:meth:`config`) are this teacher's. A
        teacher that holds no model returns itself.
        """
        return self

    def fidelity(self, attribution: Attribution) -> dict[str, float] | None:
        """How well this teacher's local surrogate fits, for the attribution's own target.

        The figures of :func:`plex.evaluate.fidelity.surrogate_fidelity` (``r2``, ``weighted_r2``,
        ``adjusted_r2`` from the weighted R², ``exact_fit``) from ``attribution.meta["surrogate"]``,
        whose per-target lists are indexed by ``attribution.target`` (so an explanation made with
        ``all_classes=True`` or for a fixed target is read correctly). ``None`` for a teacher without
        a surrogate, or for an empty text.
        """
        if not self.surrogate:
            return None
        from plex.evaluate.fidelity import attribution_fidelity

        return attribution_fidelity(attribution)

    def explain(
        self,
        classifier: Classifier,
        texts: str | Sequence[str],
        target: Target = None,
        all_classes: bool = False,
    ) -> list[Attribution]:
        """Explain each text for ``target``.

        Args:
            classifier: a :class:`plex.Classifier` (use :class:`plex.CallableClassifier` to wrap a
                plain function).
            texts: one text or a list of texts.
            target: ``None`` explains the predicted label; an int explains that class for every
                text; a list gives one class per text.
            all_classes: also score every class; the ``[n_labels, n_words]`` matrix is in
                ``meta["all_scores"]`` (row ``target`` equals ``scores``).
        """
        if not isinstance(classifier, Classifier):
            raise TypeError(
                f"expected a plex classifier, got {type(classifier).__name__}; wrap a function with "
                "plex.CallableClassifier(fn, labels=[...]) or load a model with plex.load_classifier"
            )
        texts = as_text_list(texts)
        fixed = None if target is None else resolve_targets(  # a wrong target fails before the work
            target, np.zeros((len(texts), classifier.num_labels)), classifier.labels)
        # With every class scored the attribution does not depend on the target, so the texts' own
        # probabilities are asked for after it. A teacher scores the text itself among its perturbations
        # (LIME's first sample, SHAP's unmasked input, occlusion's base), so behind a batching classifier
        # that remembers (plex label) they are known by then and the text costs no round of its own.
        if all_classes:
            every = list(range(classifier.num_labels))
            scored = [self._score(classifier, text, every) for text in texts]
        probs = classifier.predict_proba(texts)
        targets = fixed if fixed is not None else resolve_targets(None, probs, classifier.labels)
        if not all_classes:
            scored = [self._score(classifier, text, [t]) for text, t in zip(texts, targets)]
        return [self._attribution(classifier, text, p, t, part, all_classes)
                for text, p, t, part in zip(texts, probs, targets, scored)]

    def _score(self, classifier: Classifier, text: str, wanted: list[int]) -> tuple:
        """The text's words scored for the classes ``wanted``: ``(segmentation, scores, meta, seconds)``."""
        seg = segment(text)
        start = time.perf_counter()
        if len(seg) == 0:
            scores, meta = np.zeros((len(wanted), 0)), {}
        else:
            scores, meta = self.attribute(classifier, seg, wanted)
            scores = np.asarray(scores, dtype=np.float64).reshape(len(wanted), len(seg))
        return seg, scores, meta, time.perf_counter() - start

    def _attribution(self, classifier: Classifier, text: str, probs, target: int, scored: tuple,
                     all_classes: bool) -> Attribution:
        """The attribution of ``text`` for ``target`` from :meth:`_score`'s result (every class when
        ``all_classes``, else ``target`` alone)."""
        seg, scores, meta, seconds = scored
        meta.update(
            probs=np.asarray(probs, dtype=np.float64),
            labels=classifier.labels,
            visible_words=classifier.visible_words(seg.spans, text),
            seconds=seconds,
        )
        if all_classes:
            meta["all_scores"] = scores
        return Attribution(text=text, words=seg.words, spans=seg.spans, scores=scores[target if all_classes else 0],
                           target=target, method=self.name, meta=meta)


def settings_with_models(teacher: Teacher) -> dict[str, Any]:
    """A teacher's settings for :meth:`Teacher.config` when some may be model objects.

    Plain values are kept; an object (a :class:`plex.lm.LanguageModel`) is recorded by its
    ``identity()``; the ``resources`` cache is not a setting and is left out.
    """
    out: dict[str, Any] = {"name": teacher.name}
    for f in dataclasses.fields(teacher):
        if f.name != "resources":
            value = getattr(teacher, f.name)
            out[f.name] = value if value is None or isinstance(value, (str, int, float)) else value.identity()
    return out


def lm_key(spec) -> str | tuple:
    """Where :func:`shared_lm` keeps the model ``spec`` names (or a model object given as a setting)."""
    return f"lm:{spec}" if isinstance(spec, str) else ("lm-object", id(spec))


LM_BATCH_SIZE = "lm-batch-size"
"""Key of ``resources`` holding the batch size that :func:`shared_lm` loads local language models with
(``plex label --lm-batch-size``)."""


def shared_lm(resources: dict, spec, who: str):
    """The language model ``spec`` names, loaded once into ``resources``; a model object is returned as
    is, unless ``resources`` holds a wrapper of it (see :meth:`Teacher.with_batcher`). A local model runs
    ``resources[LM_BATCH_SIZE]`` texts per forward pass when that is set."""
    key = lm_key(spec)
    if not isinstance(spec, str):
        return resources.get(key, spec)
    if key not in resources:
        from plex.lm import LocalLM, load_lm

        logger.info("%s: loading language model %s", who, spec)
        model = load_lm(spec)
        if resources.get(LM_BATCH_SIZE) is not None and isinstance(model, LocalLM):
            model.batch_size = resources[LM_BATCH_SIZE]
        resources[key] = model
    return resources[key]


def resolve_targets(target: Target, probs: np.ndarray, labels: list[str]) -> list[int]:
    """One class index per text: the prediction, a fixed class, or the given list."""
    n, k = probs.shape
    if target is None:
        return [int(i) for i in probs.argmax(axis=1)] if n else []
    targets = [target] * n if isinstance(target, (int, np.integer)) else list(target)
    if len(targets) != n:
        raise ValueError(f"got {len(targets)} targets for {n} texts; pass one target per text")
    for t in targets:
        if not isinstance(t, (int, np.integer)) or not 0 <= t < k:
            raise ValueError(f"target {t!r} is not a class index in 0..{k - 1} (labels: {labels})")
    return [int(t) for t in targets]


def text_seed(seed: int, text: str) -> int:
    """A 32-bit seed derived from ``seed`` and the text itself.

    Each text gets its own random stream, so its explanation does not depend on which texts were
    explained before it (labelling can be resumed or reordered and gives the same scores).
    """
    state = np.random.SeedSequence([int(seed), zlib.crc32(text.encode("utf-8"))]).generate_state(1)
    return int(state[0])


def check_int(name: str, value: Any, minimum: int, why: str = "") -> int:
    """``value`` as an ``int`` if it is an integer >= ``minimum``, else a ValueError saying so."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        reason = f" ({why})" if why else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{reason}, got {value!r}")
    return int(value)
