"""The statistics behind `plex evaluate`'s headline: bootstrap intervals, √r, the denoising verdict."""

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from plex.attribution import Attribution
from plex.classifiers import CallableClassifier
from plex.evaluate.agreement import agreement_rows
from plex.evaluate.faithfulness import faithfulness
from plex.evaluate.plausibility import iou_f1_micro_from_sums
from plex.evaluate.reference import denoising, mean_attributions, reliability
from plex.evaluate.stats import (mean_ci, paired_difference, paired_differences, sqrt_reliability, statistic_ci,
                                 summarise)


def test_interval_covers_a_known_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(300):
        sample = rng.normal(0.3, 1.0, size=60)
        est = mean_ci(sample, seed=trial, n_resamples=1000)
        assert est.low < est.mean < est.high and est.n == 60
        covered += est.low <= 0.3 <= est.high
    # the percentile bootstrap of a mean of 60 normal values covers ~94-95 %; 300 trials: sd ~1.3 %
    assert 0.90 <= covered / 300 <= 0.98


def test_interval_is_seeded_and_leaves_out_undefined_values():
    values = [0.1, 0.5, None, float("nan"), 0.9, 0.3]
    a, b = mean_ci(values, seed=3), mean_ci(values, seed=3)
    assert a == b and a.n == 4 and a.mean == pytest.approx(0.45)
    assert mean_ci([0.7]).to_dict() == {"mean": 0.7, "low": pytest.approx(float("nan"), nan_ok=True),
                                        "high": pytest.approx(float("nan"), nan_ok=True), "n": 1}
    assert mean_ci([]).n == 0 and math.isnan(mean_ci([]).mean)
    # a constant sample has a zero-width interval
    assert mean_ci([0.4] * 5).low == pytest.approx(0.4) and mean_ci([0.4] * 5).high == pytest.approx(0.4)


def test_paired_difference_cancels_the_texts_difficulty():
    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0, 1, size=40)  # varies a lot between texts
    a = difficulty + 0.05 + rng.normal(0, 0.01, size=40)
    b = difficulty
    paired = paired_difference(a, b, seed=0)
    assert paired.low > 0 and paired.mean == pytest.approx(0.05, abs=0.01)
    # unpaired, the two means' intervals overlap: the difference would look inconclusive
    assert mean_ci(a, seed=0).low < mean_ci(b, seed=0).high
    with pytest.raises(ValueError, match="one value per text"):
        paired_difference([1.0], [1.0, 2.0])
    # a text where either side is undefined drops out of the pair
    assert paired_difference([1.0, None, 3.0], [0.0, 1.0, float("nan")]).n == 1


def test_micro_statistic_interval_resamples_texts_with_all_their_counts():
    # 3 texts: (matches, predicted, gold) = (1, 1, 2), (0, 2, 1), (2, 2, 2): micro F1 = 2*3 / (5 + 5) = 0.6
    columns = {"matches": [1, 0, 2], "predicted": [1, 2, 2], "gold": [2, 1, 2]}
    est = statistic_ci(columns, lambda matches, predicted, gold: iou_f1_micro_from_sums(matches, predicted, gold),
                       seed=0)
    assert est.mean == pytest.approx(0.6) and est.n == 3
    assert 0.0 <= est.low <= 0.6 <= est.high <= 1.0
    with pytest.raises(ValueError, match="one value per text"):
        statistic_ci({"a": [1, 2], "b": [1]}, lambda a, b: a / b)


def test_summarise_gives_one_interval_per_key():
    rows = [{"x": 1.0, "y": 2.0}, {"x": 3.0, "y": float("nan")}, {"x": 2.0}]
    out = summarise(rows, ["x", "y"])
    assert out["x"]["mean"] == 2.0 and out["x"]["n"] == 3 and out["x"]["low"] <= 2.0 <= out["x"]["high"]
    assert out["y"]["n"] == 1 and out["y"]["mean"] == 2.0


def test_perfect_learner_of_the_expectation_agrees_with_one_run_at_about_sqrt_r():
    """Runs = expected scores + independent noise: corr(run, run') = r, corr(expectation, run) = √r."""
    rng = np.random.default_rng(0)
    retest, learner = [], []
    for _ in range(300):
        expected = rng.normal(size=30)
        run1 = expected + rng.normal(scale=0.8, size=30)
        run2 = expected + rng.normal(scale=0.8, size=30)
        retest.append(spearmanr(run1, run2).statistic)
        learner.append(spearmanr(expected, run1).statistic)
    r = float(np.mean(retest))
    # var(E) / (var(E) + var(noise)) = 1 / 1.64 = 0.61 for Pearson; Spearman is close to it
    assert 0.5 < r < 0.7
    assert float(np.mean(learner)) == pytest.approx(sqrt_reliability(r), abs=0.02)
    assert float(np.mean(learner)) > r + 0.1  # the "ceiling" r would be exceeded by a perfect learner
    assert math.isnan(sqrt_reliability(-0.1)) and sqrt_reliability(0.81) == pytest.approx(0.9)


def attribution(text: str, scores, target: int = 1) -> Attribution:
    words = text.split()
    spans, cursor = [], 0
    for w in words:
        start = text.index(w, cursor)
        spans.append((start, start + len(w)))
        cursor = start + len(w)
    return Attribution(text=text, words=words, spans=spans, scores=np.asarray(scores, dtype=float), target=target,
                       method="test")


