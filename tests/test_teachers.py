"""LIME and SHAP teachers: known answers on a linear bag-of-words model, bookkeeping, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from plex.attribution import Attribution
from plex.classifiers import CallableClassifier
from plex.teachers import TEACHERS, Lime, Shap, Teacher, get_teacher
from plex.words import segment

# Small budgets that are still enough for the linear model's known answer.
FAST = {"lime": {"num_samples": 500}, "shap": {"max_evals": 200}}

# Sentences from the linear_bow vocabulary, no word repeated (punctuation is out of vocabulary and
# so truly contributes 0).
SENTENCES = [
    "the plot was dull but acting is brilliant",
    "a very boring movie and not fun",
    "great story , awful acting but good plot",
    "brilliant fun movie but dull story",
    "the film is not very good and plot was bad",
    "a great film but the story is awful and very boring plot",
]


@pytest.fixture(params=sorted(FAST))
def teacher(request) -> Teacher:
    return get_teacher(request.param, **FAST[request.param])


def true_contributions(model, words: list[str], target: int) -> np.ndarray:
    """The linear model's logit contribution of each position to ``target`` (0 if unknown)."""
    return np.array([model.weights.get(w.lower(), np.zeros(2))[target] for w in words])


class RecordingClassifier(CallableClassifier):
    """A CallableClassifier that remembers every text it scored."""

    def __init__(self, model, labels):
        super().__init__(model, labels=labels, name="recording")
        self.seen: list[str] = []

    def predict_proba(self, texts):
        texts = [texts] if isinstance(texts, str) else list(texts)
        self.seen.extend(texts)
        return super().predict_proba(texts)


def test_sentences_use_distinct_weights(linear_bow):
    model, _ = linear_bow
    for text in SENTENCES:
        words = [w for w in segment(text).words if w in model.weights]
        assert 6 <= len(segment(text)) <= 12
        assert len(set(words)) == len(words)
        weights = [model.weights[w][1] for w in words]
        assert len(set(weights)) == len(weights)


@pytest.mark.parametrize("target", [None, 0])
def test_recovers_linear_ranking(teacher, linear_bow, target):
    model, clf = linear_bow
    results = teacher.explain(clf, SENTENCES, target=target)
    predicted = clf.predict(SENTENCES)
    for text, attr, pred in zip(SENTENCES, results, predicted, strict=True):
        assert attr.method == teacher.name
        assert attr.target == (pred if target is None else target)
        assert attr.words == segment(text).words
        truth = true_contributions(model, attr.words, attr.target)
        rho = spearmanr(attr.scores, truth).statistic
        assert rho >= 0.9, f"{teacher.name} on {text!r}: Spearman {rho:.3f}"
        # the strongest word also has the right sign
        top = int(np.argmax(np.abs(truth)))
        assert np.sign(attr.scores[top]) == np.sign(truth[top])


def test_repeated_word_gets_one_score_per_position(teacher, linear_bow):
    model, clf = linear_bow
    text = "awful plot but the acting was awful"
    (attr,) = teacher.explain(clf, text, target=1)
    assert attr.words == ["awful", "plot", "but", "the", "acting", "was", "awful"]
    assert len(attr.scores) == 7
    first, second = attr.scores[0], attr.scores[6]
    assert first > 0.02 and second > 0.02  # "awful" has the largest positive weight here
    assert abs(first - second) <= 0.25 * max(first, second)
    assert set(np.argsort(-attr.scores)[:2]) == {0, 6}


def test_all_classes(teacher, linear_bow):
    _, clf = linear_bow
    text = SENTENCES[0]
    (single,) = teacher.explain(clf, text)
    (attr,) = teacher.explain(clf, text, all_classes=True)
    all_scores = attr.meta["all_scores"]
    assert all_scores.shape == (2, len(attr.words))
    np.testing.assert_array_equal(all_scores[attr.target], attr.scores)
    # same random stream whatever the number of classes explained
    np.testing.assert_allclose(attr.scores, single.scores, atol=1e-12)
    # two classes: p0 = 1 - p1, so the attributions are negations of each other
    np.testing.assert_allclose(all_scores[0], -all_scores[1], atol=1e-8)
    assert np.abs(all_scores).max() > 0.01


