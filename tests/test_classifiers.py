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
