"""One fidelity definition for every surrogate teacher, and the teachers' declared capabilities."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from plex.evaluate.fidelity import adjusted_r2, attribution_fidelity, surrogate_fidelity
from plex.lm import LanguageModel
from plex.teachers import TEACHERS, GSmile, IntegratedGradients, Lime, LimeLLM, Occlusion, Shap, Teacher

TEXT = "the plot was dull but acting is brilliant"
N_WORDS = 8

# -- the function on hand cases ---------------------------------------------------------------------


def test_adjusted_r2_comes_from_the_weighted_r2():
    fid = surrogate_fidelity(weighted_r2=0.8, r2=0.6, n_samples=11, n_features=3)
    assert set(fid) == {"r2", "weighted_r2", "adjusted_r2", "exact_fit"}
    assert fid["r2"] == 0.6 and fid["weighted_r2"] == 0.8 and fid["exact_fit"] == 0.0
    assert fid["adjusted_r2"] == pytest.approx(1 - 0.2 * 10 / 7) == adjusted_r2(0.8, 11, 3)
    # the plain R^2 does not enter the adjusted one
    assert surrogate_fidelity(0.8, 0.1, 11, 3)["adjusted_r2"] == fid["adjusted_r2"]
    assert surrogate_fidelity(0.5, 0.6, 11, 3)["adjusted_r2"] == pytest.approx(1 - 0.5 * 10 / 7)
    assert all(isinstance(v, float) for v in fid.values())


@pytest.mark.parametrize("p", [1, 5, 20])
def test_exact_fit_boundary(p):
    # n = p + 1: an intercept and p coefficients on p + 1 rows reproduce any data
    exact = surrogate_fidelity(1.0, 1.0, n_samples=p + 1, n_features=p)
    assert exact["exact_fit"] == 1.0
    assert all(math.isnan(exact[k]) for k in ("r2", "weighted_r2", "adjusted_r2"))
    fewer = surrogate_fidelity(0.9, 0.9, n_samples=p, n_features=p)  # underdetermined: no fidelity either
    assert fewer["exact_fit"] == 1.0 and math.isnan(fewer["weighted_r2"])
    # n = p + 2: one residual degree of freedom, the figures are reported
    fitted = surrogate_fidelity(0.9, 0.7, n_samples=p + 2, n_features=p)
    assert fitted["exact_fit"] == 0.0 and fitted["r2"] == 0.7 and fitted["weighted_r2"] == 0.9
    assert fitted["adjusted_r2"] == pytest.approx(1 - 0.1 * (p + 1) / 1)


# -- capabilities --------------------------------------------------------------------------------

EXPECTED = {  # deterministic, surrogate, keeps_samples
    "lime": (False, True, False),
    "lime-llm": (False, True, True),
    "gsmile": (False, True, False),
    "shap": (True, False, False),
    "occlusion": (True, False, False),
    "ig": (True, False, False),
}


def test_capabilities_are_declared_on_every_teacher():
    assert set(EXPECTED) == set(TEACHERS)
    assert (Teacher.deterministic, Teacher.surrogate, Teacher.keeps_samples) == (False, False, False)
    for name, cls in TEACHERS.items():
        declared = (cls.deterministic, cls.surrogate, cls.keeps_samples)
        assert declared == EXPECTED[name], name
        assert all(type(v) is bool for v in declared)
        # class attributes, not settings: not fields, not in the recorded config
        fields = {f.name for f in dataclasses.fields(cls)}
        assert not {"deterministic", "surrogate", "keeps_samples"} & fields


@pytest.mark.parametrize("teacher", [Shap(max_evals=200), Occlusion()], ids=["shap", "occlusion"])
def test_deterministic_black_box_teachers_ignore_the_seed(teacher, linear_bow):
    _, clf = linear_bow
    texts = [TEXT, "a great film but the story is awful and very boring plot"]
    first = teacher.explain(clf, texts)
    again = teacher.explain(clf, texts)
    others = [dataclasses.replace(teacher, seed=s).explain(clf, texts) for s in (1, 12345)] \
        if "seed" in {f.name for f in dataclasses.fields(teacher)} else []
    for run in [again, *others]:
        for a, b in zip(first, run):
            np.testing.assert_array_equal(a.scores, b.scores)
    assert teacher.fidelity(first[0]) is None


def test_integrated_gradients_is_deterministic(tiny_classifier):
    ig = IntegratedGradients(n_steps=8)
    assert "seed" not in {f.name for f in dataclasses.fields(ig)}
    first, again = ig.explain(tiny_classifier, TEXT), ig.explain(tiny_classifier, TEXT)
    np.testing.assert_array_equal(first[0].scores, again[0].scores)
    assert ig.fidelity(first[0]) is None


def test_seeded_random_teacher_changes_with_its_seed(linear_bow):
    _, clf = linear_bow
    a = Lime(num_samples=100, seed=0).explain(clf, TEXT)[0]
    b = Lime(num_samples=100, seed=1).explain(clf, TEXT)[0]
    assert not np.array_equal(a.scores, b.scores)


# -- LIME -------------------------------------------------------------------------------------------


def test_lime_records_the_standard_surrogate_entry(linear_bow):
    _, clf = linear_bow
    lime = Lime(num_samples=120)
    (a,) = lime.explain(clf, TEXT, all_classes=True)
    s = a.meta["surrogate"]
    assert s["n_samples"] == 120 and s["n_features"] == N_WORDS and s["targets"] == [0, 1]
    assert s["weighted_r2"] == a.meta["score"] and s["r2"] == a.meta["unweighted_score"]
    fid = lime.fidelity(a)
    row = a.target  # all classes: the row of the attribution's own target
    assert fid == surrogate_fidelity(s["weighted_r2"][row], s["r2"][row], 120, N_WORDS)
    assert fid["exact_fit"] == 0.0 and 0.5 < fid["weighted_r2"] <= 1.0
    assert fid["adjusted_r2"] == pytest.approx(adjusted_r2(s["weighted_r2"][row], 120, N_WORDS))


def test_fidelity_follows_the_target(linear_bow):
    _, clf = linear_bow
    lime = Lime(num_samples=60)
    predicted = int(clf.predict([TEXT])[0])
    other = 1 - predicted
    (a,) = lime.explain(clf, TEXT, target=other)
    assert a.meta["surrogate"]["targets"] == [other]
    assert lime.fidelity(a)["weighted_r2"] == a.meta["surrogate"]["weighted_r2"][0]
    # all_classes: the row of the target, not row 0, whichever class is explained
    (both,) = lime.explain(clf, TEXT, target=1, all_classes=True)
    assert lime.fidelity(both)["weighted_r2"] == both.meta["surrogate"]["weighted_r2"][1]
    # a round trip through JSON keeps it readable
    from plex.attribution import Attribution

    again = Attribution.from_dict(both.to_dict())
    assert lime.fidelity(again) == lime.fidelity(both)
    # the targets recorded must hold the attribution's target
    stranger = dataclasses.replace(a, target=predicted)
    with pytest.raises(ValueError, match="targets"):
        attribution_fidelity(stranger)


def test_no_fidelity_for_an_empty_text_or_a_lime_exact_fit(linear_bow):
    _, clf = linear_bow
    lime = Lime(num_samples=20)
    empty, _ = lime.explain(clf, ["", TEXT])
    assert lime.fidelity(empty) is None
    # 3 samples (the text and two perturbations) for 2 words: exactly determined
    (short,) = Lime(num_samples=3).explain(clf, "good film")
    fid = lime.fidelity(short)
    assert fid["exact_fit"] == 1.0 and math.isnan(fid["adjusted_r2"])


# -- LIME-LLM and gSMILE --------------------------------------------------------------------------


class QuietLM(LanguageModel):
    """Infills every word with "zebra" (unknown to the classifier), proposes fixed next tokens."""

    def identity(self):
        return {"kind": "quiet"}

    def _generate(self, prompts, max_new_tokens, temperature, stop, seed):
        return [" zebra." for _ in prompts]

    def _next_tokens(self, prefixes, k):
        return [[(" quartz", -1.0), (" zebra", -2.0)][:k] for _ in prefixes]

    def _log_likelihood(self, texts):
        return [(-float(len(t)), max(1, len(t.split()))) for t in texts]


@pytest.fixture(scope="module")
def shared():
    return {}


def test_lime_llm_with_one_sample_per_word_is_an_exact_fit(linear_bow, shared):
    _, clf = linear_bow
    teacher = LimeLLM(lm=QuietLM(), sources="lm,next-token", num_samples=5, seed=0, resources=shared)
    (a,) = teacher.explain(clf, TEXT)
    s = a.meta["surrogate"]
    assert a.meta["num_samples"] == N_WORDS  # the floor: one sample per word
    assert s["n_samples"] == N_WORDS + 1 and s["n_features"] == N_WORDS and s["targets"] == [a.target]
    fid = teacher.fidelity(a)
    assert fid["exact_fit"] == 1.0
    assert all(math.isnan(fid[k]) for k in ("r2", "weighted_r2", "adjusted_r2"))
    assert teacher.keeps_samples and len(a.meta["samples"]) == N_WORDS


def test_lime_llm_with_more_samples_reports_its_fit(linear_bow, shared):
    _, clf = linear_bow
    teacher = LimeLLM(lm=QuietLM(), sources="lm,next-token", num_samples=14, seed=0, resources=shared)
    (a,) = teacher.explain(clf, TEXT, all_classes=True)
    s = a.meta["surrogate"]
    assert s["n_samples"] == 15 and s["n_features"] == N_WORDS and s["targets"] == [0, 1]
    assert s["weighted_r2"] == a.meta["score"] and len(s["r2"]) == 2
    fid = teacher.fidelity(a)
    assert fid["exact_fit"] == 0.0 and fid["weighted_r2"] == s["weighted_r2"][a.target]
    assert fid["adjusted_r2"] == pytest.approx(adjusted_r2(fid["weighted_r2"], 15, N_WORDS))


def test_gsmile_uses_the_shared_definition(linear_bow):
    _, clf = linear_bow
    teacher = GSmile(num_samples=20, p=1)
    (a,) = teacher.explain(clf, TEXT, all_classes=True)
    s = a.meta["surrogate"]
    # 20 masks plus the original prompt's row, one feature per word
    assert s["n_samples"] == a.meta["n_fitted"] == 21 and s["n_features"] == N_WORDS
    assert s["targets"] == [0, 1] and s["weighted_r2"][0] == s["weighted_r2"][1]
    fid = teacher.fidelity(a)
    own = a.meta["fidelity"]
    assert fid == {k: own[k] for k in ("r2", "weighted_r2", "adjusted_r2", "exact_fit")}
    assert fid["adjusted_r2"] == pytest.approx(adjusted_r2(fid["weighted_r2"], 21, N_WORDS))
    # one word: its one mask and the original make two rows for one coefficient, exactly determined
    (one,) = teacher.explain(clf, "brilliant")
    assert one.meta["surrogate"]["n_samples"] == 2 and teacher.fidelity(one)["exact_fit"] == 1.0
    assert one.meta["fidelity"]["exact_fit"] == 1.0 and math.isnan(one.meta["fidelity"]["adjusted_r2"])