def test_all_classes_asks_for_the_texts_after_their_explanations(teacher, linear_bow):
    """With every class scored the explanation does not need the target, so the texts' own probabilities are
    asked for last (behind plex label's batching classifier they are then remembered from the teacher's own
    calls); a target that is not a class fails before any work, as it does without all_classes."""
    _, clf = linear_bow
    calls = []
    counting = CallableClassifier(lambda texts: calls.append(list(texts)) or clf.predict_proba(texts),
                                  labels=clf.labels)
    texts = [SENTENCES[0], SENTENCES[1]]
    first, second = teacher.explain(counting, texts, all_classes=True)
    assert calls[-1] == texts and texts not in calls[:-1] and len(calls) > 1
    np.testing.assert_array_equal(first.meta["probs"], clf.predict_proba([texts[0]])[0])
    assert second.target == int(clf.predict_proba([texts[1]])[0].argmax())
    calls.clear()
    with pytest.raises(ValueError, match="not a class index"):
        teacher.explain(counting, texts, target=2, all_classes=True)
    assert calls == []
    (fixed,) = teacher.explain(clf, texts[0], target=0, all_classes=True)
    assert fixed.target == 0 and np.array_equal(fixed.scores, fixed.meta["all_scores"][0])


def test_same_seed_same_scores_whatever_the_order(teacher, linear_bow):
    _, clf = linear_bow
    a, b = SENTENCES[1], SENTENCES[2]
    first = teacher.explain(clf, [a, b])
    again = teacher.explain(clf, [b, a])
    np.testing.assert_array_equal(first[0].scores, again[1].scores)
    np.testing.assert_array_equal(first[1].scores, again[0].scores)
    np.testing.assert_array_equal(first[0].scores, teacher.explain(clf, a)[0].scores)


def test_lime_seed_changes_samples(linear_bow):
    _, clf = linear_bow
    text = SENTENCES[0]
    base = Lime(num_samples=200, seed=1).explain(clf, text)[0].scores
    np.testing.assert_array_equal(base, Lime(num_samples=200, seed=1).explain(clf, text)[0].scores)
    assert not np.array_equal(base, Lime(num_samples=200, seed=2).explain(clf, text)[0].scores)


def test_lime_meta(linear_bow):
    _, clf = linear_bow
    (attr,) = Lime(num_samples=300).explain(clf, SENTENCES[3], all_classes=True)
    assert attr.meta["num_samples"] == 300
    assert len(attr.meta["intercept"]) == 2 and len(attr.meta["score"]) == 2
    assert all(0.9 < r <= 1.0 for r in attr.meta["score"])  # near-linear model, good local fit
    # intercepts are probabilities of the two classes with everything removed, roughly
    assert attr.meta["intercept"][0] + attr.meta["intercept"][1] == pytest.approx(1.0, abs=1e-6)


def test_shap_is_efficient(linear_bow):
    """Owen values add up to f(text) - f(everything masked)."""
    _, clf = linear_bow
    for text in SENTENCES[:3]:
        (attr,) = Shap(max_evals=100).explain(clf, text)
        total = attr.meta["probs"][attr.target] - attr.meta["base_value"][0]
        assert attr.scores.sum() == pytest.approx(total, abs=1e-9)
        assert attr.meta["base_value"][0] == pytest.approx(clf.predict_proba([""])[0, attr.target])
        assert 2 < attr.meta["num_evals"] <= 100


