"""Occlusion and Integrated Gradients: closed-form answers on linear models, bookkeeping, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from plex.assets import minilm_path
from plex.classifiers import CallableClassifier, HFClassifier
from plex.teachers import TEACHERS, IntegratedGradients, Occlusion, get_teacher
from plex.teachers.occlusion import occlusion_scores
from plex.words import join_kept, segment

SENTENCES = [
    "the plot was dull but acting is brilliant",
    "a very boring movie and not fun",
    "great story , awful acting but good plot",
    "the film is not very good and plot was bad",
]


class CountingClassifier(CallableClassifier):
    """A CallableClassifier that records each ``predict_proba`` call's texts."""

    def __init__(self, model, labels):
        super().__init__(model, labels=labels, name="counting")
        self.calls: list[list[str]] = []

    def predict_proba(self, texts):
        texts = [texts] if isinstance(texts, str) else list(texts)
        self.calls.append(texts)
        return super().predict_proba(texts)


def logit_gap(model, words: list[str]) -> np.ndarray:
    """Per position: the linear model's contribution to logit(1) - logit(0)."""
    return np.array([np.subtract(*model.weights.get(w.lower(), np.zeros(2))[::-1]) for w in words])


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# --- occlusion ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", SENTENCES)
def test_occlusion_closed_form_on_linear_model(linear_bow, text):
    """p1 = sigmoid(S) with S the sum of the gaps, so leaving out word i scores
    sigmoid(S) - sigmoid(S - gap_i) for class 1 and the negation for class 0."""
    model, clf = linear_bow
    (attr,) = Occlusion().explain(clf, text, all_classes=True)
    gaps = logit_gap(model, attr.words)
    total = gaps.sum()
    expected = sigmoid(total) - sigmoid(total - gaps)
    np.testing.assert_allclose(attr.meta["all_scores"][1], expected, atol=1e-12)
    np.testing.assert_allclose(attr.meta["all_scores"][0], -expected, atol=1e-12)
    # the drop is monotone in the gap, so the ranking is exactly the true one
    assert spearmanr(attr.meta["all_scores"][1], gaps).statistic == pytest.approx(1.0)
    assert attr.meta["base_probability"] == pytest.approx([1 - sigmoid(total), sigmoid(total)])
    assert attr.method == "occlusion"


def test_occlusion_scores_function_matches_teacher(linear_bow):
    _, clf = linear_bow
    seg = segment(SENTENCES[2])
    (attr,) = Occlusion().explain(clf, seg.text, all_classes=True)
    scores = occlusion_scores(clf, seg, [1, 0])
    assert scores.shape == (2, len(seg)) and scores.dtype == np.float64
    np.testing.assert_array_equal(scores, attr.meta["all_scores"][[1, 0]])


def test_occlusion_one_call_for_all_words(linear_bow):
    model, _ = linear_bow
    clf = CountingClassifier(model, labels=["negative", "positive"])
    text = "the plot, was dull"
    seg = segment(text)
    Occlusion().explain(clf, text, all_classes=True)
    # the text and its W variants, then (every class scored: the target is not needed first) the prediction
    assert len(clf.calls) == 2 and clf.calls[1] == [text]
    assert clf.calls[0][0] == text
    keep = ~np.eye(len(seg), dtype=bool)
    assert clf.calls[0][1:] == [join_kept(text, seg.spans, keep[i]) for i in range(len(seg))]
    assert clf.calls[0][1:3] == ["plot, was dull", "the , was dull"]


def test_occlusion_custom_mask_and_repeated_word(linear_bow):
    model, _ = linear_bow
    clf = CountingClassifier(model, labels=["negative", "positive"])
    text = "awful plot but the acting was awful"
    (attr,) = Occlusion(mask_token="UNKWORDZ").explain(clf, text, target=1)
    assert all(v.count("UNKWORDZ") == 1 for v in clf.calls[1][1:])
    assert attr.scores[0] == attr.scores[6]  # a bag of words: each occurrence counts the same
    assert attr.scores[0] == attr.scores.max()


