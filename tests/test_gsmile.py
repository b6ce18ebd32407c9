"""gSMILE: masks, the toy generator whose answer hangs on one word, classifiers, fidelity, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import LinearBagOfWords
from plex.classifiers import CallableClassifier
from plex.lm.base import LanguageModel
from plex.teachers import GSmile, get_teacher
from plex.teachers.gsmile import gsmile_fidelity, sample_masks
from plex.teachers.wasserstein import class_wasserstein


class OneWordLM(LanguageModel):
    """Answers one thing when the prompt holds ``word``, another otherwise; counts its prompts."""

    def __init__(self, word: str = "capital") -> None:
        super().__init__(cache_size=0)
        self.word, self.prompts, self.calls = word, [], []

    def identity(self):
        return {"kind": "toy", "path": f"one-word:{self.word}"}

    def _generate(self, prompts, max_new_tokens, temperature, stop, seed):
        texts = [m[-1]["content"] for m in prompts]
        self.prompts.extend(texts)
        self.calls.append(len(texts))
        return ["Paris is the capital of France and a large city." if self.word in t.split()
                else "Sorry, I do not understand the question." for t in texts]


@pytest.fixture(scope="module")
def gsmile_toy():
    return GSmile(lm=OneWordLM(), n_boot=60)


def test_prompts_explained_at_once_share_generations_and_match_one_at_a_time():
    """Four prompts at once: the model's greedy generations of all four arrive in shared calls, and every
    explanation equals the one made alone: the same answers, and scores equal to 1e-7 (the MiniLM embedder
    pads the answers of other prompts too, which moves its float32 outputs in the last bits)."""
    prompts = ["Tell me what the capital city of France is", "Name the capital of Peru please",
               "Which capital is the largest", "Say one word about the capital of Chad"]
    alone_lm, together_lm = OneWordLM(), OneWordLM()
    alone = GSmile(lm=alone_lm, n_boot=30, num_samples=16).explain_prompt(prompts, progress=False)
    together = GSmile(lm=together_lm, n_boot=30, num_samples=16).explain_prompt(prompts, progress=False, concurrency=4)
    for a, b in zip(alone, together):
        np.testing.assert_allclose(b.scores, a.scores, atol=1e-7)
        assert a.meta["outputs"] == b.meta["outputs"] and a.text == b.text
    assert len(together_lm.calls) < len(alone_lm.calls) == 4  # one call per prompt alone, fewer together
    # the same prompts generated, a prompt two explanations share (the empty one, say) once per round
    assert set(together_lm.prompts) == set(alone_lm.prompts) and len(together_lm.prompts) < len(alone_lm.prompts)
    with pytest.raises(ValueError, match="concurrency"):
        GSmile(lm=OneWordLM()).explain_prompt(prompts, concurrency=0)


def test_masks_are_unique_seeded_and_remove_a_word():
    masks = sample_masks(12, 64, np.random.default_rng(3))
    assert masks.shape == (64, 12) and masks.dtype == bool
    assert len({m.tobytes() for m in masks}) == 64
    assert (~masks).sum(axis=1).min() >= 1
    assert np.array_equal(masks, sample_masks(12, 64, np.random.default_rng(3)))
    assert not np.array_equal(masks, sample_masks(12, 64, np.random.default_rng(4)))
    every = sample_masks(4, 64, np.random.default_rng(0))  # 2^4 - 1 = 15 masks exist: all of them
    assert every.shape == (15, 4) and len({m.tobytes() for m in every}) == 15 and not every.all(axis=1).any()


def test_toy_generator_ranks_its_one_word_first(gsmile_toy):
    prompt = "Tell me what the capital city of France is , please"
    a = gsmile_toy.explain_prompt(prompt)[0]
    assert a.top(1)[0][1] == "capital"
    others = np.delete(a.scores, a.words.index("capital"))
    assert a.scores[a.words.index("capital")] > 0.5 and np.abs(others).max() < 0.02
    masks = a.meta["masks"].astype(bool)
    kept = masks[:, a.words.index("capital")]
    # answers are identical whenever "capital" is kept: shift 0, p-value 1, not significant
    assert np.all(a.meta["shifts"][kept] == 0) and np.all(a.meta["p_values"][kept] == 1.0)
    assert np.all(a.meta["shifts"][~kept] > 0.5) and np.all(a.meta["p_values"][~kept] < 0.05)
    assert a.meta["n_insignificant"] == int(kept.sum())
    assert a.meta["n_samples"] == 64 and a.meta["output"].startswith("Paris")
    assert a.meta["fidelity"]["r2"] > 0.99 and a.meta["fidelity"]["weighted_r2"] > 0.99
    assert len(a.meta["outputs"]) == 64 and np.all(a.meta["weights"] <= 1.0)


def test_explanations_are_reproducible(gsmile_toy):
    prompt = "which word decides the capital answer here"
    first, second = gsmile_toy.explain_prompt([prompt, prompt])
    np.testing.assert_array_equal(first.scores, second.scores)
    other = GSmile(lm=OneWordLM(), n_boot=60, seed=1).explain_prompt(prompt)[0]
    assert not np.array_equal(first.meta["masks"], other.meta["masks"])
    assert other.top(1)[0][1] == "capital"


def test_dropping_insignificant_shifts_keeps_them_out_of_the_fit():
    lm = OneWordLM()
    a = GSmile(lm=lm, n_boot=60, insignificant="drop").explain_prompt("the capital of a country")[0]
    # 31 masks exist; the 15 keeping "capital" change nothing and leave the fit. Only the original
    # prompt (shift 0) still has "capital": it alone tells the surrogate what the word does
    assert a.meta["n_insignificant"] == 15 and a.meta["n_fitted"] == 31 - 15 + 1
    assert a.top(1)[0][1] == "capital"


def test_classifier_shift_is_total_variation_and_ranks_the_weighted_words():
    import ot

    p, q = np.array([0.1, 0.6, 0.3]), np.array([0.5, 0.2, 0.3])
    discrete = 1.0 - np.eye(3)
    assert class_wasserstein(p, q, 1) == pytest.approx(ot.emd2(p, q, discrete))
    assert class_wasserstein(p, q, 2) == pytest.approx(np.sqrt(ot.emd2(p, q, discrete)))
    weights = {"brilliant": np.array([-1.5, 1.5]), "dull": np.array([0.5, -0.5]),
               "plot": np.array([-0.1, 0.1])}
    clf = CallableClassifier(LinearBagOfWords(weights), labels=["negative", "positive"], name="bow")
    a = GSmile(p=1).explain(clf, "the plot was dull but the acting was brilliant")[0]
    # a distance has no direction: removing "dull" moves p(positive) up, but it undoes part of the
    # shift when "brilliant" is removed too, so the linear surrogate gives it a negative score
    by_size = [a.words[i] for i in np.argsort(-np.abs(a.scores))[:2]]
    assert by_size == ["brilliant", "dull"] and a.scores[a.words.index("dull")] < 0
    zero = [a.scores[i] for i, w in enumerate(a.words) if w not in weights]
    assert np.abs(zero).max() < 0.1 * a.scores.max()
    assert a.meta["fidelity"]["r2"] > 0.9
    assert np.isnan(a.meta["p_values"]).all() and a.meta["n_insignificant"] == 0
    assert set(a.meta["fidelity"]) == {"r2", "weighted_r2", "adjusted_r2", "exact_fit", "weighted_mse", "mae"}
    assert a.meta["fidelity"]["exact_fit"] == 0.0
    both = GSmile(p=1).explain(clf, "the plot was dull", all_classes=True)[0]
    np.testing.assert_allclose(both.meta["all_scores"][0], both.meta["all_scores"][1])


def test_fidelity_figures_by_hand():
    X = np.array([[1, 0], [0, 1], [1, 1], [0, 0], [1, 0]], dtype=float)
    y = np.array([1.0, 2.0, 3.5, 0.0, 0.5])
    w = np.array([1.0, 1.0, 2.0, 1.0, 0.5])
    pred = np.array([0.8, 2.0, 3.0, 0.2, 0.8])
    fid = gsmile_fidelity(X, y, w, pred, r2=0.9, weighted_r2=0.8)
    # adjusted R^2 from the weighted R^2, as for every surrogate teacher
    assert fid.adjusted_r2 == pytest.approx(1 - 0.2 * 4 / 2)
    assert (fid.r2, fid.weighted_r2, fid.exact_fit) == (0.9, 0.8, 0.0)
    assert fid.weighted_mse == pytest.approx((0.04 + 0 + 0.5 + 0.04 + 0.045) / 5.5)
    assert fid.mae == pytest.approx((0.2 + 0 + 0.5 + 0.2 + 0.3) / 5)
    exact = gsmile_fidelity(X[:3], y[:3], w[:3], pred[:3], 0.5, 0.5)  # 3 rows, 2 words: exactly determined
    assert exact.exact_fit == 1.0 and np.isnan([exact.r2, exact.weighted_r2, exact.adjusted_r2]).all()


def test_settings_are_checked():
    with pytest.raises(ValueError, match="insignificant"):
        get_teacher("gsmile", insignificant="ignore")
    with pytest.raises(ValueError, match="sigma"):
        GSmile(sigma=0)
    with pytest.raises(ValueError, match="p must be"):
        GSmile(p=0.5)
    with pytest.raises(ValueError, match="lm must name"):
        GSmile(lm="")
    with pytest.raises(ValueError, match="empty prompt"):
        GSmile(lm=OneWordLM()).explain_prompt("  ")
    assert get_teacher("gsmile", num_samples=8).config()["num_samples"] == 8


def test_explain_prompt_cli_prints_and_writes(tmp_path, monkeypatch, capsys):
    import plex.lm
    from plex.cli import main

    monkeypatch.setattr(plex.lm, "load_lm", lambda spec, **kw: OneWordLM())
    html, out = tmp_path / "h.html", tmp_path / "e.jsonl"
    code = main(["explain-prompt", "--model", "toy", "--n-boot", "30", "--num-samples", "20",
                 "--html", str(html), "-o", str(out), "What is the capital of <France>?"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "output: Paris is the capital" in printed and "top words: capital" in printed
    page = html.read_text()
    assert "&lt;</span>" in page and "&gt;</span>" in page and "<France>" not in page
    assert 'class="output"' in page and "Paris is the capital" in page and "weighted R²" in page
    row = json.loads(out.read_text().splitlines()[0])
    assert row["method"] == "gsmile" and row["meta"]["n_samples"] == 20
    assert main(["explain-prompt", "--model", "toy", "--html", str(html)]) == 2  # no prompt: clear error


def test_local_causal_lm_backend(tiny_lm_path):
    from plex.lm import LocalLM

    lm = LocalLM.from_pretrained(tiny_lm_path, device="cpu", batch_size=8)
    g = GSmile(lm=lm, num_samples=8, max_new_tokens=4, n_boot=20)
    a = g.explain_prompt("the film was good and the music great")[0]
    # the greedy answers are the model's own: the same prompts asked directly give the same text
    again = lm.generate([a.text, *[" ".join(w for w, k in zip(a.words, m) if k) for m in a.meta["masks"]]],
                        max_new_tokens=4)
    assert [a.meta["output"], *a.meta["outputs"]] == again
    assert a.meta["n_samples"] == 8 and np.all(np.isfinite(a.scores)) and len(a.scores) == 8
    assert g.config()["lm"]["kind"] == "local"


@pytest.mark.slow
def test_packaged_lm_prompt():
    a = GSmile(num_samples=16, n_boot=50).explain_prompt("What is the capital of France?")[0]
    assert a.meta["output"] and a.top(2)[0][1] in {"capital", "France"}
