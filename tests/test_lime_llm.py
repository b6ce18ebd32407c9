"""LIME-LLM: sample plan, candidate choice, kernel, surrogate, and explanations with known answers."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from scipy.stats import spearmanr

from plex.lm import LanguageModel
from plex.teachers import get_teacher
from plex.teachers.kernels import bow_cosine, hybrid_kernel
from plex.teachers.lime_llm import Candidate, LimeLLM, choose, match_case, plan_samples, summarise
from plex.teachers.surrogate import fit_weighted_ridge
from plex.words import segment


class ScriptedLM(LanguageModel):
    """Answers infill prompts from a table, proposes fixed next tokens, prefers shorter texts."""

    def __init__(self, neutral: dict[str, str], boundary: dict[str, str] | None = None,
                 next_words=("zebra", "quartz")):
        super().__init__()
        self.neutral, self.boundary, self.next_words = neutral, boundary or {}, list(next_words)
        self.prompts: list[str] = []

    def identity(self):
        return {"kind": "scripted"}

    def _generate(self, prompts, max_new_tokens, temperature, stop, seed):
        out = []
        for messages in prompts:
            content = messages[-1]["content"]
            self.prompts.append(content)
            word = re.search(r'instead of "([^"]+)"', content).group(1)
            table = self.boundary if "opposite" in content else self.neutral
            out.append(f" {table.get(word.lower(), 'zebra')}.")
        return out

    def _next_tokens(self, prefixes, k):
        return [[(" " + w, -1.0 - i) for i, w in enumerate(self.next_words)][:k] for _ in prefixes]

    def _log_likelihood(self, texts):
        return [(-float(len(t)), max(1, len(t.split()))) for t in texts]


@pytest.fixture(scope="module")
def shared():
    """WordNet, GloVe and the sentence encoder, loaded once for the module's teachers."""
    return {}


def test_plan_gives_every_word_a_sample_and_boundary_to_the_top_prior():
    rng = np.random.default_rng(0)
    prior = np.array([0.1, 0.5, 0.0, 0.9, 0.2])
    eligible = np.array([True, True, False, True, True])
    plan = plan_samples(prior, eligible, num_samples=4, boundary_fraction=0.5, rng=rng)
    assert sorted(plan) == [(0, "neutral"), (1, "boundary"), (2, "deletion"), (3, "boundary"), (4, "neutral")]
    plan = plan_samples(prior, eligible, num_samples=12, boundary_fraction=0.5, rng=rng)
    assert len(plan) == 12
    counts = np.bincount([p for p, _ in plan], minlength=5)
    assert counts.min() >= 1 and counts[2] == 1  # the floor; punctuation is deleted once
    assert counts[3] >= counts[0]  # the extra samples follow the prior
    assert {k for p, k in plan if p == 3} == {"boundary", "neutral"} or counts[3] == 1


def test_choose_prefers_fluent_candidates_of_the_asked_kind():
    keep = Candidate(0, "fine", "x", probs=np.array([0.2, 0.8]), log_likelihood=-5.0)
    keep_fluent = Candidate(0, "nice", "x", probs=np.array([0.3, 0.7]), log_likelihood=-2.0)
    flip = Candidate(0, "awful", "x", probs=np.array([0.9, 0.1]), log_likelihood=-9.0)
    assert choose([keep, keep_fluent, flip], "neutral", label=1, used=set()) is keep_fluent
    assert choose([keep, keep_fluent, flip], "boundary", label=1, used=set()) is flip
    assert choose([keep, keep_fluent, flip], "neutral", label=1, used={"nice"}) is keep
    # no candidate flips: the boundary sample takes the one closest to the boundary
    assert choose([keep, keep_fluent], "boundary", label=1, used=set()) is keep_fluent
    assert choose([], "neutral", label=1, used=set()) is None


def test_match_case():
    assert match_case("bad", "Good") == "Bad"
    assert match_case("bad", "GOOD") == "BAD"
    assert match_case("Bad", "good") == "bad"


def test_hybrid_kernel_closed_form():
    original = ["the", "film", "was", "good"]
    perturbed = [["the", "film", "was", "bad"], ["the", "film", "was", "good"]]
    bow = bow_cosine(original, perturbed)
    assert bow == pytest.approx([3 / 4, 1.0])
    vectors = np.array([[1.0, 0.0], [0.6, 0.8]])
    w = hybrid_kernel(original, perturbed, np.array([1.0, 0.0]), vectors, bow_weight=0.5)
    assert w == pytest.approx([0.5 * 0.75 + 0.5 * 1.0, 0.5 * 1.0 + 0.5 * 0.6])
    with pytest.raises(ValueError, match="bow_weight"):
        hybrid_kernel(original, perturbed, np.array([1.0, 0.0]), vectors, bow_weight=1.5)


