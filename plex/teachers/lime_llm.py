"""LIME-LLM: LIME whose perturbations are fluent one-word rewrites instead of deletions.

LIME deletes random words and asks the classifier about broken text. LIME-LLM (arXiv 2601.11746)
changes one word position per sample ("single mask, single sample") to a fluent alternative:

- a *neutral* infill keeps the classifier's label, a *boundary* infill flips it (a counterfactual);
- which positions get samples is guided by a cheap prior attribution (leave-one-out occlusion),
  with a floor of one sample per word;
- a replacement that means the same as the original is not a perturbation (the infilling trap):
  WordNet synonyms and words too close in GloVe space are rejected, and counted;
- sample weight = ``bow_weight`` x bag-of-words cosine + (1 - ``bow_weight``) x sentence-embedding
  cosine to the original; a weighted ridge surrogate on the "word kept" indicators gives the scores.

The packaged language model (SmolLM2-135M-Instruct) writes poorly, so candidates do not rest on
free generation alone. For each position they come from the LM's answer to the neutral and the
boundary prompt, from its next-token distribution after the prefix, from WordNet (antonyms and
related words) and from GloVe neighbours. Each candidate sentence is scored for fluency by the
scorer LM's log-likelihood and by the classifier; the classifier decides which candidates are
neutral and which are boundary, and the most fluent of each kind is used.

Words without letters (punctuation, numbers) have no fluent one-word rewrite here; they are
deleted instead, as in LIME, and counted as ``deletion`` samples.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from plex.classifiers.base import Classifier
from plex.teachers.base import Teacher, check_int, lm_key, settings_with_models, shared_lm, text_seed
from plex.teachers.kernels import hybrid_kernel
from plex.teachers.occlusion import occlusion_variants
from plex.teachers.surrogate import fit_weighted_ridge, surrogate_meta
from plex.words import Segmentation, segment

logger = logging.getLogger(__name__)

DEFAULT_NEUTRAL_PROMPT = (
    'Sentence: "{text}"\n'
    'Give one different word to use instead of "{word}" in this sentence. The new sentence must '
    "stay fluent and keep its overall meaning. Answer with the word only."
)
DEFAULT_BOUNDARY_PROMPT = (
    'Sentence: "{text}"\n'
    'Give one word to use instead of "{word}" in this sentence that turns its meaning into the '
    "opposite. Answer with the word only."
)
SOURCES = ("lm", "next-token", "wordnet", "glove")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def replace_span(text: str, span: tuple[int, int], word: str) -> str:
    """``text`` with the characters of ``span`` replaced by ``word``."""
    return text[: span[0]] + word + text[span[1]:]


def window(text: str, spans: list[tuple[int, int]], position: int, word: str, size: int) -> str:
    """The text around ``position`` (``size`` words each side) with ``word`` in its place; all of it if ``size`` is 0."""
    if size == 0:
        return replace_span(text, spans[position], word)
    start = spans[max(0, position - size)][0]
    end = spans[min(len(spans) - 1, position + size)][1]
    return text[start:spans[position][0]] + word + text[spans[position][1]:end]


def match_case(word: str, like: str) -> str:
    """``word`` in the letter case of ``like`` (``Good`` -> ``Bad``, ``GOOD`` -> ``BAD``)."""
    if len(like) > 1 and like.isupper():
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word.lower()


@dataclass
class Candidate:
    """One proposed replacement of the word at ``position``."""

    position: int
    word: str
    source: str
    text: str = ""
    probs: np.ndarray | None = None
    log_likelihood: float = float("nan")
    n_tokens: int = 0


@dataclass
class LimeLLM(Teacher):
    """LIME-LLM: single-word fluent rewrites, neutral and boundary infills, a hybrid kernel.

    Attributes:
        num_samples: perturbed texts per explained text (the paper's default is 20). Every word
            gets at least one sample, so a text with more words than this gets one per word.
        seed: base seed; each text's stream comes from it and the text (see :func:`text_seed`).
        lm: language model for the neutral infills: ``"smollm2"`` (packaged), a folder or hub
            name of a causal LM, ``"openai:<model>@<base_url>"`` for an OpenAI-compatible server,
            or a :class:`plex.lm.LanguageModel` object.
        boundary_lm: language model for the boundary infills; ``None`` uses ``lm``.
        scorer_lm: local causal LM for fluency (log-likelihood) and next-token candidates;
            ``None`` uses ``lm`` when it is local, else ``"smollm2"``.
        neutral_prompt, boundary_prompt: prompts with ``{text}`` and ``{word}``.
        sources: comma-separated candidate sources among ``lm``, ``next-token``, ``wordnet``,
            ``glove``.
        candidates_per_source: how many candidates each source may propose per position.
        max_candidates: candidates per position scored for fluency and by the classifier.
        max_word_rank: candidates must be among the this many most frequent GloVe words (rare
            words and subword pieces are not fluent replacements).
        boundary_fraction: share of the samples that are boundary infills, placed on the words
            the prior ranks highest; the rest are neutral infills.
        prior: ``"occlusion"`` (leave-one-out, one batched call) or ``"uniform"``.
        synonym_threshold: GloVe cosine above which a candidate counts as a synonym (WordNet
            antonyms are exempt: antonyms sit close in GloVe space).
        bow_weight: weight of the bag-of-words cosine in the kernel; the sentence-embedding
            cosine gets ``1 - bow_weight``.
        sentence_encoder: encoder of the sentence cosine (``"minilm"`` or a folder / hub name).
        alpha: ridge penalty of the surrogate. LIME uses 1 with thousands of samples; with one
            sample per word the penalty would shrink each word's score by its own kernel weight,
            so the default is small. With exactly one sample per word the surrogate's coefficient
            of a word is the change of the output when that word is rewritten.
        max_new_tokens: generation length of the infill prompts.
        fluency_window: words of context on each side of the replaced word when the scorer LM
            judges a candidate's fluency (candidates at one position share everything outside
            the window, and a short window makes scoring cheaper); ``0`` scores whole texts.
    """

    name = "lime-llm"
    deterministic = False  # seeded random sample plan: another seed, other samples
    surrogate = True
    keeps_samples = True

    num_samples: int = 20
    seed: int = 0
    lm: Any = "smollm2"
    boundary_lm: Any = None
    scorer_lm: Any = None
    neutral_prompt: str = DEFAULT_NEUTRAL_PROMPT
    boundary_prompt: str = DEFAULT_BOUNDARY_PROMPT
    sources: str = "lm,next-token,wordnet,glove"
    candidates_per_source: int = 4
    max_candidates: int = 6
    max_word_rank: int = 50_000
    boundary_fraction: float = 0.5
    prior: str = "occlusion"
    synonym_threshold: float = 0.85
    bow_weight: float = 0.5
    sentence_encoder: str = "minilm"
    alpha: float = 0.001
    max_new_tokens: int = 6
    fluency_window: int = 6
    resources: dict | None = dataclasses.field(default=None, repr=False, compare=False)
    """Loaded language models, lexicons and encoder, filled on first use; copies made with
    ``dataclasses.replace`` share them. Not a setting: not recorded by :meth:`config`."""

    def __post_init__(self) -> None:
        self.num_samples = check_int("num_samples", self.num_samples, 1, "the paper uses 20")
        self.seed = check_int("seed", self.seed, 0)
        self.candidates_per_source = check_int("candidates_per_source", self.candidates_per_source, 1)
        self.max_candidates = check_int("max_candidates", self.max_candidates, 1)
        self.max_word_rank = check_int("max_word_rank", self.max_word_rank, 1)
        self.max_new_tokens = check_int("max_new_tokens", self.max_new_tokens, 1)
        self.fluency_window = check_int("fluency_window", self.fluency_window, 0)
        wanted = [s.strip() for s in str(self.sources).split(",") if s.strip()]
        unknown = [s for s in wanted if s not in SOURCES]
        if unknown or not wanted:
            raise ValueError(f"sources must be a comma-separated subset of {', '.join(SOURCES)}, "
                             f"got {self.sources!r}")
        self.sources = ",".join(wanted)
        for name in ("boundary_fraction", "bow_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        if not isinstance(self.synonym_threshold, (int, float)) or not -1 <= self.synonym_threshold <= 1:
            raise ValueError(f"synonym_threshold must be a cosine in [-1, 1], got {self.synonym_threshold!r}")
        if self.prior not in ("occlusion", "uniform"):
            raise ValueError(f"prior must be 'occlusion' or 'uniform', got {self.prior!r}")
        if not isinstance(self.alpha, (int, float)) or self.alpha < 0:
            raise ValueError(f"alpha must be a non-negative number, got {self.alpha!r}")
        for name in ("neutral_prompt", "boundary_prompt"):
            prompt = getattr(self, name)
            if not isinstance(prompt, str) or "{word}" not in prompt or "{text}" not in prompt:
                raise ValueError(f"{name} must be a string with {{text}} and {{word}} placeholders")
        from plex.lm import LanguageModel

        for name in ("lm", "boundary_lm", "scorer_lm"):
            value = getattr(self, name)
            if (value is None and name != "lm") or isinstance(value, LanguageModel) or \
                    (isinstance(value, str) and value.strip()):
                continue
            raise ValueError(f"{name} must name a language model ('smollm2', a folder, a hub name or "
                             f"'openai:<model>@<base_url>') or be a plex.lm.LanguageModel, got {value!r}")
        if self.resources is None:
            self.resources = {}

    # -- resources ---------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The settings, with a language-model object recorded by its identity."""
        return settings_with_models(self)

    @property
    def scorer_spec(self):
        if self.scorer_lm is not None:
            return self.scorer_lm
        remote = isinstance(self.lm, str) and self.lm.startswith("openai:")
        return "smollm2" if remote else self.lm

    @property
    def scorer(self):
        """The language model that scores fluency and proposes next-token candidates."""
        return self._lm(self.scorer_spec)

    def _lm(self, spec):
        return shared_lm(self.resources, spec, "lime-llm")

    def _get(self, key: str, build):
        if key not in self.resources:
            self.resources[key] = build()
        return self.resources[key]

    @property
    def wordnet(self):
        from plex.lexicon import WordNet

        return self._get("wordnet", WordNet)

    @property
    def glove(self):
        from plex.lexicon import GloVe

        return self._get("glove", GloVe)

    @property
    def encoder(self):
        from plex.teachers.kernels import SentenceEncoder

        return self._get("encoder", lambda: SentenceEncoder(self.sentence_encoder))

    def with_batcher(self, batcher) -> LimeLLM:
        """A copy whose language models, sentence encoder and GloVe neighbour search go through
        ``batcher`` (all loaded here), so that concurrent explanations share their rounds; WordNet is
        read under its own lock."""
        from plex.batching import BatchedCalls, unwrap
        from plex.lm.batching import BatchingLM

        wanted = set(self.sources.split(","))
        specs = [self.scorer_spec]
        if "lm" in wanted:
            specs += [self.lm, self.boundary_lm or self.lm]
        models = {lm_key(spec): self._lm(spec) for spec in specs}  # everything loaded before the threads start
        if "wordnet" in wanted or "glove" in wanted:
            self.wordnet  # noqa: B018
        # a copy already routed through another batcher is routed anew
        glove, encoder = unwrap(self.glove), unwrap(self.encoder)
        glove.rank("the")  # its table too
        resources = dict(self.resources)
        for key, model in models.items():
            resources[key] = BatchingLM(unwrap(model), batcher)
        resources["glove"] = BatchedCalls(glove, batcher, ["neighbours_many"], name="glove neighbours")
        resources["encoder"] = BatchedCalls(encoder, batcher, ["encode"], name="sentence encoder",
                                            batch_size=encoder.encoder.batch_size)
        return dataclasses.replace(self, resources=resources)

    # -- the explanation ---------------------------------------------------------------------

    def attribute(
        self, classifier: Classifier, seg: Segmentation, targets: list[int]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Fit the weighted surrogate on fluent single-word rewrites of ``seg.text``.

        Returns:
            scores ``[len(targets), n_words]`` and meta: the surrogate's ``intercept``, ``score``
            (weighted R^2) and ``unweighted_score`` per target, ``num_samples``, the ``samples``
            (position, replacement, kind, whether the label did what the kind asked, perplexity of
            the fluency window, kernel weight), the run counters (see :func:`summarise`) and the
            standard ``surrogate`` entry (see :func:`~plex.teachers.surrogate.surrogate_meta`): the
            fit has one row per sample plus the text itself, and one feature per word. With one
            sample per word the fit is exactly determined (``Teacher.fidelity`` reports
            ``exact_fit``).
        """
        text, n_words = seg.text, len(seg)
        rng = np.random.default_rng(text_seed(self.seed, text))
        # One call scores the text and every leave-one-out variant: the prediction, the occlusion
        # prior and the deletion samples (punctuation, or words with no surviving candidate).
        deleted_texts = occlusion_variants(seg)
        probs = classifier.predict_proba([text, *deleted_texts])
        base_probs, deleted_probs = probs[0], probs[1:]
        label = int(np.argmax(base_probs))
        eligible = np.array([bool(_WORD.fullmatch(w)) for w in seg.words])
        prior = np.abs(base_probs[label] - deleted_probs[:, label]) if self.prior == "occlusion" else np.ones(n_words)
        plan = plan_samples(prior, eligible, self.num_samples, self.boundary_fraction, rng)

        infill_positions = sorted({p for p, kind in plan if kind != "deletion"})
        candidates, rejected = self._propose(seg, plan)
        pool = [c for p in infill_positions for c in candidates[p]]
        for c in pool:
            c.text = replace_span(text, seg.spans[c.position], c.word)
        if pool:
            pool_probs = classifier.predict_proba([c.text for c in pool])
            scored = self.scorer.log_likelihood([window(text, seg.spans, c.position, c.word, self.fluency_window)
                                                 for c in pool])
            for c, p, (ll, n) in zip(pool, pool_probs, scored):
                c.probs, c.log_likelihood, c.n_tokens = np.asarray(p, dtype=np.float64), float(ll), int(n)

        def deletion(position: int) -> dict:
            return {"position": position, "word": seg.words[position], "replacement": "", "source": "",
                    "kind": "deletion", "text": deleted_texts[position],
                    "probs": np.asarray(deleted_probs[position], dtype=np.float64),
                    "achieved": None, "log_likelihood": float("nan"), "n_tokens": 0}

        samples, used = [], {p: set() for p in infill_positions}
        for position, kind in plan:
            choice = None if kind == "deletion" else choose(candidates[position], kind, label, used[position])
            if choice is None:
                samples.append(deletion(position))
                continue
            used[position].add(choice.word.lower())
            flipped = int(np.argmax(choice.probs)) != label
            samples.append({"position": position, "word": seg.words[position], "replacement": choice.word,
                            "source": choice.source, "kind": kind, "text": choice.text, "probs": choice.probs,
                            "achieved": flipped if kind == "boundary" else not flipped,
                            "log_likelihood": choice.log_likelihood, "n_tokens": choice.n_tokens})

        # Surrogate: row 0 is the text itself (every word kept), then one row per sample.
        features = np.ones((len(samples) + 1, n_words))
        outputs = np.zeros((len(samples) + 1, len(targets)))
        outputs[0] = base_probs[targets]
        for row, s in enumerate(samples, start=1):
            features[row, s["position"]] = 0.0
            outputs[row] = s["probs"][targets]
        vectors = self.encoder.encode([text] + [s["text"] for s in samples])
        kernel = hybrid_kernel(seg.words, [segment(s["text"]).words for s in samples], vectors[0], vectors[1:],
                               self.bow_weight)
        weights = np.concatenate([[1.0], kernel])
        fit = fit_weighted_ridge(features, outputs, weights, alpha=self.alpha)
        for s, w in zip(samples, weights[1:]):
            s["weight"] = float(w)
            s["window_perplexity"] = math.exp(-s["log_likelihood"] / s["n_tokens"]) if s["n_tokens"] else float("nan")
            s["probs"] = s["probs"].tolist()
        meta = {
            "intercept": fit.intercept.tolist(),
            "score": fit.weighted_r2.tolist(),
            "unweighted_score": fit.r2.tolist(),
            "num_samples": len(samples),
            "surrogate": surrogate_meta(fit.weighted_r2, fit.r2, n_samples=len(features), n_features=n_words,
                                        targets=targets),
            "samples": samples,
            "synonyms_rejected": rejected,
            "candidates_scored": len(pool),
        }
        meta.update(count_samples(samples))
        return fit.coef, meta

    def _propose(self, seg: Segmentation, plan: list[tuple[int, str]]) -> tuple[dict[int, list[Candidate]], int]:
        """Candidate replacements per planned position from every source, synonyms removed."""
        kinds: dict[int, set[str]] = {}
        for p, kind in plan:
            if kind != "deletion":
                kinds.setdefault(p, set()).add(kind)
        positions = sorted(kinds)
        wanted = set(self.sources.split(","))
        k = self.candidates_per_source
        text = seg.text
        proposals: dict[int, dict[str, list[str]]] = {p: {} for p in positions}
        if not positions:
            return {}, 0
        if "lm" in wanted:  # each prompt only where the plan has a sample of its kind
            for kind, spec, template in (("neutral", self.lm, self.neutral_prompt),
                                         ("boundary", self.boundary_lm or self.lm, self.boundary_prompt)):
                asked = [p for p in positions if kind in kinds[p]]
                prompts = [template.format(text=text, word=seg.words[p]) for p in asked]
                answers = self._lm(spec).generate(prompts, max_new_tokens=self.max_new_tokens,
                                                  temperature=0.0) if asked else []
                for p, answer in zip(asked, answers):
                    proposals[p][f"lm-{kind}"] = _WORD.findall(answer)[:1]
        if "next-token" in wanted:
            prefixes = [text[: seg.spans[p][0]].rstrip() for p in positions]
            tops = self.scorer.next_tokens(prefixes, k=4 * k)
            for p, prefix, top in zip(positions, prefixes, tops):
                words = []
                for token, _ in top:
                    stripped = token.strip()
                    if (token[:1].isspace() or not prefix) and stripped.isalpha():
                        words.append(stripped)
                proposals[p]["next-token"] = words
        if "wordnet" in wanted:
            for p in positions:
                w = seg.words[p].lower()
                proposals[p]["wordnet-antonym"] = sorted(self.wordnet.antonyms(w))[:k]
                related = [r for r in self.wordnet.related(w) if self.glove.rank(r) is not None]
                proposals[p]["wordnet-related"] = sorted(related, key=self.glove.rank)[:k]  # most common first
        if "glove" in wanted:
            neighbours = self.glove.neighbours_many([seg.words[p].lower() for p in positions], k=2 * k)
            for p, near in zip(positions, neighbours):
                proposals[p]["glove"] = [w for w, _ in near]

        out, rejected = {}, 0
        for p in positions:
            original = seg.words[p]
            antonyms = self.wordnet.antonyms(original.lower()) if "wordnet" in wanted or "glove" in wanted else set()
            seen, per_source = {original.lower()}, []
            for source, words in proposals[p].items():
                kept = []
                for word in words:
                    low = word.lower()
                    if low in seen or " " in low or not low.isalpha():
                        continue
                    seen.add(low)
                    rank = self.glove.rank(low)
                    if rank is None or rank >= self.max_word_rank:  # a subword piece, a typo or a rare word
                        continue
                    if self._is_synonym(original.lower(), low, antonyms):
                        rejected += 1
                        continue
                    kept.append(Candidate(position=p, word=match_case(word, original), source=source))
                    if len(kept) >= k:
                        break
                per_source.append(kept)
            merged = []  # round-robin over sources, so every source is heard
            for i in range(max((len(x) for x in per_source), default=0)):
                merged.extend(x[i] for x in per_source if i < len(x))
            out[p] = merged[: self.max_candidates]
        return out, rejected

    def _is_synonym(self, original: str, candidate: str, antonyms: set[str]) -> bool:
        if candidate in antonyms:
            return False
        if self.wordnet.is_synonym(original, candidate):
            return True
        similarity = self.glove.similarity(original, candidate)
        return bool(np.isfinite(similarity) and similarity > self.synonym_threshold)


def plan_samples(prior: np.ndarray, eligible: np.ndarray, num_samples: int, boundary_fraction: float,
                 rng: np.random.Generator) -> list[tuple[int, str]]:
    """Which position each sample changes, and how: ``neutral``, ``boundary`` or ``deletion``.

    Every word gets one sample (the floor); words without letters get a deletion. Boundary
    samples (``boundary_fraction`` of the budget) go to the eligible words with the highest prior,
    the floor's remaining words get neutral samples, and any budget left over adds samples in
    proportion to the prior (alternating neutral and boundary on the same word).
    """
    n = len(prior)
    total = max(num_samples, n)
    order = np.lexsort((rng.random(n), -np.asarray(prior)))  # prior descending, random tie-break
    eligible_order = [int(i) for i in order if eligible[i]]
    n_boundary = min(int(round(boundary_fraction * total)), len(eligible_order))
    boundary = set(eligible_order[:n_boundary])
    plan = [(i, "deletion") for i in range(n) if not eligible[i]]
    plan += [(i, "boundary" if i in boundary else "neutral") for i in eligible_order]
    extra = total - len(plan)
    if extra > 0 and eligible_order:
        weights = np.asarray(prior, dtype=np.float64)[eligible_order] + 1e-9
        counts = rng.multinomial(extra, weights / weights.sum())
        for i, c in zip(eligible_order, counts):
            first = "boundary" if i in boundary else "neutral"
            other = "neutral" if first == "boundary" else "boundary"
            plan += [(i, other if j % 2 == 0 else first) for j in range(int(c))]
    return sorted(plan, key=lambda x: x[0])


def choose(candidates: list[Candidate], kind: str, label: int, used: set[str]) -> Candidate | None:
    """The most fluent unused candidate of ``kind``; failing that, the one closest to that kind.

    Neutral = the classifier keeps ``label``; boundary = it predicts another class. When no
    candidate is of the asked kind, a boundary sample takes the candidate with the lowest
    probability of ``label`` and a neutral sample the highest (the sample is then reported as not
    achieved).
    """
    free = [c for c in candidates if c.word.lower() not in used and c.probs is not None]
    if not free:
        return None
    fitting = [c for c in free if (int(np.argmax(c.probs)) != label) == (kind == "boundary")]
    if fitting:
        return max(fitting, key=lambda c: (c.log_likelihood, -len(c.word)))
    if kind == "boundary":
        return min(free, key=lambda c: c.probs[label])
    return max(free, key=lambda c: c.probs[label])


def count_samples(samples: list[dict]) -> dict[str, int]:
    """Per-text counters: neutral samples and how many kept the label, boundary and flipped, deletions."""
    neutral = [s for s in samples if s["kind"] == "neutral"]
    boundary = [s for s in samples if s["kind"] == "boundary"]
    return {
        "neutral_samples": len(neutral),
        "neutral_kept": sum(bool(s["achieved"]) for s in neutral),
        "boundary_samples": len(boundary),
        "boundary_flipped": sum(bool(s["achieved"]) for s in boundary),
        "deletion_samples": sum(s["kind"] == "deletion" for s in samples),
    }


def summarise(attributions) -> dict[str, float]:
    """Run-level LIME-LLM figures from the explanations' meta.

    ``neutral_kept``: fraction of neutral samples whose label stayed; ``boundary_flipped``:
    fraction of boundary samples whose label flipped; ``synonyms_rejected``: candidates rejected as
    synonyms (total and per text). The perplexity of the perturbed texts, beside LIME's, is
    :func:`plex.evaluate.fluency.fluency`.
    """
    metas = [a.meta for a in attributions if "samples" in a.meta]
    total = lambda key: sum(int(m.get(key, 0)) for m in metas)  # noqa: E731
    n_neutral, n_boundary = total("neutral_samples"), total("boundary_samples")
    return {
        "texts": len(metas),
        "samples": total("num_samples"),
        "neutral_samples": n_neutral,
        "neutral_kept": total("neutral_kept") / n_neutral if n_neutral else float("nan"),
        "boundary_samples": n_boundary,
        "boundary_flipped": total("boundary_flipped") / n_boundary if n_boundary else float("nan"),
        "deletion_samples": total("deletion_samples"),
        "synonyms_rejected": total("synonyms_rejected"),
        "synonyms_rejected_per_text": total("synonyms_rejected") / len(metas) if metas else float("nan"),
    }