def test_shap_values_with_a_dense_mask_matrix_equal_shaps_sparse_ones(linear_bow, monkeypatch):
    """plex gives shap's Partition explainer its mask matrix as a dense array (half of SHAP's own work was reading
    rows of the sparse one): the texts scored and the values must be exactly those of shap's own matrix."""
    import contextlib
    import functools

    from shap.explainers import _partition

    import plex.teachers.shap as plex_shap

    _, clf = linear_bow
    rng = np.random.default_rng(3)
    vocab = "the film was good bad great awful plot acting boring brilliant dull fun not very".split()
    texts = SENTENCES[:3] + [" ".join(rng.choice(vocab, size=k)) for k in (2, 9, 33, 70)]

    def explain_all():
        out = []
        for text in texts:
            (attr,) = Shap(max_evals=300).explain(clf, text, all_classes=True)
            out.append((attr.meta["all_scores"], attr.meta["num_evals"]))
        return out

    dense = explain_all()
    assert isinstance(_partition.make_masks, functools.partial)  # the dense matrices were used
    monkeypatch.setattr(plex_shap, "_dense_mask_matrices", contextlib.nullcontext)
    monkeypatch.setattr(_partition, "make_masks", _partition.make_masks.args[0])
    sparse = explain_all()
    for (d_scores, d_evals), (s_scores, s_evals) in zip(dense, sparse):
        np.testing.assert_array_equal(d_scores, s_scores)
        assert d_evals == s_evals


def test_shap_keeps_its_sparse_mask_matrix_outside_plex_and_for_huge_texts(monkeypatch):
    import scipy.sparse

    import plex.teachers.shap as plex_shap

    matrix = scipy.sparse.csr_matrix(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 1, 1]], dtype=bool))
    assert plex_shap._dense_masks(lambda _: matrix, None) is matrix  # outside plex's explanations: shap's own
    with plex_shap._dense_mask_matrices():
        dense = plex_shap._dense_masks(lambda _: matrix, None)
        assert isinstance(dense, np.ndarray) and dense.dtype == bool
        np.testing.assert_array_equal(dense, matrix.toarray())
        monkeypatch.setattr(plex_shap, "DENSE_MASK_CELLS", 14)
        assert plex_shap._dense_masks(lambda _: matrix, None) is matrix


def test_single_word(teacher, linear_bow):
    _, clf = linear_bow
    (attr,) = teacher.explain(clf, "awful", target=1)
    assert attr.words == ["awful"] and attr.scores.shape == (1,)
    assert attr.scores[0] > 0
    if teacher.name == "shap":  # exact Shapley value of the only player
        expected = clf.predict_proba(["awful", ""])[:, 1]
        assert attr.scores[0] == pytest.approx(expected[0] - expected[1])


def test_default_masks_delete_words(teacher, linear_bow):
    model, _ = linear_bow
    clf = RecordingClassifier(model, labels=["negative", "positive"])
    text = "the plot, was dull"
    teacher.explain(clf, text)
    words = segment(text).words
    assert len(clf.seen) > 3
    for seen in clf.seen:
        kept = segment(seen).words
        it = iter(words)
        assert all(w in it for w in kept), f"{seen!r} is not {text!r} with words removed"


@pytest.mark.parametrize("name, setting, mask", [("lime", "mask_string", "UNKWORDZ"),
                                                 ("shap", "mask_token", "[MASK]")])
def test_custom_mask(linear_bow, name, setting, mask):
    model, _ = linear_bow
    clf = RecordingClassifier(model, labels=["negative", "positive"])
    get_teacher(name, **FAST[name], **{setting: mask}).explain(clf, "the plot was dull but fun")
    assert any(mask in seen for seen in clf.seen)


def test_empty_texts_skip_the_explainer(teacher, linear_bow, monkeypatch):
    model, _ = linear_bow
    clf = RecordingClassifier(model, labels=["negative", "positive"])

    def boom(*args, **kwargs):
        raise AssertionError("the explainer must not run on a text without words")

    monkeypatch.setattr(teacher, "attribute", boom)
    results = teacher.explain(clf, ["", "   \n\t "], all_classes=True)
    assert clf.seen == ["", "   \n\t "]  # only the prediction of the texts themselves
    for attr, text in zip(results, ["", "   \n\t "], strict=True):
        assert isinstance(attr, Attribution)
        assert attr.text == text and len(attr) == 0 and attr.scores.shape == (0,)
        assert attr.meta["all_scores"].shape == (2, 0)