def test_reliability_reports_r_and_sqrt_r_or_deterministic():
    texts = ["good film and great music", "a dull and slow plot here"]
    first = [attribution(t, [5, 4, 3, 2, 1, 0][: len(t.split())]) for t in texts]
    second = [attribution(t, [5, 4, 3, 1, 2, 0][: len(t.split())]) for t in texts]
    rel = reliability(first, second, deterministic=False)
    r = float(np.mean([spearmanr(a.scores, b.scores).statistic for a, b in zip(first, second)]))
    assert rel["retest_r"]["mean"] == pytest.approx(r) and rel["sqrt_r"]["mean"] == pytest.approx(math.sqrt(r))
    assert rel["deterministic"] is False and rel["retest_r"]["n"] == 2
    assert reliability(first, None, deterministic=True) == {"deterministic": True}
    with pytest.raises(ValueError, match="two runs"):
        reliability(first, None, deterministic=False)


def test_denoising_verdict_follows_the_paired_interval():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.8, size=50)
    rows = lambda xs: [{"spearman": float(x)} for x in xs]  # noqa: E731
    better = denoising(rows(base + 0.05), rows(base), "plex", "lime")
    assert better["verdict"] == "denoises" and better["difference"]["low"] > 0
    assert "closer to the reference than its teacher" in better["summary"] and "+0.050" in better["summary"]
    worse = denoising(rows(base - 0.2), rows(base), "plex", "lime")
    assert worse["verdict"] == "does not denoise" and worse["difference"]["high"] < 0
    noise = rng.normal(0, 0.05, size=50)
    same = denoising(rows(base + noise - noise.mean()), rows(base), "plex", "lime")
    assert same["verdict"] == "inconclusive" and same["difference"]["low"] < 0 < same["difference"]["high"]


def test_mean_reference_averages_runs_word_by_word():
    text = "good film and music"
    runs = [[attribution(text, [1.0, 2.0, 3.0, 4.0])], [attribution(text, [3.0, 2.0, 1.0, 0.0])]]
    (mean,) = mean_attributions(runs, method="reference")
    assert mean.scores.tolist() == [2.0, 2.0, 2.0, 2.0] and mean.method == "reference" and mean.meta["runs"] == 2
    with pytest.raises(ValueError, match="same words"):
        mean_attributions([[attribution(text, [1, 2, 3, 4])], [attribution("other words are here", [1, 2, 3, 4])]],
                          method="reference")


def test_agreement_rows_refuse_different_texts():
    a = [attribution("good film", [1.0, 0.0])]
    with pytest.raises(ValueError, match="same words"):
        agreement_rows(a, [attribution("bad film", [1.0, 0.0])])


def test_random_baseline_is_the_same_for_every_explainer_of_a_text():
    clf = CallableClassifier(lambda ts: np.asarray([[0.5 - 0.1 * t.count("good"), 0.5 + 0.1 * t.count("good")]
                                                    for t in ts]), labels=["neg", "pos"])
    text = "good film good music and a good plot"
    n = len(text.split())
    one = attribution(text, np.arange(n, dtype=float))
    other = attribution(text, -np.arange(n, dtype=float))
    filler = attribution("some other good text", [0.0, 1.0, 2.0, 3.0])
    # the same text at different positions of the list, explained differently
    rows = faithfulness(clf, [one, filler, other], n_random=3, seed=7)
    assert rows[0]["deletion_auc"] != rows[2]["deletion_auc"]
    for key in ("deletion_random", "insertion_random"):
        np.testing.assert_array_equal(rows[0][key], rows[2][key])
    assert rows[0]["deletion_auc_random"] == rows[2]["deletion_auc_random"]
    # and in a run of its own
    (alone,) = faithfulness(clf, [other], n_random=3, seed=7)
    np.testing.assert_array_equal(alone["deletion_random"], rows[0]["deletion_random"])


def test_paired_differences_pair_texts_and_skip_undefined_ones():
    rng = np.random.default_rng(3)
    teacher = rng.normal(0.5, 0.2, size=50)
    student = teacher + 0.1 + rng.normal(0, 0.01, size=50)  # better on every text, by about 0.1
    per_text = {
        "plex": [{"a": s, "b": 0.3 if i else None} for i, s in enumerate(student)],
        "lime": [{"a": t, "b": 0.3} for t in teacher],
        "shap": [{"a": t + 0.1, "b": 0.2} for t in teacher],
    }
    out = paired_differences(per_text, "plex", ["lime", "shap", "missing"], ["a", "b", "never"], seed=1)
    assert set(out) == {"lime", "shap"} and set(out["lime"]) == {"a", "b"}
    a = out["lime"]["a"]
    assert a["mean"] == pytest.approx(np.mean(student - teacher)) and a["n"] == 50
    # paired: the texts' large spread cancels, so the interval is narrow and leaves out 0
    assert 0.09 < a["low"] < a["mean"] < a["high"] < 0.11
    assert out["shap"]["a"]["low"] < 0 < out["shap"]["a"]["high"]  # no difference: the interval holds 0
    assert out["lime"]["b"]["n"] == 49 and out["lime"]["b"]["mean"] == pytest.approx(0.0)
    assert out["shap"]["b"]["mean"] == pytest.approx(0.1)
