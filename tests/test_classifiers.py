import numpy as np
import pytest
import torch

import plex
from plex.classifiers import CallableClassifier, HFClassifier
from plex.words import segment

from conftest import make_tiny_bert


def test_hf_predict_proba_is_batched_sorted_and_in_input_order(tiny_classifier):
    texts = ["a much longer text with many words in it, more than the others", "short", "", "mid size text"]
    probs = tiny_classifier.predict_proba(texts)
    assert probs.shape == (4, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    one_by_one = np.concatenate([tiny_classifier.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(probs, one_by_one, atol=1e-5)  # padding and sorting change nothing
    assert tiny_classifier.labels == ["class_0", "class_1"]
    assert tiny_classifier.predict(texts).tolist() == probs.argmax(axis=1).tolist()


def test_hf_batches_group_texts_by_token_count(tiny_classifier, monkeypatch):
    # characters and tokens disagree: short words are one token each, a long rare word is several
    texts = ["a b c d e f g", "unbelievableness", "x y z", "notwithstandingly", "a b c d", "incomprehensibilities"]
    counts = [len(tiny_classifier.tokenizer(t)["input_ids"]) for t in texts]
    by_chars = sorted(range(6), key=lambda i: len(texts[i]), reverse=True)
    by_tokens = sorted(range(6), key=lambda i: counts[i], reverse=True)
    assert sorted(counts[i] for i in by_chars[:2]) != sorted(counts[i] for i in by_tokens[:2])  # the case bites
    widths, forward = [], tiny_classifier.model.forward

    def recording(*args, **kwargs):
        widths.append(kwargs["attention_mask"].sum(dim=1).tolist())
        return forward(*args, **kwargs)

    monkeypatch.setattr(tiny_classifier.model, "forward", recording)
    probs = tiny_classifier.forward(texts, layers=(), batch_size=2).probs
    ranked = sorted(counts, reverse=True)
    assert [sorted(w, reverse=True) for w in widths] == [ranked[k:k + 2] for k in (0, 2, 4)]
    monkeypatch.undo()
    np.testing.assert_allclose(probs, np.concatenate([tiny_classifier.predict_proba([t]) for t in texts]), atol=1e-5)


@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_encoding_pads_like_the_tokenizer(tiny_classifier, side):
    from plex.classifiers.hf import pad_encoding

    tokenizer = tiny_classifier.tokenizer
    texts = ["a much longer text, with a comma", "short", "", "naïve 😍"]
    old = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        plain = tokenizer(texts, return_offsets_mapping=True, return_special_tokens_mask=True)
        mine = pad_encoding(tokenizer, {key: list(value) for key, value in plain.items()})
        theirs = tokenizer(texts, padding=True, return_offsets_mapping=True, return_special_tokens_mask=True,
                           return_tensors="pt")
    finally:
        tokenizer.padding_side = old
    assert set(mine) == set(theirs)
    for key in theirs:
        assert torch.equal(mine[key], theirs[key]), key


def test_pad_encoding_without_a_padding_token_names_the_fix(tiny_classifier):
    from plex.classifiers.hf import pad_encoding

    class NoPad:
        pad_token_id = None

    with pytest.raises(ValueError, match="pad_token"):
        pad_encoding(NoPad(), {"input_ids": [[1, 2, 3], [1]], "attention_mask": [[1, 1, 1], [1]]})
    same = pad_encoding(NoPad(), {"input_ids": [[1, 2], [3, 4]], "attention_mask": [[1, 1], [1, 1]]})
    assert same["input_ids"].tolist() == [[1, 2], [3, 4]]


def test_hf_embed_aligns_subwords_to_words(tiny_classifier):
    text = "Unbelievably good, good film 😍 naïve!"
    states = tiny_classifier.embed([text], layer=-1)[0]
    seg = segment(text)
    assert states.hidden.shape == (len(states.offsets), 32)
    ids = states.word_ids
    assert ids[0] == -1 and ids[-1] == -1  # [CLS] and [SEP]
    for tok, (s, e) in zip(ids, states.offsets):
        if tok >= 0:  # every token lies inside the span of the word it is assigned to
            ws, we = seg.spans[tok]
            assert ws <= s and e <= we
    # the two "good" are distinct positions with their own tokens
    good = [i for i, w in enumerate(seg.words) if w == "good"]
    assert all((ids == g).any() for g in good)
    # every word is covered by at least one token, even the multi-piece ones
    assert set(ids[ids >= 0].tolist()) == set(range(len(seg)))


def test_hf_layers_are_selectable(tiny_classifier):
    out = tiny_classifier.forward(["good film"], layers=(0, 1, -1))
    assert set(out.states) == {0, 1, -1}
    assert not np.allclose(out.states[0][0].hidden, out.states[-1][0].hidden)
    np.testing.assert_allclose(out.probs, tiny_classifier.predict_proba(["good film"]), atol=1e-6)


def test_truncation_is_reported_and_does_not_crash(tmp_path):
    path = make_tiny_bert(tmp_path / "short", max_position_embeddings=16)
    clf = HFClassifier.from_pretrained(path, device="cpu")
    assert clf.max_length == 16
    text = " ".join(["word"] * 40)
    assert clf.predict_proba([text]).shape == (1, 2)
    # 16 positions minus [CLS] and [SEP] leaves 14 words visible; the tail is not read
    assert clf.visible_words(segment(text).spans, text) == 14
    assert clf.embed([text])[0].word_ids.max() == 13


def test_empty_text_and_single_string(tiny_classifier):
    assert tiny_classifier.predict_proba("").shape == (1, 2)
    assert tiny_classifier.embed([""])[0].word_ids.tolist() == [-1, -1]
    with pytest.raises(TypeError, match="list of strings"):
        tiny_classifier.predict_proba(["ok", None])


def test_load_classifier_from_folder_and_identity(tiny_bert_path):
    a = plex.load_classifier(tiny_bert_path, device="cpu")
    b = plex.load_classifier(str(tiny_bert_path), device="cpu")
    assert a.identity()["weights_sha256"] == b.identity()["weights_sha256"]
    with torch.no_grad():
        b.model.classifier.bias.add_(1.0)
    del b.__dict__["weights_sha256"]
    assert a.identity()["weights_sha256"] != b.identity()["weights_sha256"]
    assert a.model.training is False


def test_load_classifier_names_the_fix_for_a_missing_model(tmp_path):
    with pytest.raises(OSError, match="save_pretrained"):
        plex.load_classifier(tmp_path / "nothing-here")


def test_callable_classifier_validates_output():
    ok = CallableClassifier(lambda ts: np.tile([0.25, 0.75], (len(ts), 1)), labels=["n", "p"], batch_size=2)
    assert ok.predict_proba(["a", "b", "c"]).shape == (3, 2)
    wrong_shape = CallableClassifier(lambda ts: np.ones((len(ts), 3)) / 3, labels=["n", "p"])
    with pytest.raises(ValueError, match="expected"):
        wrong_shape.predict_proba(["a"])
    logits = CallableClassifier(lambda ts: np.full((len(ts), 2), 3.0), labels=["n", "p"])
    with pytest.raises(ValueError, match="softmax"):
        logits.predict_proba(["a"])


def test_callable_classifier_batches_calls():
    calls = []

    def fn(ts):
        calls.append(len(ts))
        return np.tile([0.5, 0.5], (len(ts), 1))

    CallableClassifier(fn, labels=["a", "b"], batch_size=4).predict_proba(["x"] * 10)
    assert calls == [4, 4, 2]


def test_cut_batches_fills_batches_or_weighs_padding_against_a_pass():
    from plex.classifiers.hf import cut_batches

    assert cut_batches([5, 5, 5, 5, 5], 2) == [(0, 2), (2, 4), (4, 5)]  # no cost given: full batches
    # two texts of 10 tokens and two of 3: one batch pads 14 tokens, two batches cost one pass more
    assert cut_batches([10, 10, 3, 3], 4, cost_tokens=0) == [(0, 2), (2, 4)]  # 26 padded tokens against 40
    assert cut_batches([10, 10, 3, 3], 4, cost_tokens=13) == [(0, 2), (2, 4)]  # 26 + 2*13 = 52 < 40 + 13
    assert cut_batches([10, 10, 3, 3], 4, cost_tokens=15) == [(0, 4)]  # 26 + 30 = 56 > 40 + 15
    assert cut_batches([4, 4, 4], 2, cost_tokens=0) == [(0, 2), (2, 3)]  # equal costs: the fuller batch first
    assert cut_batches([], 8, cost_tokens=256) == []
    with pytest.raises(ValueError, match="sorted longest first"):
        cut_batches([3, 10], 4, cost_tokens=0)
    with pytest.raises(ValueError, match="batch_size"):
        cut_batches([3], 0)


def test_a_cpu_classifier_cuts_batches_that_would_pad_much(tiny_classifier, monkeypatch):
    from plex.classifiers.hf import CPU_BATCH_COST_TOKENS

    assert tiny_classifier.batch_cost_tokens == CPU_BATCH_COST_TOKENS
    long = " ".join(["word"] * 40)  # 42 tokens with [CLS] and [SEP]
    texts = [long, long, "a", "b"]  # one batch of 4 would pad 2 * 39 tokens
    rows, forward = [], tiny_classifier.model.forward

    def recording(*args, **kwargs):
        rows.append(kwargs["attention_mask"].shape)
        return forward(*args, **kwargs)

    monkeypatch.setattr(tiny_classifier.model, "forward", recording)
    monkeypatch.setattr(type(tiny_classifier), "batch_cost_tokens", property(lambda self: 50))
    cut = tiny_classifier.predict_proba(texts)
    assert rows == [(2, 42), (2, 3)]  # 84 + 6 + 2 * 50 = 190 < 4 * 42 + 50 = 218
    rows.clear()
    monkeypatch.setattr(type(tiny_classifier), "batch_cost_tokens", property(lambda self: None))  # as on a GPU
    full = tiny_classifier.predict_proba(texts)
    assert rows == [(4, 42)]
    np.testing.assert_allclose(cut, full, atol=1e-5)