def test_occlusion_on_a_transformer(tiny_classifier):
    text = "Great film!! Great 😀 acting, isn't it?"
    (attr,) = Occlusion().explain(tiny_classifier, text, all_classes=True)
    assert attr.scores.shape == (len(segment(text)),)
    assert np.all(np.isfinite(attr.scores)) and np.any(attr.scores != 0)
    np.testing.assert_allclose(attr.meta["all_scores"][0], -attr.meta["all_scores"][1], atol=1e-6)


# --- integrated gradients on a model whose answer is known ------------------------------------


def bag_of_embeddings(tokenizer, token_weights: dict[int, tuple[float, float]]):
    """A ``transformers`` model whose logits are the sum of one 2-vector per token (attention mask
    applied); tokens not in ``token_weights`` weigh 0. Its IG in logit space is known exactly."""
    from transformers import PretrainedConfig, PreTrainedModel
    from transformers.modeling_outputs import SequenceClassifierOutput

    class Config(PretrainedConfig):
        model_type = "plex-test-bag"

        def __init__(self, vocab_size: int = 8, **kwargs):
            super().__init__(**kwargs)
            self.vocab_size = vocab_size

    class Bag(PreTrainedModel):
        config_class = Config

        def __init__(self, config):
            super().__init__(config)
            self.embed = nn.Embedding(config.vocab_size, config.num_labels)

        def _init_weights(self, module):
            pass

        def get_input_embeddings(self):
            return self.embed

        def forward(self, input_ids, attention_mask=None, token_type_ids=None, **_):
            mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            logits = (self.embed(input_ids) * mask[..., None].to(self.embed.weight.dtype)).sum(dim=1)
            return SequenceClassifierOutput(logits=logits)

    config = Config(vocab_size=tokenizer.vocab_size, num_labels=2,
                    id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    model = Bag(config)
    with torch.no_grad():
        model.embed.weight.zero_()
        for token_id, weight in token_weights.items():
            model.embed.weight[token_id] = torch.tensor(weight)
    return model


# "unbelievably" and "overwrought" are several subword tokens in MiniLM's vocabulary.
BAG_TEXT = "unbelievably good but dull , overwrought plot"


@pytest.fixture(scope="module")
def bag():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    rng = np.random.default_rng(0)
    ids = tokenizer(BAG_TEXT, add_special_tokens=False)["input_ids"]
    weights = {i: tuple(rng.normal(0.0, 1.0, 2)) for i in ids}
    weights[tokenizer.cls_token_id] = (0.3, -0.2)  # special tokens are in the baseline too
    weights[tokenizer.sep_token_id] = (-0.1, 0.4)
    weights[tokenizer.mask_token_id] = (0.05, -0.25)  # the "mask" baseline is not zero
    model = bag_of_embeddings(tokenizer, weights)
    return HFClassifier(model, tokenizer, device="cpu"), weights


def word_weights(clf, text, weights, skip=(0.0, 0.0)):
    """Per word and class: the sum of its tokens' weights (the exact IG in logit space)."""
    enc = clf.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    seg = segment(text)
    out = np.zeros((len(seg), 2))
    for token_id, (start, _) in zip(enc["input_ids"], enc["offset_mapping"]):
        word = next(i for i, (s, e) in enumerate(seg.spans) if s <= start < e)
        out[word] += np.subtract(weights.get(token_id, (0.0, 0.0)), skip)
    return out


def test_bag_text_has_multi_token_words(bag):
    clf, _ = bag
    pieces = {w: clf.tokenizer.tokenize(w) for w in segment(BAG_TEXT).words}
    assert len(pieces["unbelievably"]) >= 3 and len(pieces["overwrought"]) >= 3


def test_ig_logits_equals_true_contributions(bag):
    clf, weights = bag
    truth = word_weights(clf, BAG_TEXT, weights)
    (attr,) = IntegratedGradients(output="logits").explain(clf, BAG_TEXT, all_classes=True)
    np.testing.assert_allclose(attr.meta["all_scores"], truth.T, atol=1e-4)
    # completeness: the scores add up to f(input) - f(baseline); the baseline keeps [CLS]/[SEP]
    assert np.abs(attr.meta["convergence_delta"]).max() < 1e-4
    assert attr.meta["n_steps"] == 50


def test_ig_probs_closed_form_and_ranking(bag):
    """With two classes p1 = sigmoid(c + D), D the sum of the word gaps d_i and c the baseline's
    gap ([CLS] and [SEP]); along the straight path IG gives d_i (p1(x) - p1(baseline)) / D."""
    clf, weights = bag
    gaps = word_weights(clf, BAG_TEXT, weights) @ np.array([-1.0, 1.0])
    c = np.subtract(*weights[clf.tokenizer.sep_token_id][::-1]) \
        + np.subtract(*weights[clf.tokenizer.cls_token_id][::-1])
    total = gaps.sum()
    expected = gaps * (sigmoid(c + total) - sigmoid(c)) / total
    (attr,) = IntegratedGradients().explain(clf, BAG_TEXT, target=1)
    np.testing.assert_allclose(attr.scores, expected, atol=1e-5)
    assert np.array_equal(np.argsort(attr.scores), np.argsort(gaps))
    assert attr.scores.sum() == pytest.approx(attr.meta["probs"][1] - sigmoid(c), abs=1e-5)


def test_ig_baselines_and_plain_gradients(bag):
    clf, weights = bag
    mask = weights[clf.tokenizer.mask_token_id]
    (attr,) = IntegratedGradients(output="logits", baseline="mask").explain(clf, BAG_TEXT, target=0)
    np.testing.assert_allclose(attr.scores, word_weights(clf, BAG_TEXT, weights, skip=mask)[:, 0], atol=1e-4)
    (attr,) = IntegratedGradients(output="logits", baseline="unk").explain(clf, BAG_TEXT, target=0)
    np.testing.assert_allclose(attr.scores, word_weights(clf, BAG_TEXT, weights)[:, 0], atol=1e-4)
    # without multiplying by the inputs each token's gradient on its own logit is 1
    (attr,) = IntegratedGradients(output="logits", multiply_by_inputs=False).explain(clf, BAG_TEXT, target=1)
    n_tokens = [len(clf.tokenizer.tokenize(w)) for w in segment(BAG_TEXT).words]
    np.testing.assert_allclose(attr.scores, n_tokens, atol=1e-5)


def test_ig_truncation_scores_only_what_the_model_reads(bag):
    """max_length 8 keeps [CLS], the first 6 tokens and [SEP]: 'unbelievably' (5 tokens) and
    'good', and nothing after."""
    full, weights = bag
    clf = HFClassifier(full.model, full.tokenizer, device="cpu", max_length=8)
    (attr,) = IntegratedGradients(output="logits").explain(clf, BAG_TEXT, target=1)
    visible = attr.meta["visible_words"]
    assert visible == 2
    truth = word_weights(clf, BAG_TEXT, weights)[:, 1]
    np.testing.assert_allclose(attr.scores[:visible], truth[:visible], atol=1e-4)
    assert np.all(attr.scores[visible:] == 0)


def test_ig_runs_with_grad_disabled_and_keeps_the_mode(bag):
    clf, _ = bag
    (expected,) = IntegratedGradients().explain(clf, BAG_TEXT)
    clf.model.train()
    try:
        with torch.inference_mode():
            (attr,) = IntegratedGradients().explain(clf, BAG_TEXT)
        assert clf.model.training
    finally:
        clf.model.eval()
    np.testing.assert_allclose(attr.scores, expected.scores, atol=1e-7)
    assert all(p.grad is None for p in clf.model.parameters())


# --- integrated gradients on a random transformer -----------------------------------------------


def test_ig_on_a_transformer(tiny_classifier):
    text = "Great film!! Great 😀 acting, isn't it? unbelievably dull"
    (attr,) = IntegratedGradients(n_steps=50).explain(tiny_classifier, text, all_classes=True)
    words = segment(text).words
    assert attr.words == words and attr.scores.shape == (len(words),)
    scores = attr.meta["all_scores"]
    assert scores.shape == (2, len(words)) and np.all(np.isfinite(scores)) and np.any(scores != 0)
    np.testing.assert_allclose(scores[0], -scores[1], atol=1e-9)  # p0 = 1 - p1
    deltas = np.abs(attr.meta["convergence_delta"])
    assert np.all(deltas <= 0.05 * np.abs(scores.sum(axis=1)) + 1e-8)


def test_ig_layer_setting(tiny_classifier):
    text = "a dull and boring film"
    (attr,) = IntegratedGradients(layer="bert.embeddings", n_steps=20).explain(tiny_classifier, text)
    assert np.all(np.isfinite(attr.scores)) and np.any(attr.scores != 0)
    with pytest.raises(ValueError, match="not a module of BertForSequenceClassification.*bert, "):
        IntegratedGradients(layer="bert.nope").explain(tiny_classifier, text)


def test_ig_words_past_max_length_score_zero(tiny_classifier):
    text = " ".join(["good film"] * 40)  # 80 words, 82 tokens; the model reads 64
    (attr,) = IntegratedGradients(n_steps=8).explain(tiny_classifier, text)
    visible = attr.meta["visible_words"]
    assert visible == tiny_classifier.max_length - 2
    assert np.all(attr.scores[visible:] == 0) and np.all(attr.scores[:visible] != 0)


# --- registry and errors --------------------------------------------------------------------------


def test_registered():
    assert TEACHERS["ig"] is IntegratedGradients and TEACHERS["occlusion"] is Occlusion
    ig = get_teacher("ig", n_steps=20, output="logits")
    assert ig.config() == {"name": "ig", "n_steps": 20, "method": "gausslegendre", "baseline": "pad",
                           "output": "logits", "internal_batch_size": 64, "multiply_by_inputs": True,
                           "layer": None}
    assert get_teacher("occlusion").config() == {"name": "occlusion", "mask_token": ""}
    # deterministic: `plex evaluate` reruns only the teachers with a seed for its noise ceiling
    assert not hasattr(ig, "seed") and not hasattr(Occlusion(), "seed")


def test_ig_refuses_black_boxes(linear_bow):
    _, clf = linear_bow
    with pytest.raises(ValueError, match="white-box classifier.*use lime/shap/occlusion"):
        IntegratedGradients().explain(clf, "a good film")
    with pytest.raises(ValueError, match="white-box"):
        IntegratedGradients().attribute(clf, segment("a good film"), [1])


@pytest.mark.parametrize("cls, settings, message", [
    (IntegratedGradients, {"n_steps": 0}, "n_steps"),
    (IntegratedGradients, {"n_steps": 2.5}, "n_steps"),
    (IntegratedGradients, {"baseline": "zeros"}, "baseline must be one of pad, mask, unk"),
    (IntegratedGradients, {"output": "softmax"}, "output must be one of probs, logits"),
    (IntegratedGradients, {"method": "simpson"}, "method"),
    (IntegratedGradients, {"internal_batch_size": 0}, "internal_batch_size"),
    (IntegratedGradients, {"multiply_by_inputs": 1}, "multiply_by_inputs"),
    (IntegratedGradients, {"layer": ""}, "layer"),
    (Occlusion, {"mask_token": None}, "mask_token"),
])
def test_invalid_settings(cls, settings, message):
    with pytest.raises(ValueError, match=message):
        cls(**settings)
