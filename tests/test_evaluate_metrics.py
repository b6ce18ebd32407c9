"""Metric library for comparing explainers, checked on cases small enough to compute by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plex.attribution import Attribution
from plex.classifiers import CallableClassifier
from plex.evaluate.agreement import agreement, kendall, sign_agreement, spearman, top_k_overlap
from plex.evaluate.faithfulness import (
    CURVE_KEYS,
    FRACTIONS,
    auc,
    comprehensiveness,
    curve_counts,
    deletion_curve,
    faithfulness,
    insertion_curve,
    rationale_sizes,
    sufficiency,
)
from plex.evaluate.fidelity import adjusted_r2
from plex.evaluate.metrics import METRICS, Metric, describe, direction
from plex.evaluate.plausibility import (
    IouCounts,
    auprc,
    gold_word_spans,
    iou_counts,
    iou_f1_micro,
    iou_f1_micro_from_sums,
    plausibility,
    rationale_mask,
    roc_auc,
    token_f1,
)
from plex.evaluate.stability import jaccard_top_k
from plex.words import segment


def attribution(text: str, scores, target: int = 1, method: str = "test") -> Attribution:
    seg = segment(text)
    return Attribution(text, seg.words, seg.spans, np.asarray(scores, dtype=float), target, method)


class CountingGoodBad:
    """p(positive) = clip(0.5 + 0.1 * #"good" - 0.1 * #"bad", 0, 1); counts predict_proba calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        rows = []
        for text in texts:
            words = segment(text).words
            p = min(1.0, max(0.0, 0.5 + 0.1 * words.count("good") - 0.1 * words.count("bad")))
            rows.append([1.0 - p, p])
        return np.asarray(rows)


@pytest.fixture
def good_bad():
    fn = CountingGoodBad()
    return fn, CallableClassifier(fn, labels=["negative", "positive"], name="good-bad")


# Ten words, four "good" and two "bad": p(positive) = 0.7. Ranked by score the words are
# good(0) good(2) good(6) good(9) plot(4) fine(8) the(3) was(7) bad(5) bad(1).
TEXT = "good bad good the plot bad good was fine good"
SCORES = [0.9, -0.5, 0.8, 0.0, 0.1, -0.4, 0.7, 0.0, 0.05, 0.6]


# --- metric registry ---------------------------------------------------------------------------


def test_directions_are_declared_once():
    assert direction("comprehensiveness") == "higher"
    assert direction("sufficiency") == "lower"
    assert direction("deletion_auc") == "lower"
    assert direction("insertion_auc") == "higher"
    assert direction("ms_per_text") == "lower"
    assert direction("relative_to_student") == "lower"
    assert direction("retest_r") == "higher" and direction("exact_fit") == "lower"
    assert all(isinstance(m, Metric) and m.name == key for key, m in METRICS.items())
    rows = describe()
    assert [r["name"] for r in rows] == list(METRICS)
    assert all(r["description"] and r["direction"] in ("higher", "lower") for r in rows)
    with pytest.raises(KeyError, match="unknown metric"):
        direction("accuracy")


def test_every_returned_key_is_a_declared_metric(good_bad):
    _, clf = good_bad
    a = attribution(TEXT, SCORES)
    counts = {"iou_matches", "predicted_spans", "gold_spans"}  # per-text counts behind the micro iou_f1
    keys = set(agreement(SCORES, SCORES)) | (set(plausibility(a, [(0, 4)])) - counts)
    (faith,) = faithfulness(clf, [a])
    assert set(faith) - keys.union(METRICS) == set(CURVE_KEYS)
    keys |= set(faith) - set(CURVE_KEYS)
    assert keys <= set(METRICS)
    assert {"jaccard_seed", "jaccard_edit", "adjusted_r2", "ms_per_text", "texts_per_second"} <= set(METRICS)


# --- agreement ---------------------------------------------------------------------------------

TRUTH = np.array([0.5, -1.0, 2.0, 0.1, 3.0])


def test_perfect_explainer_agrees_fully():
    out = agreement(TRUTH, TRUTH.copy())
    expected = {"spearman": 1.0, "kendall": 1.0, "top1": 1.0, "top3": 1.0, "top5": 1.0, "sign_agreement": 1.0}
    assert out == pytest.approx(expected)


def test_reversed_explainer():
    out = agreement(TRUTH, -TRUTH)
    assert out["spearman"] == pytest.approx(-1.0)
    assert out["kendall"] == pytest.approx(-1.0)
    assert out["top1"] == 0.0
    # top-3 of the truth: positions {4, 2, 0}; of the reversed scores: {1, 3, 0}.
    assert out["top3"] == pytest.approx(1 / 3)
    assert out["top5"] == 1.0
    assert out["sign_agreement"] == 0.0


def test_ties():
    a, b = np.array([1.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0])
    # Average ranks [2.5, 2.5, 1] and [1, 2.5, 2.5]: centred [.5, .5, -1] and [-1, .5, .5],
    # covariance -0.75 over variance 1.5.
    assert spearman(a, b) == pytest.approx(-0.5)
    # Pairs: (0,1) tied in a, (0,2) discordant, (1,2) tied in b: tau-b = (0 - 1) / sqrt(2 * 2).
    assert kendall(a, b) == pytest.approx(-0.5)
    # Ties are broken by position: top-1 of a is word 0, of b is word 1.
    assert top_k_overlap(a, b, 1) == 0.0
    assert top_k_overlap(a, a, 1) == 1.0
    assert top_k_overlap(a, b, 2) == 0.5


def test_one_word_and_empty():
    one = agreement([0.3], [-2.0])
    assert math.isnan(one["spearman"]) and math.isnan(one["kendall"])
    assert one["top1"] == one["top3"] == one["top5"] == 1.0
    assert one["sign_agreement"] == 0.0
    empty = agreement([], [])
    assert all(math.isnan(v) for v in empty.values())


def test_constant_side_is_nan():
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert math.isnan(kendall([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]))


def test_sign_agreement_counts_tiny_values_as_zero():
    a = [1e-13, -1.0, 2.0, 0.0]
    b = [0.0, -3.0, -2.0, 0.5]
    assert sign_agreement(a, b) == 0.5


def test_length_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="different numbers of words"):
        agreement([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="different numbers of words"):
        jaccard_top_k([1.0], [1.0, 2.0])


# --- faithfulness ------------------------------------------------------------------------------


def test_rationale_sizes_and_curve_steps():
    assert rationale_sizes(10) == [1, 1, 1, 2, 5]
    assert rationale_sizes(30, [0.1]) == [3]  # not 4 from 0.1 * 30 = 3.0000000000000004
    assert rationale_sizes(1) == [1] * len(FRACTIONS)
    assert curve_counts(4).tolist() == [0, 1, 2, 3, 4]
    assert curve_counts(10, steps=5).tolist() == [0, 2, 4, 6, 8, 10]
    assert curve_counts(120).tolist()[:3] == [0, 2, 4] and len(curve_counts(120)) == 51
    assert auc([0.0, 0.5, 1.0], [1.0, 0.0, 1.0]) == pytest.approx(0.5)


def test_aopc_by_hand(good_bad):
    _, clf = good_bad
    a = attribution(TEXT, SCORES)
    # k = 1, 1, 1, 2, 5. Without the top 1 / 2 / 5 words p = 0.6 / 0.5 / 0.3 (the four goods and
    # "plot" gone); with only them p = 0.6 / 0.7 / 0.9.
    assert comprehensiveness(clf, a) == pytest.approx((3 * 0.1 + 0.2 + 0.4) / 5)  # 0.18
    assert sufficiency(clf, a) == pytest.approx((3 * 0.1 + 0.0 - 0.2) / 5)  # 0.02


def test_curves_by_hand(good_bad):
    _, clf = good_bad
    a = attribution(TEXT, SCORES)
    x, deletion = deletion_curve(clf, a)
    assert np.allclose(x, np.linspace(0, 1, 11))
    assert np.allclose(deletion, [0.7, 0.6, 0.5, 0.4, 0.3, 0.3, 0.3, 0.3, 0.3, 0.4, 0.5])
    assert auc(x, deletion) == pytest.approx(0.4)
    x, insertion = insertion_curve(clf, a)
    assert np.allclose(insertion, [0.5, 0.6, 0.7, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9, 0.8, 0.7])
    assert auc(x, insertion) == pytest.approx(0.8)
    x, coarse = deletion_curve(clf, a, steps=5)
    assert np.allclose(x, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert np.allclose(coarse, [0.7, 0.5, 0.3, 0.3, 0.3, 0.5])


def test_batched_faithfulness_matches_single_functions_with_one_call(good_bad):
    fn, clf = good_bad
    attributions = [
        attribution(TEXT, SCORES),
        attribution("bad good bad", [0.0, 1.0, -1.0]),
        attribution("good", [1.0]),
        attribution("", []),
    ]
    results = faithfulness(clf, attributions, n_random=3, seed=1)
    assert fn.calls == 1
    first = results[0]
    assert first["comprehensiveness"] == pytest.approx(0.18)
    assert first["sufficiency"] == pytest.approx(0.02)
    assert first["deletion_auc"] == pytest.approx(0.4)
    assert first["insertion_auc"] == pytest.approx(0.8)
    assert first["deletion_random"].shape == first["x"].shape == (11,)
    assert first["deletion_auc_random"] == pytest.approx(auc(first["x"], first["deletion_random"]))
    # One word: every perturbation removes or keeps "good", 0.6 vs 0.5.
    one = results[2]
    assert one["comprehensiveness"] == pytest.approx(0.1)
    assert one["sufficiency"] == pytest.approx(0.0)
    assert one["x"].tolist() == [0.0, 1.0]
    assert one["deletion_auc"] == pytest.approx(0.55) and one["deletion_auc_random"] == pytest.approx(0.55)
    empty = results[3]
    assert all(math.isnan(empty[key]) for key in empty if key not in CURVE_KEYS)
    assert all(len(empty[key]) == 0 for key in CURVE_KEYS)
    # The same numbers as the single-attribution functions, and reproducible with the same seed.
    for a, r in zip(attributions[:3], results[:3]):
        assert r["comprehensiveness"] == pytest.approx(comprehensiveness(clf, a))
        assert r["sufficiency"] == pytest.approx(sufficiency(clf, a))
        assert np.allclose(r["insertion"], insertion_curve(clf, a)[1])
    again = faithfulness(clf, attributions, n_random=3, seed=1)
    assert np.allclose(again[0]["insertion_random"], first["insertion_random"])


def test_true_weights_are_more_faithful_than_reversed_and_random(linear_bow):
    model, clf = linear_bow
    texts = [
        "the film was good but the plot was boring and the acting dull",
        "a brilliant story , not very fun but great acting",
        "awful movie , the plot is dull and the story bad",
    ]
    truth, reverse, shuffled = [], [], []
    rng = np.random.default_rng(3)
    for text in texts:
        seg = segment(text)
        w = np.array([model.weights.get(word.lower(), np.zeros(2))[1] for word in seg.words])
        truth.append(attribution(text, w))
        reverse.append(attribution(text, -w))
        shuffled.append(attribution(text, rng.permutation(w)))
    calls = []
    counted = CallableClassifier(lambda t: calls.append(len(t)) or model(t), labels=clf.labels)
    results = faithfulness(counted, truth + reverse + shuffled, n_random=5)
    assert len(calls) == 1
    n = len(texts)
    for i in range(n):
        good, bad, rand = results[i], results[n + i], results[2 * n + i]
        assert good["comprehensiveness"] > bad["comprehensiveness"]
        assert good["comprehensiveness"] > rand["comprehensiveness"]
        assert good["sufficiency"] < bad["sufficiency"]
        assert good["deletion_auc"] < bad["deletion_auc"]
        assert good["deletion_auc"] < good["deletion_auc_random"]
        assert good["insertion_auc"] > good["insertion_auc_random"] > bad["insertion_auc"]


def test_faithfulness_rejects_a_target_the_classifier_does_not_have(good_bad):
    _, clf = good_bad
    with pytest.raises(ValueError, match="not a class"):
        faithfulness(clf, [attribution("good", [1.0], target=2)])


# --- plausibility ------------------------------------------------------------------------------


def test_rationale_mask_from_character_spans():
    text = "the plot was great fun"
    seg = segment(text)
    assert rationale_mask(seg.spans, [(13, 22)]).tolist() == [False, False, False, True, True]
    assert rationale_mask(seg.spans, [(3, 5)]).tolist() == [False, True, False, False, False]
    assert rationale_mask(seg.spans, [(3, 4)]).tolist() == [False, False, False, False, False]


def test_token_f1_auprc_roc_by_hand():
    scores, mask = [3.0, 2.0, 1.0, 0.0], [True, False, True, False]
    # Top 2 = words 0 and 1: one hit, precision = recall = 1/2.
    assert token_f1(scores, mask, k=2) == 0.5
    assert token_f1(scores, mask) == 0.5
    # Top 3: two hits, precision 2/3, recall 1, F1 = 0.8.
    assert token_f1(scores, mask, k=3) == pytest.approx(0.8)
    # Rationale words rank 1st and 3rd: average precision = (1/1 + 2/3) / 2.
    assert auprc(scores, mask) == pytest.approx(5 / 6)
    # (rationale, other) pairs ranked right: (3,2) (3,0) (1,0) yes, (1,2) no.
    assert roc_auc(scores, mask) == pytest.approx(0.75)
    assert math.isnan(token_f1(scores, [False] * 4))
    assert math.isnan(auprc(scores, [True] * 4)) and math.isnan(roc_auc(scores, [False] * 4))


def test_token_f1_at_a_fixed_k_by_hand():
    scores, mask = [3.0, 2.0, 1.0, 0.0], [True, False, True, False]
    # k = 10 > 4 words: all 4 words are predicted, 2 hits: precision 2/4, recall 1, F1 = 2/3.
    assert token_f1(scores, mask, k=10) == pytest.approx(2 / 3)
    # k = 1: word 0 is a hit: precision 1, recall 1/2, F1 = 2/3.
    assert token_f1(scores, mask, k=1) == pytest.approx(2 / 3)


def test_gold_word_spans_are_the_annotated_spans():
    spans = segment("very funny film").spans  # (0, 4) (5, 10) (11, 15)
    # Adjacent annotated spans stay two gold spans (runs of rationale words would merge them).
    assert gold_word_spans(spans, [(0, 4), (5, 10)]) == [(0, 1), (1, 2)]
    # One annotated span over two words is one gold span; (0, 3) and (0, 4) both give word 0, once;
    # (4, 5) is the space between words, overlapping none, so it is dropped.
    assert gold_word_spans(spans, [(2, 7), (0, 3), (0, 4), (4, 5)]) == [(0, 1), (0, 2)]
    assert gold_word_spans(spans, []) == []


def test_iou_counts_one_matching_and_one_missing_span():
    # Gold spans: words [0, 3) and [6, 8). Top 3 words: 0, 1 (a run, IOU 2/3 with [0, 3)) and 5
    # (IOU 0 with [6, 8)). One of two predicted spans matches.
    gold = [(0, 3), (6, 8)]
    scores = [0.9, 0.8, 0.1, 0.0, 0.0, 0.7, 0.2, 0.3]
    assert iou_counts(scores, gold, k=3) == IouCounts(matches=1, predicted=2, gold=2)
    # Top 5 (the oracle k: 5 gold words) adds words 7 and 6: [5, 8) has IOU 2/3 with [6, 8).
    assert iou_counts(scores, gold, k=5) == (2, 2, 2)
    assert iou_counts(scores, gold) == (2, 2, 2)
    # A run of 4 over a gold span of 2 has IOU exactly 0.5, which counts as a match.
    assert iou_counts([1.0, 1.0, 1.0, 1.0, 0.0], [(1, 3)], k=4) == (1, 1, 1)
    assert iou_counts([1.0, 0.0, 0.0, 0.0, 1.0], [(1, 4)], k=2) == (0, 2, 1)
    assert iou_counts([1.0, 0.0], []) == (0, 0, 0)
    with pytest.raises(ValueError, match="word ranges"):
        iou_counts([1.0, 0.0], [(1, 3)])


def test_adjacent_gold_spans_stay_apart():
    a = attribution("very funny film", [0.9, 0.8, 0.1])
    out = plausibility(a, [(0, 4), (5, 10)])
    # Oracle k = 2: the predicted run "very funny" = words [0, 2) has IOU 1/2 with [0, 1) and with
    # [1, 2): one match, one predicted span, two gold spans. P = 1, R = 1/2, F1 = 2/3 (merging the
    # gold spans into the run [0, 2) would have given 1).
    assert (out["iou_matches"], out["predicted_spans"], out["gold_spans"]) == (1, 1, 2)
    assert iou_f1_micro([out]) == pytest.approx(2 / 3)
    assert out["token_f1_oracle_k"] == 1.0
    # Top 3 = all words: precision 2/3, recall 1, F1 = 0.8.
    assert out["token_f1_at_k"] == pytest.approx(0.8)


def test_micro_iou_f1_over_two_texts_by_hand():
    text = "a b c d e f g h"  # word i is the character span (2i, 2i + 1)
    # Text 1: gold spans words [0, 3) and [6, 8); oracle k = 5, top 5 = words 0, 1, 5, 7, 6, so the
    # predicted runs [0, 2) and [5, 8) match with IOU 2/3 each: 2 matches, 2 predicted, 2 gold (F1 1).
    first = plausibility(attribution(text, [0.9, 0.8, 0.1, 0.0, 0.0, 0.7, 0.2, 0.3]), [(0, 5), (12, 15)])
    # Text 2: gold spans are the single words 0, 2, 4, 6; oracle k = 4, top 4 = words 0-3, one run
    # [0, 4) with IOU 1/4 against [0, 1) and [2, 3): 0 matches, 1 predicted, 4 gold (F1 0).
    second = plausibility(attribution(text, [0.9, 0.8, 0.7, 0.6, 0.0, 0.0, 0.0, 0.0]),
                          [(0, 1), (4, 5), (8, 9), (12, 13)])
    counts = [(r["iou_matches"], r["predicted_spans"], r["gold_spans"]) for r in (first, second)]
    assert counts == [(2, 2, 2), (0, 1, 4)]
    # Micro: P = 2/3, R = 2/6, F1 = 2 * 2 / (3 + 6) = 4/9 = 0.444...; the macro mean of the per-text
    # F1s would be (1 + 0) / 2 = 0.5.
    assert iou_f1_micro([first, second]) == pytest.approx(4 / 9)
    # A text without rationale words: NaN scores, zero counts, so the micro F1 does not change.
    none = plausibility(attribution(text, [0.9] + [0.0] * 7), [])
    assert all(math.isnan(none[key]) for key in ("token_f1_oracle_k", "token_f1_at_k", "auprc", "roc_auc"))
    assert (none["iou_matches"], none["predicted_spans"], none["gold_spans"]) == (0, 0, 0)
    assert iou_f1_micro([first, none, second]) == pytest.approx(4 / 9)
    assert math.isnan(iou_f1_micro([none])) and math.isnan(iou_f1_micro([]))


def test_micro_iou_f1_from_sums_is_elementwise():
    assert iou_f1_micro_from_sums(2, 3, 6) == pytest.approx(4 / 9)
    assert iou_f1_micro_from_sums(0, 0, 3) == 0.0  # gold spans but nothing predicted
    assert math.isnan(iou_f1_micro_from_sums(0, 2, 0))
    # Bootstrap-style: per-text counts, resampled texts in columns, sums along the text axis.
    matches, predicted, gold = np.array([2, 0]), np.array([2, 1]), np.array([2, 4])
    resamples = np.array([[0, 1, 0], [1, 1, 0]])  # columns: texts (0, 1), (1, 1), (0, 0)
    out = iou_f1_micro_from_sums(*(x[resamples].sum(axis=0) for x in (matches, predicted, gold)))
    assert out.shape == (3,)
    assert out == pytest.approx([4 / 9, 0.0, 1.0])


def test_plausibility_of_an_attribution():
    a = attribution("the plot was great fun", [0.0, 0.1, 0.0, 0.9, 0.8])
    out = plausibility(a, [(13, 22)])
    # Top 3 = great, fun, plot: precision 2/3, recall 1, F1 0.8.
    assert out == {"token_f1_oracle_k": 1.0, "token_f1_at_k": pytest.approx(0.8), "auprc": 1.0, "roc_auc": 1.0,
                   "iou_matches": 1, "predicted_spans": 1, "gold_spans": 1}
    assert plausibility(a, [(13, 22)], fixed_k=2)["token_f1_at_k"] == 1.0
    assert all(isinstance(out[key], int) for key in ("iou_matches", "predicted_spans", "gold_spans"))


# --- stability and fidelity --------------------------------------------------------------------


def test_jaccard_top_k():
    assert jaccard_top_k([3.0, 2.0, 1.0, 0.0], [0.0, 2.0, 3.0, 1.0], k=2) == pytest.approx(1 / 3)
    assert jaccard_top_k([3.0, 2.0, 1.0], [3.0, 2.0, 1.0]) == 1.0
    assert jaccard_top_k([1.0], [5.0], k=3) == 1.0
    assert math.isnan(jaccard_top_k([], []))


def test_adjusted_r2():
    assert adjusted_r2(0.5, n_samples=11, n_features=2) == pytest.approx(1 - 0.5 * 10 / 8)
    assert adjusted_r2(1.0, n_samples=20, n_features=5) == 1.0
    assert math.isnan(adjusted_r2(0.9, n_samples=3, n_features=2))
