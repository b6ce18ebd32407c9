"""SHAP as a teacher: Owen values of the class probabilities over plex words (Partition SHAP).

``shap.maskers.Text`` is given a tokenizer that returns plex's words with their character
offsets, so SHAP's features are exactly the words of :func:`plex.words.segment` (a repeated word
is two features). The values explain probabilities, on the same scale as LIME's.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plex.classifiers.base import Classifier
from plex.teachers.base import Teacher
from plex.teachers.base import check_int, text_seed
from plex.words import Segmentation, segment

logger = logging.getLogger(__name__)

# A mask token shap can look up in the tokenizer; see Shap._masker.
_PLACEHOLDER_MASK = "..."


@dataclass
class Shap(Teacher):
    """Partition SHAP (``shap.explainers.PartitionExplainer`` with ``shap.maskers.Text``).

    Attributes:
        max_evals: classifier evaluations per text (shap's default for the Partition explainer is
            500). Words that the budget does not reach share their group's credit.
        batch_size: masked texts handed to the classifier at once (it batches internally too).
        mask_token: what replaces a masked run of words. ``""`` deletes it; shap's own default for
            a tokenizer without a mask token is ``"..."``.
        collapse_mask_token: replace a run of consecutive masked words by one ``mask_token``
            (shap's behaviour for an explicit mask token) rather than one per word.
        seed: shap breaks ties between equally promising coalitions with ``np.random.randn()``;
            those draws come from a stream seeded from this and the text, one per explanation (and
            per thread, see ``_seeded_tie_breaks``), so results depend neither on the order of the
            texts nor on how many are explained at once.

    Deterministic: nothing is sampled. The partition tree comes from the words and the coalitions
    are expanded in order of their effect on the output; the seed only orders coalitions whose
    effects are exactly equal, which can change the scores only when such a tie meets the end of
    the ``max_evals`` budget (a classifier with flat, saturated outputs and repeated words).

    SHAP rebuilds each masked text from the words and the whitespace after them, with every run
    of whitespace collapsed to one space and the ends stripped; the classifier sees that form.
    """

    name = "shap"
    deterministic = True
    surrogate = False
    keeps_samples = False

    max_evals: int = 500
    batch_size: int = 64
    mask_token: str = ""
    collapse_mask_token: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        self.max_evals = check_int(
            "max_evals", self.max_evals, 4,
            "two evaluations go to the full and the fully masked text; shap's default is 500",
        )
        self.batch_size = check_int("batch_size", self.batch_size, 1)
        if not isinstance(self.mask_token, str):
            raise ValueError(
                f"mask_token must be a string (\"\" deletes masked words), got {self.mask_token!r}"
            )
        if not isinstance(self.collapse_mask_token, bool):
            raise ValueError(
                f"collapse_mask_token must be true or false, got {self.collapse_mask_token!r}"
            )
        self.seed = check_int("seed", self.seed, 0)

    def attribute(
        self, classifier: Classifier, seg: Segmentation, targets: list[int]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Owen values of each word for the probability of each target.

        Returns:
            scores ``[len(targets), n_words]`` and meta with the ``base_value`` (probability of
            the fully masked text) per target and ``num_evals``, the number of texts scored.
        """
        import shap

        text = seg.text
        masker = self._masker()
        _check_features(masker, seg)
        model = _CountingModel(classifier)
        if len(seg) == 1:
            # shap's text clustering needs two tokens; one word's Shapley value is exact anyway.
            values, base = _single_word_values(masker, model, text)
        else:
            explainer = shap.explainers.PartitionExplainer(
                model, masker, output_names=classifier.labels
            )
            logger.debug("shap: %d words, max_evals %d, targets %s",
                         len(seg), self.max_evals, targets)
            with _seeded_tie_breaks(text_seed(self.seed, text)), _dense_mask_matrices():
                explanation = explainer(
                    [text], max_evals=self.max_evals, batch_size=self.batch_size, silent=True
                )
            values = np.asarray(explanation.values[0], dtype=np.float64)
            base = np.asarray(explanation.base_values[0], dtype=np.float64)
        if values.shape != (len(seg), classifier.num_labels):
            raise RuntimeError(
                f"shap returned values of shape {values.shape} for {len(seg)} words and "
                f"{classifier.num_labels} labels; this shap version reports values differently"
            )

        scores = values[:, targets].T.copy()
        meta = {"base_value": [float(base[t]) for t in targets], "num_evals": model.num_texts}
        return scores, meta

    def _masker(self):
        """A ``shap.maskers.Text`` whose features are plex words.

        The masker looks up the id of its mask token by tokenizing it
        (``tokenizer(mask_token)["input_ids"][0]``), which fails for a mask without words such as
        ``""``. That id is only used when the masker outputs token ids; masked strings are built
        from ``masker.mask_token``. Such masks are therefore set after construction.
        """
        import shap

        usable = self.mask_token if segment(self.mask_token).words else _PLACEHOLDER_MASK
        masker = shap.maskers.Text(_PlexTokenizer(), mask_token=usable,
                                   collapse_mask_token=self.collapse_mask_token)
        masker.mask_token = self.mask_token
        return masker


class _PlexTokenizer:
    """The minimal tokenizer ``shap.maskers.Text`` needs: plex words and their offsets.

    shap cuts the text into one segment per token, from the token's start to the next token's
    start (so a segment is a word plus the whitespace after it), and rebuilds masked texts by
    joining the kept segments and the mask token.
    """

    def __call__(self, text: str, return_offsets_mapping: bool = True, **_: Any) -> dict[str, list]:
        seg = segment(str(text))
        out: dict[str, list] = {"input_ids": list(seg.words)}
        if return_offsets_mapping:
            out["offset_mapping"] = list(seg.spans)
        return out


class _CountingModel:
    """The classifier's probabilities as the function shap explains; counts the texts scored."""

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier
        self.num_texts = 0

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        self.num_texts += len(texts)
        return self.classifier.predict_proba(texts)


def _single_word_values(masker, model: _CountingModel, text: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact Shapley values of a one-word text: f(text) - f(masked text), and the base f(masked)."""
    full = masker(np.ones(1, dtype=bool), text)[0][0]
    masked = masker(np.zeros(1, dtype=bool), text)[0][0]
    probs = model([full, masked])
    return (probs[0] - probs[1]).reshape(1, -1), probs[1]


def _check_features(masker, seg: Segmentation) -> None:
    """Make sure shap's feature ``i`` is plex word ``i`` before spending any evaluation."""
    names = [str(name) for name in masker.feature_names(seg.text)[0]]
    if names != list(seg.words):
        raise RuntimeError(
            "shap's features do not line up with plex's words "
            f"({len(names)} features {names[:8]}..., {len(seg)} words {seg.words[:8]}...); "
            "shap split the text differently from plex (a NUL character in the text, or a shap "
            "version that segments texts differently)"
        )


@contextlib.contextmanager
def _seeded_tie_breaks(seed: int) -> Iterator[None]:
    """Seed the stream shap's Partition explainer draws its tie-breakers from, for one block.

    shap draws them with ``np.random.randn()``. Its ``_partition`` module is given (once) a view of
    numpy whose ``random`` is a per-thread ``RandomState``, seeded here, so explanations running in
    several threads at once each draw the numbers one explanation alone would (``RandomState(seed)``
    gives what ``np.random.seed(seed)`` gives) and numpy's own global stream is never touched.
    """
    _thread_random.install()
    before = getattr(_thread_random.local, "state", None)
    _thread_random.local.state = np.random.RandomState(seed)
    try:
        yield
    finally:
        _thread_random.local.state = before


class _ThreadRandom:
    """``np.random`` for shap's partition module: each thread's own ``RandomState`` while an explanation
    runs in it, numpy's global functions otherwise."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.installed = False
        self.lock = threading.Lock()

    def __getattr__(self, name: str):
        state = getattr(self.local, "state", None)
        return getattr(state if state is not None else np.random, name)

    def install(self) -> None:
        with self.lock:
            if self.installed:
                return
            from shap.explainers import _partition

            _partition.np = _NumpyView(self)
            self.installed = True


DENSE_MASK_CELLS = 4_000_000
"""Largest mask matrix (coalitions x words) kept dense by :func:`_dense_masks`: 4 MB of booleans, a text of about
1,400 words. Longer texts keep shap's sparse matrix."""


_dense_lock = threading.Lock()
_dense_here = threading.local()


@contextlib.contextmanager
def _dense_mask_matrices() -> Iterator[None]:
    """While the block runs, shap's Partition explainer builds this thread's mask matrices with
    :func:`_dense_masks`; in other threads and outside plex's explanations (a user's own shap, the library
    timed by ``plex bench label``) it builds them as shap ships them."""
    from shap.explainers import _partition

    with _dense_lock:  # shap's partition module is given the hook once per process
        sparse_masks = getattr(_partition, "make_masks", None)
        if sparse_masks is not None and not isinstance(sparse_masks, functools.partial):
            _partition.make_masks = functools.partial(_dense_masks, sparse_masks)
    before = getattr(_dense_here, "on", False)
    _dense_here.on = True
    try:
        yield
    finally:
        _dense_here.on = before


def _dense_masks(sparse_masks, clustering):
    """shap's mask matrix of a partition tree (``shap.utils.make_masks``: row ``i`` marks the words of coalition
    ``i``) as a dense boolean array, the type ``PartitionExplainer`` declares for it, inside
    :func:`_dense_mask_matrices`; shap's own sparse matrix elsewhere.

    ``PartitionExplainer.owen`` reads one row per coalition it expands and adds it to a boolean mask
    (``m10[:] += self._mask_matrix[lind, :]``). On shap's sparse CSR matrix each such read builds a new 1 x words
    sparse matrix: in a profile of ``plex label`` with every classifier answer known, those reads and additions
    were about half of SHAP's own work. A dense row gives the same booleans (adding booleans is a logical or
    either way), so the masks, the texts scored and the values are the same; only the container differs."""
    masks = sparse_masks(clustering)
    rows, cols = masks.shape
    if not getattr(_dense_here, "on", False) or rows * cols > DENSE_MASK_CELLS:
        return masks
    return masks.toarray().astype(bool, copy=False)


class _NumpyView:
    """numpy with another ``random``."""

    def __init__(self, random: _ThreadRandom) -> None:
        self.random = random

    def __getattr__(self, name: str):
        return getattr(np, name)


_thread_random = _ThreadRandom()