def test_empty_text_among_others(teacher, linear_bow):
    _, clf = linear_bow
    empty, full = teacher.explain(clf, ["", SENTENCES[3]])
    assert len(empty) == 0
    assert len(full) == len(segment(SENTENCES[3]))


def test_bad_target(teacher, linear_bow):
    _, clf = linear_bow
    with pytest.raises(ValueError, match="class index"):
        teacher.explain(clf, "good film", target=5)


def test_get_teacher():
    assert set(TEACHERS) == {"lime", "shap", "lime-llm", "ig", "occlusion", "gsmile"}
    lime = get_teacher("lime", num_samples=50, seed=4)
    assert isinstance(lime, Lime) and lime.num_samples == 50 and lime.seed == 4
    assert lime.config() == {"name": "lime", "num_samples": 50, "seed": 4, "kernel_width": 25.0,
                             "mask_string": "", "feature_selection": "none"}
    assert isinstance(get_teacher("SHAP"), Shap)
    assert Shap().config()["max_evals"] == 500
    with pytest.raises(ValueError, match="known teachers: gsmile, ig, lime, lime-llm, occlusion, shap"):
        get_teacher("nope")
    with pytest.raises(ValueError, match="did you mean 'num_samples'"):
        get_teacher("lime", num_sample=3)
    with pytest.raises(ValueError, match="valid settings: max_evals"):
        get_teacher("shap", num_samples=3)


@pytest.mark.parametrize("cls, settings, message", [
    (Lime, {"num_samples": 1}, "num_samples"),
    (Lime, {"num_samples": 10.5}, "num_samples"),
    (Lime, {"seed": -1}, "seed"),
    (Lime, {"kernel_width": 0}, "kernel_width"),
    (Lime, {"mask_string": None}, "mask_string"),
    (Lime, {"feature_selection": "best"}, "feature_selection"),
    (Shap, {"max_evals": 2}, "max_evals"),
    (Shap, {"batch_size": 0}, "batch_size"),
    (Shap, {"mask_token": 3}, "mask_token"),
    (Shap, {"seed": "a"}, "seed"),
])
def test_invalid_settings(cls, settings, message):
    with pytest.raises(ValueError, match=message):
        cls(**settings)


def test_shap_restores_numpy_global_state(linear_bow):
    _, clf = linear_bow
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    Shap(max_evals=50).explain(clf, SENTENCES[0])
    assert np.random.rand() == expected


def test_teachers_on_a_transformer(teacher, tiny_classifier):
    text = "Great film!! Great 😀 acting, isn't it?"
    words = segment(text).words
    assert words.count("Great") == 2 and "😀" in words and "!" in words
    small = get_teacher(teacher.name, **({"num_samples": 40} if teacher.name == "lime"
                                           else {"max_evals": 60}))
    (attr,) = small.explain(tiny_classifier, text, all_classes=True)
    assert attr.words == words
    assert attr.scores.shape == (len(words),)
    assert np.all(np.isfinite(attr.scores)) and np.any(attr.scores != 0)
    assert attr.meta["all_scores"].shape == (2, len(words))
    assert attr.meta["labels"] == ["class_0", "class_1"]
    if teacher.name == "shap":
        total = attr.meta["probs"][attr.target] - attr.meta["base_value"][attr.target]
        assert attr.scores.sum() == pytest.approx(total, abs=1e-5)


def test_misaligned_features_raise(teacher, linear_bow):
    """numpy drops NUL characters from lime's and shap's token arrays; plex must notice."""
    _, clf = linear_bow
    with pytest.raises(RuntimeError, match="do not line up with plex's words"):
        teacher.explain(clf, "good\x00film plot")