def test_weighted_ridge_recovers_a_linear_function():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, size=(200, 5)).astype(float)
    coef = np.array([0.5, -0.2, 0.0, 0.3, 0.1])
    y = 0.25 + X @ coef
    fit = fit_weighted_ridge(X, y, rng.uniform(0.1, 1.0, 200), alpha=1e-6)
    assert fit.coef[0] == pytest.approx(coef, abs=1e-5)
    assert fit.intercept[0] == pytest.approx(0.25, abs=1e-5)
    assert fit.weighted_r2[0] == pytest.approx(1.0) and fit.r2[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="weights"):
        fit_weighted_ridge(X, y, np.zeros(200))


def _true_scores(model, words, target):
    return np.array([model.weights.get(w.lower(), np.zeros(2))[target] - model.weights.get(w.lower(), np.zeros(2))[1 - target]
                     for w in words])


def test_lime_llm_recovers_the_linear_model_ranking(linear_bow, shared):
    model, clf = linear_bow
    lm = ScriptedLM(neutral={})  # every infill is a word the model does not know: the drop is the word's weight
    teacher = LimeLLM(lm=lm, sources="lm,next-token", num_samples=20, seed=0, resources=shared)
    text = "the film was good but plot acting boring and dull"  # no repeated word: no ties in the truth
    [a] = teacher.explain(clf, text)
    truth = _true_scores(model, a.words, a.target)
    assert spearmanr(a.scores, truth).statistic == pytest.approx(1.0)
    assert a.method == "lime-llm" and a.meta["num_samples"] == 20
    # with one sample per word, each score is the probability drop when that word is rewritten
    p0 = a.meta["probs"][a.target]
    for s in a.meta["samples"]:
        assert a.scores[s["position"]] == pytest.approx(p0 - s["probs"][a.target], abs=1e-3)


def test_each_sample_changes_one_word_and_synonyms_are_rejected(linear_bow, shared):
    _, clf = linear_bow
    # the scripted LM proposes synonyms (WordNet: film ~ movie, good ~ well) and antonyms
    lm = ScriptedLM(neutral={"film": "movie", "good": "well", "boring": "tedious"},
                    boundary={"good": "bad", "boring": "exciting"}, next_words=("movie", "story", "plot"))
    teacher = LimeLLM(lm=lm, num_samples=30, seed=1, resources=shared)
    text = "The film was good, but the plot was boring."
    [a] = teacher.explain(clf, text)
    words = segment(text).words
    samples = a.meta["samples"]
    assert len(samples) == 30 == a.meta["num_samples"]
    assert {s["position"] for s in samples} == set(range(len(words)))  # the floor
    for s in samples:
        new = segment(s["text"]).words
        if s["kind"] == "deletion":
            assert new == words[: s["position"]] + words[s["position"] + 1:]
            continue
        assert len(new) == len(words)
        changed = [i for i, (x, y) in enumerate(zip(words, new)) if x != y]
        assert changed == [s["position"]], (s, new)
        assert not teacher.wordnet.is_synonym(s["word"], s["replacement"])
    assert "movie" not in {s["replacement"].lower() for s in samples if s["word"] == "film"}
    assert a.meta["synonyms_rejected"] >= 2  # movie for film, well for good at least
    assert {s["kind"] for s in samples if s["word"] in {",", "."}} == {"deletion"}
    assert any(s["replacement"].lower() == "bad" for s in samples if s["word"] == "good")
    counts = summarise([a])
    assert counts["neutral_samples"] + counts["boundary_samples"] + counts["deletion_samples"] == 30
    assert 0 <= counts["neutral_kept"] <= 1 and 0 <= counts["boundary_flipped"] <= 1
    # each prompt was asked about a word only where the plan has a sample of its kind
    asked = {(re.search(r'instead of "([^"]+)"', p).group(1), "boundary" if "opposite" in p else "neutral")
             for p in lm.prompts}
    planned = {(s["word"], s["kind"]) for s in samples if s["kind"] != "deletion"}
    assert {kind for _, kind in asked} == {"neutral", "boundary"} and asked <= planned | {
        (s["word"], k) for s in samples for k in ("neutral", "boundary") if s["kind"] == "deletion"}


