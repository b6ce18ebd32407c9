"""gSMILE: which words of a prompt move a language model's output, by Wasserstein distance.

gSMILE (Dehghani et al., 2025, "Explaining Large Language Models with gSMILE") explains one
prompt at a time:

1. **Perturbations.** Random word-removal masks over the prompt's words: unique, seeded, each
   removing at least one word (a prompt with few words gets every possible mask).
2. **Output shift (OWMD).** The model answers the original and every perturbed prompt
   (temperature 0 by default). Each answer becomes a set of token embeddings (the packaged
   MiniLM's last layer, unit length); the shift is the Wasserstein-``p`` distance between the
   perturbed answer's set and the original answer's set. For a classifier the answers are class
   distributions and the shift is their Wasserstein-``p`` distance under the discrete metric.
3. **Significance.** Each generated shift gets a pooled bootstrap p-value
   (:func:`~plex.teachers.wasserstein.bootstrap_pvalue`). A shift that is not significant is not
   evidence of a move: by default it counts as no shift (``insignificant="zero"``); with
   ``"drop"`` the sample leaves the fit. Either way the count is reported. A classifier's class
   distributions are exact, not samples, so they need no test.
4. **Weights (IWMD).** A Gaussian kernel ``exp(-d^2 / (2 sigma^2))`` on the Wasserstein distance
   ``d`` between the token embeddings of the original and the perturbed prompt.
5. **Surrogate.** Weighted linear regression (a light ridge) of the shift on the "word kept"
   mask, the original prompt included with shift 0. A word's score is minus its coefficient: how
   far the output moves when the word is removed. Scores are not signed by class: gSMILE says
   which words matter, not for which class. A word whose removal partly undoes the shift other
   removals cause gets a negative score.

The surrogate's fidelity (R^2, weighted R^2, adjusted R^2, weighted MSE, MAE) is kept with every
explanation in ``meta["fidelity"]``; the R^2 figures follow the definition shared by every surrogate
teacher (:func:`plex.evaluate.fidelity.surrogate_fidelity`: adjusted R^2 from the weighted R^2, NaN
for an exactly determined fit), and ``meta["surrogate"]`` holds the standard entry.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plex.attribution import Attribution
from plex.classifiers.base import Classifier
from plex.teachers.base import Teacher, check_int, settings_with_models, shared_lm, text_seed
from plex.teachers.surrogate import fit_weighted_ridge, surrogate_meta
from plex.teachers.wasserstein import bootstrap_pvalue, class_wasserstein, wasserstein
from plex.words import Segmentation, join_kept, segment

logger = logging.getLogger(__name__)

INSIGNIFICANT = ("zero", "drop")


def sample_masks(n_words: int, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """``[m, n_words]`` boolean "word kept" masks, unique, each removing at least one word.

    When there are no more than ``num_samples`` such masks (``2^n - 1``), all of them are returned
    (in a fixed order); otherwise ``num_samples`` are drawn: the number of removed words uniform in
    ``1..n``, then which ones uniformly, redrawing duplicates.
    """
    if n_words < 1:
        return np.zeros((0, n_words), dtype=bool)
    if n_words < 20 and (1 << n_words) - 1 <= num_samples:
        codes = np.arange((1 << n_words) - 1)  # every mask but "keep all"
        return ((codes[:, None] >> np.arange(n_words)[None, :]) & 1).astype(bool)
    seen: set[bytes] = set()
    masks = []
    while len(masks) < num_samples:
        removed = rng.choice(n_words, size=int(rng.integers(1, n_words + 1)), replace=False)
        mask = np.ones(n_words, dtype=bool)
        mask[removed] = False
        key = np.packbits(mask).tobytes()
        if key not in seen:
            seen.add(key)
            masks.append(mask)
    return np.stack(masks)


class TokenEmbedder:
    """Token embeddings of texts: an encoder's last-layer states, special tokens dropped, unit length.

    A text with no ordinary token (an empty answer) is represented by its special tokens, so every
    text has a non-empty set and identical texts have identical sets.
    """

    def __init__(self, model: str = "minilm", device=None, batch_size: int = 64) -> None:
        from plex.classifiers.hf import HFEncoder

        self.name = model
        self.encoder = HFEncoder.from_pretrained(model, device=device, batch_size=batch_size)

    def __call__(self, texts: Sequence[str]) -> list[np.ndarray]:
        out = []
        for states in self.encoder.embed(list(texts), layer=-1):
            ordinary = states.offsets[:, 1] > states.offsets[:, 0]
            vectors = states.hidden[ordinary] if ordinary.any() else states.hidden
            vectors = vectors.astype(np.float64)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            out.append(vectors / np.where(norms > 0, norms, 1.0))
        return out


@dataclass
class Fidelity:
    """How well the linear surrogate reproduces the shifts it was fitted on.

    ``r2``, ``weighted_r2``, ``adjusted_r2`` and ``exact_fit`` are those of
    :func:`plex.evaluate.fidelity.surrogate_fidelity` (NaN R^2 figures when the fit is exactly
    determined); the weighted MSE and the MAE of the residuals are gSMILE's own.
    """

    r2: float
    weighted_r2: float
    adjusted_r2: float
    exact_fit: float
    weighted_mse: float
    mae: float

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def gsmile_fidelity(features: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                    predictions: np.ndarray, r2: float, weighted_r2: float) -> Fidelity:
    """The shared R^2 figures of the fit (``features`` has one row per fitted sample, one column per
    word) plus the weighted MSE and MAE of its residuals."""
    from plex.evaluate.fidelity import surrogate_fidelity

    n, k = features.shape
    shared = surrogate_fidelity(weighted_r2, r2, n_samples=n, n_features=k)
    residual = targets - predictions
    return Fidelity(**shared, weighted_mse=float(np.sum(weights * residual ** 2) / np.sum(weights)),
                    mae=float(np.mean(np.abs(residual))))


@dataclass
class GSmile(Teacher):
    """gSMILE: word-removal perturbations, Wasserstein output shifts, a Gaussian-weighted surrogate.

    As a teacher (``explain(classifier, texts)``, ``plex label --teacher gsmile``) it explains a
    classifier through its class distributions; :meth:`explain_prompt` explains what a language
    model generates (``plex explain-prompt``).

    Attributes:
        num_samples: perturbed prompts per explanation (the paper uses 64 and 1,024).
        seed: base seed; each prompt's masks and bootstrap come from it and the prompt itself.
        p: order of the Wasserstein distances (output shift and IWMD).
        sigma: width of the Gaussian kernel on IWMD; ``None`` takes the median IWMD of the
            prompt's samples (recorded in ``meta["sigma"]``).
        n_boot: bootstrap resamples per generated shift.
        significance: a shift with a bootstrap p-value above this is not significant.
        insignificant: ``"zero"`` counts a non-significant shift as no shift; ``"drop"`` leaves
            the sample out of the fit.
        alpha: ridge penalty of the surrogate (small: the fit is the paper's weighted linear
            regression, kept solvable when a prompt has more words than samples).
        lm: language model for :meth:`explain_prompt`: ``"smollm2"`` (packaged), a folder or hub
            name, ``"openai:<model>@<base_url>"``, or a :class:`plex.lm.LanguageModel`.
        max_new_tokens: length of each generated answer.
        temperature: 0 is greedy (the default, so a shift comes from the prompt, not sampling).
        system: optional system message for every generation.
        embedder: encoder of the token embeddings (``"minilm"`` or a folder / hub name).
    """

    name = "gsmile"
    deterministic = False  # seeded random masks: another seed, other samples
    surrogate = True
    keeps_samples = False

    num_samples: int = 64
    seed: int = 0
    p: float = 2.0
    sigma: float | None = None
    n_boot: int = 200
    significance: float = 0.05
    insignificant: str = "zero"
    alpha: float = 0.01
    lm: Any = "smollm2"
    max_new_tokens: int = 32
    temperature: float = 0.0
    system: str | None = None
    embedder: str = "minilm"
    resources: dict | None = dataclasses.field(default=None, repr=False, compare=False)
    """Loaded language models and the token embedder, filled on first use. Not a setting."""

    def __post_init__(self) -> None:
        self.num_samples = check_int("num_samples", self.num_samples, 1, "the paper uses 64")
        self.seed = check_int("seed", self.seed, 0)
        self.n_boot = check_int("n_boot", self.n_boot, 1)
        self.max_new_tokens = check_int("max_new_tokens", self.max_new_tokens, 1)
        if isinstance(self.p, bool) or not isinstance(self.p, (int, float)) or not self.p >= 1:
            raise ValueError(f"p must be a number >= 1, got {self.p!r}")
        if self.sigma is not None and (isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float))
                                       or not self.sigma > 0):
            raise ValueError(f"sigma must be a positive number or None (median IWMD), got {self.sigma!r}")
        if isinstance(self.significance, bool) or not isinstance(self.significance, (int, float)) \
                or not 0 < self.significance <= 1:
            raise ValueError(f"significance must be a number in (0, 1], got {self.significance!r}")
        if self.insignificant not in INSIGNIFICANT:
            raise ValueError(f"insignificant must be one of {', '.join(INSIGNIFICANT)}, got {self.insignificant!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or self.alpha < 0:
            raise ValueError(f"alpha must be a non-negative number, got {self.alpha!r}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) \
                or self.temperature < 0:
            raise ValueError(f"temperature must be a number >= 0, got {self.temperature!r}")
        from plex.lm import LanguageModel

        if not (isinstance(self.lm, LanguageModel) or (isinstance(self.lm, str) and self.lm.strip())):
            raise ValueError("lm must name a language model ('smollm2', a folder, a hub name or "
                             f"'openai:<model>@<base_url>') or be a plex.lm.LanguageModel, got {self.lm!r}")
        if self.resources is None:
            self.resources = {}

    def config(self) -> dict[str, Any]:
        """The settings, with a language-model object recorded by its identity."""
        return settings_with_models(self)

    # -- resources ---------------------------------------------------------------------------

    def language_model(self, spec=None):
        """The language model :meth:`explain_prompt` asks (loaded once, then shared)."""
        return shared_lm(self.resources, self.lm if spec is None else spec, "gsmile")

    @property
    def token_embedder(self) -> TokenEmbedder:
        if "embedder" not in self.resources:
            self.resources["embedder"] = TokenEmbedder(self.embedder)
        return self.resources["embedder"]

    def with_batcher(self, batcher) -> GSmile:
        """A copy whose token embedder (loaded here) goes through ``batcher``, so that concurrent
        explanations of a classifier share its rounds (as a teacher gSMILE asks no language model)."""
        from plex.batching import BatchedCalls, unwrap

        embedder = unwrap(self.token_embedder)
        resources = dict(self.resources)
        resources["embedder"] = BatchedCalls(embedder, batcher, ["__call__"], name="token embedder",
                                             batch_size=embedder.encoder.batch_size)
        return dataclasses.replace(self, resources=resources)

    # -- as a teacher of classifiers -------------------------------------------------------------

    def attribute(self, classifier: Classifier, seg: Segmentation,
                  targets: list[int]) -> tuple[np.ndarray, dict[str, Any]]:
        rng = np.random.default_rng(text_seed(self.seed, seg.text))
        masks = sample_masks(len(seg), self.num_samples, rng)
        texts = [join_kept(seg.text, seg.spans, m) for m in masks]
        probs = classifier.predict_proba([seg.text, *texts])
        shifts = class_wasserstein(probs[1:], probs[0], self.p)
        p_values = np.full(len(masks), np.nan)  # exact distributions: nothing to test
        scores, meta = self._fit(seg.text, texts, masks, shifts, p_values)
        # one fit serves every target (a distance has no class): the same figures for each
        fit = meta.pop("surrogate")
        meta["surrogate"] = surrogate_meta(fit["weighted_r2"] * len(targets), fit["r2"] * len(targets),
                                           fit["n_samples"], fit["n_features"], targets)
        return np.tile(scores, (len(targets), 1)), meta

    # -- as an explainer of generated text ----------------------------------------------------

    def explain_prompt(self, prompts: str | Sequence[str], lm=None, progress: bool = True,
                       concurrency: int = 1) -> list[Attribution]:
        """Explain what the language model generates for each prompt.

        Returns one :class:`~plex.attribution.Attribution` per prompt: ``scores`` are the output
        shifts caused by removing each word; ``meta`` holds the generated ``output``, the
        ``fidelity`` of the surrogate, the samples (``masks``, ``outputs``, ``shifts``,
        ``p_values``, ``iwmd``, ``weights``), ``n_insignificant``, ``sigma`` and ``seconds``.

        ``concurrency`` prompts are explained at once: their generations (greedy ones; a sampled
        generation is seeded per prompt and runs alone) and embeddings share forward batches through one
        :class:`~plex.batching.Batcher`. Each prompt's masks and bootstrap come from its own stream, so
        only the last float bits of the model's outputs can depend on ``concurrency``; ``seconds`` is
        then the wall time of a prompt among others.
        """
        from tqdm.auto import tqdm

        from plex.batching import Batcher, explain_concurrently, unwrap
        from plex.lm.base import as_texts
        from plex.lm.batching import BatchingLM

        prompts = as_texts(prompts, "prompt")
        concurrency = check_int("concurrency", concurrency, 1)
        empty = [i for i, prompt in enumerate(prompts) if len(segment(prompt)) == 0]
        if empty:
            raise ValueError(f"prompt {empty[0]} is empty: an empty prompt has no words to explain; "
                             "pass a prompt with words")
        model = self.language_model(lm)
        embedder = self.token_embedder  # loaded before the clock starts: seconds are per prompt only
        bar = tqdm(total=len(prompts), desc="gsmile", unit="prompt", disable=not progress or len(prompts) < 2)
        results = []
        with bar:
            if concurrency == 1 or len(prompts) == 1:
                for prompt in prompts:
                    results.append(self._explain_one(prompt, model, embedder))
                    bar.update(1)
                return results
            with Batcher() as batcher:
                shared, routed = BatchingLM(unwrap(model), batcher), self.with_batcher(batcher).token_embedder
                for attribution in explain_concurrently(batcher, lambda q: self._explain_one(q, shared, routed),
                                                        prompts, concurrency):
                    results.append(attribution)
                    bar.update(1)
        return results

    def _explain_one(self, prompt: str, model, embedder) -> Attribution:
        import time

        start = time.perf_counter()
        seg = segment(prompt)
        seed = text_seed(self.seed, prompt)
        rng = np.random.default_rng(seed)
        masks = sample_masks(len(seg), self.num_samples, rng)
        texts = [join_kept(prompt, seg.spans, m) for m in masks]
        outputs = model.generate([prompt, *texts], max_new_tokens=self.max_new_tokens,
                                 temperature=self.temperature, system=self.system, seed=seed)
        embedded = embedder(outputs)
        shifts, p_values = np.zeros(len(masks)), np.ones(len(masks))
        for j in range(len(masks)):
            shifts[j], p_values[j] = bootstrap_pvalue(embedded[0], embedded[j + 1], self.p, self.n_boot, rng)
        scores, meta = self._fit(prompt, texts, masks, shifts, p_values, embedder)
        meta.update(output=outputs[0], outputs=outputs[1:], masks=masks.astype(np.int8),
                    lm=model.identity(), seconds=time.perf_counter() - start)
        return Attribution(text=prompt, words=seg.words, spans=seg.spans, scores=scores,
                           target=0, method=self.name, meta=meta)

    # -- shared -------------------------------------------------------------------------------

    def iwmd(self, original: str, perturbed: Sequence[str], embedder=None) -> np.ndarray:
        """Wasserstein-``p`` distance between the token embeddings of the original and each perturbed text."""
        embedded = (embedder or self.token_embedder)([original, *perturbed])
        return np.array([wasserstein(embedded[0], e, self.p) for e in embedded[1:]])

    def _fit(self, text: str, texts: list[str], masks: np.ndarray, shifts: np.ndarray,
             p_values: np.ndarray, embedder=None) -> tuple[np.ndarray, dict[str, Any]]:
        distances = self.iwmd(text, texts, embedder)
        insignificant = p_values > self.significance  # NaN (untested) compares False
        target = np.where(insignificant, 0.0, shifts)
        rows = ~insignificant if self.insignificant == "drop" else np.ones(len(masks), dtype=bool)
        positive = distances[distances > 0]
        sigma = float(self.sigma) if self.sigma is not None else (float(np.median(positive)) if positive.size else 1.0)
        # the original prompt is a sample too: every word kept, no shift, distance 0
        X = np.vstack([np.ones((1, masks.shape[1])), masks[rows]]).astype(np.float64)
        y = np.concatenate([[0.0], target[rows]])
        kernel = np.exp(-(distances ** 2) / (2.0 * sigma ** 2))
        weights = np.concatenate([[1.0], kernel[rows]])
        fit = fit_weighted_ridge(X, y, weights, alpha=self.alpha)
        predictions = X @ fit.coef[0] + fit.intercept[0]
        fidelity = gsmile_fidelity(X, y, weights, predictions, fit.r2[0], fit.weighted_r2[0])
        meta = {
            "fidelity": fidelity.to_dict(),
            "surrogate": surrogate_meta(fit.weighted_r2[:1], fit.r2[:1], n_samples=len(y),
                                        n_features=masks.shape[1], targets=[0]),
            "intercept": float(fit.intercept[0]),
            "sigma": sigma,
            "n_samples": int(len(masks)),
            "n_insignificant": int(insignificant.sum()),
            "n_fitted": int(len(y)),
            "shifts": shifts,
            "p_values": p_values,
            "iwmd": distances,
            "weights": kernel,
        }
        return -fit.coef[0], meta