def test_lime_llm_is_seeded_and_records_its_language_model(linear_bow, shared):
    _, clf = linear_bow
    teacher = LimeLLM(lm=ScriptedLM(neutral={}), sources="lm,next-token", num_samples=25, seed=3,
                      resources=shared)
    text = "a very dull story but great acting"
    first, again = teacher.explain(clf, text)[0], teacher.explain(clf, text)[0]
    assert np.array_equal(first.scores, again.scores)
    config = teacher.config()
    assert config["name"] == "lime-llm" and config["lm"] == {"kind": "scripted"} and config["num_samples"] == 25
    assert "resources" not in config
    copy = dataclasses.replace(teacher, seed=4)
    assert copy.resources is teacher.resources and copy.config()["seed"] == 4


def test_lime_llm_settings_are_checked():
    assert isinstance(get_teacher("lime-llm", num_samples=10), LimeLLM)
    with pytest.raises(ValueError, match="sources"):
        LimeLLM(sources="lm,thesaurus")
    with pytest.raises(ValueError, match="boundary_fraction"):
        LimeLLM(boundary_fraction=2)
    with pytest.raises(ValueError, match="placeholders"):
        LimeLLM(neutral_prompt="replace the word")
    with pytest.raises(ValueError, match="lm must name"):
        LimeLLM(lm="")
    with pytest.raises(ValueError, match="num_samples"):
        LimeLLM(num_samples=0)


def test_fluency_window():
    from plex.teachers.lime_llm import window

    seg = segment("one two three four five six seven")
    assert window(seg.text, seg.spans, 3, "FOUR", 2) == "two three FOUR five six"
    assert window(seg.text, seg.spans, 0, "ONE", 2) == "ONE two three"
    assert window(seg.text, seg.spans, 6, "SEVEN", 0) == "one two three four five six SEVEN"


def test_fluency_compares_lime_llm_texts_with_lime_masked_texts(linear_bow, shared):
    from plex.evaluate.fluency import fluency, lime_masked_texts

    _, clf = linear_bow
    text = "the film was good but the plot was boring"
    masked = lime_masked_texts(clf, text, num_samples=12, seed=0)
    words = segment(text).words
    assert len(masked) == 12
    for t in masked:  # LIME deletes words: what is left is a subsequence of the text's words
        it = iter(words)
        assert all(w in it for w in segment(t).words) and len(segment(t).words) < len(words)
    lm = ScriptedLM(neutral={})
    attrs = LimeLLM(lm=lm, sources="lm,next-token", num_samples=12, seed=0, resources=shared).explain(clf, [text])
    out = fluency(attrs, lm, clf, seed=0)
    nonempty = [t for t in masked if t.strip()]  # LIME may delete every word; an empty text has no perplexity
    assert out["texts"] == 1 and out["samples"] == 12 and out["lime_texts"] == len(nonempty) >= 10
    # the scripted scorer's perplexity is exp(characters / words): shorter words read as more fluent
    expected = np.mean([np.exp(len(t) / len(t.split())) for t in nonempty])
    assert out["perplexity_lime"]["mean"] == pytest.approx(expected) and out["perplexity_lime"]["n"] == 1
    assert np.isfinite(out["perplexity_lime_llm"]["mean"]) and np.isfinite(out["perplexity_original"]["mean"])
    assert 0 <= out["neutral_kept"]["mean"] <= 1


def test_classifier_calls_are_batched(linear_bow, shared):
    """The prediction, the occlusion prior and every deletion come from one call; all infills from another."""
    from plex.classifiers import CallableClassifier

    model, _ = linear_bow
    calls = []
    clf = CallableClassifier(lambda texts: (calls.append(len(texts)), model(texts))[1],
                             labels=["negative", "positive"], name="counting-bow")
    text = "The film was good, but the plot was boring."
    [a] = LimeLLM(lm=ScriptedLM(neutral={}), num_samples=20, seed=0, resources=shared).explain(clf, text)
    n_words = len(a.words)
    # plex's own prediction, then the text with its leave-one-out variants, then the candidates
    assert calls[:2] == [1, n_words + 1] and len(calls) == 3
    for s in a.meta["samples"]:
        if s["kind"] == "deletion":
            assert s["probs"] == pytest.approx(model([s["text"]])[0].tolist())
